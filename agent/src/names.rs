//! What a name from outside may look like before it becomes a kernel name,
//! an interface alias, a datastore key or part of a chain or set name. The
//! plugin checks first (for the right CNI code); flatnetd checks again, as
//! every API client is untrusted.

use crate::kernel::{ALIAS_PREFIX, valid_ifname};

/// The kernel keeps interface aliases of up to 255 bytes (IFALIASZ - 1).
const MAX_ALIAS: usize = 255;
/// Longest container id: "flatnet <id> <ifname>" must fit the alias with
/// the longest interface name (15).
pub const MAX_CONTAINER_ID: usize = MAX_ALIAS - ALIAS_PREFIX.len() - 1 - 15;
/// Longest node name (a DNS name's limit).
pub const MAX_NODE_NAME: usize = 253;

fn cni_identifier(s: &str) -> bool {
    // CNI 1.1: an alphanumeric, then alphanumerics, '_', '.' or '-'.
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `CNI_CONTAINERID`.
pub fn check_container_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_CONTAINER_ID {
        return Err(format!(
            "container id of {} bytes: at most {MAX_CONTAINER_ID}",
            id.len()
        ));
    }
    if !cni_identifier(id) {
        return Err(format!(
            "container id {id:?}: expected a letter or digit, then letters, digits, '_', '.' or '-'"
        ));
    }
    Ok(())
}

/// Names the kernel or flatnet treats specially: `%d` templates make the
/// kernel pick a name, and `all`/`default` are the sysctl trees that would
/// change every interface.
const RESERVED_IFNAMES: [&str; 2] = ["all", "default"];

/// `CNI_IFNAME`.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if !valid_ifname(name) {
        return Err(format!(
            "interface name {name:?}: 1 to 15 characters, no '/', ':' or whitespace"
        ));
    }
    if name.contains('%') || name.chars().any(|c| c.is_control()) {
        return Err(format!(
            "interface name {name:?}: no '%' (kernel name template) or control characters"
        ));
    }
    if RESERVED_IFNAMES.contains(&name) {
        return Err(format!("interface name {name:?} is reserved by the kernel"));
    }
    Ok(())
}

/// The CNI network name (`name` of the configuration).
pub fn check_network_name(name: &str) -> Result<(), String> {
    if name.len() > 253 || !cni_identifier(name) {
        return Err(format!(
            "network name {name:?}: 1..=253 of letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// An app id: policy names it, chains and sets carry it.
pub fn check_app(app: &str) -> Result<(), String> {
    crate::policy::model::valid_name(app).map_err(|e| format!("app id: {e}"))
}

/// `node.name`: a datastore key component and the owner of blocks.
pub fn check_node_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > MAX_NODE_NAME || !ok_chars || !ok_first {
        return Err(format!(
            "node.name {name:?}: expected a host name, 1..={MAX_NODE_NAME} of letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_follow_cni_and_fit_the_alias() {
        assert!(check_container_id(&"a".repeat(64)).is_ok());
        assert!(check_container_id("k8s_pod.1-x").is_ok());
        assert_eq!(MAX_CONTAINER_ID, 231);
        assert!(check_container_id(&"a".repeat(MAX_CONTAINER_ID)).is_ok());
        assert!(check_container_id(&"a".repeat(MAX_CONTAINER_ID + 1)).is_err());
        for bad in ["", "-x", ".x", "a b", "a/b", "a\nb", "é", "a:b"] {
            assert!(check_container_id(bad).is_err(), "{bad:?}");
        }
        // The longest id with the longest ifname fits the kernel's alias.
        let alias = format!(
            "{ALIAS_PREFIX}{} {}",
            "a".repeat(MAX_CONTAINER_ID),
            "e".repeat(15)
        );
        assert_eq!(alias.len(), MAX_ALIAS);
    }

    #[test]
    fn special_interface_names_are_refused() {
        for good in ["eth0", "net1", "e", "veth-a_b.1"] {
            assert!(check_ifname(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "eth%d",
            "%d",
            "all",
            "default",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "sixteen-chars-xx",
            "a\u{7}b",
        ] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_and_network_names_are_host_names() {
        assert!(check_node_name("host-1.rack2").is_ok());
        assert!(check_node_name("Host_1").is_ok());
        for bad in ["", "a/b", "a\nb", "-a", "a b", "a\u{0}"] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_node_name(&"a".repeat(254)).is_err());
        assert!(check_network_name("flatnet").is_ok());
        assert!(check_network_name("a/b").is_err());
    }

    #[test]
    fn app_ids_are_policy_names() {
        assert!(check_app("cart").is_ok());
        assert!(check_app(&"a".repeat(64)).is_err());
        assert!(check_app("Cart").is_err());
        assert!(check_app("").is_err());
    }
}
