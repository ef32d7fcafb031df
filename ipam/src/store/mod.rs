//! The datastore: a revisioned key-value store with prefix reads,
//! compare-and-swap transactions and watches.
//!
//! It is shaped like etcd v3 on purpose (one global revision that every
//! successful write bumps, `mod_revision` per key, watch from a revision) so the
//! embedded file store and etcd are interchangeable. IPAM, endpoint records
//! (ip → app, container id, ifname) and policies all live in it; every host
//! learns endpoints and policies by `list` at revision R, then `watch(R + 1)`.

pub mod etcd;
pub mod file;
pub mod mem;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

pub use etcd::EtcdStore;
pub use file::{CrashPoint, FileStore, FileStoreOptions};
pub use mem::MemStore;

/// A store-wide revision. Every successful transaction that writes bumps it by one.
pub type Revision = i64;

/// One key with its value and the revisions that let callers compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last write to the key; the token for [`Compare`].
    pub mod_revision: Revision,
}

/// A guard of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals `revision`; `0` means "the key is absent".
    Revision { key: String, revision: Revision },
}

impl Compare {
    /// The key must not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Compare::Revision {
            key: key.into(),
            revision: 0,
        }
    }

    /// The key must be unchanged since it was read at `revision` (0 = absent).
    pub fn unchanged(key: impl Into<String>, revision: Revision) -> Self {
        Compare::Revision {
            key: key.into(),
            revision,
        }
    }
}

/// A write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: Vec<u8>) -> Self {
        Op::Put {
            key: key.into(),
            value,
        }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// All compares hold → all ops are applied atomically at one new revision.
/// Otherwise nothing is written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }
    pub fn then(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }
}

/// Result of a transaction. When `succeeded` the ops are durable (fsynced
/// for the file store, committed by raft for etcd) before this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    pub succeeded: bool,
    /// The store revision after the transaction (the new one if it wrote).
    pub revision: Revision,
}

/// A consistent prefix read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub kvs: Vec<KeyValue>,
    /// Revision the listing reflects: watch from `revision + 1` to follow it.
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For deletes, `kv.value` is empty and
/// `kv.mod_revision` is the revision of the delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// What a watch yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// Changes of one or more revisions, in revision order.
    Events(Vec<Event>),
    /// History the watcher needed is gone (compacted, or the store was
    /// replaced): list again, then keep consuming this watch; events at or
    /// below the new listing's revision may repeat and are safe to skip.
    Resync { revision: Revision },
}

/// A running watch. Dropping it stops the background task that feeds it.
#[derive(Debug)]
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<WatchItem, StoreError>>,
}

impl Watch {
    pub(crate) fn channel() -> (
        tokio::sync::mpsc::Sender<Result<WatchItem, StoreError>>,
        Watch,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        (tx, Watch { rx })
    }

    /// Next batch of changes; `None` when the backend is gone for good.
    pub async fn next(&mut self) -> Option<Result<WatchItem, StoreError>> {
        self.rx.recv().await
    }
}

/// Errors of every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached; `addr` is what was tried (etcd
    /// endpoints or the directory of the file store).
    #[error("datastore unreachable at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("datastore file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("datastore log {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("etcd at {addr} refused the request: {reason}")]
    Rejected { addr: String, reason: String },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
}

/// The datastore contract. Implementations must make `txn` atomic and
/// durable before it returns success, and `list` a consistent snapshot.
pub trait Datastore: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>, StoreError>> + Send;
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Listing, StoreError>> + Send;
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnOutcome, StoreError>> + Send;
    /// Changes under `prefix` with revision >= `from`. Must be called inside a
    /// tokio runtime (it spawns the task that feeds the watch).
    fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> impl Future<Output = Result<Watch, StoreError>> + Send;
    /// Where the store lives, for messages.
    fn describe(&self) -> String;
}

/// One of the backends, chosen at run time (the agent's config picks it).
#[derive(Debug, Clone)]
pub enum AnyStore {
    File(std::sync::Arc<FileStore>),
    Etcd(EtcdStore),
    Mem(MemStore),
}

