//! Endpoint records in the shared datastore, under
//! `/flatnet/endpoints/<node>/<container id>/<ifname>` (names escaped like
//! IPAM's keys), one JSON [`Endpoint`] each: every host can follow them
//! (`list` then `watch`) to map addresses to apps for policy.
//!
//! A record is written only after the kernel side is complete: it is the
//! commit point of an ADD. Writes are compare-and-swap transactions (a put
//! expects the key absent or at the revision read; a delete expects the
//! revision read) and go through one committer thread that merges the writes
//! queued while it was busy into one transaction: under concurrent ADDs the
//! records cost one datastore commit (one fsync for the file store) per
//! batch, not per ADD.

use std::collections::HashSet;
use std::sync::mpsc;

use flatnet_ipam::model::escape;
use flatnet_ipam::{AnyStore, Compare, Datastore, KeyValue, Op, Revision, Txn};

use crate::api::Endpoint;

/// Root of the agent's endpoint records (reserved for the agent in docs/ipam.md).
pub const ENDPOINTS_PREFIX: &str = "/flatnet/endpoints/";

/// At most this many writes per merged transaction (etcd's default limit on
/// operations per transaction is 128).
const MAX_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("endpoint records: datastore unavailable: {0}")]
    Unavailable(String),
    #[error("endpoint record {key}: {msg}")]
    Record { key: String, msg: String },
    #[error("endpoint record {0} was changed by someone else")]
    Conflict(String),
}

/// The key of one attachment's record.
pub fn endpoint_key(node: &str, container_id: &str, ifname: &str) -> String {
    format!(
        "{ENDPOINTS_PREFIX}{}/{}/{}",
        escape(node),
        escape(container_id),
        escape(ifname)
    )
}

/// A record as read, with the revision a later write must compare against.
#[derive(Debug, Clone)]
pub struct Stored {
    pub ep: Endpoint,
    pub rev: Revision,
}

struct Pending {
    txn: Txn,
    reply: tokio::sync::oneshot::Sender<Result<bool, String>>,
}

pub struct EndpointStore {
    store: AnyStore,
    node: String,
    rt: tokio::runtime::Handle,
    tx: mpsc::Sender<Pending>,
}

impl EndpointStore {
    /// Starts the committer thread; call inside the runtime.
    pub fn open(store: AnyStore, node: &str) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Handle::current();
        let (tx, rx) = mpsc::channel::<Pending>();
        let (s2, rt2) = (store.clone(), rt.clone());
        std::thread::Builder::new()
            .name("ep-commit".into())
            .spawn(move || committer(s2, rt2, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start committer: {e}")))?;
        Ok(EndpointStore {
            store,
            node: node.to_string(),
            rt,
            tx,
        })
    }

    fn key(&self, container_id: &str, ifname: &str) -> String {
        endpoint_key(&self.node, container_id, ifname)
    }

    /// This node's prefix.
    fn prefix(&self) -> String {
        format!("{ENDPOINTS_PREFIX}{}/", escape(&self.node))
    }

    /// Runs a (possibly blocking) datastore read off the async workers.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AnyStore, &tokio::runtime::Handle) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (s, rt) = (self.store.clone(), self.rt.clone());
        tokio::task::spawn_blocking(move || f(&s, &rt))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn commit(&self, txn: Txn) -> Result<bool, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Pending { txn, reply })
            .map_err(|_| StoreError::Unavailable("committer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("committer stopped".into()))?
            .map_err(StoreError::Unavailable)
    }

    pub async fn get(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Stored>, StoreError> {
        let key = self.key(container_id, ifname);
        let k = key.clone();
        let kv = self
            .read(move |s, rt| rt.block_on(s.get(&k)))
            .await?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        kv.map(|kv| decode(&kv)).transpose()
    }

    /// Writes `ep` (its `node` is set to this node). `expect` is the
    /// revision it was read at, `None` when it must not exist yet.
    pub async fn put(&self, ep: &Endpoint, expect: Option<Revision>) -> Result<(), StoreError> {
        let key = self.key(&ep.container_id, &ep.ifname);
        let mut ep = ep.clone();
        ep.node = self.node.clone();
        ep.dns = None;
        let value = serde_json::to_vec(&ep).map_err(|e| StoreError::Record {
            key: key.clone(),
            msg: e.to_string(),
        })?;
        let txn = Txn::new()
            .when(Compare::unchanged(&key, expect.unwrap_or(0)))
            .then(Op::put(&key, value));
        if self.commit(txn).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(key))
        }
    }

