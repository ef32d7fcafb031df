//! Source-address anti-spoofing on every flatnet host veth, one static rule
//! set per family in the raw table (installed once at start, so an ADD
//! spawns no process): a packet arriving on a `flat+` veth must have a
//! source whose route points back out of that same veth. The only such
//! routes are the container's own /32 and /128, so any other source
//! (another container's address, an unallocated address of the block —
//! blackholed —, anything outside) is dropped before routing.

use super::{Family, Netfilter, NfError};

/// Raw-table chain, jumped to first from PREROUTING.
pub const ANTISPOOF_CHAIN: &str = "FLATNET-ANTISPOOF";

/// The reverse-path rule, identical for every veth.
const RPF_RULE: [&str; 7] = ["-i", "flat+", "-m", "rpfilter", "--invert", "-j", "DROP"];

/// The raw-table payload: the chain (declared, so refilled from scratch),
/// the PREROUTING jump when it is missing, and the rules.
pub fn payload(fam: Family, add_jump: bool) -> String {
    let mut p = format!("*raw\n:{ANTISPOOF_CHAIN} - [0:0]\n");
    if add_jump {
        p += &format!("-I PREROUTING 1 -j {ANTISPOOF_CHAIN}\n");
    }
    if fam == Family::V6 {
        // NDP and DAD from the container's link-local or unspecified
        // source pass before the reverse-path check.
        for src in ["fe80::/10", "::/128"] {
            p += &format!("-A {ANTISPOOF_CHAIN} -i flat+ -s {src} -j RETURN\n");
        }
    }
    p += &format!("-A {ANTISPOOF_CHAIN} {}\nCOMMIT\n", RPF_RULE.join(" "));
    p
}

/// Installs (idempotently) the family's chain, jump and rules in one batch.
pub async fn install(nf: &Netfilter, fam: Family) -> Result<(), NfError> {
    let jump = ["-j", ANTISPOOF_CHAIN];
    let has_jump = nf.has_rule(fam, "raw", "PREROUTING", &jump).await?;
    nf.restore(fam, &payload(fam, !has_jump)).await
}

/// Whether the family's reverse-path rule is installed.
pub async fn present(nf: &Netfilter, fam: Family) -> Result<bool, NfError> {
    nf.has_rule(fam, "raw", ANTISPOOF_CHAIN, &RPF_RULE).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_payload_is_one_chain_one_rule() {
        assert_eq!(
            payload(Family::V4, true),
            "*raw\n:FLATNET-ANTISPOOF - [0:0]\n-I PREROUTING 1 -j FLATNET-ANTISPOOF\n\
             -A FLATNET-ANTISPOOF -i flat+ -m rpfilter --invert -j DROP\nCOMMIT\n"
        );
    }

    #[test]
    fn v6_payload_lets_ndp_through_first_and_jump_is_added_once() {
        let p = payload(Family::V6, false);
        assert!(!p.contains("PREROUTING"), "{p}");
        let ret = p.find("-s fe80::/10 -j RETURN").unwrap_or(usize::MAX);
        let drop = p.find("-j DROP").unwrap_or(0);
        assert!(ret < drop, "{p}");
        assert!(p.contains("-s ::/128 -j RETURN"), "{p}");
        assert!(p.ends_with("COMMIT\n"), "{p}");
    }
}
