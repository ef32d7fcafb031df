//! The host's resolvers from a resolv.conf (pure parsing; the forwarder
//! reads the file). Only `nameserver` lines matter: search domains and
//! options are the stub resolver's business, not a forwarder's.

use std::net::{IpAddr, SocketAddr};

/// The nameservers of a resolv.conf text, in order, on port 53. A
/// link-local IPv6 address keeps its zone (`fe80::1%eth0`) when `scope`
/// resolves the interface name to an index; lines that do not parse are
/// skipped (the stub resolver skips them too). Addresses in `exclude`
/// (flatnetd's own listener: forwarding to it would loop) are left out.
pub fn nameservers(
    text: &str,
    exclude: &[SocketAddr],
    scope: impl Fn(&str) -> Option<u32>,
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let (ip, zone) = match addr.split_once('%') {
            Some((ip, z)) => (ip, Some(z)),
            None => (addr, None),
        };
        let Ok(ip) = ip.parse::<IpAddr>() else {
            continue;
        };
        let sa = match (ip, zone) {
            (IpAddr::V6(v6), Some(z)) => {
                let Some(idx) = z.parse::<u32>().ok().or_else(|| scope(z)) else {
                    continue;
                };
                SocketAddr::V6(std::net::SocketAddrV6::new(v6, 53, 0, idx))
            }
            (ip, _) => SocketAddr::new(ip, 53),
        };
        if ip.is_unspecified() || exclude.iter().any(|e| e.ip() == sa.ip() && e.port() == 53) {
            continue;
        }
        if !out.contains(&sa) {
            out.push(sa);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nameserver_lines_in_order_and_the_rest_ignored() {
        let text = "# generated\nsearch corp.example\nnameserver 10.1.1.1\noptions ndots:2\n\
                    nameserver   127.0.0.53 # stub\n;nameserver 10.9.9.9\nnameserver ::1\n\
                    nameserver bogus\nnameserver\nnameserver 10.1.1.1\n";
        assert_eq!(
            nameservers(text, &[], |_| None),
            vec![sa("10.1.1.1:53"), sa("127.0.0.53:53"), sa("[::1]:53")]
        );
    }

    #[test]
    fn own_listener_and_unscoped_link_local_are_left_out() {
        let text = "nameserver 169.254.1.1\nnameserver fe80::1%eth9\nnameserver fe80::2%lo\nnameserver 0.0.0.0\nnameserver 10.0.0.2\n";
        let got = nameservers(text, &[sa("169.254.1.1:53")], |i| (i == "lo").then_some(1));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0],
            SocketAddr::V6(std::net::SocketAddrV6::new(
                "fe80::2".parse().unwrap(),
                53,
                0,
                1
            ))
        );
        assert_eq!(got[1], sa("10.0.0.2:53"));
        // A listener on another port does not shadow port 53 there.
        assert_eq!(
            nameservers("nameserver 127.0.0.1\n", &[sa("127.0.0.1:5353")], |_| None).len(),
            1
        );
    }
}
