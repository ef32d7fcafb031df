//! The pure part of nexthop objects: which kernel nexthop objects flatnet's
//! learned routes need, their ids (from flatnet's own range), and which
//! ones no route uses any more. One object per (gateway, interface), one
//! group object per distinct ECMP set: 100k prefixes over the same two ToRs
//! share one group, and a ToR going away is one group change, not 100k
//! route changes. No netlink here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::plan::{NextHop, NextHops};

/// First id of flatnet's range (200 << 24, after its route protocol): ids
/// other daemons pick (FRR counts up from small numbers) stay clear of it.
pub const NH_ID_BASE: u32 = 200 << 24;
/// One past the last id of the range.
pub const NH_ID_END: u32 = NH_ID_BASE + (1 << 24);

/// A nexthop object's key: a gateway on an interface (the kernel needs
/// the interface for every gateway object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NhKey {
    pub gateway: IpAddr,
    pub ifindex: u32,
}

impl NhKey {
    /// The plan's next hop: the interface only for a link-local gateway.
    pub fn hop(&self) -> NextHop {
        let h = NextHop::via(self.gateway);
        if h.is_link_local() {
            NextHop {
                gateway: self.gateway,
                ifindex: Some(self.ifindex),
            }
        } else {
            h
        }
    }
}

/// An object to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NhSpec {
    /// A gateway on an interface.
    One(NhKey),
    /// A multipath group of these objects (equal weights).
    Group(BTreeSet<u32>),
}

#[derive(Debug, Clone)]
struct Obj {
    spec: NhSpec,
    /// Routes using it, and (for a single object) groups holding it.
    refs: usize,
}

/// flatnet's nexthop objects as it knows them.
#[derive(Debug, Default)]
pub struct NhTable {
    ones: BTreeMap<NhKey, u32>,
    groups: BTreeMap<BTreeSet<u32>, u32>,
    objs: BTreeMap<u32, Obj>,
    /// Ids in use by someone else (never allocated).
    foreign: BTreeSet<u32>,
    /// Objects whose last reference went (or adopted without one).
    unused: BTreeSet<u32>,
    next: u32,
}

impl NhTable {
    /// A table that never hands out the ids in `foreign`.
    pub fn new(foreign: impl IntoIterator<Item = u32>) -> NhTable {
        NhTable {
            foreign: foreign.into_iter().collect(),
            next: NH_ID_BASE,
            ..NhTable::default()
        }
    }

    /// Never hands out `id` (someone else's, or one flatnet could not
    /// create or delete).
    pub fn reserve(&mut self, id: u32) {
        self.foreign.insert(id);
    }

    /// Whether `id` is a known object of ours.
    pub fn contains(&self, id: u32) -> bool {
        self.objs.contains_key(&id)
    }

    /// How many objects (for logs and tests).
    pub fn len(&self) -> usize {
        self.objs.len()
    }

    /// No objects.
    pub fn is_empty(&self) -> bool {
        self.objs.is_empty()
    }

    /// Takes over a gateway object a previous run left (no reference yet).
    pub fn adopt_one(&mut self, id: u32, key: NhKey) {
        if self.objs.contains_key(&id) || self.ones.contains_key(&key) {
            // A duplicate of one we know: unused, so swept.
            self.foreign.insert(id);
            return;
        }
        self.ones.insert(key, id);
        self.objs.insert(
            id,
            Obj {
                spec: NhSpec::One(key),
                refs: 0,
            },
        );
        self.unused.insert(id);
    }

    /// Takes over a group a previous run left; false (not adopted) when a
    /// member is not one of ours or the same set is known already.
    pub fn adopt_group(&mut self, id: u32, members: BTreeSet<u32>) -> bool {
        let ours = members
            .iter()
            .all(|m| matches!(self.objs.get(m), Some(o) if matches!(o.spec, NhSpec::One(_))));
        if !ours || members.len() < 2 || self.groups.contains_key(&members) {
            return false;
        }
        for m in &members {
            self.take(*m);
        }
        self.groups.insert(members.clone(), id);
        self.objs.insert(
            id,
            Obj {
                spec: NhSpec::Group(members),
                refs: 0,
            },
        );
        self.unused.insert(id);
        true
    }

