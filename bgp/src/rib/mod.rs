//! RIBs and best path, sans-IO: Adj-RIB-In (pre and post import policy),
//! Loc-RIB with the RFC 4271 decision process and a multipath set, and
//! Adj-RIB-Out per peer with export policy and UPDATE packing.
//!
//! Every operation returns [`Changes`]: the Loc-RIB changes (for the
//! kernel) and the peers that now have UPDATEs to send
//! ([`Rib::take_updates`]). The session driver owns sockets and timers and
//! calls in; nothing here blocks, allocates threads or reads a clock.
//! Design notes: docs/adr/0003-rib.md.

pub mod attrs;
pub mod decision;
pub mod table;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub use attrs::{Attrs, Interner};
pub use decision::{Candidate, DecisionConfig, Selection, Source};
use table::{BEST, FxMap, MULTIPATH, Paths, Removal, RibPrefix, Route, STALE, Table};

use crate::policy::{Direction, Disposition, Policy, rfc8212_reason};
use crate::wire::{
    AttrValue, Community, DecodeContext, EncodeContext, EncodeError, Family, Ipv4Prefix,
    Ipv6Prefix, MpNextHop, MpNlri, Nlri4, Nlri6, PathAttribute, Prefix, Update, pack_ipv4, pack_mp,
    pack_withdraw_ipv4, pack_withdraw_mp,
};

/// A peer as the RIB knows it; chosen by the caller (the session layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

impl PeerId {
    /// Locally originated routes.
    pub const LOCAL: PeerId = PeerId(u32::MAX);
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PeerId::LOCAL {
            f.write_str("local")
        } else {
            write!(f, "peer#{}", self.0)
        }
    }
}

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

/// What the RIB needs to know about an established session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Our AS on this session.
    pub local_as: u32,
    /// The peer's AS (eBGP iff different from `local_as`).
    pub remote_as: u32,
    /// The peer's BGP identifier (from its OPEN).
    pub router_id: Ipv4Addr,
    /// The peer's address (last tie-break, and for log lines).
    pub address: IpAddr,
    /// Negotiated families: routes are exported only in these.
    pub families: Vec<Family>,
    /// Import policy; `None` on eBGP = reject all (RFC 8212), on iBGP = accept all.
    pub import: Option<Policy>,
    /// Export policy; `None` on eBGP = send nothing (RFC 8212), on iBGP = send all.
    pub export: Option<Policy>,
    /// Set ourselves as next hop towards this iBGP peer (always done on eBGP).
    pub next_hop_self: bool,
    /// Our IPv4 address for next-hop-self.
    pub local_v4: Option<Ipv4Addr>,
    /// Our global IPv6 address for next-hop-self.
    pub local_v6: Option<Ipv6Addr>,
    /// Our link-local IPv6 address on the link to the peer (sent as the second next hop).
    pub local_v6_link_local: Option<Ipv6Addr>,
    /// Context UPDATEs from the peer were decoded with (AS4 merge).
    pub decode: DecodeContext,
    /// Context for UPDATEs to the peer (message size, 4-octet AS, extended next hop).
    pub encode: EncodeContext,
    /// Keep routes rejected by import policy (soft reconfiguration
    /// inbound). Without it a policy change needs a ROUTE-REFRESH.
    pub keep_rejected: bool,
}

impl PeerInfo {
    /// A session with defaults: IPv4+IPv6 unicast, 4-octet AS, no policies,
    /// soft reconfiguration inbound on.
    pub fn new(local_as: u32, remote_as: u32, router_id: Ipv4Addr, address: IpAddr) -> PeerInfo {
        let ctx = DecodeContext {
            four_octet_as: true,
            ..DecodeContext::default()
        };
        PeerInfo {
            local_as,
            remote_as,
            router_id,
            address,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            import: None,
            export: None,
            next_hop_self: false,
            local_v4: None,
            local_v6: None,
            local_v6_link_local: None,
            decode: ctx,
            encode: ctx,
            keep_rejected: true,
        }
    }

    /// eBGP session?
    pub fn is_ebgp(&self) -> bool {
        self.local_as != self.remote_as
    }

    /// Import policy in effect: `Err(reason)` when RFC 8212 rejects all.
    fn import_policy(&self) -> Result<Option<&Policy>, String> {
        match (&self.import, self.is_ebgp()) {
            (Some(p), _) => Ok(Some(p)),
            (None, true) => Err(rfc8212_reason(self.address, Direction::Import)),
            (None, false) => Ok(None),
        }
    }

    /// Export policy in effect: `Err(reason)` when RFC 8212 sends nothing.
    fn export_policy(&self) -> Result<Option<&Policy>, String> {
        match (&self.export, self.is_ebgp()) {
            (Some(p), _) => Ok(Some(p)),
            (None, true) => Err(rfc8212_reason(self.address, Direction::Export)),
            (None, false) => Ok(None),
        }
    }
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

/// One peer's route for a prefix with its state, for `show` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteView {
    /// Where it came from.
    pub peer: PeerId,
    /// As received (Adj-RIB-In pre-policy).
    pub pre: Arc<Attrs>,
    /// After import policy; `None` = rejected.
    pub post: Option<Arc<Attrs>>,
    /// The best path.
    pub best: bool,
    /// In the multipath set.
    pub multipath: bool,
    /// Stale (graceful restart).
    pub stale: bool,
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

/// Per peer and family counts (max-prefix is enforced by the session on `received`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    /// Routes held in Adj-RIB-In pre-policy.
    pub received: usize,
    /// Routes accepted by import policy (Adj-RIB-In post-policy).
    pub accepted: usize,
    /// Routes in Adj-RIB-Out.
    pub advertised: usize,
    /// Routes currently marked stale.
    pub stale: usize,
    /// Routes rejected because our AS was in the AS_PATH (cumulative).
    pub loop_rejected: u64,
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

/// Adj-RIB-Out of one family for one peer.
#[derive(Debug, Default)]
struct Out<P> {
    sent: FxMap<P, Arc<Attrs>>,
    /// Prefixes changed since the last `take_updates` (may repeat; deduplicated on drain).
    dirty: Vec<P>,
    eor: bool,
}

/// Export cache key: (source attrs ptr, source peer, deciding term, family
/// is IPv6) — the next hop we set depends on the family.
type ExportKey = (usize, u32, Option<usize>, bool);

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    source: Source,
    up: bool,
    out4: Out<Ipv4Prefix>,
    out6: Out<Ipv6Prefix>,
    counts4: PrefixCounts,
    counts6: PrefixCounts,
    /// Memoised exports for this peer, holding the source Arc so the key pointer stays valid.
    export_cache: FxMap<ExportKey, (Arc<Attrs>, Option<Arc<Attrs>>)>,
}

