//! `[[bgp.peer]]`: one BGP session of the embedded speaker, with the options
//! the speaker implements (TCP-MD5, GTSM, max-prefix, timers, passive,
//! link-local peers with extended next hop), their checks, and the mapping
//! to the speaker's [`PeerConfig`].
//!
//! Errors about one peer name the file:line:column of the offending key
//! (a second, lenient parse of the same text finds the spans), because a
//! typo in a peer's password must never bring up an unsigned session.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use flatnet_bgp::session::{ConnectOptions, Damping, MaxPrefix, PeerConfig};
use flatnet_bgp::wire::Family;
use serde::{Deserialize, Deserializer, Serialize};

/// Longest TCP-MD5 key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY: usize = 80;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BgpPeer {
    pub address: IpAddr,
    pub asn: u32,
    #[serde(default = "default_bgp_port")]
    pub port: u16,
    /// Next hop for IPv6 blocks sent over an IPv4 session (MP-BGP needs an
    /// IPv6 next hop): this host's global IPv6 address on the link to the peer.
    #[serde(default)]
    pub next_hop_ipv6: Option<Ipv6Addr>,
    /// Interface of a link-local (`fe80::/10`) peer: unnumbered fabric links.
    #[serde(default)]
    pub interface: Option<String>,
    /// TCP-MD5 key (RFC 2385), at most 80 bytes.
    #[serde(default)]
    pub password: Option<String>,
    /// GTSM (RFC 5082): the peer is at most this many hops away (1 = directly
    /// connected); packets with a lower TTL are dropped by the kernel.
    #[serde(default)]
    pub ttl_security: Option<u8>,
    /// Only accept connections, never connect; needs `bgp.listen`.
    #[serde(default)]
    pub passive: bool,
    /// Proposed hold time in seconds (0, or 3 and more; default 90).
    #[serde(default)]
    pub hold_time: Option<u16>,
    /// Keepalive interval in seconds (default a third of the hold time).
    #[serde(default)]
    pub keepalive: Option<u16>,
    /// Seconds between connection attempts (default 1, backing off to 30).
    #[serde(default)]
    pub connect_retry: Option<u64>,
    /// Seconds before the next attempt after a session ends (default
    /// `connect_retry`, else 1);
    /// after an error it doubles per consecutive error (RFC 4271 8.1.1
    /// damping). A Cease or a clean close never grows it.
    #[serde(default)]
    pub damping_initial: Option<u64>,
    /// Longest damped wait, seconds (default 60).
    #[serde(default)]
    pub damping_max: Option<u64>,
    /// Seconds Established after which the errors are forgotten (default 60).
    #[serde(default)]
    pub damping_reset_after: Option<u64>,
    /// Announce extended next hop (RFC 8950): IPv4 routes over an IPv6 session.
    #[serde(default)]
    pub extended_next_hop: bool,
    /// Limits on prefixes received from the peer, per family.
    #[serde(default)]
    pub max_prefix: Vec<BgpMaxPrefix>,
    /// Graceful restart (RFC 4724), both roles: announce the capability
    /// (with the forwarding-state bit: learned routes stay in the kernel
    /// across a flatnetd restart), and keep this peer's routes while it
    /// restarts. Default false.
    #[serde(default)]
    pub graceful_restart: bool,
    /// Restart time announced to the peer, seconds (default 120).
    #[serde(default)]
    pub restart_time: Option<u16>,
    /// Helper role: seconds to keep this peer's stale routes after it came
    /// back, waiting for its End-of-RIB (default 360).
    #[serde(default)]
    pub stale_time: Option<u64>,
    /// Communities ("ASN:VALUE") added to everything advertised to this peer.
    #[serde(default)]
    pub communities: Vec<String>,
    /// Large communities ("GLOBAL:LOCAL1:LOCAL2") added to everything
    /// advertised to this peer.
    #[serde(default)]
    pub large_communities: Vec<String>,
}

