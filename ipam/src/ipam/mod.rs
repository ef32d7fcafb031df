//! IPAM operations over any [`Datastore`]. Every change is one
//! compare-and-swap transaction over the records it read; on a conflict the
//! operation re-reads and retries, so concurrent hosts (threads, processes or
//! machines) never both win the same block or address.
//!
//! One module per job: `pool` (pool records and the block cache), `claim`
//! (choosing an address: own block, claiming a block, borrowing), `alloc`
//! (allocate / release by handle), `gc` (grace, GC from a live set,
//! empty-block release), `check` (cluster check and repair), `usage`
//! (utilisation and what a host advertises).

mod alloc;
mod check;
mod claim;
mod gc;
mod pool;
mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Serialize, de::DeserializeOwned};

use crate::model::{Allocation, Block, Clock, Handle, Keys, Pool, SystemClock};
use crate::store::{Datastore, KeyValue, Revision, StoreError};

pub use check::Issue;
pub use gc::GcReport;
pub use usage::{BlockUsage, HostRoutes, HostUsage, PoolUsage, Utilisation};

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
}