impl Peer {
    fn counts<P: Fam>(&mut self) -> &mut PrefixCounts {
        if P::FAMILY == Family::IPV4_UNICAST {
            &mut self.counts4
        } else {
            &mut self.counts6
        }
    }
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

/// Best path and multipath members as (peer, attrs pointer): what a change compares.
#[derive(PartialEq, Eq)]
struct Snapshot {
    best: Option<(u32, usize)>,
    multi: Vec<(u32, usize)>,
}

fn ptr(a: &Arc<Attrs>) -> usize {
    Arc::as_ptr(a) as usize
}

fn snapshot(p: Option<&Paths>) -> Snapshot {
    let mut s = Snapshot {
        best: None,
        multi: Vec::new(),
    };
    let Some(p) = p else { return s };
    let routes = p.as_slice();
    for r in routes {
        if let Some(a) = &r.post {
            if r.flags & BEST != 0 {
                s.best = Some((r.peer, ptr(a)));
            } else if r.flags & MULTIPATH != 0 {
                s.multi.push((r.peer, ptr(a)));
            }
        }
    }
    s.multi.sort_unstable();
    s
}

/// See `Rib::last_in`. Valid for one session of `peer` (cleared on up/down).
#[derive(Debug)]
struct LastIn {
    peer: PeerId,
    attributes: Vec<crate::wire::PathAttribute>,
    pre: Arc<Attrs>,
    looped: bool,
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

    // ---------------------------------------------------------------- peers

    /// A session reached Established (or came back after a graceful
    /// restart): export the Loc-RIB to it (End-of-RIB after the dump for
    /// every negotiated family). Stale routes kept from before stay until
    /// refreshed or swept.
    pub fn peer_up(&mut self, id: PeerId, info: PeerInfo) -> Changes {
        self.last_in = None;
        let mut ch = Changes::default();
        if let Err(r) = info.import_policy() {
            ch.notices.push(r);
        }
        if let Err(r) = info.export_policy() {
            ch.notices.push(r);
        }
        let source = Source {
            id: id.0,
            ebgp: info.is_ebgp(),
            local: false,
            router_id: info.router_id,
            address: info.address,
            local_as: info.local_as,
        };
        let (counts4, counts6) = self
            .peers
            .get(&id)
            .map(|p| (p.counts4, p.counts6))
            .unwrap_or_default();
        self.peers.insert(
            id,
            Peer {
                info,
                source,
                up: true,
                out4: Out::default(),
                out6: Out::default(),
                counts4: PrefixCounts {
                    advertised: 0,
                    ..counts4
                },
                counts6: PrefixCounts {
                    advertised: 0,
                    ..counts6
                },
                export_cache: FxMap::default(),
            },
        );
        self.refresh_up();
        self.full_export::<Ipv4Prefix>(id, true, &mut ch);
        self.full_export::<Ipv6Prefix>(id, true, &mut ch);
        ch
    }

    /// A session went down. Routes of the families in `retain_stale`
    /// (graceful restart, helper role) are kept and marked stale; all other
    /// routes of the peer are removed. Adj-RIB-Out is dropped.
    pub fn peer_down(&mut self, id: PeerId, retain_stale: &[Family]) -> Changes {
        self.last_in = None;
        let mut ch = Changes::default();
        let Some(p) = self.peers.get_mut(&id) else {
            return ch;
        };
        p.up = false;
        p.out4 = Out::default();
        p.out6 = Out::default();
        p.counts4.advertised = 0;
        p.counts6.advertised = 0;
        p.export_cache.clear();
        self.refresh_up();
        for fam in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
            if retain_stale.contains(&fam) {
                self.mark_stale(id, fam);
            } else {
                ch.merge(self.remove_peer_routes(id, fam, false));
            }
        }
        if self.count_routes(id) == 0 {
            self.peers.remove(&id);
        }
        self.interner.maybe_gc();
        ch
    }

    fn refresh_up(&mut self) {
        self.up = self
            .peers
            .iter()
            .filter(|(_, p)| p.up)
            .map(|(k, _)| *k)
            .collect();
    }

    fn count_routes(&self, id: PeerId) -> usize {
        self.peers
            .get(&id)
            .map_or(0, |p| p.counts4.received + p.counts6.received)
    }

    /// Mark every route of the peer in `family` stale (graceful restart,
    /// or before an enhanced route refresh). Returns how many.
    pub fn mark_stale(&mut self, id: PeerId, family: Family) -> usize {
        fn mark<P: Fam>(rib: &mut Rib, id: PeerId) -> usize {
            let mut n = 0;
            for paths in P::table(rib).values_mut() {
                for r in paths.as_mut_slice() {
                    if r.peer == id.0 && r.flags & STALE == 0 {
                        r.flags |= STALE;
                        n += 1;
                    }
                }
            }
            if let Some(p) = rib.peers.get_mut(&id) {
                p.counts::<P>().stale += n;
            }
            n
        }
        match family {
            Family::IPV4_UNICAST => mark::<Ipv4Prefix>(self, id),
            Family::IPV6_UNICAST => mark::<Ipv6Prefix>(self, id),
            _ => 0,
        }
    }

