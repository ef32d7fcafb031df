//! Typed configuration and query results shared by the real-router drivers
//! ([`crate::frr`], [`crate::bird`], [`crate::gobgp`]).
//!
//! One small config type renders to each daemon's native configuration, and
//! each daemon's status output is parsed into the same structs, so an interop
//! test reads the same whether its peer is FRR, BIRD or GoBGP.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use flatnet_bgp::fsm::State;

use crate::{Daemons, LabError};

/// Address family (AFI/SAFI) of a unicast RIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Family {
    /// Family of a prefix written as `addr/len`.
    pub fn of_prefix(prefix: &str) -> Family {
        if prefix.contains(':') {
            Family::Ipv6Unicast
        } else {
            Family::Ipv4Unicast
        }
    }
}

/// BGP timers in seconds. Tests use short ones so sessions come up and fail
/// over quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub keepalive: u16,
    pub hold: u16,
    pub connect_retry: u16,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            keepalive: 3,
            hold: 9,
            connect_retry: 1,
        }
    }
}

/// ADD-PATH (RFC 7911) directions to advertise for a neighbor, for both
/// unicast families. FRR 8.4 always advertises receive (its default);
/// `receive` only matters for BIRD and GoBGP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddPath {
    pub send: bool,
    pub receive: bool,
}

/// One BGP neighbor of a lab router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Peer address. For a link-local peer also set `interface` (the
    /// scope). `::` with an interface means unnumbered peering by interface
    /// name (FRR `neighbor IF interface`, GoBGP `neighbor-interface`; BIRD
    /// cannot).
    pub address: IpAddr,
    pub remote_as: u32,
    /// TCP MD5 signature password (RFC 2385).
    pub password: Option<String>,
    /// GTSM (RFC 5082): number of hops allowed (1 = directly connected).
    pub ttl_security: Option<u8>,
    /// Interface for a link-local peer address.
    pub interface: Option<String>,
    pub graceful_restart: bool,
    /// Graceful restart time advertised, in seconds.
    pub restart_time: u16,
    pub add_path: AddPath,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    /// RFC 8950 extended next hop (IPv4 NLRI with IPv6 next hop), where supported.
    pub extended_nexthop: bool,
    /// RFC 8654 extended messages: BIRD only when set; FRR 8.4 always
    /// advertises it; GoBGP 3 does not support it.
    pub extended_message: bool,
    /// Never initiate the TCP connection (the other side does).
    pub passive: bool,
    /// Next hop to put on IPv6 routes sent over an IPv4 session (BIRD and
    /// GoBGP need it; FRR finds the interface's global address itself).
    pub ipv6_next_hop: Option<IpAddr>,
}

impl NeighborConfig {
    /// A neighbor with both unicast families and no optional features.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        NeighborConfig {
            address,
            remote_as,
            password: None,
            ttl_security: None,
            interface: None,
            graceful_restart: false,
            restart_time: 120,
            add_path: AddPath::default(),
            ipv4_unicast: true,
            ipv6_unicast: true,
            extended_nexthop: false,
            extended_message: false,
            passive: false,
            ipv6_next_hop: None,
        }
    }

    /// Name used for this neighbor in configs that need an identifier
    /// (BIRD protocol names, FRR route-map names).
    pub(crate) fn ident(&self) -> String {
        let s: String = self
            .address
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("n_{s}")
    }
}

/// A route the router originates, with optional path attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// `addr/len`, IPv4 or IPv6.
    pub prefix: String,
    pub med: Option<u32>,
    /// Only meaningful on iBGP sessions.
    pub local_pref: Option<u32>,
    pub communities: Vec<(u16, u16)>,
    pub large_communities: Vec<(u32, u32, u32)>,
    /// How many extra copies of the local AS to prepend.
    pub prepend: u8,
}

impl Route {
    pub fn new(prefix: &str) -> Self {
        Route {
            prefix: prefix.to_string(),
            ..Route::default()
        }
    }

    pub fn family(&self) -> Family {
        Family::of_prefix(&self.prefix)
    }

    pub(crate) fn has_attrs(&self) -> bool {
        self.med.is_some()
            || self.local_pref.is_some()
            || !self.communities.is_empty()
            || !self.large_communities.is_empty()
            || self.prepend > 0
    }
}

