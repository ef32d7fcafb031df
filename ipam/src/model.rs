//! Records stored in the datastore, their keys, and the clock.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;

/// Largest block: 2^12 = 4096 addresses, so a block record stays a few
/// hundred bytes.
pub const MAX_BLOCK_BITS: u8 = 12;

/// Milliseconds since the Unix epoch. Records are shared between processes
/// and machines, so times are wall-clock, and always passed in (never read
/// inside the model) so grace periods are testable without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock tests move by hand; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start_ms)))
    }
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What an allocation belongs to: the CNI (container id, interface name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Handle {
    pub container_id: String,
    pub ifname: String,
}

impl Handle {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Handle {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// An address pool. Stored for the agent to act on: `no_bgp_export` and
/// `nat_outgoing` mean nothing to the IPAM itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    pub cidr: Cidr,
    /// Prefix length of the blocks the pool is carved into.
    pub block_prefix: u8,
    /// Hosts allowed to use the pool; `None` = every host.
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub no_bgp_export: bool,
    #[serde(default)]
    pub nat_outgoing: bool,
    /// Never hand out an address from another host's block.
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default)]
    pub max_blocks_per_host: Option<u32>,
    /// Addresses at the start of every block never handed out.
    #[serde(default)]
    pub reserved_low: u32,
    /// Addresses at the end of every block never handed out.
    #[serde(default)]
    pub reserved_high: u32,
    /// How long a host keeps an empty block before it returns to the pool.
    #[serde(default = "default_grace")]
    pub empty_block_grace_ms: u64,
}

fn default_grace() -> u64 {
    5 * 60 * 1000
}

impl Pool {
    /// A pool with the defaults: /26 blocks for IPv4, /122 for IPv6.
    pub fn new(name: impl Into<String>, cidr: Cidr) -> Self {
        Pool {
            name: name.into(),
            cidr,
            block_prefix: if cidr.is_ipv6() { 122 } else { 26 },
            allowed_hosts: None,
            disabled: false,
            no_bgp_export: false,
            nat_outgoing: false,
            strict_affinity: false,
            max_blocks_per_host: None,
            reserved_low: 0,
            reserved_high: 0,
            empty_block_grace_ms: default_grace(),
        }
    }

    pub fn allows(&self, host: &str) -> bool {
        self.allowed_hosts
            .as_ref()
            .is_none_or(|h| h.iter().any(|x| x == host))
    }

    pub fn block_size(&self) -> u64 {
        1u64.checked_shl(self.cidr.bits().saturating_sub(self.block_prefix) as u32)
            .unwrap_or(u64::MAX)
    }

    /// Whether a pool read from the store is usable (block size in range).
    pub fn is_valid(&self) -> bool {
        self.block_prefix >= self.cidr.prefix()
            && self.block_prefix <= self.cidr.bits()
            && self.cidr.bits() - self.block_prefix <= MAX_BLOCK_BITS
            && (self.reserved_low as u64 + self.reserved_high as u64) < self.block_size()
    }

    /// Number of blocks in the pool (saturating).
    pub fn block_count(&self) -> u128 {
        let n = self.block_prefix.saturating_sub(self.cidr.prefix()) as u32;
        if n >= 128 { u128::MAX } else { 1u128 << n }
    }
}

/// A block: the unit of affinity. `alloc` is a bitmap of used offsets; who
/// uses them is in the allocation records (one source of truth per fact).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub cidr: Cidr,
    pub pool: String,
    /// The host with affinity; `None` once that host is gone (repair) and the
    /// block only waits for its last borrowed addresses to be released.
    pub host: Option<String>,
    pub alloc: Vec<u64>,
    pub claimed_at_ms: u64,
    /// When the block last became empty; cleared when used again.
    #[serde(default)]
    pub empty_since_ms: Option<u64>,
}