    /// Remove the peer's routes in `family` that are still stale (its
    /// End-of-RIB arrived, or its restart/stale timer fired).
    pub fn sweep_stale(&mut self, id: PeerId, family: Family) -> Changes {
        let ch = self.remove_peer_routes(id, family, true);
        if self.peers.get(&id).is_some_and(|p| !p.up) && self.count_routes(id) == 0 {
            self.peers.remove(&id);
        }
        self.interner.maybe_gc();
        ch
    }

    fn remove_peer_routes(&mut self, id: PeerId, family: Family, only_stale: bool) -> Changes {
        fn go<P: Fam>(rib: &mut Rib, id: PeerId, only_stale: bool) -> Changes {
            let victims: Vec<P> = P::table_ref(rib)
                .iter()
                .filter(|(_, ps)| {
                    ps.get(id.0)
                        .is_some_and(|r| !only_stale || r.flags & STALE != 0)
                })
                .map(|(k, _)| *k)
                .collect();
            let mut ch = Changes::default();
            for pfx in victims {
                rib.set_route::<P>(pfx, id, None, &mut ch);
            }
            ch
        }
        match family {
            Family::IPV4_UNICAST => go::<Ipv4Prefix>(self, id, only_stale),
            Family::IPV6_UNICAST => go::<Ipv6Prefix>(self, id, only_stale),
            _ => Changes::default(),
        }
    }

    // ---------------------------------------------------------------- input

    /// Apply an UPDATE received from `id`. An End-of-RIB sweeps the
    /// family's stale routes and is reported in [`Changes::end_of_rib`].
    pub fn apply_update(&mut self, id: PeerId, u: &Update) -> Result<Changes, RibError> {
        let peer = self
            .peers
            .get(&id)
            .filter(|p| p.up)
            .ok_or(RibError::UnknownPeer(id))?;
        let mut ch = Changes::default();
        if let Some(fam) = u.end_of_rib_family() {
            let mut c = self.sweep_stale(id, fam);
            c.end_of_rib = Some(fam);
            return Ok(c);
        }
        let decode = peer.info.decode;
        let ebgp = peer.info.is_ebgp();
        let local_as = peer.info.local_as;
        for n in &u.withdrawn {
            self.set_route::<Ipv4Prefix>(n.prefix, id, None, &mut ch);
        }
        if let Some(m) = u.mp_unreach() {
            self.withdraw_mp(id, &m.withdrawn, &mut ch);
        }
        let reach = u.mp_reach();
        if u.nlri.is_empty() && reach.is_none_or(|m| m.nlri.is_empty()) {
            return Ok(ch);
        }
        if reach.is_none()
            && let Some(l) = &self.last_in
            && l.peer == id
            && l.attributes == u.attributes
        {
            let (pre, looped) = (Arc::clone(&l.pre), l.looped);
            let mut cache = Vec::new();
            for n in &u.nlri {
                self.announce::<Ipv4Prefix>(id, n.prefix, &pre, looped, &mut cache, &mut ch);
            }
            // Import policy may have interned modified sets.
            self.interner.maybe_gc();
            return Ok(ch);
        }
        let (as_path, aggregator) = u.effective_as_path(&decode);
        let mut base = Attrs::from_received(u.path_attributes(), as_path, aggregator, None);
        if ebgp {
            // RFC 4271 5.1.5: LOCAL_PREF from an external peer is ignored.
            base.local_pref = None;
        }
        let looped = base.as_path_contains(local_as) || base.as_path_contains(self.cfg.local_as);
        if !u.nlri.is_empty() {
            let nh = u.next_hop().map(MpNextHop::Ipv4);
            // Copy the set only when MP_REACH_NLRI needs it too.
            let attrs = match reach {
                Some(_) => Attrs {
                    next_hop: nh,
                    ..base.clone()
                },
                None => Attrs {
                    next_hop: nh,
                    ..std::mem::take(&mut base)
                },
            };
            let pre = self.interner.intern(attrs);
            if reach.is_none() {
                self.last_in = Some(LastIn {
                    peer: id,
                    attributes: u.attributes.clone(),
                    pre: Arc::clone(&pre),
                    looped,
                });
            }
            let mut cache = Vec::new();
            for n in &u.nlri {
                self.announce::<Ipv4Prefix>(id, n.prefix, &pre, looped, &mut cache, &mut ch);
            }
        }
        if let Some(m) = reach {
            let pre = self.interner.intern(Attrs {
                next_hop: Some(m.next_hop.clone()),
                ..base
            });
            let mut cache = Vec::new();
            match &m.nlri {
                MpNlri::Ipv4(v) if m.family == Family::IPV4_UNICAST => {
                    for n in v {
                        self.announce::<Ipv4Prefix>(
                            id, n.prefix, &pre, looped, &mut cache, &mut ch,
                        );
                    }
                }
                MpNlri::Ipv6(v) if m.family == Family::IPV6_UNICAST => {
                    for n in v {
                        self.announce::<Ipv6Prefix>(
                            id, n.prefix, &pre, looped, &mut cache, &mut ch,
                        );
                    }
                }
                _ => {}
            }
        }
        self.interner.maybe_gc();
        Ok(ch)
    }

    /// Withdraw NLRI (e.g. from an RFC 7606 treat-as-withdraw error).
    pub fn apply_withdraw(
        &mut self,
        id: PeerId,
        v4: &[Nlri4],
        v6: &[Nlri6],
    ) -> Result<Changes, RibError> {
        if !self.peers.contains_key(&id) {
            return Err(RibError::UnknownPeer(id));
        }
        let mut ch = Changes::default();
        for n in v4 {
            self.set_route::<Ipv4Prefix>(n.prefix, id, None, &mut ch);
        }
        for n in v6 {
            self.set_route::<Ipv6Prefix>(n.prefix, id, None, &mut ch);
        }
        Ok(ch)
    }