/// `[[bgp.peer.max_prefix]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BgpMaxPrefix {
    #[serde(deserialize_with = "de_family", serialize_with = "ser_family")]
    pub family: Family,
    pub limit: usize,
    /// Warn at this percentage of the limit (default 75).
    #[serde(default = "default_warning")]
    pub warning_percent: u8,
    /// Past the limit only log; never reset the session.
    #[serde(default)]
    pub warning_only: bool,
    /// Seconds after the Cease before reconnecting; absent: stay down until
    /// flatnetd restarts or the peer's config changes.
    #[serde(default)]
    pub restart_interval: Option<u64>,
}

fn default_bgp_port() -> u16 {
    179
}

fn default_warning() -> u8 {
    75
}

fn de_family<'de, D: Deserializer<'de>>(d: D) -> Result<Family, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|e: flatnet_bgp::wire::FamilyParseError| {
        serde::de::Error::custom(format!(
            "{e} (expected \"ipv4-unicast\" or \"ipv6-unicast\")"
        ))
    })
}

fn ser_family<S: serde::Serializer>(f: &Family, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(f)
}

/// A problem with one peer, and which of its keys to point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProblem {
    /// Index in `[[bgp.peer]]`.
    pub index: usize,
    /// The key whose value is wrong (`address` when the whole peer is).
    pub key: &'static str,
    pub message: String,
}

impl BgpPeer {
    /// The session key: the speaker runs one session per peer address.
    pub fn key(&self) -> IpAddr {
        flatnet_bgp::speaker::core::normalize(self.address)
    }

    fn is_link_local(&self) -> bool {
        matches!(self.address, IpAddr::V6(a) if a.is_unicast_link_local())
    }

    /// Checks of one peer that need no kernel.
    fn check(&self, index: usize) -> Result<(), PeerProblem> {
        let bad = |key, message: String| {
            Err(PeerProblem {
                index,
                key,
                message: format!("bgp.peer {}: {message}", self.address),
            })
        };
        if self.is_link_local() && self.interface.as_deref().is_none_or(str::is_empty) {
            return bad(
                "address",
                "a link-local peer needs `interface` (the fabric link it is on)".into(),
            );
        }
        if let Some(p) = &self.password
            && (p.is_empty() || p.len() > MD5_MAX_KEY)
        {
            return bad(
                "password",
                format!(
                    "the kernel cannot sign with this TCP-MD5 key: expected 1 to {MD5_MAX_KEY} bytes (TCP_MD5SIG_MAXKEYLEN), found {} bytes",
                    p.len()
                ),
            );
        }
        if let Some(t) = self.ttl_security
            && !(1..=254).contains(&t)
        {
            return bad("ttl_security", format!("expected 1..=254 hops, found {t}"));
        }
        if let Some(h) = self.hold_time
            && h != 0
            && h < 3
        {
            return bad(
                "hold_time",
                format!("expected 0 or at least 3 seconds, found {h}"),
            );
        }
        if let Some(k) = self.keepalive {
            let hold = self.hold_time.unwrap_or(90);
            if hold != 0 && k >= hold {
                return bad(
                    "keepalive",
                    format!("expected less than the hold time ({hold}), found {k}"),
                );
            }
        }
        if self.connect_retry == Some(0) {
            return bad("connect_retry", "expected at least 1 second".into());
        }
        if self.damping_initial == Some(0) {
            return bad("damping_initial", "expected at least 1 second".into());
        }
        let d = self.damping();
        if d.max < d.initial {
            return bad(
                "damping_max",
                format!(
                    "expected at least damping_initial ({} s), found {} s",
                    d.initial.as_secs(),
                    d.max.as_secs()
                ),
            );
        }
        for m in &self.max_prefix {
            if m.limit == 0 || m.warning_percent > 100 {
                return bad(
                    "max_prefix",
                    format!(
                        "max_prefix {}: expected limit >= 1 and warning_percent 0..=100",
                        m.family
                    ),
                );
            }
        }
        Ok(())
    }

    /// The damping of this peer's restarts (defaults: [`Damping::default`]).
    pub fn damping(&self) -> Damping {
        let d = Damping::default();
        Damping {
            initial: self
                .damping_initial
                .or(self.connect_retry)
                .map_or(d.initial, |s| Duration::from_secs(s.max(1))),
            max: self.damping_max.map_or(d.max, Duration::from_secs),
            reset_after: self
                .damping_reset_after
                .map_or(d.reset_after, Duration::from_secs),
        }
    }

