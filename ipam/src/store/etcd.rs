//! etcd v3 backend, for clusters of many machines.
//!
//! Keys and revisions map one to one onto etcd's: a [`Compare::Revision`]
//! with revision 0 becomes `create_revision == 0` (absent), otherwise
//! `mod_revision == r`. Watches reconnect after errors (an etcd restart) and
//! resume from the revision after the last one delivered; if that history was
//! compacted meanwhile the watcher gets [`WatchItem::Resync`].

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare as ECompare, CompareOp, ConnectOptions, GetOptions, TxnOp, WatchOptions,
};

use super::{
    Compare, Datastore, Event, EventKind, KeyValue, Listing, Op, Revision, StoreError, Txn,
    TxnOutcome, Watch, WatchItem, check_key,
};

/// A handle to an etcd cluster; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    /// Boxed: the client is several KiB and stores are passed around by value.
    client: Arc<Client>,
    addr: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("addr", &self.addr)
            .finish()
    }
}

impl EtcdStore {
    /// Connects to `endpoints` (e.g. `http://127.0.0.1:2379`) and checks that
    /// the cluster answers within `timeout`.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, StoreError> {
        let addr = endpoints.join(",");
        let unreachable = |e: etcd_client::Error| StoreError::Unreachable {
            addr: addr.clone(),
            reason: e.to_string(),
        };
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        let connect = Client::connect(endpoints, Some(opts));
        let mut client = match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r.map_err(unreachable)?,
            Err(_) => {
                return Err(StoreError::Unreachable {
                    addr,
                    reason: format!("no answer within {timeout:?}"),
                });
            }
        };
        match tokio::time::timeout(timeout, client.status()).await {
            Ok(r) => {
                r.map_err(unreachable)?;
            }
            Err(_) => {
                return Err(StoreError::Unreachable {
                    addr,
                    reason: format!("no answer within {timeout:?}"),
                });
            }
        }
        Ok(EtcdStore {
            client: Arc::new(client),
            addr,
        })
    }

    fn map_err(&self, e: etcd_client::Error) -> StoreError {
        match &e {
            // gRPC codes that mean "could not get an answer" rather than
            // "etcd said no" (matched by name: tonic is not re-exported).
            etcd_client::Error::GRpcStatus(s)
                if !matches!(
                    format!("{:?}", s.code()).as_str(),
                    "Unavailable" | "DeadlineExceeded" | "Unknown" | "Cancelled"
                ) =>
            {
                StoreError::Rejected {
                    addr: self.addr.clone(),
                    reason: e.to_string(),
                }
            }
            _ => StoreError::Unreachable {
                addr: self.addr.clone(),
                reason: e.to_string(),
            },
        }
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Option<KeyValue> {
    Some(KeyValue {
        key: String::from_utf8(kv.key().to_vec()).ok()?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

impl Datastore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let mut c = (*self.client).clone();
        let resp = c.get(key, None).await.map_err(|e| self.map_err(e))?;
        Ok(resp.kvs().first().and_then(convert_kv))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let mut c = (*self.client).clone();
        let resp = c
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(Listing {
            kvs: resp.kvs().iter().filter_map(convert_kv).collect(),
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        for op in &txn.ops {
            check_key(op.key())?;
        }
        let compares: Vec<ECompare> = txn
            .compares
            .iter()
            .map(|c| match c {
                Compare::Revision { key, revision: 0 } => {
                    ECompare::create_revision(key.as_str(), CompareOp::Equal, 0)
                }
                Compare::Revision { key, revision } => {
                    ECompare::mod_revision(key.as_str(), CompareOp::Equal, *revision)
                }
            })
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|o| match o {
                Op::Put { key, value } => TxnOp::put(key.as_str(), value.clone(), None),
                Op::Delete { key } => TxnOp::delete(key.as_str(), None),
            })
            .collect();
        let mut c = (*self.client).clone();
        let resp = c
            .txn(etcd_client::Txn::new().when(compares).and_then(ops))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(TxnOutcome {
            succeeded: resp.succeeded(),
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let (tx, watch) = Watch::channel();
        let store = self.clone();
        let prefix = prefix.to_string();
        // Fail early (with the address) if etcd cannot be reached at all.
        let mut first = Some(store.open_watch(&prefix, from).await?);
        tokio::spawn(async move {
            let mut next = from;
            let mut backoff = Duration::from_millis(50);
            loop {
                let mut stream = match first.take() {
                    Some(s) => s,
                    None => match store.open_watch(&prefix, next).await {
                        Ok(s) => s,
                        Err(_) => {
                            // etcd is down or restarting: retry with backoff
                            // until the consumer goes away.
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = tx.closed() => return,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                            continue;
                        }
                    },
                };
                loop {
                    let msg = tokio::select! {
                        m = stream.message() => m,
                        _ = tx.closed() => return,
                    };
                    match msg {
                        Ok(Some(resp)) => {
                            backoff = Duration::from_millis(50);
                            if resp.compact_revision() > 0 {
                                let rev = resp.compact_revision();
                                next = rev;
                                if tx
                                    .send(Ok(WatchItem::Resync { revision: rev }))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                                break;
                            }
                            if resp.canceled() {
                                break;
                            }
                            let mut evs = Vec::new();
                            for e in resp.events() {
                                let Some(kv) = e.kv().and_then(convert_kv) else {
                                    continue;
                                };
                                next = next.max(kv.mod_revision + 1);
                                let kind = match e.event_type() {
                                    etcd_client::EventType::Put => EventKind::Put,
                                    etcd_client::EventType::Delete => EventKind::Delete,
                                };
                                evs.push(Event { kind, kv });
                            }
                            if !evs.is_empty() && tx.send(Ok(WatchItem::Events(evs))).await.is_err()
                            {
                                return;
                            }
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        });
        Ok(watch)
    }

    fn describe(&self) -> String {
        format!("etcd:{}", self.addr)
    }
}

impl EtcdStore {
    async fn open_watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<etcd_client::WatchStream, StoreError> {
        let mut c = (*self.client).clone();
        let mut opts = WatchOptions::new().with_prefix();
        if from > 0 {
            opts = opts.with_start_revision(from);
        }
        c.watch(prefix, Some(opts))
            .await
            .map_err(|e| self.map_err(e))
    }
}
