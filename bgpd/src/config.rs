//! TOML configuration of the standalone speaker (`flatnet-bgpd`).
//!
//! Unknown keys are errors, and every error names file:line:column, because a
//! typo in a peer's password key must not silently bring up an unsigned session.
//!
//! ```toml
//! router_id = "10.0.0.2"
//! asn = 65002
//! listen = ["0.0.0.0:179", "[::]:179"]
//! max_paths = 8                 # ECMP set size
//! multipath_relax = true        # ECMP across ToRs in different ASes
//!
//! [[peer]]
//! address = "fe80::1"           # or an IPv4/IPv6 address
//! interface = "eth0"            # required for link-local peers
//! remote_as = 65001
//! password = "s3cret"           # TCP MD5 (RFC 2385)
//! ttl_security = 1              # GTSM hops (RFC 5082)
//! hold_time = 9                 # also: keepalive, connect_retry, delay_open, passive, port
//! damping_initial = 1           # restart wait after errors: doubles up to damping_max (60),
//! damping_max = 60              # forgotten after damping_reset_after (60) s Established;
//! damping_reset_after = 60      # a Cease or clean close always waits damping_initial
//! families = ["ipv4-unicast", "ipv6-unicast"]
//! extended_next_hop = true      # IPv4 over an IPv6 session (RFC 8950)
//! import_policy = "from-tor"    # or "accept" / "reject"; none on eBGP = RFC 8212
//! export_policy = "accept"
//! [peer.graceful_restart]
//! restart_time = 120
//! [[peer.max_prefix]]
//! family = "ipv4-unicast"
//! limit = 1000
//! warning_percent = 75
//! restart_interval = 30         # or warning_only = true: log, keep the session
//!
//! [[policy]]
//! name = "from-tor"
//! default = "reject"
//! [[policy.rule]]
//! prefix = "0.0.0.0/0"
//! le = 32
//! action = "accept"
//! set_local_pref = 200          # also: set_med, prepend, add_communities, community (match)
//!
//! [[originate]]
//! prefix = "10.244.3.0/26"
//! communities = ["65000:1"]
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use flatnet_bgp::policy::{Action, Disposition, Match, Policy, PrefixList, PrefixListEntry, Term};
use flatnet_bgp::session::{ConnectOptions, GracefulRestartConfig, MaxPrefix, PeerConfig};
use flatnet_bgp::speaker::{OriginAttrs, SpeakerConfig};
use flatnet_bgp::wire::{Community, Family, LargeCommunity, Prefix};

/// A configuration error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// File name as given.
    pub file: String,
    /// 1-based line (0 if unknown).
    pub line: usize,
    /// 1-based column (0 if unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// `a.b.c.d/len` or an IPv6 prefix, host bits zero ([`Prefix`]'s `FromStr`).
fn parse_prefix(s: &str) -> Result<Prefix, String> {
    s.parse()
        .map_err(|e: flatnet_bgp::wire::PrefixParseError| e.to_string())
}

/// `ipv4-unicast` / `ipv6-unicast` ([`Family`]'s `FromStr`).
fn parse_family(s: &str) -> Result<Family, String> {
    s.parse()
        .map_err(|e: flatnet_bgp::wire::FamilyParseError| e.to_string())
}

macro_rules! parsed_string {
    ($name:ident, $t:ty, $f:expr) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        struct $name($t);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $f(&s).map($name).map_err(serde::de::Error::custom)
            }
        }
    };
}