    /// Deletes the record; `Ok` when there is none. Retries when the record
    /// changed between read and delete.
    pub async fn remove(&self, container_id: &str, ifname: &str) -> Result<(), StoreError> {
        let key = self.key(container_id, ifname);
        for _ in 0..8 {
            let k = key.clone();
            let kv = self
                .read(move |s, rt| rt.block_on(s.get(&k)))
                .await?
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let Some(kv) = kv else { return Ok(()) };
            match self.remove_at(container_id, ifname, kv.mod_revision).await {
                Err(StoreError::Conflict(_)) => continue,
                r => return r,
            }
        }
        Err(StoreError::Conflict(key))
    }

    /// Deletes the record read at `rev`.
    pub async fn remove_at(
        &self,
        container_id: &str,
        ifname: &str,
        rev: Revision,
    ) -> Result<(), StoreError> {
        let key = self.key(container_id, ifname);
        let txn = Txn::new()
            .when(Compare::unchanged(&key, rev))
            .then(Op::delete(&key));
        if self.commit(txn).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(key))
        }
    }

    /// This node's records; undecodable ones are reported, not fatal.
    pub async fn list(&self) -> Result<(Vec<Stored>, Vec<String>), StoreError> {
        let p = self.prefix();
        let l = self
            .read(move |s, rt| rt.block_on(s.list(&p)))
            .await?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut eps = Vec::new();
        let mut bad = Vec::new();
        for kv in &l.kvs {
            match decode(kv) {
                Ok(s) => eps.push(s),
                Err(e) => bad.push(e.to_string()),
            }
        }
        eps.sort_by(|a, b| {
            (&a.ep.container_id, &a.ep.ifname).cmp(&(&b.ep.container_id, &b.ep.ifname))
        });
        Ok((eps, bad))
    }

    /// Moves records an older flatnetd kept in `<state_dir>/endpoints/*.json`
    /// into the datastore (once; the files are removed when stored).
    pub async fn import_legacy(&self, state_dir: &std::path::Path) -> usize {
        let dir = state_dir.join("endpoints");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let mut n = 0;
        for e in rd.flatten() {
            let p = e.path();
            let ep = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Endpoint>(&b).ok());
            let Some(ep) = ep else {
                tracing::warn!(file = %p.display(), "legacy endpoint record unreadable; left alone");
                continue;
            };
            let stored = match self.get(&ep.container_id, &ep.ifname).await {
                Ok(s) => s.is_some() || self.put(&ep, None).await.is_ok(),
                Err(_) => false,
            };
            if stored {
                let _ = std::fs::remove_file(&p);
                n += 1;
            }
        }
        n
    }
}

fn decode(kv: &KeyValue) -> Result<Stored, StoreError> {
    let ep: Endpoint = serde_json::from_slice(&kv.value).map_err(|e| StoreError::Record {
        key: kv.key.clone(),
        msg: e.to_string(),
    })?;
    Ok(Stored {
        ep,
        rev: kv.mod_revision,
    })
}

/// Group commit: takes every write queued while the previous commit ran and
/// commits them as one transaction. Each key is written under its
/// attachment's lock, so merged compares do not depend on each other; if the
/// merged transaction fails anyway (a compare did not hold), every write is
/// retried on its own so only the stale one fails.
fn committer(store: AnyStore, rt: tokio::runtime::Handle, rx: mpsc::Receiver<Pending>) {
    let run = |t: Txn| {
        rt.block_on(store.txn(t))
            .map(|o| o.succeeded)
            .map_err(|e| e.to_string())
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut keys: HashSet<String> = batch
            .iter()
            .flat_map(|p| p.txn.ops.iter().map(|o| o.key().to_string()))
            .collect();
        let mut held = None;
        while batch.len() < MAX_BATCH {
            let Ok(p) = rx.try_recv() else { break };
            // Two writes of one key cannot share a transaction.
            if p.txn.ops.iter().any(|o| keys.contains(o.key())) {
                held = Some(p);
                break;
            }
            keys.extend(p.txn.ops.iter().map(|o| o.key().to_string()));
            batch.push(p);
        }
        commit_batch(batch, &run);
        if let Some(p) = held {
            commit_batch(vec![p], &run);
        }
    }
}

fn commit_batch(batch: Vec<Pending>, run: &impl Fn(Txn) -> Result<bool, String>) {
    if batch.len() > 1 {
        let mut merged = Txn::new();
        for p in &batch {
            merged.compares.extend(p.txn.compares.iter().cloned());
            merged.ops.extend(p.txn.ops.iter().cloned());
        }
        match run(merged) {
            Ok(false) => {} // one by one below
            r => {
                for p in batch {
                    let _ = p.reply.send(r.clone());
                }
                return;
            }
        }
    }
    for p in batch {
        let r = run(p.txn);
        let _ = p.reply.send(r);
    }
}
