//! The policy task of flatnetd: follows every endpoint record (all hosts)
//! every policy document and the cluster defaults in the datastore
//! (`list`, then `watch` from the listing's revision), compiles, and hands the result to the
//! [`Enforcer`]. ADD and DEL call in directly so an ADD returns only once
//! its container's addresses are in the sets (fail closed: until then the
//! rules drop its traffic as unprogrammed). When the datastore or this
//! task is down, the rules in the kernel stay as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flatnet_ipam::{AnyStore, Datastore, EventKind, KeyValue, Revision, WatchItem};

use super::compile::{Cluster, Compiled, EndpointAddr, compile};
use super::defaults::{ClusterDefaults, DEFAULTS_KEY};
use super::enforce::{Applied, EdgeCounter, Enforcer};
use super::model::Policy;
use super::store::{POLICIES_PREFIX, decode};
use super::trace::{Flow, TraceError, Verdict, trace};
use crate::api::Endpoint;
use crate::netfilter::{Netfilter, NfError};
use crate::store::ENDPOINTS_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("policy: datastore: {0}")]
    Datastore(String),
    #[error("policy: {0}")]
    Netfilter(#[from] NfError),
    #[error("policy: no rules applied yet")]
    NotReady,
    #[error(transparent)]
    Trace(#[from] TraceError),
}

#[derive(Default)]
struct State {
    policies: BTreeMap<String, Policy>,
    endpoints: BTreeMap<String, EndpointAddr>,
    /// The cluster's defaults document (over the host config's).
    defaults: ClusterDefaults,
    /// Bumped whenever the policies or defaults change (they decide the chains).
    rules_gen: u64,
    /// The `rules_gen` of the last full apply.
    applied_gen: Option<u64>,
}

pub struct PolicyEngine {
    ds: AnyStore,
    cluster: Cluster,
    enforcer: Enforcer,
    state: tokio::sync::Mutex<State>,
}

fn endpoint_addr(ep: &Endpoint) -> EndpointAddr {
    EndpointAddr {
        app: ep.app.clone(),
        addrs: ep
            .v4
            .map(std::net::IpAddr::V4)
            .into_iter()
            .chain(ep.v6.map(std::net::IpAddr::V6))
            .collect(),
    }
}

fn ds_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Datastore(e.to_string())
}

impl PolicyEngine {
    /// Lists endpoints and policies, reconciles the kernel with them and
    /// starts following the datastore.
    pub async fn start(
        ds: AnyStore,
        cluster: Cluster,
        nf: Arc<Netfilter>,
    ) -> Result<Arc<Self>, EngineError> {
        let e = Arc::new(PolicyEngine {
            ds,
            cluster,
            enforcer: Enforcer::new(nf),
            state: tokio::sync::Mutex::new(State::default()),
        });
        let revs = e.relist().await?;
        e.sync().await?;
        for (i, prefix) in PREFIXES.into_iter().enumerate() {
            tokio::spawn(e.clone().follow(prefix, revs[i]));
        }
        Ok(e)
    }

    /// Lists every followed prefix afresh; the revision of each listing,
    /// in [`PREFIXES`] order.
    async fn relist(&self) -> Result<[Revision; 3], EngineError> {
        let mut lists = Vec::with_capacity(PREFIXES.len());
        for prefix in PREFIXES {
            lists.push(self.ds.list(prefix).await.map_err(ds_err)?);
        }
        let mut st = self.state.lock().await;
        st.endpoints.clear();
        st.policies.clear();
        st.defaults = ClusterDefaults::default();
        st.rules_gen += 1;
        let mut revs = [0; 3];
        for (i, (prefix, l)) in PREFIXES.into_iter().zip(&lists).enumerate() {
            for kv in &l.kvs {
                upsert(&mut st, prefix, kv);
            }
            revs[i] = l.revision;
        }
        Ok(revs)
    }

    /// Compiles the current state and applies it.
    async fn sync(&self) -> Result<Applied, EngineError> {
        let mut st = self.state.lock().await;
        self.apply_locked(&mut st).await
    }

    /// Under unchanged policies, a change of endpoints of known apps is
    /// a membership change (sets only, no compile); anything else is
    /// compiled and applied in full.
    async fn apply_locked(&self, st: &mut State) -> Result<Applied, EngineError> {
        let eps: Vec<EndpointAddr> = st.endpoints.values().cloned().collect();
        if st.applied_gen == Some(st.rules_gen)
            && let Some(a) = self.enforcer.apply_members(&eps).await?
        {
            return Ok(a);
        }
        let policies: Vec<Policy> = st.policies.values().cloned().collect();
        let cluster = st.defaults.over(&self.cluster);
        let a = self
            .enforcer
            .apply(compile(&policies, &eps, &cluster))
            .await?;
        st.applied_gen = Some(st.rules_gen);
        Ok(a)
    }