    fn withdraw_mp(&mut self, id: PeerId, nlri: &MpNlri, ch: &mut Changes) {
        match nlri {
            MpNlri::Ipv4(v) => v
                .iter()
                .for_each(|n| self.set_route::<Ipv4Prefix>(n.prefix, id, None, ch)),
            MpNlri::Ipv6(v) => v
                .iter()
                .for_each(|n| self.set_route::<Ipv6Prefix>(n.prefix, id, None, ch)),
            MpNlri::Raw(_) => {}
        }
    }

    /// Import one received route. `cache` memoises the post-policy attrs
    /// per deciding term for this UPDATE's shared attribute set.
    fn announce<P: Fam>(
        &mut self,
        id: PeerId,
        prefix: P,
        pre: &Arc<Attrs>,
        looped: bool,
        cache: &mut Vec<(Option<usize>, Option<Arc<Attrs>>)>,
        ch: &mut Changes,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let post = if looped {
            peer.counts::<P>().loop_rejected += 1;
            None
        } else {
            match peer.info.import_policy() {
                Err(_) => None,
                Ok(None) => Some(Arc::clone(pre)),
                Ok(Some(pol)) => {
                    let v = pol.evaluate(&prefix.to_prefix(), pre);
                    if v.disposition == Disposition::Reject {
                        None
                    } else if let Some((_, a)) = cache.iter().find(|(t, _)| *t == v.term) {
                        a.clone()
                    } else {
                        let a = match pol.modified(v, pre, peer.info.local_as) {
                            Some(m) => self.interner.intern(m),
                            None => Arc::clone(pre),
                        };
                        cache.push((v.term, Some(Arc::clone(&a))));
                        Some(a)
                    }
                }
            }
        };
        let keep = self.peers.get(&id).is_some_and(|p| p.info.keep_rejected);
        if post.is_none() && !keep {
            self.set_route::<P>(prefix, id, None, ch);
        } else {
            self.set_route::<P>(prefix, id, Some((Arc::clone(pre), post)), ch);
        }
    }

    // ---------------------------------------------------------------- local routes

    /// Originate a prefix with attributes (next hop `None` = ourselves).
    /// Replaces an earlier origination of the same prefix.
    pub fn originate(&mut self, prefix: Prefix, attrs: Attrs) -> Changes {
        let a = self.interner.intern(attrs);
        let mut ch = Changes::default();
        match prefix {
            Prefix::V4(p) => {
                self.set_route(p, PeerId::LOCAL, Some((Arc::clone(&a), Some(a))), &mut ch)
            }
            Prefix::V6(p) => {
                self.set_route(p, PeerId::LOCAL, Some((Arc::clone(&a), Some(a))), &mut ch)
            }
        }
        ch
    }

    /// Stop originating a prefix.
    pub fn withdraw(&mut self, prefix: Prefix) -> Changes {
        let mut ch = Changes::default();
        match prefix {
            Prefix::V4(p) => self.set_route(p, PeerId::LOCAL, None, &mut ch),
            Prefix::V6(p) => self.set_route(p, PeerId::LOCAL, None, &mut ch),
        }
        self.interner.maybe_gc();
        ch
    }

    // ---------------------------------------------------------------- core

    fn source(&self, peer: u32) -> Option<&Source> {
        if peer == PeerId::LOCAL.0 {
            Some(&self.local)
        } else {
            self.peers.get(&PeerId(peer)).map(|p| &p.source)
        }
    }

    /// Store (`Some`) or remove (`None`) the route of `id` for `prefix`,
    /// rerun the decision process and propagate a change.
    fn set_route<P: Fam>(
        &mut self,
        prefix: P,
        id: PeerId,
        new: Option<(Arc<Attrs>, Option<Arc<Attrs>>)>,
        ch: &mut Changes,
    ) {
        // What the peer holds afterwards, known before `new` moves into the table.
        let (has, has_post) = new
            .as_ref()
            .map_or((false, false), |(_, post)| (true, post.is_some()));
        let table = P::table(self);
        // One lookup for the common cases (new prefix, replace, partial removal).
        let (old_snap, old) = match (table.get_mut(&prefix), new) {
            (Some(ps), Some((pre, post))) => {
                let snap = snapshot(Some(ps));
                let r = Route {
                    pre,
                    post,
                    peer: id.0,
                    flags: 0,
                };
                (snap, ps.upsert(r))
            }
            (None, Some((pre, post))) => {
                let r = Route {
                    pre,
                    post,
                    peer: id.0,
                    flags: 0,
                };
                table.insert(prefix, Paths::One(r));
                (snapshot(None), None)
            }
            (None, None) => return,
            (Some(ps), None) => {
                let snap = snapshot(Some(ps));
                match ps.remove(id.0) {
                    Removal::NotFound => return,
                    Removal::Removed(r) => (snap, Some(r)),
                    Removal::Last => match table.remove(&prefix) {
                        Some(Paths::One(r)) => (snap, Some(r)),
                        _ => (snap, None),
                    },
                }
            }
        };
        // counters
        let (had_post, had_stale, had) = old.as_ref().map_or((false, false, false), |r| {
            (r.post.is_some(), r.flags & STALE != 0, true)
        });
        if id != PeerId::LOCAL
            && let Some(p) = self.peers.get_mut(&id)
        {
            let c = p.counts::<P>();
            c.received = (c.received + usize::from(has)).saturating_sub(usize::from(had));
            c.accepted = (c.accepted + usize::from(has_post)).saturating_sub(usize::from(had_post));
            c.stale = c.stale.saturating_sub(usize::from(had_stale));
        }
        // If neither the old nor the new route is usable, nothing else changes.
        if !had_post && !has_post {
            return;
        }
        self.decide(prefix, old_snap, ch);
    }

