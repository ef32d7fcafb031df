//! flatnetd's configuration file (TOML).
//!
//! Unknown keys are rejected so that a typo never silently falls back to a
//! default; every error names the file, line and column and what was expected.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Deserializer, Serialize};

mod dns;
mod docker;
mod peer;
pub use dns::{DEFAULT_DNS_LISTEN, DEFAULT_RESOLV_CONF, DnsConfig};
pub use docker::DockerConfig;
pub use peer::{BgpMaxPrefix, BgpPeer, MD5_MAX_KEY};

/// Default path of the control socket.
pub const DEFAULT_API_SOCKET: &str = "/run/flatnet/flatnetd.sock";
/// Default metrics/health listener: loopback only.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9469";
/// Default datastore: a file on local disk.
pub const DEFAULT_DATASTORE: &str = "file:/var/lib/flatnet/datastore";
/// Default directory for the agent's own endpoint records.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/flatnet";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Node,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub dataplane: Dataplane,
    #[serde(default)]
    pub datastore: Datastore,
    /// Address pools this host claims blocks from. At least one IPv4 pool.
    #[serde(rename = "pool")]
    pub pools: Vec<Pool>,
    #[serde(default)]
    pub bgp: Bgp,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub docker: DockerConfig,
    #[serde(default)]
    pub dns: DnsConfig,
}

/// Application policy (`[policy]`): off unless enabled, so a host without
/// it forwards as before.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Enforce the policies of the datastore on this host's containers.
    #[serde(default)]
    pub enabled: bool,
    /// Between different apps when no policy opens an edge, while the
    /// datastore's cluster defaults do not set it.
    #[serde(default)]
    pub between_apps: crate::policy::compile::DefaultAction,
    /// To destinations outside the pools when no egress CIDR matches
    /// (likewise under the cluster defaults).
    #[serde(default)]
    pub egress: crate::policy::compile::DefaultAction,
}

impl Config {
    /// The cluster inputs of the policy compiler.
    pub fn policy_cluster(&self) -> crate::policy::compile::Cluster {
        crate::policy::compile::Cluster {
            between_apps: self.policy.between_apps,
            egress: self.policy.egress,
            pools: self
                .pools
                .iter()
                .map(|p| (p.cidr.0, p.nat_outgoing))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// This host's name: the owner recorded on blocks and endpoints.
    pub name: String,
    /// BGP router id (an IPv4 address).
    pub router_id: Option<Ipv4Addr>,
    /// This host's AS number.
    pub asn: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Unix socket of the control API (created mode 0600).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Connections served at once; more are answered "busy" (CNI code 11)
    /// and closed, so idle clients cannot take the socket away.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send its request, and again to take its
    /// answer, before the connection is closed.
    #[serde(default = "default_client_timeout")]
    pub client_timeout: u64,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            socket: default_socket(),
            max_connections: default_max_connections(),
            client_timeout: default_client_timeout(),
        }
    }
}

fn default_max_connections() -> usize {
    4096
}

fn default_client_timeout() -> u64 {
    10
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_API_SOCKET)
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Address of the Prometheus `/metrics` and `/healthz` listener; empty
    /// string disables it.
    #[serde(default = "default_metrics", deserialize_with = "de_opt_socket_addr")]
    pub listen: Option<SocketAddr>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: default_metrics(),
        }
    }
}

fn default_metrics() -> Option<SocketAddr> {
    DEFAULT_METRICS_LISTEN.parse().ok()
}

fn de_opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an address and port like \"127.0.0.1:9469\" or \"[::1]:9469\" (or \"\" to disable), found {s:?}"
        ))
    })
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter directive, e.g. "info" or "flatnet_agent=debug".
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// MTU of both ends of every container veth.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Directory for the agent's endpoint records.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            mtu: default_mtu(),
            state_dir: default_state_dir(),
        }
    }
}

fn default_mtu() -> u32 {
    1500
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// Where blocks and allocations live.
#[derive(Debug, Clone, PartialEq)]
pub enum DatastoreUrl {
    /// `file:/path/to/dir`: the embedded store (a directory) for one host or
    /// a lab.
    File(PathBuf),
    /// `etcd://host:port[,host:port...]`: many hosts.
    Etcd(Vec<String>),
}

impl fmt::Display for DatastoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatastoreUrl::File(p) => write!(f, "file:{}", p.display()),
            DatastoreUrl::Etcd(eps) => write!(f, "etcd://{}", eps.join(",")),
        }
    }
}

