//! Per-family route storage: one hash map from prefix to the routes every
//! peer offers for it. This one table is Adj-RIB-In (pre and post policy,
//! per route) and Loc-RIB (flags on the routes) at once, so a route costs
//! one map slot plus two `Arc` pointers and no per-route allocation.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use super::attrs::Attrs;
use crate::wire::{Family, Ipv4Prefix, Ipv6Prefix, Prefix};

/// FxHash (rustc's hasher): prefixes are not attacker-chosen keys in a
/// way that matters here (a peer can only fill its own max-prefix quota),
/// and SipHash would dominate the insert cost.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(SEED);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Hash map with [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Route flag: best path of its prefix.
pub const BEST: u8 = 1;
/// Route flag: member of the multipath set.
pub const MULTIPATH: u8 = 2;
/// Route flag: stale (graceful restart), awaiting refresh or sweep.
pub const STALE: u8 = 4;

/// One peer's route for a prefix.
#[derive(Debug, Clone)]
pub struct Route {
    /// Attributes as received (Adj-RIB-In pre-policy).
    pub pre: Arc<Attrs>,
    /// Attributes after import policy; `None` = rejected (loop or policy).
    pub post: Option<Arc<Attrs>>,
    /// The peer (`u32::MAX` = locally originated).
    pub peer: u32,
    /// [`BEST`] | [`MULTIPATH`] | [`STALE`].
    pub flags: u8,
}

/// The routes for one prefix: inline when there is one (the common case).
#[derive(Debug, Clone)]
pub enum Paths {
    /// Exactly one route.
    One(Route),
    /// Two or more.
    Many(Box<Vec<Route>>),
}

impl Paths {
    /// All routes.
    pub fn as_slice(&self) -> &[Route] {
        match self {
            Paths::One(r) => std::slice::from_ref(r),
            Paths::Many(v) => v,
        }
    }
    /// All routes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [Route] {
        match self {
            Paths::One(r) => std::slice::from_mut(r),
            Paths::Many(v) => v,
        }
    }
    /// The route from `peer`.
    pub fn get(&self, peer: u32) -> Option<&Route> {
        self.as_slice().iter().find(|r| r.peer == peer)
    }
    /// Insert or replace the route from `r.peer`; returns the old one.
    pub fn upsert(&mut self, r: Route) -> Option<Route> {
        if let Some(x) = self.as_mut_slice().iter_mut().find(|x| x.peer == r.peer) {
            return Some(std::mem::replace(x, r));
        }
        let this = std::mem::replace(self, Paths::Many(Box::default()));
        *self = match this {
            Paths::One(o) => Paths::Many(Box::new(vec![o, r])),
            Paths::Many(mut v) => {
                v.push(r);
                Paths::Many(v)
            }
        };
        None
    }
    /// Remove the route from `peer`. The last route is left in place
    /// ([`Removal::Last`]): the caller removes the whole entry.
    pub fn remove(&mut self, peer: u32) -> Removal {
        match self {
            Paths::One(r) if r.peer == peer => Removal::Last,
            Paths::One(_) => Removal::NotFound,
            Paths::Many(v) => {
                let Some(i) = v.iter().position(|r| r.peer == peer) else {
                    return Removal::NotFound;
                };
                let old = v.swap_remove(i);
                if v.len() == 1
                    && let Some(only) = v.pop()
                {
                    *self = Paths::One(only);
                }
                Removal::Removed(old)
            }
        }
    }
}

/// Outcome of [`Paths::remove`].
#[derive(Debug)]
pub enum Removal {
    /// The peer had no route here.
    NotFound,
    /// Removed; other routes remain.
    Removed(Route),
    /// It is the only route: remove the map entry instead.
    Last,
}

/// A prefix type the RIB keeps a table for.
pub trait RibPrefix: Copy + Eq + Hash + Ord + Debug + Send + Sync + 'static {
    /// Its address family.
    const FAMILY: Family;
    /// As the family-independent enum.
    fn to_prefix(self) -> Prefix;
}

impl RibPrefix for Ipv4Prefix {
    const FAMILY: Family = Family::IPV4_UNICAST;
    fn to_prefix(self) -> Prefix {
        Prefix::V4(self)
    }
}

impl RibPrefix for Ipv6Prefix {
    const FAMILY: Family = Family::IPV6_UNICAST;
    fn to_prefix(self) -> Prefix {
        Prefix::V6(self)
    }
}

/// Shards per table (a power of two).
const SHARDS: usize = 16;

/// All routes of one family: a hash map split into `SHARDS` (16) maps by a
/// few hash bits. A full table grows one shard at a time, so a resize holds
/// the old and new buckets of 1/16 of the table at once rather than the
/// whole table's (which was a quarter of the peak RSS at a million routes).
#[derive(Debug, Clone)]
pub struct Table<P> {
    shards: Box<[FxMap<P, Paths>]>,
    len: usize,
}

impl<P: RibPrefix> Default for Table<P> {
    fn default() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| FxMap::default()).collect(),
            len: 0,
        }
    }
}

impl<P: RibPrefix> Table<P> {
    /// The shard of `k`: bits 32.. of its hash, which neither hashbrown's
    /// bucket index (low bits) nor its control byte (top 7 bits) uses at
    /// realistic sizes, so every shard keeps a full-entropy hash.
    fn shard(k: &P) -> usize {
        let mut h = FxHasher::default();
        k.hash(&mut h);
        (h.finish() >> 32) as usize & (SHARDS - 1)
    }

    /// The routes for `k`.
    pub fn get(&self, k: &P) -> Option<&Paths> {
        self.shards.get(Self::shard(k))?.get(k)
    }

    /// The routes for `k`, mutable.
    pub fn get_mut(&mut self, k: &P) -> Option<&mut Paths> {
        self.shards.get_mut(Self::shard(k))?.get_mut(k)
    }

    /// Insert or replace the entry for `k`; returns the old one.
    pub fn insert(&mut self, k: P, v: Paths) -> Option<Paths> {
        let shard = self.shards.get_mut(Self::shard(&k))?;
        let old = shard.insert(k, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Remove the entry for `k`.
    pub fn remove(&mut self, k: &P) -> Option<Paths> {
        let old = self.shards.get_mut(Self::shard(k))?.remove(k);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Number of prefixes with at least one route.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No prefixes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All entries (shard by shard; unordered).
    pub fn iter(&self) -> impl Iterator<Item = (&P, &Paths)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// All route sets.
    pub fn values(&self) -> impl Iterator<Item = &Paths> {
        self.shards.iter().flat_map(|s| s.values())
    }

    /// All route sets, mutable.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Paths> {
        self.shards.iter_mut().flat_map(|s| s.values_mut())
    }
}
