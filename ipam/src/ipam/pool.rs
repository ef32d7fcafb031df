//! Pool records: validation on create, settings updates, deletion, and
//! the per-pool block cache every allocation reads through.

use std::collections::HashMap;

use super::{Ipam, IpamError, decode, encode};
use crate::model::{Block, MAX_BLOCK_BITS, Pool};
use crate::store::{Compare, Datastore, KeyValue, Op, Txn};

impl<S: Datastore> Ipam<S> {
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

    pub(super) async fn pool_blocks(
        &self,
        pool: &str,
    ) -> Result<Vec<(KeyValue, Block)>, IpamError> {
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
}
