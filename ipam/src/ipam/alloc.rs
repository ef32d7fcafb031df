//! Allocation and release by handle, each one guarded transaction over the
//! handle record and the blocks whose bits it sets or clears.

use std::collections::{BTreeMap, BTreeSet};

use super::{AllocRequest, Family, Ipam, IpamError, MAX_ATTEMPTS, decode, encode};
use crate::model::{Allocation, Block, Handle};
use crate::store::{Compare, Datastore, KeyValue, Op, Revision, Txn};

impl<S: Datastore> Ipam<S> {
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
                if let Some(b) = b.filter(|_| changed) {
                    txn = stage_cleared(txn, &bkey, b, now);
                }
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
    pub(super) async fn release_record(
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
            txn = stage_cleared(txn, &bkey, b, now);
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
}

/// Stages the write of a block that just had bits cleared: once empty, a
/// block no host owns goes back to the pool at once, an owned one starts
/// its grace period (see `release_empty_blocks`).
pub(super) fn stage_cleared(txn: Txn, key: &str, mut b: Block, now: u64) -> Txn {
    if b.used() == 0 {
        if b.host.is_none() {
            return txn.then(Op::delete(key));
        }
        b.empty_since_ms = Some(now);
    }
    txn.then(Op::put(key, encode(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cidr::Cidr;

    fn block(host: Option<&str>, used: &[u64]) -> Block {
        let cidr: Cidr = "10.0.0.0/28".parse().unwrap_or_else(|e| panic!("{e:?}"));
        let mut b = Block::new(cidr, "p", host.map(str::to_string), 1);
        for &o in used {
            b.set(o);
        }
        b.empty_since_ms = None;
        b
    }

    fn written(txn: &Txn) -> Option<Block> {
        match txn.ops.as_slice() {
            [Op::Put { key, value }] if key == "k" => serde_json::from_slice(value).ok(),
            _ => None,
        }
    }

    #[test]
    fn a_block_still_in_use_is_rewritten_without_a_grace_stamp() {
        let txn = stage_cleared(Txn::new(), "k", block(Some("h1"), &[3]), 50);
        let b = written(&txn).unwrap_or_else(|| panic!("{txn:?}"));
        assert_eq!((b.used(), b.empty_since_ms), (1, None));
    }

    #[test]
    fn an_empty_owned_block_starts_its_grace_period() {
        let txn = stage_cleared(Txn::new(), "k", block(Some("h1"), &[]), 50);
        let b = written(&txn).unwrap_or_else(|| panic!("{txn:?}"));
        assert_eq!(
            (b.host.as_deref(), b.empty_since_ms),
            (Some("h1"), Some(50))
        );
    }

    #[test]
    fn an_empty_unowned_block_goes_back_to_the_pool() {
        let txn = stage_cleared(Txn::new(), "k", block(None, &[]), 50);
        assert_eq!(txn.ops, vec![Op::delete("k")]);
    }
}