    /// Rerun the decision for `prefix`; report and export if the best path
    /// or multipath set differs from `old`.
    fn decide<P: Fam>(&mut self, prefix: P, old: Snapshot, ch: &mut Changes) {
        let dcfg = self.cfg.decision;
        let report = self.report_loc_rib;
        let sel = {
            let Some(ps) = P::table_ref(self).get(&prefix) else {
                if old.best.is_some() {
                    self.best_count = self.best_count.saturating_sub(1);
                    if self.report_loc_rib {
                        ch.loc_rib.push(LocRibChange {
                            prefix: prefix.to_prefix(),
                            best: None,
                            multipath: Vec::new(),
                        });
                    }
                    self.export_prefix(prefix, None, ch);
                }
                return;
            };
            let routes = ps.as_slice();
            if let [r] = routes {
                // Fast path (most prefixes have one route): no allocation.
                (r.post.is_some() && self.source(r.peer).is_some()).then(|| (Some(0), Vec::new()))
            } else {
                let mut idx = Vec::with_capacity(routes.len());
                let mut cands = Vec::with_capacity(routes.len());
                for (i, r) in routes.iter().enumerate() {
                    if let (Some(a), Some(s)) = (&r.post, self.source(r.peer)) {
                        idx.push(i);
                        cands.push(Candidate {
                            attrs: a,
                            source: s,
                        });
                    }
                }
                decision::select(&cands, &dcfg).map(|s| {
                    let best = idx.get(s.best).copied();
                    let multi: Vec<usize> = s
                        .multipath
                        .iter()
                        .filter_map(|&m| idx.get(m).copied())
                        .collect();
                    (best, multi)
                })
            }
        };
        let Some(ps) = P::table(self).get_mut(&prefix) else {
            return;
        };
        let routes = ps.as_mut_slice();
        for r in routes.iter_mut() {
            r.flags &= !(BEST | MULTIPATH);
        }
        if let Some((best, multi)) = &sel {
            for &m in multi {
                if let Some(r) = routes.get_mut(m) {
                    r.flags |= MULTIPATH;
                }
            }
            if let Some(r) = best.and_then(|b| routes.get_mut(b)) {
                r.flags |= BEST | MULTIPATH;
            }
        }
        let new = snapshot(Some(ps));
        if new == old {
            return;
        }
        let routes = ps.as_slice();
        let path = |r: &Route| {
            r.post.as_ref().map(|a| Path {
                peer: PeerId(r.peer),
                attrs: Arc::clone(a),
            })
        };
        let best_route = routes.iter().find(|r| r.flags & BEST != 0);
        if report {
            let best = best_route.and_then(path);
            let mut multipath: Vec<Path> = Vec::with_capacity(1);
            if let Some(b) = &best {
                multipath.push(b.clone());
                if let Some((_, multi)) = &sel {
                    multipath.extend(
                        multi
                            .iter()
                            .filter_map(|&m| routes.get(m))
                            .filter(|r| r.flags & BEST == 0)
                            .filter_map(path),
                    );
                }
            }
            ch.loc_rib.push(LocRibChange {
                prefix: prefix.to_prefix(),
                best,
                multipath,
            });
        }
        let best_changed = new.best != old.best;
        let export = best_route.and_then(|r| r.post.clone().map(|a| (r.peer, a)));
        match (old.best.is_some(), new.best.is_some()) {
            (false, true) => self.best_count += 1,
            (true, false) => self.best_count = self.best_count.saturating_sub(1),
            _ => {}
        }
        if best_changed {
            self.export_prefix(prefix, export, ch);
        }
    }

    // ---------------------------------------------------------------- export

    /// Update every up peer's Adj-RIB-Out for `prefix` given its new best route.
    fn export_prefix<P: Fam>(
        &mut self,
        prefix: P,
        best: Option<(u32, Arc<Attrs>)>,
        ch: &mut Changes,
    ) {
        for k in 0..self.up.len() {
            let Some(&q) = self.up.get(k) else { break };
            let out = match &best {
                Some((src, a)) => self.export_attrs::<P>(q, prefix, *src, a),
                None => None,
            };
            self.set_out(q, prefix, out, ch);
        }
    }

    fn set_out<P: Fam>(&mut self, q: PeerId, prefix: P, out: Option<Arc<Attrs>>, ch: &mut Changes) {
        let Some(peer) = self.peers.get_mut(&q) else {
            return;
        };
        let o = P::out(peer);
        let changed = match (&out, o.sent.get(&prefix)) {
            (None, None) => false,
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            _ => true,
        };
        if !changed {
            return;
        }
        match out {
            Some(a) => {
                o.sent.insert(prefix, a);
            }
            None => {
                o.sent.remove(&prefix);
            }
        }
        o.dirty.push(prefix);
        if o.dirty.len() > 2 * o.sent.len() + 4096 {
            // A peer that does not drain while routes flap: keep the queue bounded.
            o.dirty.sort_unstable();
            o.dirty.dedup();
        }
        let n = o.sent.len();
        peer.counts::<P>().advertised = n;
        ch.peers_with_updates.insert(q);
    }

