//! An in-memory store for unit and property tests (and single-process tools):
//! the same revision semantics as the durable backends, no durability.

use std::sync::{Arc, Mutex};

use super::{
    Datastore, Event, KeyValue, KvState, Listing, Revision, StoreError, Txn, TxnOutcome, Watch,
    WatchItem, check_key,
};

#[derive(Debug, Default)]
struct Inner {
    state: KvState,
    history: Vec<(Revision, Vec<Event>)>,
}

/// Cheap to clone; clones share the same data.
#[derive(Debug, Clone)]
pub struct MemStore {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<tokio::sync::watch::Sender<Revision>>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    pub fn new() -> Self {
        let (tx, _) = tokio::sync::watch::channel(0);
        MemStore {
            inner: Arc::new(Mutex::new(Inner::default())),
            notify: Arc::new(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-applied
        // (apply is infallible), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Synchronous transaction, for callers without a runtime.
    pub fn txn_sync(&self, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        for op in &txn.ops {
            check_key(op.key())?;
        }
        let mut g = self.lock();
        if let Some(out) = g.state.settled(txn) {
            return Ok(out);
        }
        let rev = g.state.revision + 1;
        let events = g.state.apply_owned(rev, txn.ops.clone(), true);
        g.history.push((rev, events));
        drop(g);
        self.notify.send_replace(rev);
        Ok(TxnOutcome {
            succeeded: true,
            revision: rev,
        })
    }
}

impl Datastore for MemStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.lock().state.map.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let g = self.lock();
        Ok(Listing {
            kvs: g.state.list(prefix),
            revision: g.state.revision,
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.txn_sync(&txn)
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let (tx, watch) = Watch::channel();
        let mut rx = self.notify.subscribe();
        let store = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut next = from.max(1);
            loop {
                let batch: Vec<Event> = {
                    let g = store.lock();
                    let start = g.history.partition_point(|(r, _)| *r < next);
                    let mut out = Vec::new();
                    for (rev, evs) in &g.history[start..] {
                        out.extend(
                            evs.iter()
                                .filter(|e| e.kv.key.starts_with(&prefix))
                                .cloned(),
                        );
                        next = rev + 1;
                    }
                    out
                };
                if !batch.is_empty() && tx.send(Ok(WatchItem::Events(batch))).await.is_err() {
                    return;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(watch)
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
