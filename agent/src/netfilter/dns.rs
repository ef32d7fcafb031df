//! The DNS listener's rules: one chain in the filter table, jumped to first
//! from INPUT, installed once when DNS starts. Queries from local
//! containers (`flat+` veths) and from the host itself (`lo`) to the
//! listener are accepted, whatever the host's INPUT policy says or the
//! application policy denies; queries to that address and port arriving
//! on any other interface (the fabric) are dropped. Nothing else is
//! matched: discovery opens no other reachability. Application policy
//! lives in FORWARD, so it never sees this traffic, and leaves this chain
//! alone (it is not one of its chains).

use std::net::SocketAddr;

use super::{Family, Netfilter, NfError};

/// Filter-table chain, jumped to first from INPUT.
pub const DNS_CHAIN: &str = "FLATNET-DNS";

fn family(listen: &SocketAddr) -> Family {
    if listen.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

/// The filter-table payload: the chain (declared, so refilled from
/// scratch), the INPUT jump when missing, and its rules.
pub fn payload(listen: &SocketAddr, add_jump: bool) -> String {
    let plen = if listen.is_ipv4() { 32 } else { 128 };
    let (ip, port) = (listen.ip(), listen.port());
    let mut p = format!("*filter\n:{DNS_CHAIN} - [0:0]\n");
    if add_jump {
        p += &format!("-I INPUT 1 -j {DNS_CHAIN}\n");
    }
    for proto in ["udp", "tcp"] {
        for iface in ["flat+", "lo"] {
            p += &format!(
                "-A {DNS_CHAIN} -d {ip}/{plen} -i {iface} -p {proto} -m {proto} --dport {port} -j ACCEPT\n"
            );
        }
        p += &format!(
            "-A {DNS_CHAIN} -d {ip}/{plen} -p {proto} -m {proto} --dport {port} -j DROP\n"
        );
    }
    p + "COMMIT\n"
}

/// Installs (idempotently) the chain, jump and rules for `listen`.
pub async fn install(nf: &Netfilter, listen: &SocketAddr) -> Result<(), NfError> {
    let fam = family(listen);
    let has_jump = nf
        .has_rule(fam, "filter", "INPUT", &["-j", DNS_CHAIN])
        .await?;
    nf.restore(fam, &payload(listen, !has_jump)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_containers_and_the_host_and_drops_the_rest_of_dns_only() {
        let p = payload(&"169.254.1.1:53".parse().unwrap(), true);
        assert_eq!(
            p,
            "*filter\n:FLATNET-DNS - [0:0]\n-I INPUT 1 -j FLATNET-DNS\n\
             -A FLATNET-DNS -d 169.254.1.1/32 -i flat+ -p udp -m udp --dport 53 -j ACCEPT\n\
             -A FLATNET-DNS -d 169.254.1.1/32 -i lo -p udp -m udp --dport 53 -j ACCEPT\n\
             -A FLATNET-DNS -d 169.254.1.1/32 -p udp -m udp --dport 53 -j DROP\n\
             -A FLATNET-DNS -d 169.254.1.1/32 -i flat+ -p tcp -m tcp --dport 53 -j ACCEPT\n\
             -A FLATNET-DNS -d 169.254.1.1/32 -i lo -p tcp -m tcp --dport 53 -j ACCEPT\n\
             -A FLATNET-DNS -d 169.254.1.1/32 -p tcp -m tcp --dport 53 -j DROP\nCOMMIT\n"
        );
        let p6 = payload(&"[fd00::53]:5353".parse().unwrap(), false);
        assert!(!p6.contains("INPUT"), "{p6}");
        assert!(
            p6.contains("-d fd00::53/128 -i flat+ -p udp -m udp --dport 5353 -j ACCEPT"),
            "{p6}"
        );
    }
}
