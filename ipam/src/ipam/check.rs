//! Cluster-wide consistency check and its repair, one guarded transaction
//! per fix.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use super::alloc::stage_cleared;
use super::{Ipam, IpamError, decode, encode};
use crate::cidr::Cidr;
use crate::model::{Allocation, Block, Handle, Pool};
use crate::store::{Compare, Datastore, KeyValue, Op, Txn};

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

impl<S: Datastore> Ipam<S> {
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
                    let guard = Txn::new().when(Compare::unchanged(&bkey, bkv.mod_revision));
                    let txn = stage_cleared(guard, &bkey, b, self.now());
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