/// Configuration of one lab router, rendered to FRR, BIRD or GoBGP syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    pub neighbors: Vec<NeighborConfig>,
    /// Routes to originate.
    pub routes: Vec<Route>,
    pub timers: Timers,
}

impl RouterConfig {
    pub fn new(router_id: Ipv4Addr, local_as: u32) -> Self {
        RouterConfig {
            router_id,
            local_as,
            neighbors: Vec::new(),
            routes: Vec::new(),
            timers: Timers::default(),
        }
    }

    pub fn neighbor(mut self, n: NeighborConfig) -> Self {
        self.neighbors.push(n);
        self
    }

    pub fn originate(mut self, prefix: &str) -> Self {
        self.routes.push(Route::new(prefix));
        self
    }

    pub fn route(mut self, r: Route) -> Self {
        self.routes.push(r);
        self
    }
}

/// BGP FSM state as reported by the daemon: one of RFC 4271's six, in
/// flatnet's own FSM type, or a word only that daemon uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BgpState {
    Fsm(State),
    /// Anything else the daemon reports (e.g. BIRD's "Down", "Start").
    Other(String),
}

impl BgpState {
    /// Maps the daemons' spellings (`Established`, `BGP_FSM_ESTABLISHED`,
    /// `established`, BIRD's `OpenSent`) onto one enum.
    pub fn parse(s: &str) -> BgpState {
        let norm: String = s
            .trim()
            .trim_start_matches("BGP_FSM_")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let state = match norm.as_str() {
            "idle" => State::Idle,
            "connect" => State::Connect,
            "active" => State::Active,
            "opensent" => State::OpenSent,
            "openconfirm" => State::OpenConfirm,
            "established" => State::Established,
            _ => return BgpState::Other(s.trim().to_string()),
        };
        BgpState::Fsm(state)
    }
}

/// Capabilities negotiated on a session (true when both sides sent them,
/// as far as the daemon reports it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub graceful_restart: bool,
    pub mp_ipv4_unicast: bool,
    pub mp_ipv6_unicast: bool,
    pub extended_nexthop: bool,
    pub extended_message: bool,
    /// ADD-PATH: we may send multiple paths / we accept multiple paths, per family.
    pub add_path_ipv4_send: bool,
    pub add_path_ipv4_receive: bool,
    pub add_path_ipv6_send: bool,
    pub add_path_ipv6_receive: bool,
}

/// One neighbor as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborStatus {
    /// The address (or, for FRR interface peers, the interface name) the
    /// daemon uses as key.
    pub address: String,
    pub remote_as: Option<u32>,
    pub state: BgpState,
    pub caps: Capabilities,
}

impl NeighborStatus {
    pub fn established(&self) -> bool {
        self.state == BgpState::Fsm(State::Established)
    }
}

/// One path of a RIB entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibEntry {
    pub prefix: String,
    pub next_hops: Vec<IpAddr>,
    pub as_path: Vec<u32>,
    pub best: bool,
    /// Marked stale during graceful restart (FRR, GoBGP; BIRD does not show it).
    pub stale: bool,
    /// True if the route was learned from a peer (not originated locally).
    pub learned: bool,
}

/// How a driver runs its daemons. [`Router`]'s process control (stop,
/// kill, restart) is written once on top of it, the same for every driver.
pub trait RouterDaemons {
    /// The driver's running daemons.
    fn daemons(&mut self) -> &mut Daemons;
    /// Writes the current config and starts the daemons, returning once
    /// they answer. Expects none running: [`Router::restart`] stops first.
    fn launch(&mut self) -> Result<(), LabError>;
}

