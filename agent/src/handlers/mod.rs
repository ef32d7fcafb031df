//! The attachment handlers: ADD / DEL / CHECK / GC (CNI and the CLI alike)
//! and the read-only queries (STATUS, endpoints, IPAM views).
//!
//! [`Agent`] owns the pieces every handler needs: the kernel writer
//! ([`Dataplane`]), IPAM, the endpoint records, the owned-blocks reconciler
//! and the per-attachment locks. The servers ([`crate::server`]) only call
//! [`Agent::handle`]; restart reconciliation lives in [`crate::reconcile`].

mod add;
mod bgp;
mod check;
mod del;
mod gc;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{Answer, ApiError, AttachmentRef, Endpoint, ErrorKind, IpamView, Op, Status};
use crate::blocks::OwnedBlocks;
use crate::config::Config;
use crate::ipam::{FlatnetIpam, IpamError, open_store};
use crate::kernel::{Attachment, Dataplane, DpError};
use crate::metrics::Metrics;
use crate::routing::BgpRouting;
use crate::store::EndpointStore;

pub struct Agent {
    pub(crate) cfg: Config,
    pub(crate) dp: Dataplane,
    pub(crate) ipam: Arc<FlatnetIpam>,
    pub(crate) store: EndpointStore,
    pub(crate) metrics: Metrics,
    /// The BGP speaker, when peers are configured.
    pub(crate) bgp: Option<Arc<BgpRouting>>,
    /// The one owner of "the blocks this host owns": blackholes and BGP
    /// origination follow it together.
    pub(crate) blocks: Arc<OwnedBlocks>,
    /// Learned routes in the kernel (with BGP peers only).
    pub(crate) fib: Option<Arc<crate::fib::Fib>>,
    /// The datastore (policy documents live in it too).
    pub(crate) ds: flatnet_ipam::AnyStore,
    /// Application policy, when `[policy] enabled`.
    pub(crate) policy: Option<Arc<crate::policy::engine::PolicyEngine>>,
    started: Instant,
    locks: Mutex<HashMap<AttachmentRef, Arc<tokio::sync::Mutex<()>>>>,
    /// ADDs hold it shared from allocation to record; GC holds it
    /// exclusively, so GC never sees an allocation whose record is not
    /// written yet (it would release an address an ADD is about to return).
    pub(crate) gc_lock: tokio::sync::RwLock<()>,
    /// Host veths (index, name) DELs made inert, deleted together: a veth
    /// deletion waits for RCU grace periods (tens of ms), so concurrent
    /// DELs share one kernel batch; each DEL waits for its answer.
    reap: tokio::sync::mpsc::UnboundedSender<Reap>,
    /// The file the config came from, for reloads (set by flatnetd).
    config_path: std::sync::OnceLock<PathBuf>,
}

/// One veth for the reaper, and where to say it is gone.
type Reap = (
    u32,
    String,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// Deletes the veths of DELs, all queued ones in one kernel batch, and
/// answers each DEL when its veth is gone.
async fn reaper(dp: Dataplane, mut rx: tokio::sync::mpsc::UnboundedReceiver<Reap>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(x) = rx.try_recv() {
            batch.push(x);
        }
        let indexes = batch.iter().map(|(i, _, _)| *i).collect();
        let res = dp
            .del_indexes_announced(indexes)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &res {
            let names: Vec<&str> = batch.iter().map(|(_, n, _)| n.as_str()).collect();
            tracing::warn!(links = ?names, error = %e, "deleting detached veths failed");
        }
        for (_, _, done) in batch {
            let _ = done.send(res.clone());
        }
    }
}

