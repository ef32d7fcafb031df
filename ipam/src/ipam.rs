//! IPAM operations over any [`Datastore`]. Every change is one
//! compare-and-swap transaction over the records it read; on a conflict the
//! operation re-reads and retries, so concurrent hosts (threads, processes or
//! machines) never both win the same block or address.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::{Serialize, de::DeserializeOwned};

use crate::cidr::Cidr;
use crate::model::{
    AllocatedAddr, Allocation, Block, Clock, Handle, Keys, MAX_BLOCK_BITS, Pool, SystemClock,
};
use crate::store::{Compare, Datastore, KeyValue, Op, Revision, StoreError, Txn};

/// Conflicting rounds after which an operation gives up.
const MAX_ATTEMPTS: u32 = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Errors of IPAM operations; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(
        "no free {family} address for host {host}: pool(s) {pools} are exhausted (every block is full and no unclaimed block is left); add a pool or release addresses"
    )]
    PoolExhausted {
        family: Family,
        host: String,
        pools: String,
    },
    #[error(
        "no free address for host {host} in pool {pool}: {reason}, and the pool is in strict-affinity mode, so borrowing from other hosts' blocks is not allowed; add a pool, raise max_blocks_per_host or turn strict affinity off"
    )]
    StrictAffinity {
        host: String,
        pool: String,
        reason: String,
    },
    #[error("unknown handle {handle} on host {host}: no allocation is recorded for it")]
    UnknownHandle { handle: Handle, host: String },
    #[error("no enabled {family} pool that host {host} may use{}", pool.as_ref().map(|p| format!(" (asked for pool {p})")).unwrap_or_default())]
    NoPool {
        family: Family,
        host: String,
        pool: Option<String>,
    },
    #[error("pool {name}: {reason}")]
    InvalidPool { name: String, reason: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("gave up after {0} attempts: other writers kept changing the same records")]
    Contention(u32),
    #[error("record {key} cannot be read: {reason}; run `check` and `repair`")]
    BadRecord { key: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IpamError {
    /// The datastore could not be reached (worth retrying later).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, IpamError::Store(StoreError::Unreachable { .. }))
    }
}

/// What to allocate.
#[derive(Clone, Debug)]
pub struct AllocRequest {
    pub handle: Handle,
    pub host: String,
    pub ipv4: bool,
    pub ipv6: bool,
    pub app: Option<String>,
    pub attrs: BTreeMap<String, String>,
    /// Only from this pool.
    pub pool: Option<String>,
}

impl AllocRequest {
    /// One IPv4 address.
    pub fn v4(handle: Handle, host: impl Into<String>) -> Self {
        AllocRequest {
            handle,
            host: host.into(),
            ipv4: true,
            ipv6: false,
            app: None,
            attrs: BTreeMap::new(),
            pool: None,
        }
    }
}

/// GC outcome for one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub released: Vec<Handle>,
    /// Missing from the live set, waiting out the grace period.
    pub pending: Vec<Handle>,
    /// Missing but created within the grace period: probably still being set up.
    pub in_flight: Vec<Handle>,
}

/// One problem found by [`Ipam::check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Issue {
    /// An allocation of a host that no longer exists.
    LeakedAllocation { host: String, handle: Handle },
    /// A block with affinity to a host that no longer exists.
    BlockOfDeadHost {
        block: Cidr,
        pool: String,
        host: String,
    },
    /// A block bit is set but no allocation names the address.
    OrphanAddress {
        ip: IpAddr,
        block: Cidr,
        pool: String,
    },
    /// An allocation names an address its block does not mark used.
    UnmarkedAddress {
        ip: IpAddr,
        host: String,
        handle: Handle,
    },
    /// Two allocations name the same address.
    Duplicate {
        ip: IpAddr,
        holders: Vec<(String, Handle)>,
    },
    /// A block whose pool is gone or does not contain it.
    StrayBlock { block: Cidr, pool: String },
    /// A record that does not decode.
    Unreadable { key: String, reason: String },
}

/// Addresses and blocks per pool, block and host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Utilisation {
    pub pools: Vec<PoolUsage>,
    pub blocks: Vec<BlockUsage>,
    pub hosts: Vec<HostUsage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    pub name: String,
    pub cidr: Cidr,
    pub blocks_total: u128,
    pub blocks_claimed: u64,
    pub allocated: u64,
    pub capacity: u128,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockUsage {
    pub cidr: Cidr,
    pub pool: String,
    pub host: Option<String>,
    pub allocated: u64,
    pub capacity: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostUsage {
    pub host: String,
    pub blocks: u64,
    pub allocated: u64,
    pub borrowed: u64,
}

/// What a host must advertise: its blocks as aggregates, borrowed
/// addresses as host routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostRoutes {
    pub blocks: Vec<Cidr>,
    pub borrowed: Vec<IpAddr>,
}

