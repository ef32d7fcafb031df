//! Keeps the zone equal to the endpoint records of every host: lists
//! `/flatnet/endpoints/`, then watches it from the listing's revision (the
//! file store's watch follows its log every 20 ms, etcd's is pushed), and
//! publishes a new [`Zone`] after each batch of changes. Readers take the
//! current zone without waiting for the follower. On a broken watch the
//! zone in hand keeps answering while it relists.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flatnet_ipam::{AnyStore, Datastore, EventKind, KeyValue, Revision, WatchItem};

use super::zone::{EndpointRecord, Zone};
use crate::api::Endpoint;
use crate::store::ENDPOINTS_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("dns: datastore: {0}")]
    Datastore(String),
}

fn ds_err(e: impl std::fmt::Display) -> FollowError {
    FollowError::Datastore(e.to_string())
}

/// The zone as the follower last built it; cheap to clone and share.
#[derive(Clone)]
pub struct ZoneHandle {
    current: Arc<RwLock<Arc<Zone>>>,
}

impl ZoneHandle {
    pub fn new(zone: Zone) -> ZoneHandle {
        ZoneHandle {
            current: Arc::new(RwLock::new(Arc::new(zone))),
        }
    }

    /// The zone now.
    pub fn get(&self) -> Arc<Zone> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, z: Zone) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(z);
    }
}

/// Follows the endpoint records into a [`ZoneHandle`].
pub struct Follower {
    ds: AnyStore,
    origin: String,
    ttl: u32,
    records: BTreeMap<String, EndpointRecord>,
    serial: u32,
    zone: ZoneHandle,
    metrics: Option<crate::metrics::DnsMetrics>,
}

impl Follower {
    /// Lists the records once (so the first answers are complete) and
    /// returns the follower, ready to [`Follower::run`], with the listing's
    /// revision.
    pub async fn start(
        ds: AnyStore,
        origin: &str,
        ttl: u32,
        metrics: Option<crate::metrics::DnsMetrics>,
    ) -> Result<(Follower, Revision), FollowError> {
        let mut f = Follower {
            ds,
            origin: origin.to_string(),
            ttl,
            records: BTreeMap::new(),
            serial: 0,
            zone: ZoneHandle::new(Zone::new(origin, ttl)),
            metrics,
        };
        let rev = f.relist().await?;
        Ok((f, rev))
    }

    pub fn zone(&self) -> ZoneHandle {
        self.zone.clone()
    }

    async fn relist(&mut self) -> Result<Revision, FollowError> {
        let l = self.ds.list(ENDPOINTS_PREFIX).await.map_err(ds_err)?;
        self.records.clear();
        for kv in &l.kvs {
            self.upsert(kv);
        }
        self.publish();
        Ok(l.revision)
    }

    fn upsert(&mut self, kv: &KeyValue) {
        match serde_json::from_slice::<Endpoint>(&kv.value) {
            Ok(ep) => {
                self.records
                    .insert(kv.key.clone(), EndpointRecord::from(&ep));
            }
            Err(e) => {
                // A record this version cannot read names nothing; the key
                // is dropped so an older value does not linger.
                self.records.remove(&kv.key);
                tracing::warn!(key = %kv.key, error = %e, "dns: endpoint record ignored");
            }
        }
    }

    fn publish(&mut self) {
        self.serial = self.serial.wrapping_add(1);
        let z = Zone::build(&self.origin, self.ttl, self.serial, self.records.values());
        if let Some(m) = &self.metrics {
            m.zone_apps.set(i64::try_from(z.apps()).unwrap_or(i64::MAX));
        }
        self.zone.set(z);
    }

    /// Follows the records until the process ends.
    pub async fn run(mut self, mut rev: Revision) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.follow_once(rev).await {
                Ok(()) => {
                    delay = Duration::from_millis(200);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dns: endpoint watch broken; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            match self.relist().await {
                Ok(r) => rev = r,
                Err(e) => tracing::warn!(error = %e, "dns: endpoint relist failed"),
            }
        }
    }

    async fn follow_once(&mut self, rev: Revision) -> Result<(), FollowError> {
        let mut w = self
            .ds
            .watch(ENDPOINTS_PREFIX, rev + 1)
            .await
            .map_err(ds_err)?;
        while let Some(item) = w.next().await {
            match item.map_err(ds_err)? {
                WatchItem::Events(evs) => {
                    for ev in &evs {
                        match ev.kind {
                            EventKind::Put => self.upsert(&ev.kv),
                            EventKind::Delete => {
                                self.records.remove(&ev.kv.key);
                            }
                        }
                    }
                    self.publish();
                }
                // History is gone: relist (in `run`) rather than replay.
                WatchItem::Resync { revision } => {
                    tracing::info!(revision, "dns: endpoint watch compacted, resyncing");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::{Lookup, QueryType};
    use flatnet_ipam::{MemStore, Op, Txn};

    fn ep(node: &str, id: &str, app: &str, v4: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "node": node, "container_id": id, "ifname": "eth0", "netns": "/x",
            "host_ifname": "flat1", "host_mac": "", "container_mac": "",
            "v4": v4, "v6": null, "app": app,
        }))
        .unwrap()
    }

    async fn put(s: &AnyStore, key: &str, v: Vec<u8>) {
        s.txn(Txn::new().then(Op::put(key, v))).await.unwrap();
    }

    async fn wait(z: &ZoneHandle, name: &str, want: Lookup) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = z.get().lookup(name, QueryType::A);
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn follows_puts_and_deletes_of_every_host() {
        let s = AnyStore::Mem(MemStore::default());
        put(
            &s,
            "/flatnet/endpoints/ha/c1/eth0",
            ep("ha", "c1", "cart", "10.244.0.2"),
        )
        .await;
        put(&s, "/flatnet/endpoints/hb/bad/eth0", b"not json".to_vec()).await;
        let (f, rev) = Follower::start(s.clone(), "apps.internal", 5, None)
            .await
            .unwrap();
        let z = f.zone();
        let ip = |a: &str| Lookup::Addrs(vec![a.parse().unwrap()]);
        assert_eq!(
            z.get().lookup("cart.apps.internal", QueryType::A),
            ip("10.244.0.2")
        );
        tokio::spawn(f.run(rev));
        put(
            &s,
            "/flatnet/endpoints/hb/c2/eth0",
            ep("hb", "c2", "orders", "10.244.1.2"),
        )
        .await;
        wait(&z, "orders.apps.internal", ip("10.244.1.2")).await;
        s.txn(Txn::new().then(Op::delete("/flatnet/endpoints/ha/c1/eth0")))
            .await
            .unwrap();
        wait(&z, "cart.apps.internal", Lookup::NxDomain).await;
        assert!(z.get().serial() >= 3);
    }
}