    /// The next hops of object `id`.
    pub fn hops_of(&self, id: u32) -> Option<NextHops> {
        match &self.objs.get(&id)?.spec {
            NhSpec::One(k) => Some([k.hop()].into()),
            NhSpec::Group(m) => m
                .iter()
                .map(|i| match self.objs.get(i).map(|o| &o.spec) {
                    Some(NhSpec::One(k)) => Some(k.hop()),
                    _ => None,
                })
                .collect(),
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        let span = NH_ID_END - NH_ID_BASE;
        for _ in 0..span {
            let id = self.next;
            self.next = if id + 1 >= NH_ID_END {
                NH_ID_BASE
            } else {
                id + 1
            };
            if !self.objs.contains_key(&id) && !self.foreign.contains(&id) {
                return Some(id);
            }
        }
        None
    }

    fn take(&mut self, id: u32) {
        if let Some(o) = self.objs.get_mut(&id) {
            o.refs += 1;
            self.unused.remove(&id);
        }
    }

    fn one(&mut self, key: NhKey, create: &mut Vec<(u32, NhSpec)>) -> Option<u32> {
        if let Some(id) = self.ones.get(&key) {
            return Some(*id);
        }
        let id = self.alloc()?;
        self.ones.insert(key, id);
        self.objs.insert(
            id,
            Obj {
                spec: NhSpec::One(key),
                refs: 0,
            },
        );
        self.unused.insert(id);
        create.push((id, NhSpec::One(key)));
        Some(id)
    }

    /// The object for a route over `keys`, with one reference taken for
    /// the route; new objects are appended to `create` (single objects
    /// before the groups holding them). `None`: no id left or no keys.
    pub fn acquire(
        &mut self,
        keys: &BTreeSet<NhKey>,
        create: &mut Vec<(u32, NhSpec)>,
    ) -> Option<u32> {
        let id = match keys.len() {
            0 => return None,
            1 => keys.first().and_then(|k| self.one(*k, create))?,
            _ => {
                let mut members = BTreeSet::new();
                for k in keys {
                    members.insert(self.one(*k, create)?);
                }
                match self.groups.get(&members) {
                    Some(g) => *g,
                    None => {
                        let g = self.alloc()?;
                        for m in &members {
                            self.take(*m);
                        }
                        self.groups.insert(members.clone(), g);
                        self.objs.insert(
                            g,
                            Obj {
                                spec: NhSpec::Group(members.clone()),
                                refs: 0,
                            },
                        );
                        create.push((g, NhSpec::Group(members)));
                        g
                    }
                }
            }
        };
        self.take(id);
        Some(id)
    }

    /// One more route uses object `id` (an adopted route); false if unknown.
    pub fn acquire_id(&mut self, id: u32) -> bool {
        let known = self.contains(id);
        self.take(id);
        known
    }

    /// A route stopped using object `id`.
    pub fn release(&mut self, id: u32) {
        if let Some(o) = self.objs.get_mut(&id) {
            o.refs = o.refs.saturating_sub(1);
            if o.refs == 0 {
                self.unused.insert(id);
            }
        }
    }

    /// The kernel refused to create `id`: it is not there, so nothing may
    /// use it (the routes that would fall back to plain next hops).
    pub fn forget(&mut self, id: u32) {
        let Some(o) = self.objs.remove(&id) else {
            return;
        };
        self.unused.remove(&id);
        match o.spec {
            NhSpec::One(k) => {
                self.ones.remove(&k);
                let dead: Vec<u32> = self
                    .groups
                    .iter()
                    .filter(|(m, _)| m.contains(&id))
                    .map(|(_, g)| *g)
                    .collect();
                for g in dead {
                    self.forget(g);
                }
            }
            NhSpec::Group(m) => {
                self.groups.remove(&m);
                for i in m {
                    self.release(i);
                }
            }
        }
    }

    /// Objects nothing uses any more, taken out of the table: groups
    /// first (a group's members are still in it), then single objects.
    pub fn garbage(&mut self) -> Vec<u32> {
        let mut groups = Vec::new();
        let mut ones = Vec::new();
        // Groups first: dropping one may free its members.
        for id in std::mem::take(&mut self.unused) {
            match self.objs.get(&id) {
                Some(o) if o.refs == 0 && matches!(o.spec, NhSpec::Group(_)) => groups.push(id),
                Some(o) if o.refs == 0 => ones.push(id),
                _ => {}
            }
        }
        for g in &groups {
            if let Some(Obj {
                spec: NhSpec::Group(m),
                ..
            }) = self.objs.remove(g)
            {
                self.groups.remove(&m);
                for i in m {
                    if let Some(o) = self.objs.get_mut(&i) {
                        o.refs = o.refs.saturating_sub(1);
                        if o.refs == 0 && !ones.contains(&i) {
                            ones.push(i);
                        }
                    }
                }
            }
        }
        for i in &ones {
            if let Some(Obj {
                spec: NhSpec::One(k),
                ..
            }) = self.objs.remove(i)
            {
                self.ones.remove(&k);
            }
        }
        groups.extend(ones);
        groups
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn k(gw: &str, ifindex: u32) -> NhKey {
        NhKey {
            gateway: gw.parse().unwrap(),
            ifindex,
        }
    }

    fn keys(ks: &[NhKey]) -> BTreeSet<NhKey> {
        ks.iter().copied().collect()
    }

    #[test]
    fn ecmp_over_two_tors_is_one_group_shared_by_every_prefix() {
        let mut t = NhTable::new([]);
        let both = keys(&[k("10.1.1.1", 2), k("10.2.1.1", 3)]);
        let mut create = Vec::new();
        let g = t.acquire(&both, &mut create).unwrap();
        // Two gateway objects, then the group holding them.
        assert_eq!(create.len(), 3, "{create:?}");
        assert!(matches!(create[0].1, NhSpec::One(_)));
        assert!(matches!(create[1].1, NhSpec::One(_)));
        assert_eq!(
            create[2],
            (g, NhSpec::Group([create[0].0, create[1].0].into()))
        );
        assert!((NH_ID_BASE..NH_ID_END).contains(&g));
        // 999 more prefixes over the same ToRs: the same group, nothing new.
        let mut more = Vec::new();
        for _ in 0..999 {
            assert_eq!(t.acquire(&both, &mut more), Some(g));
        }
        assert!(more.is_empty(), "{more:?}");
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.hops_of(g).unwrap(),
            [
                NextHop::via("10.1.1.1".parse().unwrap()),
                NextHop::via("10.2.1.1".parse().unwrap())
            ]
            .into()
        );
        // One ToR gone: routes move to the single object (no new one), the
        // group goes once the last route left it, the lone gateway stays.
        let one = keys(&[k("10.1.1.1", 2)]);
        let mut c = Vec::new();
        let o = t.acquire(&one, &mut c).unwrap();
        assert!(c.is_empty());
        assert_eq!(o, create[0].0);
        for _ in 0..999 {
            t.release(g);
        }
        assert!(t.garbage().is_empty(), "still one route on the group");
        t.release(g);
        assert_eq!(t.garbage(), vec![g, create[1].0]);
        assert!(t.contains(o) && !t.contains(g));
        t.release(o);
        assert_eq!(t.garbage(), vec![o]);
        assert!(t.is_empty());
    }

    #[test]
    fn ids_skip_other_daemons_and_refused_objects_are_forgotten() {
        let mut t = NhTable::new([NH_ID_BASE, NH_ID_BASE + 1]);
        let mut c = Vec::new();
        let a = t
            .acquire(&keys(&[k("fe80::1", 7), k("fe80::2", 8)]), &mut c)
            .unwrap();
        let ids: Vec<u32> = c.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, vec![NH_ID_BASE + 2, NH_ID_BASE + 3, NH_ID_BASE + 4]);
        assert_eq!(a, NH_ID_BASE + 4);
        // The kernel refused the second gateway: the group cannot exist
        // either; the first gateway is unused and swept.
        t.forget(NH_ID_BASE + 3);
        assert!(!t.contains(a));
        assert_eq!(t.garbage(), vec![NH_ID_BASE + 2]);
        assert!(t.is_empty());
    }

    #[test]
    fn adopted_objects_are_reused_and_unused_ones_swept() {
        let mut t = NhTable::new([5]);
        let (a, b, c) = (NH_ID_BASE + 10, NH_ID_BASE + 11, NH_ID_BASE + 12);
        t.adopt_one(a, k("10.1.1.1", 2));
        t.adopt_one(b, k("10.2.1.1", 3));
        assert!(t.adopt_group(c, [a, b].into()));
        // A group with a member that is not ours is not adopted.
        assert!(!t.adopt_group(NH_ID_BASE + 13, [a, 5].into()));
        // An adopted route on the group.
        assert!(t.acquire_id(c));
        let mut create = Vec::new();
        let both = keys(&[k("10.1.1.1", 2), k("10.2.1.1", 3)]);
        assert_eq!(t.acquire(&both, &mut create), Some(c));
        assert!(create.is_empty(), "{create:?}");
        assert!(t.garbage().is_empty());
        // New ids never collide with adopted ones.
        let n = t.acquire(&keys(&[k("10.3.1.1", 4)]), &mut create).unwrap();
        assert!(![a, b, c].contains(&n));
    }
}