parsed_string!(PrefixStr, Prefix, parse_prefix);
parsed_string!(FamilyStr, Family, parse_family);
parsed_string!(
    CommunityStr,
    Community,
    |s: &str| -> Result<Community, String> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| format!("community `{s}` must be ASN:VALUE"))?;
        let a: u16 = a.parse().map_err(|_| format!("bad community `{s}`"))?;
        let b: u16 = b.parse().map_err(|_| format!("bad community `{s}`"))?;
        Ok(Community::new(a, b))
    }
);
parsed_string!(LargeCommunityStr, LargeCommunity, |s: &str| -> Result<
    LargeCommunity,
    String,
> {
    let v: Vec<u32> = s
        .split(':')
        .map(|x| x.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad large community `{s}`"))?;
    match v.as_slice() {
        [g, l1, l2] => Ok(LargeCommunity {
            global_admin: *g,
            local1: *l1,
            local2: *l2,
        }),
        _ => Err(format!("large community `{s}` must be A:B:C")),
    }
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    router_id: Ipv4Addr,
    asn: u32,
    #[serde(default)]
    listen: Vec<SocketAddr>,
    #[serde(default)]
    restarting: bool,
    #[serde(default = "default_max_paths")]
    max_paths: usize,
    #[serde(default = "default_true")]
    multipath_relax: bool,
    #[serde(default, rename = "peer")]
    peers: Vec<PeerToml>,
    #[serde(default, rename = "policy")]
    policies: Vec<PolicyToml>,
    #[serde(default)]
    originate: Vec<OriginateToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerToml {
    address: IpAddr,
    remote_as: u32,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ttl_security: Option<u8>,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    local_address: Option<IpAddr>,
    #[serde(default)]
    passive: bool,
    #[serde(default)]
    hold_time: Option<u16>,
    #[serde(default)]
    keepalive: Option<u16>,
    #[serde(default)]
    connect_retry: Option<u64>,
    #[serde(default)]
    damping_initial: Option<u64>,
    #[serde(default)]
    damping_max: Option<u64>,
    #[serde(default)]
    damping_reset_after: Option<u64>,
    #[serde(default)]
    delay_open: Option<u64>,
    #[serde(default)]
    families: Option<Vec<FamilyStr>>,
    #[serde(default)]
    extended_next_hop: bool,
    #[serde(default)]
    import_policy: Option<String>,
    #[serde(default)]
    export_policy: Option<String>,
    #[serde(default)]
    next_hop_ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    next_hop_ipv6: Option<Ipv6Addr>,
    #[serde(default)]
    graceful_restart: Option<GrToml>,
    #[serde(default)]
    max_prefix: Vec<MaxPrefixToml>,
    #[serde(default)]
    soft_reconfiguration_inbound: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrToml {
    #[serde(default = "default_restart_time")]
    restart_time: u16,
    #[serde(default = "default_stale_time")]
    stale_time: u64,
}

fn default_max_paths() -> usize {
    8
}
fn default_true() -> bool {
    true
}

fn default_restart_time() -> u16 {
    120
}
fn default_stale_time() -> u64 {
    360
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxPrefixToml {
    family: FamilyStr,
    limit: usize,
    #[serde(default = "default_warning")]
    warning_percent: u8,
    /// Seconds; absent = stay down until restarted by hand.
    #[serde(default)]
    restart_interval: Option<u64>,
    /// Log past the limit instead of resetting the session.
    #[serde(default)]
    warning_only: bool,
}

fn default_warning() -> u8 {
    75
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyToml {
    name: String,
    #[serde(default)]
    default: Verdict,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleToml>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Accept,
    #[default]
    Reject,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    /// Prefix-list lines (any matches); absent = any prefix.
    #[serde(default)]
    prefix: Option<PrefixStr>,
    #[serde(default)]
    ge: Option<u8>,
    #[serde(default)]
    le: Option<u8>,
    /// Match routes carrying this community.
    #[serde(default)]
    community: Option<CommunityStr>,
    action: Verdict,
    #[serde(default)]
    set_local_pref: Option<u32>,
    #[serde(default)]
    set_med: Option<u32>,
    #[serde(default)]
    prepend: Option<u8>,
    #[serde(default)]
    add_communities: Vec<CommunityStr>,
    #[serde(default)]
    add_large_communities: Vec<LargeCommunityStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginateToml {
    prefix: PrefixStr,
    #[serde(default)]
    med: Option<u32>,
    #[serde(default)]
    local_pref: Option<u32>,
    #[serde(default)]
    communities: Vec<CommunityStr>,
    #[serde(default)]
    large_communities: Vec<LargeCommunityStr>,
}

fn disposition(v: Verdict) -> Disposition {
    match v {
        Verdict::Accept => Disposition::Accept,
        Verdict::Reject => Disposition::Reject,
    }
}

/// Parses configuration text; `file` is used in error messages.
pub fn parse(text: &str, file: &str) -> Result<SpeakerConfig, ConfigError> {
    let f: File = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| flatnet_tomlspan::line_col(text, s.start))
            .unwrap_or((0, 0));
        ConfigError {
            file: file.to_string(),
            line,
            column,
            message: e.message().to_string(),
        }
    })?;
    let err = |message: String| ConfigError {
        file: file.to_string(),
        line: 0,
        column: 0,
        message,
    };
    let mut peers = Vec::new();
    for p in f.peers {
        let mut c = PeerConfig::new(p.address, p.remote_as);
        if let Some(port) = p.port {
            c.port = port;
        }
        c.connect = ConnectOptions {
            password: p.password,
            ttl_security: p.ttl_security,
            interface: p.interface,
            local_address: p.local_address,
        };
        if let IpAddr::V6(a) = p.address
            && a.is_unicast_link_local()
            && c.connect.interface.is_none()
        {
            return Err(err(format!("peer {a} is link-local: set `interface`")));
        }
        c.passive = p.passive;
        if let Some(h) = p.hold_time {
            if h != 0 && h < 3 {
                return Err(err(format!(
                    "peer {}: hold_time must be 0 or >= 3",
                    p.address
                )));
            }
            c.hold_time = h;
        }
        c.keepalive = p.keepalive;
        if let Some(r) = p.connect_retry {
            c.connect_retry = Duration::from_secs(r.max(1));
        }
        let d = flatnet_bgp::session::Damping::default();
        c.damping = flatnet_bgp::session::Damping {
            initial: p
                .damping_initial
                .or(p.connect_retry)
                .map_or(d.initial, |s| Duration::from_secs(s.max(1))),
            max: p.damping_max.map_or(d.max, Duration::from_secs),
            reset_after: p
                .damping_reset_after
                .map_or(d.reset_after, Duration::from_secs),
        };
        if c.damping.max < c.damping.initial {
            return Err(err(format!(
                "peer {}: damping_max must be at least damping_initial",
                p.address
            )));
        }
        c.delay_open = p.delay_open.filter(|d| *d > 0).map(Duration::from_secs);
        if let Some(fams) = p.families {
            c.families = fams.into_iter().map(|f| f.0).collect();
        }
        c.extended_next_hop = p.extended_next_hop;
        c.import_policy = p.import_policy;
        c.export_policy = p.export_policy;
        c.soft_reconfiguration_inbound = p.soft_reconfiguration_inbound;
        c.next_hop_ipv4 = p.next_hop_ipv4;
        c.next_hop_ipv6 = p.next_hop_ipv6;
        c.graceful_restart = p.graceful_restart.map(|g| GracefulRestartConfig {
            restart_time: g.restart_time.min(4095),
            stale_time: Duration::from_secs(g.stale_time),
        });
        c.max_prefix = p
            .max_prefix
            .into_iter()
            .map(|m| MaxPrefix {
                family: m.family.0,
                limit: m.limit,
                warning_percent: m.warning_percent.min(100),
                restart_interval: m.restart_interval.map(Duration::from_secs),
                warning_only: m.warning_only,
            })
            .collect();
        peers.push(c);
    }
    let mut policies = HashMap::new();
    for p in f.policies {
        let mut terms = Vec::new();
        for (i, r) in p.rules.into_iter().enumerate() {
            let mut matches = Vec::new();
            if let Some(px) = r.prefix {
                let e = PrefixListEntry::new(px.0, r.ge, r.le)
                    .map_err(|e| err(format!("policy {} rule {}: {e}", p.name, i + 1)))?;
                matches.push(Match::Prefix(PrefixList { entries: vec![e] }));
            }
            if let Some(c) = r.community {
                matches.push(Match::Community(c.0));
            }
            let mut actions = Vec::new();
            if let Some(l) = r.set_local_pref {
                actions.push(Action::SetLocalPref(l));
            }
            if let Some(m) = r.set_med {
                actions.push(Action::SetMed(m));
            }
            if let Some(n) = r.prepend {
                actions.push(Action::Prepend {
                    asn: None,
                    count: n,
                });
            }
            if !r.add_communities.is_empty() {
                actions.push(Action::AddCommunities(
                    r.add_communities.into_iter().map(|c| c.0).collect(),
                ));
            }
            if !r.add_large_communities.is_empty() {
                actions.push(Action::AddLargeCommunities(
                    r.add_large_communities.into_iter().map(|c| c.0).collect(),
                ));
            }
            terms.push(Term {
                name: format!("{}#{}", p.name, i + 1),
                matches,
                actions,
                disposition: disposition(r.action),
            });
        }
        let name = p.name.clone();
        policies.insert(
            name,
            Policy {
                name: p.name,
                terms,
                default: disposition(p.default),
            },
        );
    }
    let originate = f
        .originate
        .into_iter()
        .map(|o| {
            (
                o.prefix.0,
                OriginAttrs {
                    med: o.med,
                    local_pref: o.local_pref,
                    communities: o.communities.into_iter().map(|c| c.0).collect(),
                    large_communities: o.large_communities.into_iter().map(|c| c.0).collect(),
                },
            )
        })
        .collect();
    Ok(SpeakerConfig {
        asn: f.asn,
        router_id: f.router_id,
        listen: f.listen,
        peers,
        policies,
        originate,
        restarting: f.restarting,
        max_paths: f.max_paths,
        multipath_relax: f.multipath_relax,
    })
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<SpeakerConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.clone(),
        line: 0,
        column: 0,
        message: e.to_string(),
    })?;
    parse(&text, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
router_id = "10.0.0.2"
asn = 65002
listen = ["0.0.0.0:179"]

[[peer]]
address = "10.0.0.1"
remote_as = 65001
password = "s3cret"
ttl_security = 1
families = ["ipv4-unicast"]
import_policy = "in"
export_policy = "accept"
[peer.graceful_restart]
restart_time = 90
[[peer.max_prefix]]
family = "ipv4-unicast"
limit = 100
restart_interval = 30

[[policy]]
name = "in"
[[policy.rule]]
prefix = "10.0.0.0/8"
le = 24
action = "accept"
set_local_pref = 200

[[originate]]
prefix = "10.1.0.0/24"
communities = ["65000:1"]
"#;

    #[test]
    fn parses_a_full_file() {
        let c = parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.asn, 65002);
        let p = &c.peers[0];
        assert_eq!(p.connect.password.as_deref(), Some("s3cret"));
        assert_eq!(p.connect.min_ttl(), Some(255));
        assert_eq!(p.families, vec![Family::IPV4_UNICAST]);
        assert_eq!(
            p.graceful_restart.as_ref().map(|g| g.restart_time),
            Some(90)
        );
        assert_eq!(
            p.max_prefix[0].restart_interval,
            Some(Duration::from_secs(30))
        );
        let pol = &c.policies["in"];
        assert_eq!(pol.terms.len(), 1);
        assert_eq!(pol.default, Disposition::Reject);
        assert_eq!(c.originate[0].1.communities, vec![Community::new(65000, 1)]);
        assert!(c.multipath_relax);
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let bad = GOOD.replace("password = ", "pasword = ");
        let e = parse(&bad, "t.toml").unwrap_err();
        assert_eq!(e.file, "t.toml");
        assert_eq!(e.line, 9, "{e}");
        assert_eq!(e.column, 1, "{e}");
        assert!(e.message.contains("pasword"), "{e}");
        assert!(e.to_string().starts_with("t.toml:9:1: "), "{e}");
    }

    #[test]
    fn bad_prefix_points_at_the_value() {
        let bad = GOOD.replace("\"10.1.0.0/24\"", "\"10.1.0.1/24\"");
        let e = parse(&bad, "t.toml").unwrap_err();
        assert!(e.message.contains("host bits"), "{e}");
        assert_eq!((e.line, e.column), (30, 10), "{e}");
    }

    #[test]
    fn max_prefix_warning_only_is_off_unless_set() {
        let c = parse(GOOD, "t.toml").unwrap();
        assert!(!c.peers[0].max_prefix[0].warning_only);
        let w = GOOD.replace("restart_interval = 30", "warning_only = true");
        let c = parse(&w, "t.toml").unwrap();
        assert!(c.peers[0].max_prefix[0].warning_only);
        assert_eq!(c.peers[0].max_prefix[0].restart_interval, None);
    }

    #[test]
    fn link_local_peer_needs_interface() {
        let bad = GOOD.replace("address = \"10.0.0.1\"", "address = \"fe80::1\"");
        let e = parse(&bad, "t.toml").unwrap_err();
        assert!(e.message.contains("interface"), "{e}");
    }

    #[test]
    fn prefixes_and_families() {
        assert!(parse_prefix("10.0.0.0/33").is_err());
        assert!(parse_prefix("10.0.0.0").is_err());
        assert_eq!(
            parse_prefix("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_family("l2vpn").is_err());
    }
}