    /// What the speaker runs for this peer (policies are the caller's).
    pub fn peer_config(&self) -> PeerConfig {
        let mut c = PeerConfig::new(self.address, self.asn);
        c.port = self.port;
        c.next_hop_ipv6 = self.next_hop_ipv6;
        c.connect = ConnectOptions {
            password: self.password.clone(),
            ttl_security: self.ttl_security,
            interface: self.interface.clone(),
            local_address: None,
        };
        c.passive = self.passive;
        if let Some(h) = self.hold_time {
            c.hold_time = h;
        }
        c.keepalive = self.keepalive;
        if let Some(r) = self.connect_retry {
            c.connect_retry = Duration::from_secs(r.max(1));
        }
        c.extended_next_hop = self.extended_next_hop;
        c.damping = self.damping();
        c.max_prefix = self
            .max_prefix
            .iter()
            .map(|m| MaxPrefix {
                family: m.family,
                limit: m.limit,
                warning_percent: m.warning_percent,
                restart_interval: m.restart_interval.map(Duration::from_secs),
                warning_only: m.warning_only,
            })
            .collect();
        c
    }
}

/// Checks every peer on its own and against the others (duplicates).
pub fn check_peers(peers: &[BgpPeer]) -> Result<(), PeerProblem> {
    for (i, p) in peers.iter().enumerate() {
        p.check(i)?;
        if let Some(j) = peers[..i].iter().position(|q| q.key() == p.key()) {
            return Err(PeerProblem {
                index: i,
                key: "address",
                message: format!(
                    "bgp.peer {}: duplicate peer (the same address as bgp.peer[{j}])",
                    p.address
                ),
            });
        }
    }
    Ok(())
}