/// The IPAM over a datastore.
#[derive(Debug, Clone)]
pub struct Ipam<S> {
    store: S,
    keys: Keys,
    clock: Arc<dyn Clock>,
    /// Decoded blocks per pool by (key, mod_revision): an allocation reads
    /// every block of the pool, but usually only one changed since the last.
    cache: Arc<Mutex<BlockCache>>,
}

type BlockCache = HashMap<String, HashMap<String, (Revision, Block)>>;

/// Records come from a file or a network peer: decode them fallibly and
/// check what the arithmetic relies on.
trait Record: DeserializeOwned {
    fn valid(&self) -> bool {
        true
    }
}
impl Record for Block {
    fn valid(&self) -> bool {
        self.is_valid()
    }
}
impl Record for Pool {
    fn valid(&self) -> bool {
        self.is_valid()
    }
}
impl Record for Allocation {}

fn decode<T: Record>(kv: &KeyValue) -> Result<T, IpamError> {
    let v: T = serde_json::from_slice(&kv.value).map_err(|e| IpamError::BadRecord {
        key: kv.key.clone(),
        reason: e.to_string(),
    })?;
    if !v.valid() {
        return Err(IpamError::BadRecord {
            key: kv.key.clone(),
            reason: "values out of range".into(),
        });
    }
    Ok(v)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our records contain only strings, numbers and maps with string keys:
    // serialising them cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// FNV-1a: a stable hash so each host starts its block search at its own
/// place in the pool (fewer collisions when many hosts claim at once).
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

struct Pick {
    key: String,
    rev: Revision,
    block: Block,
    addr: AllocatedAddr,
}

struct PoolView {
    pool: Pool,
    blocks: Vec<(KeyValue, Block)>,
}

impl<S: Datastore> Ipam<S> {
    /// An IPAM under the default root `/flatnet/` with the system clock.
    pub fn new(store: S) -> Self {
        Self::with_clock(store, "/flatnet/", Arc::new(SystemClock))
    }

    pub fn with_clock(store: S, root: &str, clock: Arc<dyn Clock>) -> Self {
        Ipam {
            store,
            keys: Keys::new(root),
            clock,
            cache: Arc::default(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    // ---- pools ----

    /// Creates a pool; fails if it is malformed or overlaps an existing one.
    pub async fn create_pool(&self, pool: Pool) -> Result<(), IpamError> {
        let bad = |reason: String| IpamError::InvalidPool {
            name: pool.name.clone(),
            reason,
        };
        if pool.name.is_empty()
            || !pool
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad(
                "names use only letters, digits, '.', '_' and '-'".into()
            ));
        }
        let bits = pool.cidr.bits();
        if pool.block_prefix < pool.cidr.prefix() || pool.block_prefix > bits {
            return Err(bad(format!(
                "block size /{} must lie between the pool's /{} and /{bits}",
                pool.block_prefix,
                pool.cidr.prefix()
            )));
        }
        if bits - pool.block_prefix > MAX_BLOCK_BITS {
            return Err(bad(format!(
                "blocks of /{} hold more than {} addresses; use /{} or longer",
                pool.block_prefix,
                1u32 << MAX_BLOCK_BITS,
                bits - MAX_BLOCK_BITS
            )));
        }
        if (pool.reserved_low as u64 + pool.reserved_high as u64) >= pool.block_size() {
            return Err(bad(format!(
                "reserving {}+{} addresses leaves none in a block of {}",
                pool.reserved_low,
                pool.reserved_high,
                pool.block_size()
            )));
        }
        let existing = self.pools().await?;
        if let Some(o) = existing.iter().find(|p| {
            p.name != pool.name
                && (p.cidr.contains_cidr(&pool.cidr) || pool.cidr.contains_cidr(&p.cidr))
        }) {
            return Err(bad(format!(
                "{} overlaps pool {} ({})",
                pool.cidr, o.name, o.cidr
            )));
        }
        let key = self.keys.pool(&pool.name);
        let out = self
            .store
            .txn(
                Txn::new()
                    .when(Compare::absent(&key))
                    .then(Op::put(&key, encode(&pool))),
            )
            .await?;
        if !out.succeeded {
            return Err(bad("a pool of that name exists".into()));
        }
        Ok(())
    }

    /// Replaces a pool's settings (flags, limits, hosts); the CIDR and block
    /// size cannot change while blocks exist.
    pub async fn update_pool(&self, pool: Pool) -> Result<(), IpamError> {
        let key = self.keys.pool(&pool.name);
        let Some(kv) = self.store.get(&key).await? else {
            return Err(IpamError::InvalidPool {
                name: pool.name,
                reason: "no such pool".into(),
            });
        };
        let old: Pool = decode(&kv)?;
        if old.cidr != pool.cidr || old.block_prefix != pool.block_prefix {
            return Err(IpamError::InvalidPool {
                name: pool.name,
                reason: "the CIDR and block size of a pool cannot change".into(),
            });
        }
        let out = self
            .store
            .txn(
                Txn::new()
                    .when(Compare::unchanged(&key, kv.mod_revision))
                    .then(Op::put(&key, encode(&pool))),
            )
            .await?;
        if !out.succeeded {
            return Err(IpamError::Contention(1));
        }
        Ok(())
    }

    /// Deletes a pool that has no blocks left.
    pub async fn delete_pool(&self, name: &str) -> Result<(), IpamError> {
        let blocks = self.store.list(&self.keys.pool_blocks(name)).await?;
        if !blocks.kvs.is_empty() {
            return Err(IpamError::InvalidPool {
                name: name.into(),
                reason: format!("{} block(s) still in use", blocks.kvs.len()),
            });
        }
        let key = self.keys.pool(name);
        self.store.txn(Txn::new().then(Op::delete(key))).await?;
        Ok(())
    }

    pub async fn pools(&self) -> Result<Vec<Pool>, IpamError> {
        let l = self.store.list(&self.keys.pools()).await?;
        l.kvs.iter().map(decode).collect()
    }

    async fn pool_blocks(&self, pool: &str) -> Result<Vec<(KeyValue, Block)>, IpamError> {
        let l = self.store.list(&self.keys.pool_blocks(pool)).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let old = cache.remove(pool).unwrap_or_default();
        let mut fresh = HashMap::with_capacity(l.kvs.len());
        let mut out = Vec::with_capacity(l.kvs.len());
        for kv in l.kvs {
            let b = match old.get(&kv.key) {
                Some((rev, b)) if *rev == kv.mod_revision => b.clone(),
                _ => decode(&kv)?,
            };
            fresh.insert(kv.key.clone(), (kv.mod_revision, b.clone()));
            out.push((kv, b));
        }
        cache.insert(pool.to_string(), fresh);
        Ok(out)
    }

    // ---- allocation ----

    /// Allocates for `req.handle` on `req.host`; returns the existing
    /// allocation if the handle already has one (idempotent ADD).
    pub async fn allocate(&self, req: &AllocRequest) -> Result<Allocation, IpamError> {
        if req.handle.container_id.is_empty() || req.handle.ifname.is_empty() || req.host.is_empty()
        {
            return Err(IpamError::InvalidRequest(
                "container id, interface name and host must be non-empty".into(),
            ));
        }
        if !req.ipv4 && !req.ipv6 {
            return Err(IpamError::InvalidRequest(
                "ask for IPv4, IPv6 or both".into(),
            ));
        }
        let hkey = self.keys.handle(&req.host, &req.handle);
        for _ in 0..MAX_ATTEMPTS {
            if let Some(kv) = self.store.get(&hkey).await? {
                return decode(&kv);
            }
            let now = self.now();
            let pools = self.pools().await?;
            let mut picks = Vec::new();
            for (want, fam) in [(req.ipv4, Family::V4), (req.ipv6, Family::V6)] {
                if want {
                    picks.push(self.pick(req, fam, &pools, now).await?);
                }
            }
            let alloc = Allocation {
                handle: req.handle.clone(),
                host: req.host.clone(),
                app: req.app.clone(),
                attrs: req.attrs.clone(),
                addrs: picks.iter().map(|p| p.addr.clone()).collect(),
                created_at_ms: now,
                gc_missing_since_ms: None,
            };
            let mut txn = Txn::new().when(Compare::absent(&hkey));
            for p in &picks {
                txn = txn
                    .when(Compare::unchanged(&p.key, p.rev))
                    .then(Op::put(&p.key, encode(&p.block)));
            }
            txn = txn.then(Op::put(&hkey, encode(&alloc)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(alloc);
            }
            tokio::task::yield_now().await;
        }
        Err(IpamError::Contention(MAX_ATTEMPTS))
    }

    async fn pick(
        &self,
        req: &AllocRequest,
        fam: Family,
        pools: &[Pool],
        now: u64,
    ) -> Result<Pick, IpamError> {
        let host = req.host.as_str();
        let mut views = Vec::new();
        for p in pools {
            if p.cidr.is_ipv6() != (fam == Family::V6)
                || p.disabled
                || !p.allows(host)
                || req.pool.as_ref().is_some_and(|n| *n != p.name)
            {
                continue;
            }
            views.push(PoolView {
                pool: p.clone(),
                blocks: self.pool_blocks(&p.name).await?,
            });
        }
        if views.is_empty() {
            return Err(IpamError::NoPool {
                family: fam,
                host: host.into(),
                pool: req.pool.clone(),
            });
        }
        let take = |v: &PoolView, kv: &KeyValue, b: &Block, borrowed: bool| -> Option<Pick> {
            let off = b.first_free(v.pool.reserved_low, v.pool.reserved_high)?;
            let ip = b.cidr.nth(off as u128)?;
            let mut block = b.clone();
            block.set(off);
            block.empty_since_ms = None;
            Some(Pick {
                key: kv.key.clone(),
                rev: kv.mod_revision,
                block,
                addr: AllocatedAddr {
                    ip,
                    pool: v.pool.name.clone(),
                    block: b.cidr,
                    borrowed,
                },
            })
        };
        // 1. A free address in one of our own blocks.
        for v in &views {
            for (kv, b) in &v.blocks {
                if b.host.as_deref() == Some(host)
                    && let Some(p) = take(v, kv, b, false)
                {
                    return Ok(p);
                }
            }
        }
        // 2. Claim an unclaimed block (claim and allocation in one txn).
        let mut limited = None;
        for v in &views {
            let mine = v
                .blocks
                .iter()
                .filter(|(_, b)| b.host.as_deref() == Some(host))
                .count() as u64;
            if v.pool.max_blocks_per_host.is_some_and(|m| mine >= m as u64) {
                limited = Some(v.pool.name.clone());
                continue;
            }
            if let Some(cidr) = self.unclaimed_block(v, host) {
                let key = self.keys.block(&v.pool.name, &cidr);
                let fresh = Block::new(cidr, &v.pool.name, Some(host.to_string()), now);
                let kv = KeyValue {
                    key,
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 0,
                };
                if let Some(p) = take(v, &kv, &fresh, false) {
                    return Ok(p);
                }
            }
        }
        // 3. Borrow from another host's block, unless strict.
        let mut strict_blocked = None;
        for v in &views {
            for (kv, b) in &v.blocks {
                if b.host.as_deref() == Some(host)
                    || b.free(v.pool.reserved_low, v.pool.reserved_high) == 0
                {
                    continue;
                }
                if v.pool.strict_affinity {
                    strict_blocked.get_or_insert(v.pool.name.clone());
                    continue;
                }
                if let Some(p) = take(v, kv, b, true) {
                    return Ok(p);
                }
            }
        }
        if let Some(pool) = strict_blocked.or_else(|| {
            limited
                .as_ref()
                .filter(|n| {
                    views
                        .iter()
                        .any(|v| &v.pool.name == *n && v.pool.strict_affinity)
                })
                .cloned()
        }) {
            let v = views.iter().find(|v| v.pool.name == pool);
            let mine = v.map_or(0, |v| {
                v.blocks
                    .iter()
                    .filter(|(_, b)| b.host.as_deref() == Some(host))
                    .count()
            });
            let reason = if limited.as_deref() == Some(pool.as_str()) {
                format!(
                    "its {mine} block(s) are full and it may claim no more (max_blocks_per_host)"
                )
            } else {
                format!("its {mine} block(s) are full and no unclaimed block is left")
            };
            return Err(IpamError::StrictAffinity {
                host: host.into(),
                pool,
                reason,
            });
        }
        Err(IpamError::PoolExhausted {
            family: fam,
            host: host.into(),
            pools: views
                .iter()
                .map(|v| format!("{} ({})", v.pool.name, v.pool.cidr))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// An unclaimed block of the pool, searched from a per-host start point.
    fn unclaimed_block(&self, v: &PoolView, host: &str) -> Option<Cidr> {
        let n = v.pool.block_count();
        let taken: HashSet<Cidr> = v.blocks.iter().map(|(_, b)| b.cidr).collect();
        if (taken.len() as u128) >= n {
            return None;
        }
        let start = (fnv(&[host, &v.pool.name]) as u128) % n;
        // At most |taken| + 1 probes find a free index.
        for i in 0..=(taken.len() as u128) {
            let idx = (start + i) % n;
            let c = v.pool.cidr.subnet(v.pool.block_prefix, idx)?;
            if !taken.contains(&c) {
                return Some(c);
            }
        }
        None
    }

    /// The allocation of a handle, or [`IpamError::UnknownHandle`].
    pub async fn get(&self, host: &str, handle: &Handle) -> Result<Allocation, IpamError> {
        match self.store.get(&self.keys.handle(host, handle)).await? {
            Some(kv) => decode(&kv),
            None => Err(IpamError::UnknownHandle {
                handle: handle.clone(),
                host: host.into(),
            }),
        }
    }

    /// Replaces the app id and attributes of an existing allocation.
    pub async fn set_attrs(
        &self,
        host: &str,
        handle: &Handle,
        app: Option<String>,
        attrs: BTreeMap<String, String>,
    ) -> Result<Allocation, IpamError> {
        let key = self.keys.handle(host, handle);
        for _ in 0..MAX_ATTEMPTS {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(IpamError::UnknownHandle {
                    handle: handle.clone(),
                    host: host.into(),
                });
            };
            let mut a: Allocation = decode(&kv)?;
            a.app = app.clone();
            a.attrs = attrs.clone();
            let txn = Txn::new()
                .when(Compare::unchanged(&key, kv.mod_revision))
                .then(Op::put(&key, encode(&a)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(a);
            }
        }
        Err(IpamError::Contention(MAX_ATTEMPTS))
    }

    /// Releases a handle's addresses. Idempotent: releasing an unknown or
    /// already released handle returns `Ok(None)`.
    pub async fn release(
        &self,
        host: &str,
        handle: &Handle,
    ) -> Result<Option<Allocation>, IpamError> {
        let key = self.keys.handle(host, handle);
        for _ in 0..MAX_ATTEMPTS {
            let Some(kv) = self.store.get(&key).await? else {
                return Ok(None);
            };
            let alloc: Allocation = decode(&kv)?;
            if self.release_record(&kv, &alloc, None).await? {
                return Ok(Some(alloc));
            }
        }
        Err(IpamError::Contention(MAX_ATTEMPTS))
    }

    /// Releases several handles of one host in one transaction (an agent
    /// batching concurrent DELs): one commit instead of one per handle,
    /// which would all collide on the host's block. Unknown handles are
    /// skipped (idempotent); returns the allocations released.
    pub async fn release_many(
        &self,
        host: &str,
        handles: &[Handle],
    ) -> Result<Vec<Allocation>, IpamError> {
        let handles: BTreeSet<&Handle> = handles.iter().collect();
        for _ in 0..MAX_ATTEMPTS {
            let now = self.now();
            let mut txn = Txn::new();
            // Block key -> (revision read, block, whether a bit was cleared).
            let mut blocks: BTreeMap<String, (Revision, Option<Block>, bool)> = BTreeMap::new();
            let mut released = Vec::new();
            for h in &handles {
                let Some(kv) = self.store.get(&self.keys.handle(host, h)).await? else {
                    continue;
                };
                let alloc: Allocation = decode(&kv)?;
                txn = txn
                    .when(Compare::unchanged(&kv.key, kv.mod_revision))
                    .then(Op::delete(&kv.key));
                for a in &alloc.addrs {
                    let bkey = self.keys.block(&a.pool, &a.block);
                    if !blocks.contains_key(&bkey) {
                        let entry = match self.store.get(&bkey).await? {
                            Some(bkv) => (bkv.mod_revision, Some(decode::<Block>(&bkv)?), false),
                            None => (0, None, false),
                        };
                        blocks.insert(bkey.clone(), entry);
                    }
                    if let Some((_, Some(b), changed)) = blocks.get_mut(&bkey)
                        && let Some(off) = b.cidr.offset_of(a.ip)
                        && b.is_set(off as u64)
                    {
                        b.clear(off as u64);
                        *changed = true;
                    }
                }
                released.push(alloc);
            }
            if released.is_empty() {
                return Ok(released);
            }
            for (bkey, (rev, b, changed)) in blocks {
                txn = txn.when(Compare::unchanged(&bkey, rev));
                let Some(mut b) = b.filter(|_| changed) else {
                    continue;
                };
                if b.used() == 0 {
                    if b.host.is_none() {
                        txn = txn.then(Op::delete(&bkey));
                        continue;
                    }
                    b.empty_since_ms = Some(now);
                }
                txn = txn.then(Op::put(&bkey, encode(&b)));
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(released);
            }
            tokio::task::yield_now().await;
        }
        Err(IpamError::Contention(MAX_ATTEMPTS))
    }

    /// One attempt to delete an allocation record (or, with `keep`, to
    /// rewrite it with only those addresses) and clear its bits.
    async fn release_record(
        &self,
        kv: &KeyValue,
        alloc: &Allocation,
        keep: Option<&Allocation>,
    ) -> Result<bool, IpamError> {
        let now = self.now();
        let mut txn = Txn::new().when(Compare::unchanged(&kv.key, kv.mod_revision));
        for a in &alloc.addrs {
            if keep.is_some_and(|k| k.addrs.iter().any(|x| x.ip == a.ip)) {
                continue;
            }
            let bkey = self.keys.block(&a.pool, &a.block);
            let Some(bkv) = self.store.get(&bkey).await? else {
                txn = txn.when(Compare::absent(&bkey));
                continue;
            };
            let mut b: Block = decode(&bkv)?;
            txn = txn.when(Compare::unchanged(&bkey, bkv.mod_revision));
            let Some(off) = b.cidr.offset_of(a.ip) else {
                continue;
            };
            if !b.is_set(off as u64) {
                continue;
            }
            b.clear(off as u64);
            if b.used() == 0 {
                if b.host.is_none() {
                    txn = txn.then(Op::delete(&bkey));
                    continue;
                }
                b.empty_since_ms = Some(now);
            }
            txn = txn.then(Op::put(&bkey, encode(&b)));
        }
        txn = match keep {
            Some(k) if !k.addrs.is_empty() => txn.then(Op::put(&kv.key, encode(k))),
            _ => txn.then(Op::delete(&kv.key)),
        };
        Ok(self.store.txn(txn).await?.succeeded)
    }

    /// Allocations of one host.
    pub async fn host_allocations(&self, host: &str) -> Result<Vec<Allocation>, IpamError> {
        let l = self.store.list(&self.keys.host_handles(host)).await?;
        l.kvs.iter().map(decode).collect()
    }

    /// Every allocation record in the store.
    pub async fn all_allocations(&self) -> Result<Vec<Allocation>, IpamError> {
        let l = self.store.list(&self.keys.handles()).await?;
        l.kvs.iter().map(decode).collect()
    }

    /// Every block record in the store.
    pub async fn all_blocks(&self) -> Result<Vec<Block>, IpamError> {
        let l = self.store.list(&self.keys.blocks()).await?;
        l.kvs.iter().map(decode).collect()
    }

    /// Returns the host's empty blocks to the pool once they have been empty
    /// for the pool's grace period. Never removes a block with an address in
    /// use: the delete is guarded by the revision at which it was seen empty.
    pub async fn release_empty_blocks(&self, host: &str) -> Result<Vec<Cidr>, IpamError> {
        let now = self.now();
        let mut released = Vec::new();
        for pool in self.pools().await? {
            for (kv, mut b) in self.pool_blocks(&pool.name).await? {
                if b.host.as_deref() != Some(host) || b.used() != 0 {
                    continue;
                }
                let guard = Compare::unchanged(&kv.key, kv.mod_revision);
                match b.empty_since_ms {
                    Some(t) if now.saturating_sub(t) >= pool.empty_block_grace_ms => {
                        let txn = Txn::new().when(guard).then(Op::delete(&kv.key));
                        if self.store.txn(txn).await?.succeeded {
                            released.push(b.cidr);
                        }
                    }
                    Some(_) => {}
                    None => {
                        // Empty but never stamped (e.g. after repair): start the clock.
                        b.empty_since_ms = Some(now);
                        let txn = Txn::new().when(guard).then(Op::put(&kv.key, encode(&b)));
                        self.store.txn(txn).await?;
                    }
                }
            }
        }
        Ok(released)
    }

    /// Garbage collection for one host, given the handles the container
    /// runtime still knows (CNI GC). An allocation missing from `live` is
    /// first marked, and released only once it has been missing for
    /// `grace_ms`; one created less than `grace_ms` ago is in flight (its
    /// ADD may not have reached the runtime's list yet) and is left alone.
    pub async fn gc(
        &self,
        host: &str,
        live: &BTreeSet<Handle>,
        grace_ms: u64,
    ) -> Result<GcReport, IpamError> {
        let now = self.now();
        let mut report = GcReport::default();
        let l = self.store.list(&self.keys.host_handles(host)).await?;
        for kv in l.kvs {
            let mut a: Allocation = decode(&kv)?;
            let guard = Compare::unchanged(&kv.key, kv.mod_revision);
            if live.contains(&a.handle) {
                if a.gc_missing_since_ms.take().is_some() {
                    let txn = Txn::new().when(guard).then(Op::put(&kv.key, encode(&a)));
                    self.store.txn(txn).await?;
                }
                continue;
            }
            if now.saturating_sub(a.created_at_ms) < grace_ms {
                report.in_flight.push(a.handle);
                continue;
            }
            match a.gc_missing_since_ms {
                Some(t) if now.saturating_sub(t) >= grace_ms => {
                    // Guarded by the revision we read: if the handle was
                    // touched meanwhile, it is left for the next run.
                    if self.release_record(&kv, &a, None).await? {
                        report.released.push(a.handle);
                    } else {
                        report.pending.push(a.handle);
                    }
                }
                Some(_) => report.pending.push(a.handle),
                None => {
                    a.gc_missing_since_ms = Some(now);
                    let txn = Txn::new().when(guard).then(Op::put(&kv.key, encode(&a)));
                    self.store.txn(txn).await?;
                    report.pending.push(a.handle);
                }
            }
        }
        Ok(report)
    }

    /// What `host` advertises: its blocks, and its addresses that lie in
    /// blocks it does not own.
    pub async fn host_routes(&self, host: &str) -> Result<HostRoutes, IpamError> {
        let blocks = self.all_blocks().await?;
        let mine: Vec<Cidr> = blocks
            .iter()
            .filter(|b| b.host.as_deref() == Some(host))
            .map(|b| b.cidr)
            .collect();
        let mut borrowed = Vec::new();
        for a in self.host_allocations(host).await? {
            for x in a.addrs {
                if !mine.iter().any(|c| c.contains(x.ip)) {
                    borrowed.push(x.ip);
                }
            }
        }
        borrowed.sort();
        Ok(HostRoutes {
            blocks: mine,
            borrowed,
        })
    }

    /// Figures per pool, block and host.
    pub async fn utilisation(&self) -> Result<Utilisation, IpamError> {
        let pools = self.pools().await?;
        let blocks = self.all_blocks().await?;
        let allocs = self.all_allocations().await?;
        let mut u = Utilisation::default();
        for p in &pools {
            let pb: Vec<&Block> = blocks.iter().filter(|b| b.pool == p.name).collect();
            u.pools.push(PoolUsage {
                name: p.name.clone(),
                cidr: p.cidr,
                blocks_total: p.block_count(),
                blocks_claimed: pb.iter().filter(|b| b.host.is_some()).count() as u64,
                allocated: pb.iter().map(|b| b.used()).sum(),
                capacity: p.cidr.size(),
            });
        }
        let mut hosts: BTreeMap<String, HostUsage> = BTreeMap::new();
        for b in &blocks {
            u.blocks.push(BlockUsage {
                cidr: b.cidr,
                pool: b.pool.clone(),
                host: b.host.clone(),
                allocated: b.used(),
                capacity: b.size(),
            });
            if let Some(h) = &b.host {
                let e = hosts.entry(h.clone()).or_default();
                e.host = h.clone();
                e.blocks += 1;
            }
        }
        for a in &allocs {
            let e = hosts.entry(a.host.clone()).or_default();
            e.host = a.host.clone();
            for x in &a.addrs {
                e.allocated += 1;
                let own = blocks
                    .iter()
                    .any(|b| b.cidr == x.block && b.host.as_deref() == Some(a.host.as_str()));
                if !own {
                    e.borrowed += 1;
                }
            }
        }
        u.hosts = hosts.into_values().collect();
        Ok(u)
    }

    /// Cluster-wide consistency check. `live_hosts` is the set of hosts
    /// that exist; allocations and blocks of any other host are leaks.
    pub async fn check(&self, live_hosts: &BTreeSet<String>) -> Result<Vec<Issue>, IpamError> {
        let mut issues = Vec::new();
        let pools: BTreeMap<String, Pool> = {
            let l = self.store.list(&self.keys.pools()).await?;
            let mut m = BTreeMap::new();
            for kv in &l.kvs {
                match decode::<Pool>(kv) {
                    Ok(p) => {
                        m.insert(p.name.clone(), p);
                    }
                    Err(e) => issues.push(unreadable(kv, e)),
                }
            }
            m
        };
        let mut blocks = Vec::new();
        for kv in self.store.list(&self.keys.blocks()).await?.kvs {
            match decode::<Block>(&kv) {
                Ok(b) => blocks.push(b),
                Err(e) => issues.push(unreadable(&kv, e)),
            }
        }
        let mut allocs = Vec::new();
        for kv in self.store.list(&self.keys.handles()).await?.kvs {
            match decode::<Allocation>(&kv) {
                Ok(a) => allocs.push(a),
                Err(e) => issues.push(unreadable(&kv, e)),
            }
        }
        let mut holders: BTreeMap<IpAddr, Vec<(String, Handle)>> = BTreeMap::new();
        for a in &allocs {
            if !live_hosts.contains(&a.host) {
                issues.push(Issue::LeakedAllocation {
                    host: a.host.clone(),
                    handle: a.handle.clone(),
                });
            }
            for x in &a.addrs {
                holders
                    .entry(x.ip)
                    .or_default()
                    .push((a.host.clone(), a.handle.clone()));
                let marked = blocks.iter().any(|b| {
                    b.pool == x.pool
                        && b.cidr == x.block
                        && b.cidr.offset_of(x.ip).is_some_and(|o| b.is_set(o as u64))
                });
                if !marked {
                    issues.push(Issue::UnmarkedAddress {
                        ip: x.ip,
                        host: a.host.clone(),
                        handle: a.handle.clone(),
                    });
                }
            }
        }
        for (ip, h) in &holders {
            if h.len() > 1 {
                issues.push(Issue::Duplicate {
                    ip: *ip,
                    holders: h.clone(),
                });
            }
        }
        for b in &blocks {
            match pools.get(&b.pool) {
                Some(p) if p.cidr.contains_cidr(&b.cidr) && p.block_prefix == b.cidr.prefix() => {}
                _ => issues.push(Issue::StrayBlock {
                    block: b.cidr,
                    pool: b.pool.clone(),
                }),
            }
            if let Some(h) = &b.host
                && !live_hosts.contains(h)
            {
                issues.push(Issue::BlockOfDeadHost {
                    block: b.cidr,
                    pool: b.pool.clone(),
                    host: h.clone(),
                });
            }
            for ip in b.ips() {
                if !holders.contains_key(&ip) {
                    issues.push(Issue::OrphanAddress {
                        ip,
                        block: b.cidr,
                        pool: b.pool.clone(),
                    });
                }
            }
        }
        Ok(issues)
    }

    /// Fixes what [`Ipam::check`] finds, one guarded transaction per fix,
    /// and returns the issues still present afterwards (unreadable records
    /// and stray blocks with addresses in use need a human).
    pub async fn repair(&self, live_hosts: &BTreeSet<String>) -> Result<Vec<Issue>, IpamError> {
        // Several rounds: fixing one kind can reveal another (a released
        // leak may leave an empty block of a dead host).
        for _ in 0..8 {
            let issues = self.check(live_hosts).await?;
            let fixable = issues
                .iter()
                .any(|i| !matches!(i, Issue::Unreadable { .. } | Issue::StrayBlock { .. }));
            if !fixable {
                return Ok(issues);
            }
            for issue in issues {
                self.fix(issue).await?;
            }
        }
        self.check(live_hosts).await
    }

    async fn fix(&self, issue: Issue) -> Result<(), IpamError> {
        match issue {
            Issue::LeakedAllocation { host, handle } => {
                self.release(&host, &handle).await?;
            }
            Issue::Duplicate { ip, holders } => {
                // Keep the oldest holder; the others lose the address.
                let mut recs = Vec::new();
                for (host, h) in holders {
                    let key = self.keys.handle(&host, &h);
                    if let Some(kv) = self.store.get(&key).await? {
                        let a: Allocation = decode(&kv)?;
                        recs.push((kv, a));
                    }
                }
                recs.sort_by_key(|(kv, a)| (a.created_at_ms, kv.create_revision));
                for (kv, a) in recs.into_iter().skip(1) {
                    let mut rest = a.clone();
                    rest.addrs.retain(|x| x.ip != ip);
                    let txn = Txn::new().when(Compare::unchanged(&kv.key, kv.mod_revision));
                    let txn = if rest.addrs.is_empty() {
                        txn.then(Op::delete(&kv.key))
                    } else {
                        txn.then(Op::put(&kv.key, encode(&rest)))
                    };
                    self.store.txn(txn).await?;
                }
            }
            Issue::UnmarkedAddress { ip, host, handle } => {
                let key = self.keys.handle(&host, &handle);
                let Some(kv) = self.store.get(&key).await? else {
                    return Ok(());
                };
                let a: Allocation = decode(&kv)?;
                let Some(x) = a.addrs.iter().find(|x| x.ip == ip) else {
                    return Ok(());
                };
                let bkey = self.keys.block(&x.pool, &x.block);
                let (guard, mut b) = match self.store.get(&bkey).await? {
                    Some(bkv) => (
                        Compare::unchanged(&bkey, bkv.mod_revision),
                        decode::<Block>(&bkv)?,
                    ),
                    None => (
                        Compare::absent(&bkey),
                        Block::new(x.block, &x.pool, None, self.now()),
                    ),
                };
                if !b.is_valid() {
                    return Ok(());
                }
                if let Some(off) = b.cidr.offset_of(ip) {
                    b.set(off as u64);
                    b.empty_since_ms = None;
                    let txn = Txn::new()
                        .when(guard)
                        .when(Compare::unchanged(&key, kv.mod_revision))
                        .then(Op::put(&bkey, encode(&b)));
                    self.store.txn(txn).await?;
                }
            }
            Issue::OrphanAddress { ip, block, pool } => {
                // Re-check under a guard that no allocation appeared for it:
                // guarded by the block revision; allocations of this address
                // always rewrite the block, so a racing ADD makes this fail.
                let bkey = self.keys.block(&pool, &block);
                let Some(bkv) = self.store.get(&bkey).await? else {
                    return Ok(());
                };
                let mut b: Block = decode(&bkv)?;
                if let Some(off) = b.cidr.offset_of(ip) {
                    b.clear(off as u64);
                    let guard = Compare::unchanged(&bkey, bkv.mod_revision);
                    let txn = if b.used() == 0 && b.host.is_none() {
                        Txn::new().when(guard).then(Op::delete(&bkey))
                    } else {
                        if b.used() == 0 {
                            b.empty_since_ms = Some(self.now());
                        }
                        Txn::new().when(guard).then(Op::put(&bkey, encode(&b)))
                    };
                    self.store.txn(txn).await?;
                }
            }
            Issue::BlockOfDeadHost { block, pool, .. } => {
                let bkey = self.keys.block(&pool, &block);
                let Some(bkv) = self.store.get(&bkey).await? else {
                    return Ok(());
                };
                let mut b: Block = decode(&bkv)?;
                let guard = Compare::unchanged(&bkey, bkv.mod_revision);
                let txn = if b.used() == 0 {
                    Txn::new().when(guard).then(Op::delete(&bkey))
                } else {
                    b.host = None;
                    Txn::new().when(guard).then(Op::put(&bkey, encode(&b)))
                };
                self.store.txn(txn).await?;
            }
            Issue::StrayBlock { .. } | Issue::Unreadable { .. } => {}
        }
        Ok(())
    }
}

fn unreadable(kv: &KeyValue, e: IpamError) -> Issue {
    Issue::Unreadable {
        key: kv.key.clone(),
        reason: e.to_string(),
    }
}