impl Block {
    pub fn new(cidr: Cidr, pool: &str, host: Option<String>, now: u64) -> Self {
        let host_bits = cidr.bits() - cidr.prefix();
        let size = if host_bits <= MAX_BLOCK_BITS {
            1u64 << host_bits
        } else {
            0
        };
        Block {
            cidr,
            pool: pool.to_string(),
            host,
            alloc: vec![0; size.div_ceil(64) as usize],
            claimed_at_ms: now,
            empty_since_ms: None,
        }
    }
    pub fn size(&self) -> u64 {
        1u64.checked_shl((self.cidr.bits() - self.cidr.prefix()) as u32)
            .unwrap_or(u64::MAX)
    }
    /// Whether a record read from the store is well-formed (bounded size,
    /// bitmap of the right length), so nothing downstream can loop or panic.
    pub fn is_valid(&self) -> bool {
        let host_bits = self.cidr.bits() - self.cidr.prefix();
        host_bits <= MAX_BLOCK_BITS && self.alloc.len() as u64 == self.size().div_ceil(64)
    }
    pub fn is_set(&self, off: u64) -> bool {
        self.alloc
            .get((off / 64) as usize)
            .is_some_and(|w| w & (1 << (off % 64)) != 0)
    }
    pub fn set(&mut self, off: u64) {
        if let Some(w) = self.alloc.get_mut((off / 64) as usize) {
            *w |= 1 << (off % 64);
        }
    }
    pub fn clear(&mut self, off: u64) {
        if let Some(w) = self.alloc.get_mut((off / 64) as usize) {
            *w &= !(1 << (off % 64));
        }
    }
    pub fn used(&self) -> u64 {
        self.alloc.iter().map(|w| w.count_ones() as u64).sum()
    }
    /// Lowest free offset outside the reserved ranges.
    pub fn first_free(&self, reserved_low: u32, reserved_high: u32) -> Option<u64> {
        let end = self.size().checked_sub(reserved_high as u64)?;
        (reserved_low as u64..end).find(|o| !self.is_set(*o))
    }
    pub fn free(&self, reserved_low: u32, reserved_high: u32) -> u64 {
        let usable = self
            .size()
            .saturating_sub(reserved_low as u64 + reserved_high as u64);
        let used_usable = (reserved_low as u64..self.size().saturating_sub(reserved_high as u64))
            .filter(|o| self.is_set(*o))
            .count() as u64;
        usable.saturating_sub(used_usable)
    }
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.alloc.iter().enumerate().flat_map(move |(i, w)| {
            (0..64u64)
                .filter(move |b| w & (1 << b) != 0)
                .filter_map(move |b| self.cidr.nth(i as u128 * 64 + b as u128))
        })
    }
}

/// One address of an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedAddr {
    pub ip: IpAddr,
    pub pool: String,
    pub block: Cidr,
    /// Taken from another host's block: the agent advertises it as a /32 (/128).
    pub borrowed: bool,
}

/// The record of one handle's addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub handle: Handle,
    pub host: String,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
    pub addrs: Vec<AllocatedAddr>,
    pub created_at_ms: u64,
    /// Set by GC when the handle was first seen missing from the live set.
    #[serde(default)]
    pub gc_missing_since_ms: Option<u64>,
}

/// Key layout under the root (default `/flatnet/`). Endpoints and policies
/// of the agent live beside `ipam/` under the same root.
#[derive(Clone, Debug)]
pub struct Keys {
    root: String,
}

/// Escapes everything but `[A-Za-z0-9._-]` so names never forge a `/`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Keys {
    pub fn new(root: &str) -> Self {
        let mut root = root.to_string();
        if !root.ends_with('/') {
            root.push('/');
        }
        Keys { root }
    }
    pub fn root(&self) -> &str {
        &self.root
    }
    pub fn pools(&self) -> String {
        format!("{}ipam/pools/", self.root)
    }
    pub fn pool(&self, name: &str) -> String {
        format!("{}{}", self.pools(), escape(name))
    }
    pub fn blocks(&self) -> String {
        format!("{}ipam/blocks/", self.root)
    }
    pub fn pool_blocks(&self, pool: &str) -> String {
        format!("{}{}/", self.blocks(), escape(pool))
    }
    pub fn block(&self, pool: &str, cidr: &Cidr) -> String {
        format!("{}{}", self.pool_blocks(pool), cidr.key_form())
    }
    pub fn handles(&self) -> String {
        format!("{}ipam/handles/", self.root)
    }
    pub fn host_handles(&self, host: &str) -> String {
        format!("{}{}/", self.handles(), escape(host))
    }
    pub fn handle(&self, host: &str, h: &Handle) -> String {
        format!(
            "{}{}/{}",
            self.host_handles(host),
            escape(&h.container_id),
            escape(&h.ifname)
        )
    }
}
