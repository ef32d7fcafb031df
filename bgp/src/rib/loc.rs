//! Loc-RIB: storing a route, rerunning the decision process for its
//! prefix (best path and multipath set) and reporting what changed.

use std::sync::Arc;

use super::decision::{self, Candidate, Source};
use super::table::{BEST, MULTIPATH, Paths, Removal, Route, STALE};
use super::{Attrs, Changes, Fam, LocRibChange, Path, PeerId, Rib};

/// Best path and multipath members as (peer, attrs pointer): what a change compares.
#[derive(PartialEq, Eq)]
struct Snapshot {
    best: Option<(u32, usize)>,
    multi: Vec<(u32, usize)>,
}

/// An interned set's identity (interning makes pointer equality value equality).
pub(super) fn ptr(a: &Arc<Attrs>) -> usize {
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

impl Rib {
    /// What the decision process knows about the origin of a route (`None`: peer forgotten).
    pub(super) fn source(&self, peer: u32) -> Option<&Source> {
        if peer == PeerId::LOCAL.0 {
            Some(&self.local)
        } else {
            self.peers.get(&PeerId(peer)).map(|p| &p.source)
        }
    }

    /// Store (`Some`) or remove (`None`) the route of `id` for `prefix`,
    /// rerun the decision process and propagate a change.
    pub(super) fn set_route<P: Fam>(
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
}