impl Serialize for DatastoreUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for DatastoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("file:") {
            if !p.starts_with('/') {
                return Err(format!(
                    "expected an absolute path after \"file:\" (e.g. \"file:/var/lib/flatnet/datastore\"), found {s:?}"
                ));
            }
            return Ok(DatastoreUrl::File(PathBuf::from(p)));
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            let eps: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(String::from)
                .collect();
            if eps.is_empty() || eps.iter().any(|e| !e.contains(':')) {
                return Err(format!(
                    "expected \"etcd://host:port[,host:port...]\", found {s:?}"
                ));
            }
            return Ok(DatastoreUrl::Etcd(eps));
        }
        Err(format!(
            "expected \"file:/path\" or \"etcd://host:port[,host:port...]\", found {s:?}"
        ))
    }
}

impl<'de> Deserialize<'de> for DatastoreUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Datastore {
    pub url: DatastoreUrl,
}

impl Default for Datastore {
    fn default() -> Self {
        Datastore {
            url: DatastoreUrl::File(PathBuf::from(DEFAULT_DATASTORE.trim_start_matches("file:"))),
        }
    }
}

/// A CIDR that parses as the network itself (host bits must be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNetwork);

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let n: IpNetwork = s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "expected a CIDR like \"10.244.0.0/16\" or \"fd00:244::/56\", found {s:?}"
            ))
        })?;
        if n.network() != n.ip() {
            return Err(serde::de::Error::custom(format!(
                "expected a network address with host bits zero, found {s:?} (did you mean \"{}/{}\"?)",
                n.network(),
                n.prefix()
            )));
        }
        Ok(Cidr(n))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub cidr: Cidr,
    /// Prefix length of the blocks a host claims from this pool (default
    /// /26 for IPv4, /122 for IPv6).
    pub block_size: Option<u8>,
    /// Seconds a block this host owns may stay empty before it returns to
    /// the pool (and its blackhole route and advertisement go). Applies
    /// when flatnetd creates the pool in the datastore; default 300.
    #[serde(default)]
    pub empty_block_grace: Option<u64>,
    /// Source-NAT traffic from this pool to destinations outside every
    /// pool (for pools the fabric does not route outside; applies with
    /// `[policy] enabled`). Off: flat addressing is the point.
    #[serde(default)]
    pub nat_outgoing: bool,
    /// BGP communities ("ASN:VALUE") on this pool's blocks and borrowed
    /// addresses, to every peer.
    #[serde(default)]
    pub communities: Vec<String>,
    /// BGP large communities ("GLOBAL:LOCAL1:LOCAL2") on this pool's
    /// blocks and borrowed addresses, to every peer.
    #[serde(default)]
    pub large_communities: Vec<String>,
    /// `false`: this pool's blocks are never advertised (reachable only on
    /// this host, e.g. a host-local pool). Default true.
    #[serde(default = "default_true")]
    pub export: bool,
}

fn default_true() -> bool {
    true
}

impl Pool {
    /// The pool as the IPAM adapter creates it.
    pub fn spec(&self) -> crate::ipam::PoolSpec {
        crate::ipam::PoolSpec {
            cidr: self.cidr.0,
            block_prefix: self.block_prefix(),
            empty_block_grace_ms: self.empty_block_grace.map(|s| s.saturating_mul(1000)),
        }
    }