/// Grace between SIGTERM and SIGKILL when a router is stopped.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Operations every real router driver offers: queries, process control and
/// runtime route changes.
pub trait Router: RouterDaemons {
    /// Daemon name: "frr", "bird" or "gobgp".
    fn kind(&self) -> &'static str;
    fn config(&self) -> &RouterConfig;
    fn neighbors(&self) -> Result<Vec<NeighborStatus>, LabError>;
    fn rib(&self, family: Family) -> Result<Vec<RibEntry>, LabError>;
    /// SIGTERM (daemons send a Cease to their peers).
    fn stop(&mut self) -> Result<(), LabError> {
        self.daemons().terminate(STOP_GRACE);
        Ok(())
    }
    /// SIGKILL: no Cease, peers keep stale routes if GR was negotiated.
    fn kill9(&mut self) -> Result<(), LabError> {
        self.daemons().kill9();
        Ok(())
    }
    /// Starts again with the current config (after stop or kill9 also works
    /// while running: it stops first).
    fn restart(&mut self) -> Result<(), LabError> {
        self.stop()?;
        self.launch()
    }
    fn announce(&mut self, route: Route) -> Result<(), LabError>;
    fn withdraw(&mut self, prefix: &str) -> Result<(), LabError>;

    /// Announces many routes at once (one vtysh call / one BIRD
    /// reconfiguration / parallel gobgp calls).
    fn announce_many(&mut self, routes: Vec<Route>) -> Result<(), LabError> {
        for r in routes {
            self.announce(r)?;
        }
        Ok(())
    }

    /// Withdraws many prefixes at once.
    fn withdraw_many(&mut self, prefixes: &[String]) -> Result<(), LabError> {
        for p in prefixes {
            self.withdraw(p)?;
        }
        Ok(())
    }

    /// The status of the neighbor at `address`, if configured.
    fn neighbor(&self, address: &str) -> Result<Option<NeighborStatus>, LabError> {
        Ok(self.neighbors()?.into_iter().find(|n| n.address == address))
    }

    /// Polls until the neighbor at `address` is Established.
    fn wait_established(
        &self,
        address: &str,
        timeout: Duration,
    ) -> Result<NeighborStatus, LabError> {
        crate::wait_for(
            &format!("{} neighbor {address} Established", self.kind()),
            timeout,
            || Ok(self.neighbor(address)?.filter(|n| n.established())),
        )
    }

    /// Polls until `prefix` is in the RIB as a learned route.
    fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<RibEntry, LabError> {
        let fam = Family::of_prefix(prefix);
        crate::wait_for(&format!("{} route {prefix}", self.kind()), timeout, || {
            Ok(self
                .rib(fam)?
                .into_iter()
                .find(|e| e.prefix == prefix && e.learned))
        })
    }

    /// Polls until `prefix` is gone from the RIB (as a learned route).
    fn wait_no_route(&self, prefix: &str, timeout: Duration) -> Result<(), LabError> {
        let fam = Family::of_prefix(prefix);
        crate::wait_for(
            &format!("{} route {prefix} gone", self.kind()),
            timeout,
            || {
                let present = self
                    .rib(fam)?
                    .iter()
                    .any(|e| e.prefix == prefix && e.learned);
                Ok((!present).then_some(()))
            },
        )
    }
}

static DIR_SEQ: AtomicU32 = AtomicU32::new(0);

/// A private working directory for one daemon instance (config, sockets,
/// pid file, logs), removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    pub fn new(tag: &str) -> Result<Self, LabError> {
        let seq = DIR_SEQ.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("flatnet-lab-{}-{seq}-{tag}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir {
            path,
            keep: std::env::var_os("FLATNET_LAB_KEEP").is_some(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Path as a string (daemons take paths as arguments).
    pub fn file(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }

    /// Reads a log file for error messages; empty if missing.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.join(name)).unwrap_or_default()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Opens a log file for a daemon's stdout/stderr.
pub(crate) fn log_stdio(dir: &WorkDir, name: &str) -> Result<std::process::Stdio, LabError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))?;
    Ok(std::process::Stdio::from(f))
}

/// Stdout of a finished command as text.
pub(crate) fn stdout_string(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Splits `addr/len` into parts; errors on junk.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

/// Parses an AS path string like `65001 65002 {65003,65004}` into the ASNs
/// it mentions (sets flattened).
pub(crate) fn parse_as_path(s: &str) -> Vec<u32> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.parse().ok())
        .collect()
}

impl std::fmt::Display for BgpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BgpState::Fsm(s) => write!(f, "{s}"),
            BgpState::Other(s) => f.write_str(s),
        }
    }
}
