//! Leak collection: allocations missing from the runtime's live set (with
//! a grace period) and empty blocks returned to the pool.

use std::collections::BTreeSet;

use super::{Ipam, IpamError, decode, encode};
use crate::cidr::Cidr;
use crate::model::{Allocation, Handle};
use crate::store::{Compare, Datastore, Op, Txn};

/// GC outcome for one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub released: Vec<Handle>,
    /// Missing from the live set, waiting out the grace period.
    pub pending: Vec<Handle>,
    /// Missing but created within the grace period: probably still being set up.
    pub in_flight: Vec<Handle>,
}

impl<S: Datastore> Ipam<S> {
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
}