    /// The attributes `q` gets for `prefix` whose best route is `a` from
    /// `src`, or `None` when it gets nothing.
    fn export_attrs<P: Fam>(
        &mut self,
        q: PeerId,
        prefix: P,
        src: u32,
        a: &Arc<Attrs>,
    ) -> Option<Arc<Attrs>> {
        if src == q.0 {
            return None; // never back to the peer it came from (checked first: no lookups)
        }
        let s = *self.source(src)?;
        let peer = self.peers.get(&q)?;
        if !peer.up || !peer.info.families.contains(&P::FAMILY) || src == q.0 {
            return None; // never back to the peer it came from
        }
        let ebgp = peer.info.is_ebgp();
        if !s.local && !s.ebgp && !ebgp {
            return None; // iBGP split horizon (no route reflection)
        }
        if a.communities.contains(&Community::NO_ADVERTISE)
            || (ebgp && a.communities.contains(&Community::NO_EXPORT))
        {
            return None;
        }
        let pol = peer.info.export_policy().ok()?;
        let verdict = pol.map(|p| p.evaluate(&prefix.to_prefix(), a));
        if verdict.is_some_and(|v| v.disposition == Disposition::Reject) {
            return None;
        }
        let key = (
            ptr(a),
            src,
            verdict.and_then(|v| v.term),
            P::FAMILY == Family::IPV6_UNICAST,
        );
        if let Some((_, out)) = peer.export_cache.get(&key) {
            return out.clone();
        }
        let info = &peer.info;
        let mut x = (**a).clone();
        if ebgp {
            x.local_pref = None;
            x.originator_id = None;
            x.cluster_list.clear();
            if s.ebgp {
                x.med = None; // RFC 4271 5.1.4: MED is not passed on to a third AS
            }
        } else if x.local_pref.is_none() {
            x.local_pref = Some(100);
        }
        if let (Some(p), Some(v)) = (pol, verdict)
            && let Some(m) = p.modified(v, &x, info.local_as)
        {
            x = m;
        }
        if ebgp {
            x.as_path.prepend(info.local_as, 1);
        }
        let self_nh = ebgp || info.next_hop_self || s.local || x.next_hop.is_none();
        if self_nh {
            x.next_hop = self_next_hop(info, P::FAMILY);
        }
        let out = match x.next_hop {
            None => None, // no address of ours to put as next hop in this family
            Some(_) => Some(self.interner.intern(x)),
        };
        if let Some(peer) = self.peers.get_mut(&q) {
            if peer.export_cache.len() > 65_536 {
                peer.export_cache.clear();
            }
            peer.export_cache.insert(key, (Arc::clone(a), out.clone()));
        }
        out
    }

    /// Recompute `q`'s whole Adj-RIB-Out of one family (peer up, export
    /// policy change, or a resend requested by ROUTE-REFRESH when `resend`).
    fn full_export<P: Fam>(&mut self, q: PeerId, resend: bool, ch: &mut Changes) {
        let Some(peer) = self.peers.get(&q) else {
            return;
        };
        if !peer.up || !peer.info.families.contains(&P::FAMILY) {
            return;
        }
        let bests: Vec<(P, u32, Arc<Attrs>)> = P::table_ref(self)
            .iter()
            .filter_map(|(k, ps)| {
                let r = ps.as_slice().iter().find(|r| r.flags & BEST != 0)?;
                Some((*k, r.peer, Arc::clone(r.post.as_ref()?)))
            })
            .collect();
        let mut seen: FxMap<P, ()> = FxMap::default();
        for (pfx, src, a) in bests {
            let out = self.export_attrs::<P>(q, pfx, src, &a);
            seen.insert(pfx, ());
            self.set_out(q, pfx, out, ch);
        }
        let Some(peer) = self.peers.get_mut(&q) else {
            return;
        };
        let o = P::out(peer);
        let gone: Vec<P> = o
            .sent
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .copied()
            .collect();
        for pfx in gone {
            self.set_out(q, pfx, None, ch);
        }
        let Some(peer) = self.peers.get_mut(&q) else {
            return;
        };
        let o = P::out(peer);
        if resend {
            o.dirty.extend(o.sent.keys().copied());
            o.eor = true;
            ch.peers_with_updates.insert(q);
        }
    }

    // ---------------------------------------------------------------- policy changes

    /// Replace a peer's import policy and re-run it over Adj-RIB-In-pre
    /// (soft reconfiguration inbound). Without `keep_rejected`, routes
    /// rejected before are not held, so [`Changes::route_refresh_needed`]
    /// asks the session to send ROUTE-REFRESH.
    pub fn set_import_policy(
        &mut self,
        id: PeerId,
        policy: Option<Policy>,
    ) -> Result<Changes, RibError> {
        let peer = self.peers.get_mut(&id).ok_or(RibError::UnknownPeer(id))?;
        peer.info.import = policy;
        let mut ch = Changes::default();
        if let Err(r) = peer.info.import_policy() {
            ch.notices.push(r);
        }
        if !peer.info.keep_rejected {
            for f in &peer.info.families {
                ch.route_refresh_needed.push((id, *f));
            }
        }
        self.reimport::<Ipv4Prefix>(id, &mut ch);
        self.reimport::<Ipv6Prefix>(id, &mut ch);
        self.interner.maybe_gc();
        Ok(ch)
    }

    fn reimport<P: Fam>(&mut self, id: PeerId, ch: &mut Changes) {
        let routes: Vec<(P, Arc<Attrs>, bool)> = P::table_ref(self)
            .iter()
            .filter_map(|(k, ps)| {
                ps.get(id.0)
                    .map(|r| (*k, Arc::clone(&r.pre), r.flags & STALE != 0))
            })
            .collect();
        let local_as = self
            .peers
            .get(&id)
            .map_or(self.cfg.local_as, |p| p.info.local_as);
        for (pfx, pre, stale) in routes {
            let looped = pre.as_path_contains(local_as) || pre.as_path_contains(self.cfg.local_as);
            let mut cache = Vec::new();
            if looped {
                continue; // stays rejected; not counted again
            }
            self.announce::<P>(id, pfx, &pre, false, &mut cache, ch);
            if stale
                && let Some(r) = P::table(self)
                    .get_mut(&pfx)
                    .and_then(|ps| ps.as_mut_slice().iter_mut().find(|r| r.peer == id.0))
            {
                r.flags |= STALE;
                if let Some(p) = self.peers.get_mut(&id) {
                    p.counts::<P>().stale += 1;
                }
            }
        }
    }

