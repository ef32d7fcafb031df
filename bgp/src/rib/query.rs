//! Read-only queries for `show` output, the agent and stats.

use std::sync::Arc;

use super::decision::{self, Candidate};
use super::table::{BEST, MULTIPATH, Route, STALE, Table};
use super::{Attrs, Fam, Path, PeerId, PrefixCounts, Rib};
use crate::wire::{Family, Prefix};

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

impl Rib {
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
        self.collect_sorted(
            |r| r.flags & BEST != 0,
            |r| {
                r.post.clone().map(|a| Path {
                    peer: PeerId(r.peer),
                    attrs: a,
                })
            },
        )
    }

    /// Number of prefixes with a best path.
    pub fn loc_rib_len(&self) -> usize {
        self.best_count
    }

    /// Adj-RIB-In before import policy for a peer, sorted.
    pub fn adj_rib_in_pre(&self, id: PeerId) -> Vec<(Prefix, Arc<Attrs>)> {
        self.collect_sorted(|r| r.peer == id.0, |r| Some(Arc::clone(&r.pre)))
    }

    /// Adj-RIB-In after import policy (accepted routes only) for a peer, sorted.
    pub fn adj_rib_in_post(&self, id: PeerId) -> Vec<(Prefix, Arc<Attrs>)> {
        self.collect_sorted(|r| r.peer == id.0, |r| r.post.clone())
    }

    /// Both families' routes passing `keep`, mapped by `f`, sorted by prefix.
    fn collect_sorted<T>(
        &self,
        keep: impl Fn(&Route) -> bool,
        f: impl Fn(&Route) -> Option<T>,
    ) -> Vec<(Prefix, T)> {
        let mut v = Vec::new();
        collect(&self.v4, &mut v, &keep, &f);
        collect(&self.v6, &mut v, &keep, &f);
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
