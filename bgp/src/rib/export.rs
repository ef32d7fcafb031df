//! Export rewriting: what each peer gets for a best route (split
//! horizon, well-known communities, export policy, AS prepend, next hop
//! self), and recomputing a peer's whole Adj-RIB-Out.

use std::sync::Arc;

use super::loc::ptr;
use super::table::{BEST, FxMap};
use super::{Attrs, Changes, Fam, PeerId, PeerInfo, Rib, RibError};
use crate::policy::{Disposition, Policy};
use crate::wire::{Community, Family, Ipv4Prefix, Ipv6Prefix, MpNextHop};

/// Export cache key: (source attrs ptr, source peer, deciding term, family
/// is IPv6) — the next hop we set depends on the family.
pub(super) type ExportKey = (usize, u32, Option<usize>, bool);

impl Rib {
    /// Update every up peer's Adj-RIB-Out for `prefix` given its new best route.
    pub(super) fn export_prefix<P: Fam>(
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
            x.as_path.remove_confed_segments();
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
    pub(super) fn full_export<P: Fam>(&mut self, q: PeerId, resend: bool, ch: &mut Changes) {
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    fn info() -> PeerInfo {
        PeerInfo::new(
            65000,
            65001,
            Ipv4Addr::new(10, 0, 0, 2),
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)),
        )
    }

    const V4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    #[test]
    fn ipv4_routes_get_our_ipv4_address() {
        let mut i = info();
        i.local_v4 = Some(V4);
        i.local_v6 = Some(V6);
        assert_eq!(
            self_next_hop(&i, Family::IPV4_UNICAST),
            Some(MpNextHop::Ipv4(V4))
        );
    }

    #[test]
    fn ipv4_routes_without_ipv4_need_extended_next_hop() {
        let mut i = info();
        i.local_v6 = Some(V6);
        i.local_v6_link_local = Some(LL);
        assert_eq!(self_next_hop(&i, Family::IPV4_UNICAST), None);
        i.encode.extended_next_hop_ipv4 = true;
        assert_eq!(
            self_next_hop(&i, Family::IPV4_UNICAST),
            Some(MpNextHop::Ipv6 {
                global: V6,
                link_local: Some(LL),
            })
        );
    }

    #[test]
    fn ipv6_routes_prefer_ipv6_then_ipv4_mapped() {
        let mut i = info();
        assert_eq!(self_next_hop(&i, Family::IPV6_UNICAST), None);
        i.local_v4 = Some(V4);
        assert_eq!(
            self_next_hop(&i, Family::IPV6_UNICAST),
            Some(MpNextHop::Ipv6 {
                global: V4.to_ipv6_mapped(),
                link_local: None,
            })
        );
        i.local_v6 = Some(V6);
        assert_eq!(
            self_next_hop(&i, Family::IPV6_UNICAST),
            Some(MpNextHop::Ipv6 {
                global: V6,
                link_local: None,
            })
        );
    }
}
