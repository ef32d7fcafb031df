//! Adj-RIB-In: UPDATEs and withdrawals from peers, locally originated
//! routes, import policy (pre and post) with its per-UPDATE attribute
//! cache, and re-running import policy (soft reconfiguration inbound).

use std::sync::Arc;

use super::table::STALE;
use super::{Attrs, Changes, Fam, PeerId, PeerInfo, Rib, RibError};
use crate::policy::{Disposition, Policy};
use crate::wire::{
    Family, Ipv4Prefix, Ipv6Prefix, MpNextHop, MpNlri, Nlri4, Nlri6, PathAttribute, Prefix, Update,
};

/// See `Rib::last_in`. Valid for one session of `peer` (cleared on up/down).
#[derive(Debug)]
pub(super) struct LastIn {
    pub(super) peer: PeerId,
    pub(super) attributes: Vec<PathAttribute>,
    pub(super) pre: Arc<Attrs>,
    pub(super) looped: bool,
}

impl Rib {
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
            // RFC 4271 5.1.5, RFC 7606 7.5: LOCAL_PREF from an external peer is ignored.
            base.local_pref = None;
            // RFC 7606 7.9, 7.10 (RFC 4456): reflection attributes from an external peer are discarded.
            base.originator_id = None;
            base.cluster_list.clear();
        }
        let bad = self
            .peers
            .get(&id)
            .and_then(|p| Some((session_error(&p.info, &base, u)?, p.info.address)));
        if let Some((reason, addr)) = bad {
            // RFC 7606 2 treat-as-withdraw: every prefix of the UPDATE, session kept.
            ch.notices.push(format!(
                "treat-as-withdraw of an UPDATE from peer {addr}: {reason}"
            ));
            for n in &u.nlri {
                self.set_route::<Ipv4Prefix>(n.prefix, id, None, &mut ch);
            }
            if let Some(m) = reach {
                self.withdraw_mp(id, &m.nlri, &mut ch);
            }
            return Ok(ch);
        }
        let looped = self.looped(&base, local_as);
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

    /// A route we must not use: our AS in the AS_PATH (RFC 4271 9.1.2), or
    /// (RFC 4456 8) our BGP identifier as ORIGINATOR_ID or in CLUSTER_LIST
    /// (our cluster id is our BGP identifier; eBGP routes carry neither).
    fn looped(&self, a: &Attrs, local_as: u32) -> bool {
        a.as_path_contains(local_as)
            || a.as_path_contains(self.cfg.local_as)
            || a.originator_id == Some(self.cfg.router_id)
            || a.cluster_list.contains(&self.cfg.router_id)
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
        let (keep, log) = self.peers.get(&id).map_or((false, None), |p| {
            (
                p.info.keep_rejected,
                p.info.log_import_rejects.then_some(p.info.address),
            )
        });
        if let (None, false, Some(addr)) = (&post, looped, log) {
            let already = P::table_ref(self)
                .get(&prefix)
                .and_then(|ps| ps.get(id.0))
                .is_some_and(|r| r.post.is_none());
            if !already {
                ch.notices.push(format!(
                    "import policy rejected {} from peer {addr}",
                    prefix.to_prefix()
                ));
            }
        }
        if post.is_none() && !keep {
            self.set_route::<P>(prefix, id, None, ch);
        } else {
            self.set_route::<P>(prefix, id, Some((Arc::clone(pre), post)), ch);
        }
    }

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
            let looped = self.looped(&pre, local_as);
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
}

/// Treat-as-withdraw errors that need the session (the codec checks the
/// rest): confederation segments from outside our confederation (RFC 5065
/// 5, RFC 7606 7.2; flatnet is in none, so from any eBGP peer), a next
/// hop that is our own address (RFC 4271 6.3 a, RFC 7606 7.3), and from a
/// directly connected eBGP peer an IPv4 next hop that is neither the peer
/// nor on a shared subnet (RFC 4271 6.3 b).
fn session_error(info: &PeerInfo, base: &Attrs, u: &Update) -> Option<&'static str> {
    if info.is_ebgp() && base.as_path.has_confed_segment() {
        return Some("AS_CONFED segment from a peer outside the confederation");
    }
    if !u.nlri.is_empty() && u.next_hop().is_some_and(|a| info.is_own_address(a.into())) {
        return Some("NEXT_HOP is our own address");
    }
    if !u.nlri.is_empty() && u.next_hop().is_some_and(|a| !info.next_hop_is_reachable(a)) {
        return Some("NEXT_HOP is neither the eBGP peer nor on a subnet shared with it");
    }
    let own_mp = u
        .mp_reach()
        .filter(|m| !m.nlri.is_empty())
        .is_some_and(|m| match &m.next_hop {
            MpNextHop::Ipv4(a) => info.is_own_address((*a).into()),
            MpNextHop::Ipv6 { global, link_local } => {
                info.is_own_address((*global).into())
                    || link_local
                        .filter(|l| l.is_unicast_link_local())
                        .is_some_and(|l| info.is_own_address(l.into()))
            }
            MpNextHop::Raw(_) => false,
        });
    own_mp.then_some("MP_REACH next hop is our own address")
}