impl Datastore for AnyStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        match self {
            AnyStore::File(s) => s.get(key).await,
            AnyStore::Etcd(s) => s.get(key).await,
            AnyStore::Mem(s) => s.get(key).await,
        }
    }
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        match self {
            AnyStore::File(s) => s.list(prefix).await,
            AnyStore::Etcd(s) => s.list(prefix).await,
            AnyStore::Mem(s) => s.list(prefix).await,
        }
    }
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        match self {
            AnyStore::File(s) => s.txn(txn).await,
            AnyStore::Etcd(s) => s.txn(txn).await,
            AnyStore::Mem(s) => s.txn(txn).await,
        }
    }
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        match self {
            AnyStore::File(s) => s.watch(prefix, from).await,
            AnyStore::Etcd(s) => s.watch(prefix, from).await,
            AnyStore::Mem(s) => s.watch(prefix, from).await,
        }
    }
    fn describe(&self) -> String {
        match self {
            AnyStore::File(s) => s.describe(),
            AnyStore::Etcd(s) => s.describe(),
            AnyStore::Mem(s) => s.describe(),
        }
    }
}

impl<T: Datastore> Datastore for std::sync::Arc<T> {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>, StoreError>> + Send {
        (**self).get(key)
    }
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Listing, StoreError>> + Send {
        (**self).list(prefix)
    }
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnOutcome, StoreError>> + Send {
        (**self).txn(txn)
    }
    fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> impl Future<Output = Result<Watch, StoreError>> + Send {
        (**self).watch(prefix, from)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// The in-memory state machine shared by the file and memory backends: the
/// file store replays its log into one of these.
#[derive(Debug, Default, Clone)]
pub(crate) struct KvState {
    pub(crate) map: BTreeMap<String, KeyValue>,
    pub(crate) revision: Revision,
}

impl KvState {
    /// The outcome of a transaction that writes nothing, decided before any
    /// write: its compares fail, or it has no operations. `None`: it
    /// commits at the next revision.
    pub(crate) fn settled(&self, txn: &Txn) -> Option<TxnOutcome> {
        if !self.holds(&txn.compares) {
            return Some(TxnOutcome {
                succeeded: false,
                revision: self.revision,
            });
        }
        if txn.ops.is_empty() {
            return Some(TxnOutcome {
                succeeded: true,
                revision: self.revision,
            });
        }
        None
    }

    pub(crate) fn holds(&self, compares: &[Compare]) -> bool {
        compares.iter().all(|c| match c {
            Compare::Revision { key, revision } => {
                self.map.get(key).map(|kv| kv.mod_revision).unwrap_or(0) == *revision
            }
        })
    }

    /// Applies `ops` at revision `rev`, moving the values in; builds the
    /// events only when asked (replaying a log needs none).
    pub(crate) fn apply_owned(&mut self, rev: Revision, ops: Vec<Op>, events: bool) -> Vec<Event> {
        let mut out = Vec::with_capacity(if events { ops.len() } else { 0 });
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    let create_revision = self
                        .map
                        .get(&key)
                        .map(|kv| kv.create_revision)
                        .unwrap_or(rev);
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        create_revision,
                        mod_revision: rev,
                    };
                    if events {
                        out.push(Event {
                            kind: EventKind::Put,
                            kv: kv.clone(),
                        });
                    }
                    self.map.insert(key, kv);
                }
                Op::Delete { key } => {
                    if let Some(old) = self.map.remove(&key)
                        && events
                    {
                        out.push(Event {
                            kind: EventKind::Delete,
                            kv: KeyValue {
                                key,
                                value: Vec::new(),
                                create_revision: old.create_revision,
                                mod_revision: rev,
                            },
                        });
                    }
                }
            }
        }
        self.revision = rev;
        out
    }

    pub(crate) fn list(&self, prefix: &str) -> Vec<KeyValue> {
        self.map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Rejects keys the backends cannot all store the same way.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > 1024 || key.contains('\0') {
        return Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason: "keys are 1..=1024 bytes without NUL".into(),
        });
    }
    Ok(())
}
