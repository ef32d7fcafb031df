//! The speaker's protocol logic, sans-IO: the shape of [`crate::fsm`].
//!
//! The core owns the RIB, the peers' protocol state (negotiated
//! capabilities, graceful-restart and route-refresh stale deadlines,
//! max-prefix counters) and the named policies. It never reads the clock,
//! opens a socket or touches tokio: the driver passes every input with the
//! current time to [`Core::handle`], carries out what [`Core::poll_action`]
//! returns, and wakes the core at [`Core::poll_timeout`]. Tests do the same
//! with simulated time.

mod deferral;
mod events;
mod gr;
mod max_prefix;
mod policy;
mod query;
mod refresh;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

pub use events::{Action, CoreError, Event, PeerCommand};
pub use max_prefix::cease_data;
pub use query::AdjRib;

use crate::fsm::{Negotiated, State};
use crate::policy::Policy;
use crate::rib::{Attrs, Changes, DecisionConfig, PeerId, Rib, RibConfig};
use crate::session::PeerConfig;
use crate::wire::{Family, Origin, Prefix, RouteRefresh};

use super::OriginAttrs;

/// The unicast families the RIB holds.
const FAMILIES: [Family; 2] = [Family::IPV4_UNICAST, Family::IPV6_UNICAST];

/// What the core needs to know about the local speaker.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Named import/export policies.
    pub policies: HashMap<String, Policy>,
    /// Largest multipath (ECMP) set.
    pub max_paths: usize,
    /// Multipath across different neighbour ASes.
    pub multipath_relax: bool,
}

/// Protocol state of one configured peer.
struct PeerEntry {
    id: PeerId,
    cfg: PeerConfig,
    state: State,
    up_since: Option<Instant>,
    negotiated: Option<Negotiated>,
    last_error: Option<String>,
    /// Next automatic attempt while Idle, and the errors damping it.
    next_attempt: Option<Instant>,
    damped_errors: u32,
    /// Sweep the peer's stale routes at this time (graceful restart, or
    /// enhanced route refresh without EoRR).
    stale_deadline: Option<Instant>,
    /// Families whose max-prefix warning was logged this session.
    warned: HashSet<Family>,
    /// Families past a warning-only limit (logged once) this session.
    over_limit: HashSet<Family>,
    max_prefix_resets: u32,
    /// UPDATE messages received from the peer (since it was configured).
    updates_in: u64,
    /// UPDATE messages handed to the peer's session (since it was configured).
    updates_out: u64,
}

/// The sans-IO speaker core. See the module documentation.
pub struct Core {
    asn: u32,
    peers: HashMap<IpAddr, PeerEntry>,
    ids: HashMap<PeerId, IpAddr>,
    next_id: u32,
    policies: HashMap<String, Policy>,
    rib: Rib,
    /// Peers with UPDATEs waiting in the RIB.
    pending: BTreeSet<PeerId>,
    /// EoRR to send after the next flush (RFC 7313).
    eorr: Vec<(PeerId, Family)>,
    actions: VecDeque<Action>,
    /// Something changed since the last [`Action::Changed`].
    changed: bool,
    /// Build [`Action::Rib`] events (someone subscribes).
    listening: bool,
    /// RFC 4724 §4.1 selection deferral while we restart ([`deferral`]).
    deferral: Option<deferral::Deferral>,
}

/// Unmaps IPv4-mapped IPv6 addresses: a peer has one key whichever socket
/// family its connection came in on.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)),
        a => a,
    }
}

impl Core {
    /// A core with no peers and an empty RIB.
    pub fn new(cfg: CoreConfig) -> Core {
        Core {
            asn: cfg.asn,
            peers: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            policies: cfg.policies,
            rib: Rib::new(RibConfig {
                local_as: cfg.asn,
                router_id: cfg.router_id,
                decision: DecisionConfig {
                    always_compare_med: false,
                    max_paths: cfg.max_paths.max(1),
                    multipath_relax: cfg.multipath_relax,
                },
            }),
            pending: BTreeSet::new(),
            eorr: Vec::new(),
            actions: VecDeque::new(),
            changed: false,
            listening: false,
            deferral: None,
        }
    }

    /// Whether anyone subscribes to [`Action::Rib`]: building those events
    /// (one per changed prefix) costs more than the RIB work on a full-table
    /// feed, so they are skipped while nobody listens.
    pub fn set_listening(&mut self, listening: bool) {
        self.listening = listening;
        self.rib.set_report_loc_rib(listening);
    }