/// Asks the kernel to take each peer's TCP-MD5 key on a fresh, unbound
/// socket of the peer's family: a kernel without `CONFIG_TCP_MD5SIG`, or an
/// address it cannot key (e.g. IPv6 when IPv6 is off), fails here, before
/// anything starts, instead of leaving a session that never comes up. Opens
/// no connection and changes nothing outside the socket, which is closed.
pub fn probe_md5(peers: &[BgpPeer]) -> Result<(), PeerProblem> {
    use std::os::fd::AsRawFd;
    for (i, p) in peers.iter().enumerate() {
        let Some(key) = &p.password else { continue };
        let domain = if p.address.is_ipv4() {
            nix::sys::socket::AddressFamily::Inet
        } else {
            nix::sys::socket::AddressFamily::Inet6
        };
        let r = nix::sys::socket::socket(
            domain,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(std::io::Error::from)
        .and_then(|fd| {
            flatnet_bgp::session::socket::set_md5(fd.as_raw_fd(), p.address, Some(key.as_bytes()))
        });
        if let Err(e) = r {
            return Err(PeerProblem {
                index: i,
                key: "password",
                message: format!(
                    "bgp.peer {}: the kernel cannot sign TCP-MD5 for this peer: {e}",
                    p.address
                ),
            });
        }
    }
    Ok(())
}

/// Where `[[bgp.peer]]` number `index`'s `key` is in `text` (1-based line
/// and column), from a lenient second parse; `None` if not found.
pub fn locate(text: &str, index: usize, key: &str) -> Option<(usize, usize)> {
    let spans: SpanDoc = toml::from_str(text).ok()?;
    let peer = spans.bgp.peers.get(index)?;
    let span = peer
        .get(key)
        .or_else(|| peer.get("address"))
        .map(|v| v.span())?;
    Some(flatnet_tomlspan::line_col(text, span.start))
}

#[derive(Deserialize, Default)]
struct SpanDoc {
    #[serde(default)]
    bgp: SpanBgp,
}

#[derive(Deserialize, Default)]
struct SpanBgp {
    #[serde(default, rename = "peer")]
    peers: Vec<std::collections::BTreeMap<String, toml::Spanned<toml::Value>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> BgpPeer {
        toml::from_str(&format!("address = \"{addr}\"\nasn = 65001\n")).unwrap()
    }

    #[test]
    fn options_map_to_the_speaker_peer() {
        let p: BgpPeer = toml::from_str(
            r#"
address = "fe80::1"
interface = "eth0"
asn = 65001
port = 1179
password = "s3cret"
ttl_security = 1
passive = true
hold_time = 9
keepalive = 3
connect_retry = 5
extended_next_hop = true
[[max_prefix]]
family = "ipv4-unicast"
limit = 100
warning_only = true
restart_interval = 30
"#,
        )
        .unwrap();
        check_peers(std::slice::from_ref(&p)).unwrap();
        let c = p.peer_config();
        assert_eq!(c.port, 1179);
        assert_eq!(c.connect.password.as_deref(), Some("s3cret"));
        assert_eq!(c.connect.min_ttl(), Some(255));
        assert_eq!(c.connect.interface.as_deref(), Some("eth0"));
        assert!(c.passive && c.extended_next_hop);
        assert_eq!((c.hold_time, c.keepalive), (9, Some(3)));
        assert_eq!(c.connect_retry, Duration::from_secs(5));
        // The restart wait follows connect_retry unless set.
        assert_eq!(c.damping.initial, Duration::from_secs(5));
        assert_eq!(
            c.max_prefix,
            vec![MaxPrefix {
                family: Family::IPV4_UNICAST,
                limit: 100,
                warning_percent: 75,
                restart_interval: Some(Duration::from_secs(30)),
                warning_only: true,
            }]
        );
    }

    #[test]
    fn defaults_are_the_speakers() {
        let c = peer("192.0.2.1").peer_config();
        let d = PeerConfig::new("192.0.2.1".parse().unwrap(), 65001);
        assert_eq!(c, d);
    }

    #[test]
    fn bad_values_point_at_their_key() {
        let mut p = peer("192.0.2.1");
        p.hold_time = Some(2);
        assert_eq!(check_peers(&[p.clone()]).unwrap_err().key, "hold_time");
        p.hold_time = Some(9);
        p.keepalive = Some(9);
        assert_eq!(check_peers(&[p.clone()]).unwrap_err().key, "keepalive");
        p.keepalive = None;
        p.password = Some("x".repeat(81));
        let e = check_peers(&[p.clone()]).unwrap_err();
        assert_eq!(e.key, "password");
        assert!(e.message.contains("1 to 80 bytes"), "{e:?}");
        p.password = None;
        p.ttl_security = Some(0);
        assert_eq!(check_peers(&[p.clone()]).unwrap_err().key, "ttl_security");
        p.ttl_security = None;
        p.damping_initial = Some(10);
        p.damping_max = Some(5);
        let e = check_peers(&[p.clone()]).unwrap_err();
        assert_eq!(e.key, "damping_max", "{e:?}");
        assert!(e.message.contains("damping_initial (10 s)"), "{e:?}");
        p.damping_initial = Some(0);
        assert_eq!(check_peers(&[p]).unwrap_err().key, "damping_initial");
        let e = check_peers(&[peer("fe80::1")]).unwrap_err();
        assert!(e.message.contains("interface"), "{e:?}");
    }

    #[test]
    fn duplicates_are_the_second_one() {
        let e =
            check_peers(&[peer("192.0.2.1"), peer("192.0.2.2"), peer("192.0.2.1")]).unwrap_err();
        assert_eq!((e.index, e.key), (2, "address"));
        assert!(e.message.contains("duplicate peer"), "{e:?}");
        // An IPv4-mapped IPv6 address is the same peer.
        let e = check_peers(&[peer("192.0.2.1"), peer("::ffff:192.0.2.1")]).unwrap_err();
        assert_eq!(e.index, 1);
    }

    #[test]
    fn locate_finds_a_peers_key() {
        let text = "[node]\nname = \"h\"\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 1\n[[bgp.peer]]\nasn = 2\naddress = \"10.0.0.2\"\npassword = \"k\"\n";
        assert_eq!(locate(text, 0, "address"), Some((4, 11)));
        assert_eq!(locate(text, 1, "address"), Some((8, 11)));
        assert_eq!(locate(text, 1, "password"), Some((9, 12)));
        // A key the peer lacks falls back to its address.
        assert_eq!(locate(text, 0, "password"), Some((4, 11)));
        assert_eq!(locate(text, 5, "address"), None);
    }
}
