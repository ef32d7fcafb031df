//! RIBs and best path, sans-IO: Adj-RIB-In (pre and post import policy),
//! Loc-RIB with the RFC 4271 decision process and a multipath set, and
//! Adj-RIB-Out per peer with export policy and UPDATE packing.
//!
//! Every operation returns [`Changes`]: the Loc-RIB changes (for the
//! kernel) and the peers that now have UPDATEs to send
//! ([`Rib::take_updates`]). The session driver owns sockets and timers and
//! calls in; nothing here blocks, allocates threads or reads a clock.
//! Design notes: docs/adr/0003-rib.md.
//!
//! Module map (one subject each; they are all `impl Rib` blocks over the
//! same tables, so the public API is `Rib`'s methods and the types
//! re-exported here):
//! - [`table`]: the sharded per-family route table (Adj-RIB-In + Loc-RIB flags);
//! - [`attrs`]: interned path attributes;
//! - [`decision`]: the RFC 4271 decision process and multipath set;
//! - `peer`: peer ids, session facts, counters, peer up/down;
//! - `adj_in`: UPDATEs in, import policy, originated routes, soft reconfiguration;
//! - `loc`: storing a route, rerunning the decision, Loc-RIB changes;
//! - `export`: export rewriting per peer and full Adj-RIB-Out recomputation;
//! - `adj_out`: Adj-RIB-Out state and UPDATE packing;
//! - `stale`: graceful restart / enhanced route refresh stale mark and sweep;
//! - `query`: read-only views for `show`, the agent and stats.

mod adj_in;
mod adj_out;
pub mod attrs;
pub mod decision;
mod export;
mod loc;
mod peer;
mod query;
mod stale;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use adj_in::LastIn;
use adj_out::Out;
pub use attrs::{Attrs, Interner};
pub use decision::{Candidate, DecisionConfig, Selection, Source};
use peer::Peer;
pub use peer::{PeerId, PeerInfo, PrefixCounts, Subnet};
pub use query::RouteView;
use table::{RibPrefix, Table};

use crate::wire::{EncodeError, Family, Ipv4Prefix, Ipv6Prefix, Prefix};

/// RIB-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibConfig {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Decision process knobs (always-compare-med, max paths, multipath relax).
    pub decision: DecisionConfig,
}

/// One path of a prefix, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Where it came from.
    pub peer: PeerId,
    /// Attributes after import policy (next hop inside).
    pub attrs: Arc<Attrs>,
}

/// A prefix whose best path or multipath set changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocRibChange {
    /// The prefix.
    pub prefix: Prefix,
    /// New best path; `None` = the prefix is gone.
    pub best: Option<Path>,
    /// New multipath set, best first (empty iff `best` is `None`).
    pub multipath: Vec<Path>,
}

/// What an operation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Loc-RIB changes, in processing order (one per prefix per call at most
    /// for an UPDATE; the last entry for a prefix wins).
    pub loc_rib: Vec<LocRibChange>,
    /// Peers with UPDATEs waiting in [`Rib::take_updates`].
    pub peers_with_updates: BTreeSet<PeerId>,
    /// The UPDATE was an End-of-RIB for this family (its stale routes are swept already).
    pub end_of_rib: Option<Family>,
    /// Import policy changed for a peer without soft reconfiguration: send it ROUTE-REFRESH.
    pub route_refresh_needed: Vec<(PeerId, Family)>,
    /// Lines for the log (e.g. RFC 8212 explanations).
    pub notices: Vec<String>,
}

impl Changes {
    fn merge(&mut self, o: Changes) {
        self.loc_rib.extend(o.loc_rib);
        self.peers_with_updates.extend(o.peers_with_updates);
        self.end_of_rib = self.end_of_rib.or(o.end_of_rib);
        self.route_refresh_needed.extend(o.route_refresh_needed);
        self.notices.extend(o.notices);
    }
}

/// Errors of RIB operations (all caller mistakes, never network input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RibError {
    /// The peer is not up (call `peer_up` first).
    #[error("{0} is not known to the RIB (call peer_up first)")]
    UnknownPeer(PeerId),
    /// Packing an UPDATE failed.
    #[error("encoding UPDATE for {peer}: {err}")]
    Encode {
        /// The peer.
        peer: PeerId,
        /// The codec error.
        err: EncodeError,
    },
}

/// Per-family plumbing between the generic code and the two tables.
trait Fam: RibPrefix {
    fn table(rib: &mut Rib) -> &mut Table<Self>;
    fn table_ref(rib: &Rib) -> &Table<Self>;
    fn out(p: &mut Peer) -> &mut Out<Self>;
}

impl Fam for Ipv4Prefix {
    fn table(rib: &mut Rib) -> &mut Table<Self> {
        &mut rib.v4
    }
    fn table_ref(rib: &Rib) -> &Table<Self> {
        &rib.v4
    }
    fn out(p: &mut Peer) -> &mut Out<Self> {
        &mut p.out4
    }
}

impl Fam for Ipv6Prefix {
    fn table(rib: &mut Rib) -> &mut Table<Self> {
        &mut rib.v6
    }
    fn table_ref(rib: &Rib) -> &Table<Self> {
        &rib.v6
    }
    fn out(p: &mut Peer) -> &mut Out<Self> {
        &mut p.out6
    }
}

/// The RIB: all tables, peers and the attribute interner.
#[derive(Debug)]
pub struct Rib {
    cfg: RibConfig,
    interner: Interner,
    peers: BTreeMap<PeerId, Peer>,
    /// Ids of the peers that are up (export targets), kept in step with `peers`.
    up: Vec<PeerId>,
    local: Source,
    v4: Table<Ipv4Prefix>,
    v6: Table<Ipv6Prefix>,
    /// Prefixes with a best path (both families), kept by `decide` so
    /// [`Rib::loc_rib_len`] is O(1) (stats are polled often).
    best_count: usize,
    /// See [`Rib::set_report_loc_rib`].
    report_loc_rib: bool,
    /// The last plain IPv4 UPDATE's attributes and their interned set:
    /// feeds send runs of UPDATEs with one set, and comparing the wire
    /// attributes skips rebuilding, hashing and dropping the set per UPDATE.
    last_in: Option<LastIn>,
}

impl Rib {
    /// An empty RIB.
    pub fn new(cfg: RibConfig) -> Rib {
        let local = Source {
            id: PeerId::LOCAL.0,
            ebgp: false,
            local: true,
            router_id: cfg.router_id,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            local_as: cfg.local_as,
        };
        Rib {
            cfg,
            interner: Interner::default(),
            peers: BTreeMap::new(),
            up: Vec::new(),
            local,
            v4: Table::default(),
            v6: Table::default(),
            best_count: 0,
            report_loc_rib: true,
            last_in: None,
        }
    }

    /// Whether [`Changes::loc_rib`] is filled (default: yes). A caller
    /// with nobody to tell turns it off to save building one entry per
    /// changed prefix; decisions and exports are the same either way.
    pub fn set_report_loc_rib(&mut self, on: bool) {
        self.report_loc_rib = on;
    }

    /// The configuration.
    pub fn config(&self) -> &RibConfig {
        &self.cfg
    }

    /// Intern an attribute set (for originating routes or tests).
    pub fn intern(&mut self, a: Attrs) -> Arc<Attrs> {
        self.interner.intern(a)
    }

    /// Distinct attribute sets currently held.
    pub fn attr_sets(&mut self) -> usize {
        self.interner.gc();
        self.interner.len()
    }
}