    /// Replace a peer's export policy and re-evaluate its Adj-RIB-Out.
    pub fn set_export_policy(
        &mut self,
        id: PeerId,
        policy: Option<Policy>,
    ) -> Result<Changes, RibError> {
        let peer = self.peers.get_mut(&id).ok_or(RibError::UnknownPeer(id))?;
        peer.info.export = policy;
        peer.export_cache.clear();
        let mut ch = Changes::default();
        if let Err(r) = peer.info.export_policy() {
            ch.notices.push(r);
        }
        self.full_export::<Ipv4Prefix>(id, false, &mut ch);
        self.full_export::<Ipv6Prefix>(id, false, &mut ch);
        self.interner.maybe_gc();
        Ok(ch)
    }

    /// The peer sent ROUTE-REFRESH for `family`: queue the whole
    /// Adj-RIB-Out of that family again, then End-of-RIB.
    pub fn resend(&mut self, id: PeerId, family: Family) -> Result<Changes, RibError> {
        if !self.peers.get(&id).is_some_and(|p| p.up) {
            return Err(RibError::UnknownPeer(id));
        }
        let mut ch = Changes::default();
        match family {
            Family::IPV4_UNICAST => self.full_export::<Ipv4Prefix>(id, true, &mut ch),
            Family::IPV6_UNICAST => self.full_export::<Ipv6Prefix>(id, true, &mut ch),
            _ => {}
        }
        Ok(ch)
    }

    // ---------------------------------------------------------------- output