    /// A container of this host is up (called by ADD after its record is
    /// written): returns once its addresses are in the kernel's sets.
    pub async fn endpoint_up(&self, key: &str, ep: &Endpoint) -> Result<Applied, EngineError> {
        let mut st = self.state.lock().await;
        st.endpoints.insert(key.to_string(), endpoint_addr(ep));
        self.apply_locked(&mut st).await
    }

    /// A container of this host is gone (DEL).
    pub async fn endpoint_down(&self, key: &str) -> Result<Applied, EngineError> {
        let mut st = self.state.lock().await;
        st.endpoints.remove(key);
        self.apply_locked(&mut st).await
    }

    /// Traces a flow through the compilation in the kernel.
    pub async fn trace(&self, flow: &Flow) -> Result<Verdict, EngineError> {
        let c: Compiled = self.enforcer.current().await.ok_or(EngineError::NotReady)?;
        Ok(trace(&c, flow)?)
    }

    pub async fn stats(&self) -> Result<Vec<EdgeCounter>, EngineError> {
        Ok(self.enforcer.stats().await?)
    }

    /// Follows one prefix; on a broken watch, waits and starts again from
    /// a fresh listing (the kernel keeps the last rules meanwhile).
    async fn follow(self: Arc<Self>, prefix: &'static str, mut rev: Revision) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.follow_once(prefix, rev).await {
                // A resync or a watch that ended: relist soon (never spin).
                Ok(()) => {
                    delay = Duration::from_millis(200);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    tracing::warn!(prefix, error = %e, "policy watch broken; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            match self.relist().await {
                Ok(revs) => {
                    if let Some(i) = PREFIXES.iter().position(|p| *p == prefix) {
                        rev = revs[i];
                    }
                    if let Err(e) = self.sync().await {
                        tracing::error!(error = %e, "policy apply failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "policy relist failed"),
            }
        }
    }

    async fn follow_once(&self, prefix: &'static str, rev: Revision) -> Result<(), EngineError> {
        let mut w = self.ds.watch(prefix, rev + 1).await.map_err(ds_err)?;
        while let Some(item) = w.next().await {
            match item.map_err(ds_err)? {
                WatchItem::Events(evs) => {
                    let mut st = self.state.lock().await;
                    for ev in &evs {
                        match ev.kind {
                            EventKind::Put => upsert(&mut st, prefix, &ev.kv),
                            EventKind::Delete => remove(&mut st, prefix, &ev.kv.key),
                        }
                    }
                    if let Err(e) = self.apply_locked(&mut st).await {
                        tracing::error!(error = %e, "policy apply failed");
                    }
                }
                // History is gone (compacted): this watch would replay
                // events older than a fresh list, resurrecting deleted
                // endpoints. End it; `follow` relists and watches from the
                // list's revision.
                WatchItem::Resync { revision } => {
                    tracing::info!(
                        prefix,
                        revision,
                        "policy watch: history compacted, resyncing"
                    );
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// What the engine follows: endpoint records, policies, cluster defaults.
const PREFIXES: [&str; 3] = [ENDPOINTS_PREFIX, POLICIES_PREFIX, DEFAULTS_KEY];

fn upsert(st: &mut State, prefix: &str, kv: &KeyValue) {
    if prefix == DEFAULTS_KEY {
        st.rules_gen += 1;
        st.defaults = match super::defaults::decode(kv) {
            Ok(d) => d,
            Err(e) => {
                // The host's config decides until the document is fixed.
                tracing::warn!(error = %e, "policy defaults document ignored");
                ClusterDefaults::default()
            }
        };
    } else if prefix == POLICIES_PREFIX {
        st.rules_gen += 1;
        match decode(kv) {
            Ok((p, _)) => {
                st.policies.insert(kv.key.clone(), p);
            }
            Err(e) => tracing::warn!(error = %e, "policy document ignored"),
        }
    } else {
        match serde_json::from_slice::<Endpoint>(&kv.value) {
            Ok(ep) => {
                st.endpoints.insert(kv.key.clone(), endpoint_addr(&ep));
            }
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "endpoint record ignored"),
        }
    }
}

fn remove(st: &mut State, prefix: &str, key: &str) {
    if prefix == DEFAULTS_KEY {
        st.rules_gen += 1;
        st.defaults = ClusterDefaults::default();
    } else if prefix == POLICIES_PREFIX {
        st.rules_gen += 1;
        st.policies.remove(key);
    } else {
        st.endpoints.remove(key);
    }
}