    pub fn block_prefix(&self) -> u8 {
        self.block_size.unwrap_or(match self.cidr.0 {
            IpNetwork::V4(_) => 26,
            IpNetwork::V6(_) => 122,
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    #[serde(default, rename = "peer")]
    pub peers: Vec<BgpPeer>,
    /// Addresses to accept BGP connections on (e.g. `["10.0.1.2:179"]`);
    /// empty (the default): flatnetd only connects out. Needed by passive peers.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Graceful restart, restarting role (RFC 4724 §4.1): after a restart
    /// that kept the learned kernel routes, route selection waits at most
    /// this many seconds for every graceful-restart peer's End-of-RIB.
    /// Default 120.
    #[serde(default)]
    pub selection_deferral: Option<u64>,
    /// Import filter: IPv4 routes longer than this are rejected from every
    /// peer (default 32: other hosts' borrowed /32s are accepted).
    #[serde(default)]
    pub import_max_length_v4: Option<u8>,
    /// Import filter: IPv6 routes longer than this are rejected (default 128).
    #[serde(default)]
    pub import_max_length_v6: Option<u8>,
}

impl Config {
    /// Communities, large communities and the import filter's lengths.
    fn validate_routing(&self) -> Result<(), Problem> {
        for (i, p) in self.pools.iter().enumerate() {
            for c in &p.communities {
                parse_community(c).map_err(|e| {
                    Problem::at(
                        &[K("pool"), I(i), K("communities")],
                        format!("pool[{i}].communities: {e}"),
                    )
                })?;
            }
            for c in &p.large_communities {
                parse_large_community(c).map_err(|e| {
                    Problem::at(
                        &[K("pool"), I(i), K("large_communities")],
                        format!("pool[{i}].large_communities: {e}"),
                    )
                })?;
            }
        }
        for (i, p) in self.bgp.peers.iter().enumerate() {
            for c in &p.communities {
                parse_community(c).map_err(|e| {
                    Problem::at(
                        &[K("bgp"), K("peer"), I(i), K("communities")],
                        format!("bgp.peer {}: communities: {e}", p.address),
                    )
                })?;
            }
            for c in &p.large_communities {
                parse_large_community(c).map_err(|e| {
                    Problem::at(
                        &[K("bgp"), K("peer"), I(i), K("large_communities")],
                        format!("bgp.peer {}: large_communities: {e}", p.address),
                    )
                })?;
            }
        }
        if self.bgp.import_max_length_v4.is_some_and(|l| l > 32) {
            return Err(Problem::at(
                &[K("bgp"), K("import_max_length_v4")],
                "bgp.import_max_length_v4: expected 0..=32",
            ));
        }
        if self.bgp.import_max_length_v6.is_some_and(|l| l > 128) {
            return Err(Problem::at(
                &[K("bgp"), K("import_max_length_v6")],
                "bgp.import_max_length_v6: expected 0..=128",
            ));
        }
        Ok(())
    }
}

/// A semantic error and the key it is about.
struct Problem {
    at: Vec<flatnet_tomlspan::Seg<'static>>,
    message: String,
}

impl Problem {
    fn at(at: &[flatnet_tomlspan::Seg<'static>], message: impl Into<String>) -> Problem {
        Problem {
            at: at.to_vec(),
            message: message.into(),
        }
    }
}

use flatnet_tomlspan::Seg::{Index as I, Key as K};

/// Parses "ASN:VALUE" (16-bit halves) into a community.
pub fn parse_community(s: &str) -> Result<flatnet_bgp::wire::Community, String> {
    let (a, v) = s
        .split_once(':')
        .ok_or_else(|| format!("community {s:?}: expected ASN:VALUE"))?;
    let a: u16 = a
        .parse()
        .map_err(|_| format!("community {s:?}: ASN is not 0..65535"))?;
    let v: u16 = v
        .parse()
        .map_err(|_| format!("community {s:?}: VALUE is not 0..65535"))?;
    Ok(flatnet_bgp::wire::Community(
        (u32::from(a) << 16) | u32::from(v),
    ))
}

/// Parses "GLOBAL:LOCAL1:LOCAL2" into a large community.
pub fn parse_large_community(s: &str) -> Result<flatnet_bgp::wire::LargeCommunity, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let n: Vec<u32> = parts.iter().filter_map(|p| p.parse().ok()).collect();
    match n[..] {
        [global_admin, local1, local2] if parts.len() == 3 => {
            Ok(flatnet_bgp::wire::LargeCommunity {
                global_admin,
                local1,
                local2,
            })
        }
        _ => Err(format!(
            "large community {s:?}: expected GLOBAL:LOCAL1:LOCAL2 (each 0..4294967295)"
        )),
    }
}

/// A configuration error, already located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that parses but cannot work (a duplicate peer, a key the
    /// kernel refuses), at the key's position.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Where in `text` a TOML error is, 1-based, and its message: one place
/// for every TOML document the agent reads (config, policy documents).
pub fn toml_error_at(text: &str, e: &toml::de::Error) -> (usize, usize, String) {
    let (line, column) = e
        .span()
        .map(|s| flatnet_tomlspan::line_col(text, s.start))
        .unwrap_or((1, 1));
    (line, column, e.message().trim().to_string())
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let origin = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let ok = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let (line, column) = flatnet_tomlspan::line_col(&ok, valid);
            ConfigError::Syntax {
                path: origin.clone(),
                line,
                column,
                message: "invalid UTF-8 (TOML files are UTF-8)".into(),
            }
        })?;
        let cfg = Config::parse(&text, &origin)?;
        peer::probe_md5(&cfg.bgp.peers).map_err(|p| located(&text, &origin, p))?;
        Ok(cfg)
    }