    /// Feeds one input. Peer events for unknown peers are ignored; API
    /// events about unknown peers (or a duplicate peer) are refused.
    pub fn handle(&mut self, event: Event, now: Instant) -> Result<(), CoreError> {
        match event {
            Event::PeerState(ip, s) => {
                if let Some(p) = self.peers.get_mut(&ip) {
                    p.state = s;
                    if s != State::Established {
                        p.up_since = None;
                    }
                    self.changed = true;
                }
            }
            Event::PeerRetry { peer, at, errors } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.next_attempt = at;
                    p.damped_errors = errors;
                    self.changed = true;
                }
            }
            Event::PeerUp {
                peer,
                negotiated,
                local,
                connected,
            } => self.peer_up(peer, *negotiated, local, connected, now),
            Event::PeerDown {
                peer,
                reason,
                was_established,
            } => self.peer_down(peer, reason, was_established, now),
            Event::Update(peer, u) => {
                let Some(id) = self.peers.get_mut(&peer).map(|p| {
                    p.updates_in += 1;
                    p.id
                }) else {
                    return Ok(());
                };
                match self.rib.apply_update(id, &u) {
                    Ok(ch) => {
                        if let Some(f) = ch.end_of_rib {
                            tracing::info!(%peer, family = %f, "End-of-RIB");
                            self.after_eor(peer);
                            self.deferral_eor(peer, f);
                        }
                        self.apply(ch);
                    }
                    Err(e) => tracing::debug!(%peer, "UPDATE ignored: {e}"),
                }
                self.check_max_prefix(peer);
            }
            Event::TreatAsWithdraw(peer, w) => {
                let Some(id) = self.peers.get(&peer).map(|p| p.id) else {
                    return Ok(());
                };
                if let Ok(ch) = self.rib.apply_withdraw(id, &w.ipv4, &w.ipv6) {
                    self.apply(ch);
                }
            }
            Event::RouteRefresh(peer, family) => self.route_refresh(peer, family),
            Event::Demarcation(peer, family, subtype) => {
                self.demarcation(peer, family, subtype, now)
            }
            Event::AddPeer(cfg) => self.add_peer(*cfg)?,
            Event::RemovePeer(ip) => self.remove_peer(ip)?,
            Event::Originate(p, a) => self.originate(p, a),
            Event::WithdrawOrigin(p) => {
                let ch = self.rib.withdraw(p);
                self.apply(ch);
            }
            Event::SetPolicy(name, pol) => self.set_policy(name, pol),
            Event::SetPeerPolicy {
                peer,
                import,
                export,
            } => self.set_peer_policy(peer, import, export)?,
            Event::StopPeer(ip, n) => self.command(ip, PeerCommand::Stop(n))?,
            Event::StartPeer(ip) => self.command(ip, PeerCommand::Start)?,
            Event::SoftResetIn(ip) => self.soft_reset_in(ip)?,
            Event::Timeout => {
                self.on_timeout(now);
                self.deferral_timeout(now);
            }
        }
        Ok(())
    }

    /// The next thing to do. Pending Adj-RIB-Out changes are packed into
    /// UPDATEs here, once the queued actions are taken, so a batch of
    /// inputs is flushed once.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.actions.is_empty()
            && self.deferral.is_none()
            && (!self.pending.is_empty() || !self.eorr.is_empty())
        {
            self.flush();
        }
        if let Some(a) = self.actions.pop_front() {
            return Some(a);
        }
        if std::mem::take(&mut self.changed) {
            return Some(Action::Changed);
        }
        None
    }

    /// When to deliver [`Event::Timeout`] at the latest (the earliest stale
    /// deadline or the selection deferral limit).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.stale_deadline)
            .chain(self.deferral_deadline())
            .min()
    }

    /// Whether `ip` is a configured peer.
    pub fn has_peer(&self, ip: IpAddr) -> bool {
        self.peers.contains_key(&normalize(ip))
    }

    fn addr_of(&self, id: PeerId) -> Option<IpAddr> {
        self.ids.get(&id).copied()
    }

    fn command(&mut self, ip: IpAddr, c: PeerCommand) -> Result<(), CoreError> {
        if !self.peers.contains_key(&ip) {
            return Err(CoreError::NoPeer(ip));
        }
        self.actions.push_back(Action::Peer(ip, c));
        Ok(())
    }

    /// Applies what a RIB operation changed: events, pending UPDATEs,
    /// route refresh requests, log lines.
    fn apply(&mut self, ch: Changes) {
        for n in &ch.notices {
            tracing::warn!("{n}");
        }
        if self.listening {
            for c in ch.loc_rib {
                let mp = c
                    .multipath
                    .iter()
                    .enumerate()
                    .map(|(i, p)| self.path_info(p.peer, &p.attrs, false, i == 0, true))
                    .collect();
                let best = c
                    .best
                    .as_ref()
                    .map(|p| self.path_info(p.peer, &p.attrs, false, true, true));
                let ev = Action::Rib(super::RibEvent {
                    prefix: c.prefix,
                    best,
                    multipath: mp,
                });
                match self.deferral.as_mut() {
                    Some(d) => d.held.push(ev),
                    None => self.actions.push_back(ev),
                }
            }
        }
        self.pending.extend(ch.peers_with_updates);
        for (id, fam) in ch.route_refresh_needed {
            self.send_refresh(id, fam);
        }
        self.changed = true;
    }

    /// Adj-RIB-Out to UPDATEs for every Established peer with changes, then
    /// the EoRRs that close a re-advertisement.
    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for id in pending {
            let Some(ip) = self.addr_of(id) else { continue };
            let Some(p) = self.peers.get_mut(&ip) else {
                continue;
            };
            if p.state != State::Established {
                continue;
            }
            match self.rib.take_updates(id) {
                Ok(u) if !u.is_empty() => {
                    p.updates_out += u.len() as u64;
                    self.actions
                        .push_back(Action::Peer(ip, PeerCommand::Send(u)));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(peer = %ip, "no updates: {e}"),
            }
        }
        for (id, family) in std::mem::take(&mut self.eorr) {
            if let Some(ip) = self.addr_of(id).filter(|ip| self.peers.contains_key(ip)) {
                self.actions.push_back(Action::Peer(
                    ip,
                    PeerCommand::Demarcation(family, RouteRefresh::EORR),
                ));
            }
        }
    }

    fn add_peer(&mut self, cfg: PeerConfig) -> Result<(), CoreError> {
        let ip = normalize(cfg.address);
        if self.peers.contains_key(&ip) {
            return Err(CoreError::PeerExists(ip));
        }
        let id = PeerId(self.next_id);
        self.next_id += 1;
        self.actions
            .push_back(Action::StartPeer(Box::new(cfg.clone())));
        self.ids.insert(id, ip);
        self.peers.insert(
            ip,
            PeerEntry {
                id,
                cfg,
                state: State::Idle,
                up_since: None,
                negotiated: None,
                last_error: None,
                next_attempt: None,
                damped_errors: 0,
                stale_deadline: None,
                warned: HashSet::new(),
                over_limit: HashSet::new(),
                max_prefix_resets: 0,
                updates_in: 0,
                updates_out: 0,
            },
        );
        self.changed = true;
        Ok(())
    }

    fn remove_peer(&mut self, ip: IpAddr) -> Result<(), CoreError> {
        let ip = normalize(ip);
        let Some(p) = self.peers.remove(&ip) else {
            return Err(CoreError::NoPeer(ip));
        };
        self.actions.push_back(Action::RemovePeer(Box::new(p.cfg)));
        let ch = self.rib.peer_down(p.id, &[]);
        self.apply(ch);
        self.check_deferral();
        Ok(())
    }

    fn originate(&mut self, prefix: Prefix, a: OriginAttrs) {
        let attrs = Attrs {
            origin: Origin::Igp,
            // None = self: next-hop-self per family on export (the RIB's
            // export cache is keyed by family, so IPv4 and IPv6 originations
            // may share one interned set).
            next_hop: None,
            med: a.med,
            local_pref: a.local_pref,
            communities: a.communities,
            large_communities: a.large_communities,
            ..Attrs::default()
        };
        let ch = self.rib.originate(prefix, attrs);
        self.apply(ch);
    }
}

/// Folds one RIB change set into another.
fn merge(into: &mut Changes, o: Changes) {
    into.loc_rib.extend(o.loc_rib);
    into.peers_with_updates.extend(o.peers_with_updates);
    into.end_of_rib = into.end_of_rib.or(o.end_of_rib);
    into.route_refresh_needed.extend(o.route_refresh_needed);
    into.notices.extend(o.notices);
}
