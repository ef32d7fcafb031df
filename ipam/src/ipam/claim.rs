//! Choosing an address for one family: a free address in one of the
//! host's own blocks, else a newly claimed block (affinity), else one
//! borrowed from another host's block unless the pool is strict.

use std::collections::HashSet;

use super::{AllocRequest, Family, Ipam, IpamError};
use crate::cidr::Cidr;
use crate::model::{AllocatedAddr, Block, Pool};
use crate::store::{Datastore, KeyValue, Revision};

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

pub(super) struct Pick {
    pub(super) key: String,
    pub(super) rev: Revision,
    pub(super) block: Block,
    pub(super) addr: AllocatedAddr,
}

struct PoolView {
    pool: Pool,
    blocks: Vec<(KeyValue, Block)>,
}

impl<S: Datastore> Ipam<S> {
    pub(super) async fn pick(
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
}
