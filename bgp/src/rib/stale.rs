//! Graceful restart (RFC 4724) and enhanced route refresh (RFC 7313):
//! marking a peer's routes stale and sweeping the ones not refreshed.

use super::table::STALE;
use super::{Changes, Fam, PeerId, Rib};
use crate::wire::{Family, Ipv4Prefix, Ipv6Prefix};

impl Rib {
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

    /// Remove the peer's routes in `family` (only the stale ones with `only_stale`).
    pub(super) fn remove_peer_routes(
        &mut self,
        id: PeerId,
        family: Family,
        only_stale: bool,
    ) -> Changes {
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
}
