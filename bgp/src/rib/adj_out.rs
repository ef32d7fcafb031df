//! Adj-RIB-Out: per peer and family, what was sent and what changed
//! since, packed into UPDATEs when the session driver takes them.

use std::collections::HashMap;
use std::sync::Arc;

use super::loc::ptr;
use super::table::FxMap;
use super::{Attrs, Changes, Fam, PeerId, Rib, RibError};
use crate::wire::{
    AttrValue, Family, MpNextHop, MpNlri, Nlri4, Nlri6, PathAttribute, Update, pack_ipv4, pack_mp,
    pack_withdraw_ipv4, pack_withdraw_mp,
};

/// Adj-RIB-Out of one family for one peer.
#[derive(Debug, Default)]
pub(super) struct Out<P> {
    pub(super) sent: FxMap<P, Arc<Attrs>>,
    /// Prefixes changed since the last `take_updates` (may repeat; deduplicated on drain).
    pub(super) dirty: Vec<P>,
    pub(super) eor: bool,
}

impl Rib {
    /// Record what `q` gets for `prefix` (`None` = withdrawn) and queue it
    /// for [`Rib::take_updates`] when it differs from what was sent.
    pub(super) fn set_out<P: Fam>(
        &mut self,
        q: PeerId,
        prefix: P,
        out: Option<Arc<Attrs>>,
        ch: &mut Changes,
    ) {
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::rib::Interner;
    use crate::wire::{Ipv4Prefix, PrefixLenError};

    fn p(a: u8) -> Result<Ipv4Prefix, PrefixLenError> {
        Ipv4Prefix::new(Ipv4Addr::new(10, 0, a, 0), 24)
    }

    /// Repeated changes coalesce, withdrawals are what is no longer sent, and
    /// announcements are grouped by shared attribute set in prefix order.
    #[test]
    fn drain_dedups_splits_withdrawals_and_groups_by_attribute_set() -> Result<(), PrefixLenError> {
        let mut interner = Interner::default();
        let a1 = interner.intern(Attrs {
            med: Some(1),
            ..Attrs::default()
        });
        let a2 = interner.intern(Attrs {
            med: Some(2),
            ..Attrs::default()
        });
        let (a, b, c, d) = (p(1)?, p(2)?, p(3)?, p(4)?);
        let mut o = Out::<Ipv4Prefix>::default();
        o.sent.insert(c, Arc::clone(&a2));
        o.sent.insert(b, Arc::clone(&a1));
        o.sent.insert(a, Arc::clone(&a1));
        o.dirty = vec![c, a, d, a, b, d];

        let (wd, groups) = drain(&mut o);

        assert_eq!(wd, vec![d]);
        assert_eq!(groups.len(), 2);
        assert!(Arc::ptr_eq(&groups[0].0, &a1));
        assert_eq!(groups[0].1, vec![a, b]);
        assert!(Arc::ptr_eq(&groups[1].0, &a2));
        assert_eq!(groups[1].1, vec![c]);
        assert!(o.dirty.is_empty(), "the dirty set is consumed");
        assert_eq!(o.sent.len(), 3, "what was sent stays recorded");
        Ok(())
    }

    #[test]
    fn drain_of_nothing_is_nothing() {
        let mut o = Out::<Ipv4Prefix>::default();
        let (wd, groups) = drain(&mut o);
        assert!(wd.is_empty() && groups.is_empty());
    }
}