pub(crate) fn dp_err(e: DpError) -> ApiError {
    let kind = match &e {
        DpError::NetnsNotFound(_) => ErrorKind::NetnsNotFound,
        DpError::IfnameTaken(_) => ErrorKind::IfnameTaken,
        DpError::BadIfname(_) => ErrorKind::InvalidEnvironment,
        DpError::NotContainerNetns(..) => ErrorKind::InvalidEnvironment,
        DpError::Check(_) => ErrorKind::CheckFailed,
        _ => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

pub(crate) fn ipam_err(e: IpamError) -> ApiError {
    let kind = match &e {
        IpamError::Exhausted(_) => ErrorKind::PoolExhausted,
        IpamError::Unavailable(_) => ErrorKind::DatastoreUnavailable,
        IpamError::Other(_) => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

pub(crate) fn store_err(e: crate::store::StoreError) -> ApiError {
    let kind = match &e {
        crate::store::StoreError::Unavailable(_) => ErrorKind::DatastoreUnavailable,
        _ => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

/// Connects the datastore named by the config and builds the allocator
/// over it; the store is returned too (endpoint records share it).
pub async fn open_ipam(
    cfg: &Config,
) -> Result<(Arc<FlatnetIpam>, flatnet_ipam::AnyStore), IpamError> {
    let pools: Vec<_> = cfg.pools.iter().map(|p| p.spec()).collect();
    let store = open_store(&cfg.datastore.url).await?;
    let ipam = FlatnetIpam::open(store.clone(), &cfg.node.name, &pools).await?;
    Ok((Arc::new(ipam), store))
}

/// The attachment a record describes.
pub(crate) fn attachment_of(ep: &Endpoint) -> Attachment {
    attachment(&ep.container_id, &ep.ifname, &ep.netns, ep.v4, ep.v6)
}

pub(crate) fn attachment(
    id: &str,
    ifname: &str,
    netns: &str,
    v4: Option<std::net::Ipv4Addr>,
    v6: Option<std::net::Ipv6Addr>,
) -> Attachment {
    Attachment {
        container_id: id.into(),
        ifname: ifname.into(),
        netns: PathBuf::from(netns),
        v4,
        v6,
    }
}

/// The typed handle of a record.
pub(crate) fn ref_of(ep: &Endpoint) -> AttachmentRef {
    AttachmentRef::new(ep.container_id.clone(), ep.ifname.clone())
}

impl Agent {
    pub async fn new(cfg: Config) -> anyhow::Result<Arc<Agent>> {
        let ipv6 = cfg.pools.iter().any(|p| p.cidr.0.is_ipv6());
        let dp = Dataplane::new(cfg.dataplane.mtu, ipv6).await?;
        // The datastore may come up after us (etcd starting on the same
        // boot): wait for it rather than exit, saying why.
        let mut delay = Duration::from_millis(200);
        let (ipam, ds) = loop {
            match open_ipam(&cfg).await {
                Ok(i) => break i,
                Err(e @ (IpamError::Exhausted(_) | IpamError::Other(_))) => {
                    anyhow::bail!("datastore {}: {e}", cfg.datastore.url)
                }
                Err(e) => {
                    tracing::warn!(datastore = %cfg.datastore.url, error = %e, retry_in = ?delay, "datastore not ready");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        let store = EndpointStore::open(ds.clone(), &cfg.node.name)?;
        let imported = store.import_legacy(&cfg.dataplane.state_dir).await;
        if imported > 0 {
            tracing::info!(
                imported,
                "moved endpoint records from state_dir into the datastore"
            );
        }
        let (reap, reap_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(reaper(dp.clone(), reap_rx));
        let (bgp, fib) = start_routing(&cfg).await?;
        let pools = cfg
            .pools
            .iter()
            .map(crate::blocks::PoolAdvert::from_config)
            .collect();
        let blocks = Arc::new(OwnedBlocks::new(
            ipam.clone(),
            dp.clone(),
            bgp.clone(),
            pools,
        ));
        // Policy is in place before any ADD is served.
        let policy = if cfg.policy.enabled {
            Some(
                crate::policy::engine::PolicyEngine::start(
                    ds.clone(),
                    cfg.policy_cluster(),
                    dp.netfilter().clone(),
                )
                .await?,
            )
        } else {
            None
        };
        Ok(Arc::new(Agent {
            ds,
            policy,
            cfg,
            dp,
            reap,
            ipam,
            store,
            metrics: Metrics::new(),
            bgp,
            fib,
            blocks,
            started: Instant::now(),
            locks: Mutex::new(HashMap::new()),
            gc_lock: tokio::sync::RwLock::new(()),
            config_path: std::sync::OnceLock::new(),
        }))
    }

    /// The learned routes flatnet has in the kernel.
    pub fn fib_routes(
        &self,
    ) -> std::collections::BTreeMap<ipnetwork::IpNetwork, crate::fib::plan::NextHops> {
        self.fib.as_ref().map(|f| f.installed()).unwrap_or_default()
    }

    pub(crate) fn lock_for(&self, handle: &AttachmentRef) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(handle.clone()).or_default().clone()
    }

    /// Serves one request.
    pub async fn handle(self: &Arc<Self>, op: Op) -> Result<Answer, ApiError> {
        let name = match &op {
            Op::Add(_) => "add",
            Op::Del(_) => "del",
            Op::Check(_) => "check",
            Op::Gc(_) => "gc",
            _ => "",
        };
        let t = Instant::now();
        let r = match op {
            Op::Add(a) => self.add(a).await.map(|mut ep| {
                ep.dns = crate::dns::cni_dns(&self.cfg.dns);
                Answer::Endpoint(ep)
            }),
            Op::Del(a) => self.del(a).await.map(|_| Answer::Done),
            Op::Check(a) => self.check(a).await.map(|_| Answer::Done),
            Op::Gc(a) => self.gc(a).await.map(Answer::Gc),
            Op::Status => Ok(Answer::Status(self.status().await)),
            Op::Endpoints => self.endpoints().await.map(Answer::Endpoints),
            Op::IpamShow => self.ipam_view().await.map(Answer::Ipam),
            Op::IpamCheck => self.ipam_check().await.map(Answer::IpamCheck),
            Op::BgpNeighbors => self.bgp_neighbors().await.map(Answer::BgpNeighbors),
            Op::BgpRoutes(a) => self.bgp_routes(&a).await.map(Answer::BgpRoutes),
            Op::Fib => self.fib().await.map(Answer::Fib),
            Op::Reload => self.reload().await.map(Answer::Reloaded),
            other => match self.handle_policy(&other).await {
                Some(r) => r,
                None => Err(ApiError::new(
                    ErrorKind::InvalidRequest,
                    "unknown operation",
                )),
            },
        };
        if !name.is_empty() {
            // Owned blocks follow on their own: a claimed block nudges its
            // reconciler from ADD, an emptied one goes after its grace.
            self.metrics
                .observe(name, r.is_ok(), t.elapsed().as_secs_f64());
        }
        r
    }

    fn validate_ref(r: &AttachmentRef) -> Result<(), ApiError> {
        crate::names::check_container_id(&r.container_id)
            .and_then(|()| crate::names::check_ifname(&r.ifname))
            .map_err(|e| ApiError::new(ErrorKind::InvalidEnvironment, e))
    }

    pub async fn status(&self) -> Status {
        let reachable = self.ipam.reachable().await;
        let (routing, peers, bgp_reason) = match &self.bgp {
            None => (
                "not configured (no [[bgp.peer]])".to_string(),
                Vec::new(),
                None,
            ),
            Some(b) => {
                let peers = b.peers();
                let up = peers
                    .iter()
                    .filter(|p| p.state == flatnet_bgp::fsm::State::Established)
                    .count();
                (
                    format!("bgp: {up}/{} peers established", peers.len()),
                    peers,
                    b.not_ready(),
                )
            }
        };
        let reason = if !reachable {
            Some(format!(
                "datastore {} not reachable",
                self.cfg.datastore.url
            ))
        } else {
            bgp_reason
        };
        Status {
            node: self.cfg.node.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.started.elapsed().as_secs(),
            ready: reason.is_none(),
            reason,
            datastore: self.cfg.datastore.url.to_string(),
            datastore_reachable: reachable,
            routing,
            endpoints: self.store.list().await.map(|(e, _)| e.len()).unwrap_or(0),
            peers,
        }
    }

    /// This node's records, read from the datastore.
    async fn endpoints(&self) -> Result<Vec<Endpoint>, ApiError> {
        let (eps, _) = self.store.list().await.map_err(store_err)?;
        Ok(eps.into_iter().map(|s| s.ep).collect())
    }

    async fn ipam_view(&self) -> Result<IpamView, ApiError> {
        let blocks = self.ipam.blocks().await.map_err(ipam_err)?;
        let allocations = self.ipam.allocations().await.map_err(ipam_err)?;
        Ok(IpamView {
            blocks,
            allocations,
        })
    }

    async fn ipam_check(&self) -> Result<Vec<String>, ApiError> {
        let mut problems = self.ipam.check().await.map_err(ipam_err)?;
        // Cross-check records against allocations.
        let allocs = self.ipam.allocations().await.map_err(ipam_err)?;
        let (eps, bad) = self.store.list().await.map_err(store_err)?;
        problems.extend(bad);
        for ep in eps.iter().map(|s| &s.ep) {
            for ip in [
                ep.v4.map(std::net::IpAddr::V4),
                ep.v6.map(std::net::IpAddr::V6),
            ]
            .into_iter()
            .flatten()
            {
                let h = ref_of(ep).to_string();
                if !allocs.iter().any(|a| a.addr == ip && a.handle == h) {
                    problems.push(format!(
                        "endpoint {h} uses {ip} but IPAM has no such allocation"
                    ));
                }
            }
        }
        Ok(problems)
    }

    /// Gauges are computed when scraped, not on every ADD.
    pub(crate) async fn refresh_gauges(&self) {
        if let Some(b) = &self.bgp
            && let Ok(peers) = b.speaker().peers().await
        {
            self.metrics.record_peers(&peers);
        }
        if let Ok((eps, _)) = self.store.list().await {
            self.metrics.endpoints.set(eps.len() as i64);
        }
        if let Ok(blocks) = self.ipam.blocks().await {
            self.metrics
                .ipam_used
                .set(blocks.iter().map(|b| b.used as i64).sum());
            self.metrics
                .ipam_capacity
                .set(blocks.iter().map(|b| b.capacity as i64).sum());
        }
        if let Some(p) = &self.policy
            && let Ok(stats) = p.stats().await
        {
            for c in stats {
                let l = crate::metrics::RuleLabels { rule: c.rule };
                self.metrics
                    .policy_packets
                    .get_or_create(&l)
                    .set(c.packets as i64);
                self.metrics
                    .policy_bytes
                    .get_or_create(&l)
                    .set(c.bytes as i64);
            }
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Without graceful restart, the routes a previous run left wait this long
/// for the new sessions before they are swept.
const SWEEP_WITHOUT_GR: Duration = Duration::from_secs(30);

/// The speaker and the FIB that follows it: the FIB first, so the speaker
/// knows whether learned routes survived a restart (then it restarts
/// gracefully and defers selection).
async fn start_routing(
    cfg: &Config,
) -> anyhow::Result<(Option<Arc<BgpRouting>>, Option<Arc<crate::fib::Fib>>)> {
    if cfg.bgp.peers.is_empty() {
        return Ok((None, None));
    }
    let fib = Arc::new(crate::fib::Fib::open().await?);
    fib.set_links(crate::fib::links_of(&cfg.bgp.peers));
    let adopted = fib.adopted();
    if adopted > 0 {
        tracing::info!(
            adopted,
            "learned routes of a previous run kept in the kernel"
        );
    }
    let Some(bgp) = BgpRouting::start(cfg, adopted > 0).await? else {
        return Ok((None, None));
    };
    tokio::spawn(bgp.clone().run());
    let gate = if bgp.restarting() {
        crate::fib::SweepGate::Selection(bgp.speaker().selection_done())
    } else {
        crate::fib::SweepGate::Timer(if adopted > 0 {
            SWEEP_WITHOUT_GR
        } else {
            Duration::ZERO
        })
    };
    tokio::spawn(fib.clone().run(bgp.speaker().clone(), gate));
    Ok((Some(bgp), Some(fib)))
}