    /// Parses and validates `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, column, message) = toml_error_at(text, &e);
            ConfigError::Syntax {
                path: origin.to_string(),
                line,
                column,
                message,
            }
        })?;
        peer::check_peers(&cfg.bgp.peers).map_err(|p| located(text, origin, p))?;
        cfg.validate().map_err(|p| {
            // Every semantic error names its key's place; the file's start
            // when the key is absent altogether (e.g. no [[pool]]).
            let (line, column) = flatnet_tomlspan::locate(text, &p.at).unwrap_or((1, 1));
            ConfigError::At {
                path: origin.to_string(),
                line,
                column,
                message: p.message,
            }
        })?;
        Ok(cfg)
    }

    /// Checks serde cannot express, each located at its key.
    fn validate(&self) -> Result<(), Problem> {
        self.validate_routing()?;
        crate::names::check_node_name(&self.node.name)
            .map_err(|e| Problem::at(&[K("node"), K("name")], e))?;
        if !(68..=65535).contains(&self.dataplane.mtu) {
            return Err(Problem::at(
                &[K("dataplane"), K("mtu")],
                format!(
                    "dataplane.mtu: expected 68..=65535, found {}",
                    self.dataplane.mtu
                ),
            ));
        }
        if !self.dataplane.state_dir.is_absolute() {
            return Err(Problem::at(
                &[K("dataplane"), K("state_dir")],
                "dataplane.state_dir: expected an absolute path",
            ));
        }
        if !self.pools.iter().any(|p| p.cidr.0.is_ipv4()) {
            return Err(Problem::at(
                &[K("pool")],
                "pool: expected at least one IPv4 [[pool]]",
            ));
        }
        for (i, p) in self.pools.iter().enumerate() {
            let b = p.block_prefix();
            let (pp, max) = (p.cidr.0.prefix(), if p.cidr.0.is_ipv4() { 32 } else { 128 });
            if b < pp || b > max {
                return Err(Problem::at(
                    &[K("pool"), I(i), K("block_size")],
                    format!(
                        "pool[{i}] ({}): block_size /{b} must be between the pool's /{pp} and /{max}",
                        p.cidr.0
                    ),
                ));
            }
            for (j, q) in self.pools.iter().enumerate().skip(i + 1) {
                if overlaps(p.cidr.0, q.cidr.0) {
                    return Err(Problem::at(
                        &[K("pool"), I(j), K("cidr")],
                        format!("pool[{j}] ({}) overlaps pool[{i}] ({})", q.cidr.0, p.cidr.0),
                    ));
                }
            }
        }
        if !self.bgp.peers.is_empty() {
            for (key, missing) in [
                ("asn", self.node.asn.is_none()),
                ("router_id", self.node.router_id.is_none()),
            ] {
                if missing {
                    return Err(Problem::at(
                        &[K("node"), K(key)],
                        format!("node.{key}: required when [[bgp.peer]] is configured"),
                    ));
                }
            }
        }
        if self.bgp.listen.is_empty()
            && let Some((i, p)) = self.bgp.peers.iter().enumerate().find(|(_, p)| p.passive)
        {
            return Err(Problem::at(
                &[K("bgp"), K("peer"), I(i), K("passive")],
                format!(
                    "bgp.peer {}: passive needs bgp.listen (flatnetd only connects out otherwise)",
                    p.address
                ),
            ));
        }
        if self.api.socket.as_os_str().is_empty() || !self.api.socket.is_absolute() {
            return Err(Problem::at(
                &[K("api"), K("socket")],
                "api.socket: expected an absolute path",
            ));
        }
        if !(1..=1_000_000).contains(&self.api.max_connections) {
            return Err(Problem::at(
                &[K("api"), K("max_connections")],
                format!(
                    "api.max_connections: expected 1..=1000000, found {}",
                    self.api.max_connections
                ),
            ));
        }
        if !(1..=3600).contains(&self.api.client_timeout) {
            return Err(Problem::at(
                &[K("api"), K("client_timeout")],
                format!(
                    "api.client_timeout: expected 1..=3600 seconds, found {}",
                    self.api.client_timeout
                ),
            ));
        }
        check_log_level(&self.log.level).map_err(|e| {
            Problem::at(
                &[K("log"), K("level")],
                format!(
                    "log.level {:?}: {e}; e.g. \"info\" or \"info,flatnet_agent=debug\"",
                    self.log.level
                ),
            )
        })?;
        self.docker.validate()?;
        self.dns.validate()?;
        Ok(())
    }
}

/// A tracing filter as operators write it: levels, or `target=level`
/// directives. A bare word that is not a level would parse as a target
/// name and silently log nothing, so it is refused.
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if level.trim().is_empty() {
        return Err("empty".into());
    }
    for d in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let lvl = d.rsplit_once('=').map_or(d, |(_, l)| l);
        if !LEVELS.contains(&lvl.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{d:?} is not a level ({}) or TARGET=LEVEL",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A peer problem at its key's position in `text`.
fn located(text: &str, origin: &str, p: peer::PeerProblem) -> ConfigError {
    let (line, column) = peer::locate(text, p.index, p.key).unwrap_or((1, 1));
    ConfigError::At {
        path: origin.to_string(),
        line,
        column,
        message: p.message,
    }
}

fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

#[cfg(test)]
mod tests;
