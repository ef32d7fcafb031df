//! The operator's view of a running [`Speaker`]: the BGP queries of the
//! control protocol (`bgp_neighbors`, `bgp_routes`) and their answers, in
//! plain serialisable types. flatnetd's control API and flatnet-bgpd's
//! control socket both answer with these, so one CLI (`flatnet bgp ...`)
//! reads either. Owns no state; only calls the [`Speaker`]'s query API.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{AdjRib, PeerStatus, RibEntry, Speaker, SpeakerError};

/// `bgp routes` arguments: the Loc-RIB, or one peer's Adj-RIB-In/Out.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoutesArgs {
    /// Routes received from this peer (before import policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_from: Option<IpAddr>,
    /// Routes advertised to this peer (after export policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_to: Option<IpAddr>,
}

/// Prefix counts of one family of one neighbour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FamilyCounts {
    pub family: String,
    pub received: usize,
    pub accepted: usize,
    pub advertised: usize,
}

/// One neighbour, as `show bgp neighbors` / `birdc show protocols all` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Neighbor {
    pub address: IpAddr,
    pub remote_as: u32,
    /// RFC 4271 state name (`Idle` .. `Established`).
    pub state: String,
    /// Seconds since the session became Established.
    pub uptime_secs: Option<u64>,
    /// The last NOTIFICATION or connection error.
    pub last_error: Option<String>,
    /// Negotiated capabilities (`mp:ipv4-unicast`, `route-refresh`, ...).
    pub capabilities: Vec<String>,
    /// Negotiated families.
    pub families: Vec<String>,
    pub hold_time: Option<u16>,
    pub prefixes_received: usize,
    pub prefixes_accepted: usize,
    pub prefixes_advertised: usize,
    /// Per-family counts.
    pub per_family: Vec<FamilyCounts>,
    pub updates_in: u64,
    pub updates_out: u64,
    pub stale_paths: usize,
    pub max_prefix_resets: u32,
    /// While Idle: milliseconds until the next automatic attempt.
    #[serde(default)]
    pub next_attempt_ms: Option<u64>,
    /// Consecutive errors damping the attempts (RFC 4271 8.1.1; 0 after
    /// clean ends, which never grow the wait).
    #[serde(default)]
    pub consecutive_errors: u32,
}

impl From<PeerStatus> for Neighbor {
    fn from(p: PeerStatus) -> Neighbor {
        Neighbor {
            address: p.address,
            remote_as: p.remote_as,
            state: p.state.to_string(),
            uptime_secs: p.uptime_secs,
            last_error: p.last_error,
            capabilities: p.capabilities,
            families: p.negotiated_families,
            hold_time: p.hold_time,
            prefixes_received: p.prefixes_received,
            prefixes_accepted: p.prefixes_accepted,
            prefixes_advertised: p.prefixes_advertised,
            per_family: p
                .families
                .into_iter()
                .map(|f| FamilyCounts {
                    family: f.family,
                    received: f.received,
                    accepted: f.accepted,
                    advertised: f.advertised,
                })
                .collect(),
            updates_in: p.updates_in,
            updates_out: p.updates_out,
            stale_paths: p.stale_paths,
            max_prefix_resets: p.max_prefix_resets,
            next_attempt_ms: p.next_attempt_ms,
            consecutive_errors: p.consecutive_errors,
        }
    }
}

/// One path of a route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoutePath {
    /// `local` or the peer it came from.
    pub source: String,
    pub next_hop: Option<IpAddr>,
    pub as_path: Vec<u32>,
    pub local_pref: u32,
    pub med: u32,
    pub best: bool,
    /// In the ECMP (multipath) set.
    pub multipath: bool,
    /// Kept through a peer's graceful restart.
    pub stale: bool,
}

/// One prefix and its paths (best first).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub paths: Vec<RoutePath>,
}

impl From<RibEntry> for Route {
    fn from(e: RibEntry) -> Route {
        Route {
            prefix: e.prefix.to_string(),
            paths: e
                .paths
                .into_iter()
                .map(|p| RoutePath {
                    source: p.source.to_string(),
                    next_hop: p.next_hop,
                    as_path: p.as_path,
                    local_pref: p.local_pref,
                    med: p.med,
                    best: p.best,
                    multipath: p.multipath,
                    stale: p.stale,
                })
                .collect(),
        }
    }
}

/// Every neighbour, by address.
pub async fn neighbors(s: &Speaker) -> Result<Vec<Neighbor>, SpeakerError> {
    Ok(s.peers().await?.into_iter().map(Neighbor::from).collect())
}

/// The Loc-RIB, or one peer's side of it.
pub async fn routes(s: &Speaker, args: &RoutesArgs) -> Result<Vec<Route>, SpeakerError> {
    let entries = match (args.received_from, args.advertised_to) {
        (Some(p), _) => s.adj_rib(p, AdjRib::In).await?,
        (None, Some(p)) => s.adj_rib(p, AdjRib::Out).await?,
        (None, None) => s.rib().await?,
    };
    Ok(entries.into_iter().map(Route::from).collect())
}

/// Version of the control protocol (flatnetd's `api::API_VERSION` is the same).
pub const CONTROL_VERSION: u32 = 1;

/// The BGP requests of the control protocol, tagged by `op` exactly as
/// flatnetd's API tags them, so one client speaks to both daemons.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Query {
    BgpNeighbors,
    BgpRoutes(RoutesArgs),
}

/// Their answers, tagged `kind` with the payload in `data` (flatnetd's
/// `api::Answer` shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Reply {
    BgpNeighbors(Vec<Neighbor>),
    BgpRoutes(Vec<Route>),
}

/// Answers one query.
pub async fn answer(s: &Speaker, q: &Query) -> Result<Reply, SpeakerError> {
    Ok(match q {
        Query::BgpNeighbors => Reply::BgpNeighbors(neighbors(s).await?),
        Query::BgpRoutes(a) => Reply::BgpRoutes(routes(s, a).await?),
    })
}