    /// Whether `id` has UPDATEs waiting.
    pub fn has_updates(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| {
            !p.out4.dirty.is_empty() || !p.out6.dirty.is_empty() || p.out4.eor || p.out6.eor
        })
    }

    /// Drain `id`'s pending changes as packed UPDATEs: withdrawals first,
    /// then announcements grouped by shared attributes, then End-of-RIB
    /// where an initial dump or a refresh finished.
    pub fn take_updates(&mut self, id: PeerId) -> Result<Vec<Update>, RibError> {
        let peer = self.peers.get_mut(&id).ok_or(RibError::UnknownPeer(id))?;
        let ctx = peer.info.encode;
        let enc = |err| RibError::Encode { peer: id, err };
        let mut out = Vec::new();
        // IPv4
        let (wd, groups) = drain(&mut peer.out4);
        if !wd.is_empty() {
            let nl: Vec<Nlri4> = wd.into_iter().map(Nlri4::new).collect();
            out.extend(pack_withdraw_ipv4(&nl, &ctx).map_err(enc)?);
        }
        for (a, pfxs) in groups {
            let nl: Vec<Nlri4> = pfxs.into_iter().map(Nlri4::new).collect();
            let mut attrs = a.to_path_attributes(&ctx);
            match &a.next_hop {
                Some(MpNextHop::Ipv4(nh)) => {
                    attrs.push(PathAttribute::new(AttrValue::NextHop(*nh)));
                    attrs.sort_by_key(PathAttribute::type_code);
                    out.extend(pack_ipv4(&attrs, &nl, &ctx).map_err(enc)?);
                }
                Some(nh) => out.extend(
                    pack_mp(&attrs, Family::IPV4_UNICAST, nh, &MpNlri::Ipv4(nl), &ctx)
                        .map_err(enc)?,
                ),
                None => {}
            }
        }
        if std::mem::take(&mut peer.out4.eor) {
            out.push(Update::end_of_rib(Family::IPV4_UNICAST));
        }
        // IPv6
        let (wd, groups) = drain(&mut peer.out6);
        if !wd.is_empty() {
            let nl: Vec<Nlri6> = wd.into_iter().map(Nlri6::new).collect();
            out.extend(
                pack_withdraw_mp(Family::IPV6_UNICAST, &MpNlri::Ipv6(nl), &ctx).map_err(enc)?,
            );
        }
        for (a, pfxs) in groups {
            let nl: Vec<Nlri6> = pfxs.into_iter().map(Nlri6::new).collect();
            let attrs = a.to_path_attributes(&ctx);
            if let Some(nh) = &a.next_hop {
                out.extend(
                    pack_mp(&attrs, Family::IPV6_UNICAST, nh, &MpNlri::Ipv6(nl), &ctx)
                        .map_err(enc)?,
                );
            }
        }
        if std::mem::take(&mut peer.out6.eor) {
            out.push(Update::end_of_rib(Family::IPV6_UNICAST));
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- queries

    /// Best path for a prefix.
    pub fn best(&self, prefix: &Prefix) -> Option<Path> {
        self.multipath(prefix).into_iter().next()
    }

    /// Multipath set for a prefix, best first (empty if no route).
    pub fn multipath(&self, prefix: &Prefix) -> Vec<Path> {
        let ps = match prefix {
            Prefix::V4(p) => self.v4.get(p),
            Prefix::V6(p) => self.v6.get(p),
        };
        let Some(ps) = ps else { return Vec::new() };
        let mut v: Vec<(bool, _, &Route)> = ps
            .as_slice()
            .iter()
            .filter(|r| r.flags & MULTIPATH != 0)
            .filter_map(|r| {
                let a = r.post.as_ref()?;
                let s = self.source(r.peer)?;
                Some((
                    r.flags & BEST == 0,
                    decision::tie_key(&Candidate {
                        attrs: a,
                        source: s,
                    }),
                    r,
                ))
            })
            .collect();
        v.sort_by_key(|x| (x.0, x.1));
        v.into_iter()
            .filter_map(|(_, _, r)| {
                r.post.as_ref().map(|a| Path {
                    peer: PeerId(r.peer),
                    attrs: Arc::clone(a),
                })
            })
            .collect()
    }

    /// Every peer's route for a prefix, in any state (for `show`).
    pub fn routes(&self, prefix: &Prefix) -> Vec<RouteView> {
        let ps = match prefix {
            Prefix::V4(p) => self.v4.get(p),
            Prefix::V6(p) => self.v6.get(p),
        };
        ps.map(|ps| {
            ps.as_slice()
                .iter()
                .map(|r| RouteView {
                    peer: PeerId(r.peer),
                    pre: Arc::clone(&r.pre),
                    post: r.post.clone(),
                    best: r.flags & BEST != 0,
                    multipath: r.flags & MULTIPATH != 0,
                    stale: r.flags & STALE != 0,
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// The Loc-RIB: every prefix with a best path, sorted.
    pub fn loc_rib(&self) -> Vec<(Prefix, Path)> {
        let mut v = Vec::new();
        collect(
            &self.v4,
            &mut v,
            |r| r.flags & BEST != 0,
            |r| {
                r.post.clone().map(|a| Path {
                    peer: PeerId(r.peer),
                    attrs: a,
                })
            },
        );
        collect(
            &self.v6,
            &mut v,
            |r| r.flags & BEST != 0,
            |r| {
                r.post.clone().map(|a| Path {
                    peer: PeerId(r.peer),
                    attrs: a,
                })
            },
        );
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// Number of prefixes with a best path.
    pub fn loc_rib_len(&self) -> usize {
        self.best_count
    }

    /// Adj-RIB-In before import policy for a peer, sorted.
    pub fn adj_rib_in_pre(&self, id: PeerId) -> Vec<(Prefix, Arc<Attrs>)> {
        let mut v = Vec::new();
        collect(
            &self.v4,
            &mut v,
            |r| r.peer == id.0,
            |r| Some(Arc::clone(&r.pre)),
        );
        collect(
            &self.v6,
            &mut v,
            |r| r.peer == id.0,
            |r| Some(Arc::clone(&r.pre)),
        );
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// Adj-RIB-In after import policy (accepted routes only) for a peer, sorted.
    pub fn adj_rib_in_post(&self, id: PeerId) -> Vec<(Prefix, Arc<Attrs>)> {
        let mut v = Vec::new();
        collect(&self.v4, &mut v, |r| r.peer == id.0, |r| r.post.clone());
        collect(&self.v6, &mut v, |r| r.peer == id.0, |r| r.post.clone());
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// Adj-RIB-Out for a peer (what it has been or is about to be sent), sorted.
    pub fn adj_rib_out(&self, id: PeerId) -> Vec<(Prefix, Arc<Attrs>)> {
        let Some(p) = self.peers.get(&id) else {
            return Vec::new();
        };
        let mut v: Vec<(Prefix, Arc<Attrs>)> = p
            .out4
            .sent
            .iter()
            .map(|(k, a)| (Prefix::V4(*k), Arc::clone(a)))
            .collect();
        v.extend(
            p.out6
                .sent
                .iter()
                .map(|(k, a)| (Prefix::V6(*k), Arc::clone(a))),
        );
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// Counters for a peer and family (zeroes for an unknown peer).
    pub fn counts(&self, id: PeerId, family: Family) -> PrefixCounts {
        self.peers
            .get(&id)
            .map(|p| {
                if family == Family::IPV6_UNICAST {
                    p.counts6
                } else {
                    p.counts4
                }
            })
            .unwrap_or_default()
    }

    /// Peers known to the RIB (up, or down with stale routes).
    pub fn peers(&self) -> Vec<(PeerId, bool)> {
        self.peers.iter().map(|(k, p)| (*k, p.up)).collect()
    }
}

fn collect<P: Fam, T>(
    t: &Table<P>,
    v: &mut Vec<(Prefix, T)>,
    keep: impl Fn(&Route) -> bool,
    f: impl Fn(&Route) -> Option<T>,
) {
    for (k, ps) in t.iter() {
        for r in ps.as_slice() {
            if keep(r)
                && let Some(x) = f(r)
            {
                v.push((k.to_prefix(), x));
            }
        }
    }
}

type Groups<P> = Vec<(Arc<Attrs>, Vec<P>)>;

/// Split a family's dirty set into withdrawals and announcement groups
/// sharing one attribute set (sorted, so output is deterministic).
fn drain<P: Fam>(o: &mut Out<P>) -> (Vec<P>, Groups<P>) {
    let mut dirty = std::mem::take(&mut o.dirty);
    dirty.sort_unstable();
    dirty.dedup();
    let mut wd = Vec::new();
    let mut groups: HashMap<usize, usize> = HashMap::new();
    let mut out: Groups<P> = Vec::new();
    for p in dirty {
        match o.sent.get(&p) {
            None => wd.push(p),
            Some(a) => {
                let i = *groups.entry(ptr(a)).or_insert_with(|| {
                    out.push((Arc::clone(a), Vec::new()));
                    out.len() - 1
                });
                if let Some(g) = out.get_mut(i) {
                    g.1.push(p);
                }
            }
        }
    }
    (wd, out)
}

fn self_next_hop(info: &PeerInfo, family: Family) -> Option<MpNextHop> {
    let v6 = info.local_v6.map(|g| MpNextHop::Ipv6 {
        global: g,
        link_local: info.local_v6_link_local,
    });
    if family == Family::IPV4_UNICAST {
        match info.local_v4 {
            Some(a) => Some(MpNextHop::Ipv4(a)),
            // RFC 8950: IPv4 routes with an IPv6 next hop when negotiated.
            None if info.encode.extended_next_hop_ipv4 => v6,
            None => None,
        }
    } else {
        v6.or_else(|| {
            // An IPv4-only session can still carry IPv6 with an IPv4-mapped next hop (RFC 4798).
            info.local_v4.map(|a| MpNextHop::Ipv6 {
                global: a.to_ipv6_mapped(),
                link_local: None,
            })
        })
    }
}
