//! The expected policy matrix, computed from the declared policy alone
//! (pure; the actual matrix comes from real connects in the lab), and the
//! flatnet policy document the lab applies for it.
//!
//! Semantics, the same as flatnetd's with `[policy] enabled = true` and the
//! defaults (`between_apps = "deny"`): with no policy declared the lab does
//! not enable policy and every container reaches every other. Once any
//! policy exists, containers of the same app reach each other, app A reaches
//! app B only with the protocol and on the ports a `from: A, to: B` entry
//! lists (no ports: every port of that protocol; `any`: every protocol), and
//! a container without an app reaches, and is reached by, no container of
//! another app nor another container without an app (only the default
//! applies to it).

use super::model::{PolicyDef, Proto};

/// Whether a connect with `proto` (to `port` for tcp/udp) from a container
/// of `from` to one of `to` is allowed by `policies`.
pub fn permits(
    policies: &[PolicyDef],
    from: Option<&str>,
    to: Option<&str>,
    proto: Proto,
    port: Option<u16>,
) -> bool {
    if policies.is_empty() {
        return true;
    }
    let (Some(from), Some(to)) = (from, to) else {
        return false;
    };
    if from == to {
        return true;
    }
    policies.iter().any(|p| {
        p.from == from
            && p.to == to
            && (p.proto == Proto::Any || p.proto == proto)
            && (p.ports.is_empty() || port.is_some_and(|n| p.ports.contains(&n)))
    })
}

/// Whether a TCP connect to `port` is allowed (the TCP matrix).
pub fn allowed(policies: &[PolicyDef], from: Option<&str>, to: Option<&str>, port: u16) -> bool {
    permits(policies, from, to, Proto::Tcp, Some(port))
}

/// Whether a ping is allowed (the ping matrix).
pub fn ping_allowed(policies: &[PolicyDef], from: Option<&str>, to: Option<&str>) -> bool {
    permits(policies, from, to, Proto::Icmp, None)
}

/// A flatnet document name (`[a-z0-9._-]`, 1..=63) for lab `lab`.
pub fn document_name(lab: &str) -> String {
    let mut s: String = lab
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if s.is_empty() {
        s.push_str("lab");
    }
    s
}

/// The flatnet policy document (JSON, as `flatnet policy apply -f` takes
/// it) for the lab's declared policies: one `[[allow]]` per entry.
pub fn document(lab: &str, policies: &[PolicyDef]) -> serde_json::Value {
    let allow: Vec<serde_json::Value> = policies
        .iter()
        .map(|p| {
            serde_json::json!({
                "from": p.from,
                "to": p.to,
                "proto": p.proto.as_str(),
                "ports": p.ports,
            })
        })
        .collect();
    serde_json::json!({ "name": document_name(lab), "allow": allow })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(from: &str, to: &str, ports: &[u16]) -> PolicyDef {
        PolicyDef {
            from: from.into(),
            to: to.into(),
            proto: Proto::Tcp,
            ports: ports.to_vec(),
        }
    }

    #[test]
    fn no_policy_allows_everything() {
        assert!(allowed(&[], Some("web"), Some("db"), 5432));
        assert!(ping_allowed(&[], None, Some("db")));
    }

    #[test]
    fn declared_pairs_only_on_their_ports() {
        let ps = [p("web", "api", &[8080]), p("api", "db", &[])];
        assert!(allowed(&ps, Some("web"), Some("api"), 8080));
        assert!(!allowed(&ps, Some("web"), Some("api"), 9090));
        assert!(
            !allowed(&ps, Some("api"), Some("web"), 8080),
            "not symmetric"
        );
        assert!(allowed(&ps, Some("api"), Some("db"), 1));
        assert!(!allowed(&ps, Some("web"), Some("db"), 8080));
        assert!(allowed(&ps, Some("db"), Some("db"), 8080), "same app");
        assert!(
            !allowed(&ps, None, Some("db"), 8080),
            "no app: default deny"
        );
        assert!(
            !allowed(&ps, Some("db"), None, 8080),
            "no app: default deny"
        );
        assert!(!allowed(&ps, None, None, 8080), "no app: default deny");
    }

    #[test]
    fn ping_needs_an_icmp_or_any_edge() {
        let mut any = p("web", "db", &[]);
        any.proto = Proto::Any;
        let mut icmp = p("api", "db", &[]);
        icmp.proto = Proto::Icmp;
        let ps = [p("web", "api", &[8080]), any, icmp];
        assert!(!ping_allowed(&ps, Some("web"), Some("api")), "tcp edge");
        assert!(ping_allowed(&ps, Some("web"), Some("db")));
        assert!(allowed(&ps, Some("web"), Some("db"), 5432), "any: tcp too");
        assert!(ping_allowed(&ps, Some("api"), Some("db")));
        assert!(!allowed(&ps, Some("api"), Some("db"), 5432), "icmp only");
        assert!(ping_allowed(&ps, Some("web"), Some("web")), "same app");
    }

    #[test]
    fn document_is_flatnets_format() {
        let d = document("Two Tier", &[p("web", "api", &[8080])]);
        assert_eq!(
            d,
            serde_json::json!({"name": "two-tier", "allow": [
                {"from": "web", "to": "api", "proto": "tcp", "ports": [8080]}
            ]})
        );
        assert_eq!(document_name(""), "lab");
        assert_eq!(document_name(&"x".repeat(80)).len(), 63);
    }
}
