//! flatnetd's core: serves the control API, turns ADD/DEL/CHECK/GC into
//! IPAM calls and kernel programming, and reconciles after a restart.
//!
//! With `[[bgp.peer]]`s configured an embedded BGP speaker advertises this
//! host's blocks ([`crate::routing`]); readiness is "flatnetd up, datastore
//! reachable and (with peers) at least one session Established".

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::api::{
    API_VERSION, AddArgs, Answer, ApiError, CheckArgs, DelArgs, Endpoint, ErrorKind, GcArgs,
    GcReport, IpamView, MAX_LINE, Op, Outcome, Request, Response, Status,
};
use crate::config::Config;
use crate::dataplane::{Attachment, Dataplane, DpError, host_ifname};
use crate::ipam::{AddressManager, FlatnetIpam, IpamError, open_store};
use crate::metrics::Metrics;
use crate::routing::BgpRouting;
use crate::store::EndpointStore;

pub struct Agent {
    cfg: Config,
    dp: Dataplane,
    ipam: Arc<dyn AddressManager>,
    store: EndpointStore,
    metrics: Metrics,
    /// The BGP speaker, when peers are configured.
    bgp: Option<Arc<BgpRouting>>,
    started: Instant,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// ADDs hold it shared from allocation to record; GC holds it
    /// exclusively, so GC never sees an allocation whose record is not
    /// written yet (it would release an address an ADD is about to return).
    gc_lock: tokio::sync::RwLock<()>,
    /// Blocks we already installed a blackhole route for.
    blackholes: Mutex<HashSet<String>>,
    /// Host veths (index, name) a DEL made inert, deleted in the background:
    /// a veth deletion waits for RCU grace periods (tens of ms), and a DEL
    /// need not.
    reap: tokio::sync::mpsc::UnboundedSender<(u32, String)>,
}

/// Deletes the veths DELs left behind, all queued ones in one kernel batch. A crash before they are gone leaves unrecorded flatnet veths,
/// which the restart reconciliation removes.
async fn reaper(dp: Dataplane, mut rx: tokio::sync::mpsc::UnboundedReceiver<(u32, String)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(x) = rx.try_recv() {
            batch.push(x);
        }
        let indexes = batch.iter().map(|(i, _)| *i).collect();
        if let Err(e) = dp.del_indexes(indexes).await {
            let names: Vec<&str> = batch.iter().map(|(_, n)| n.as_str()).collect();
            tracing::warn!(links = ?names, error = %e, "deleting detached veths failed");
        }
    }
}

fn dp_err(e: DpError) -> ApiError {
    let kind = match &e {
        DpError::NetnsNotFound(_) => ErrorKind::NetnsNotFound,
        DpError::IfnameTaken(_) => ErrorKind::IfnameTaken,
        DpError::BadIfname(_) => ErrorKind::InvalidRequest,
        DpError::Check(_) => ErrorKind::CheckFailed,
        _ => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

fn ipam_err(e: IpamError) -> ApiError {
    let kind = match &e {
        IpamError::Exhausted(_) => ErrorKind::PoolExhausted,
        IpamError::Unavailable(_) => ErrorKind::DatastoreUnavailable,
        IpamError::Other(_) => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

fn store_err(e: crate::store::StoreError) -> ApiError {
    let kind = match &e {
        crate::store::StoreError::Unavailable(_) => ErrorKind::DatastoreUnavailable,
        _ => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

/// Runs a blocking IPAM call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IpamError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(ipam_err)
}

/// Connects the datastore named by the config and builds the allocator
/// over it; the store is returned too (endpoint records share it).
pub async fn open_ipam(
    cfg: &Config,
) -> Result<(Arc<dyn AddressManager>, flatnet_ipam::AnyStore), IpamError> {
    let pools: Vec<_> = cfg
        .pools
        .iter()
        .map(|p| (p.cidr.0, p.block_prefix()))
        .collect();
    let store = open_store(&cfg.datastore.url).await?;
    let ipam = FlatnetIpam::open(store.clone(), &cfg.node.name, &pools).await?;
    Ok((Arc::new(ipam), store))
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
        let store = EndpointStore::open(ds, &cfg.node.name)?;
        let imported = store.import_legacy(&cfg.dataplane.state_dir).await;
        if imported > 0 {
            tracing::info!(
                imported,
                "moved endpoint records from state_dir into the datastore"
            );
        }
        let (reap, reap_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(reaper(dp.clone(), reap_rx));
        let bgp = BgpRouting::start(&cfg).await?;
        if let Some(b) = &bgp {
            tokio::spawn(b.clone().run(ipam.clone()));
        }
        Ok(Arc::new(Agent {
            cfg,
            dp,
            reap,
            ipam,
            store,
            metrics: Metrics::new(),
            bgp,
            started: Instant::now(),
            locks: Mutex::new(HashMap::new()),
            gc_lock: tokio::sync::RwLock::new(()),
            blackholes: Mutex::new(HashSet::new()),
        }))
    }

    fn lock_for(&self, handle: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(handle.to_string()).or_default().clone()
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
            Op::Add(a) => self.add(a).await.map(Answer::Endpoint),
            Op::Del(a) => self.del(a).await.map(|_| Answer::Done),
            Op::Check(a) => self.check(a).await.map(|_| Answer::Done),
            Op::Gc(a) => self.gc(a).await.map(Answer::Gc),
            Op::Status => Ok(Answer::Status(self.status().await)),
            Op::Endpoints => self.endpoints().await.map(Answer::Endpoints),
            Op::IpamShow => self.ipam_view().await.map(Answer::Ipam),
            Op::IpamCheck => self.ipam_check().await.map(Answer::IpamCheck),
        };
        if !name.is_empty() {
            // ADD may have claimed a block, DEL/GC released one.
            if let Some(b) = &self.bgp {
                b.nudge();
            }
            self.metrics
                .observe(name, r.is_ok(), t.elapsed().as_secs_f64());
        }
        r
    }

    fn validate_ref(container_id: &str, ifname: &str) -> Result<(), ApiError> {
        if container_id.is_empty() || container_id.len() > 255 || container_id.contains(' ') {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                "container id must be 1..255 characters without spaces",
            ));
        }
        if !crate::dataplane::valid_ifname(ifname) {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                format!("invalid interface name {ifname:?}"),
            ));
        }
        Ok(())
    }

    async fn add(self: &Arc<Self>, a: AddArgs) -> Result<Endpoint, ApiError> {
        let r = &a.attachment;
        Self::validate_ref(&r.container_id, &r.ifname)?;
        let handle = r.handle();
        // Lock order everywhere: gc_lock, then the attachment's lock.
        let _gc = self.gc_lock.read().await;
        let lock = self.lock_for(&handle);
        let _g = lock.lock().await;
        crate::dataplane::open_netns(std::path::Path::new(&a.netns)).map_err(dp_err)?;
        // Repeated ADD: answer with what exists when it is still right.
        if let Some(stored) = self
            .store
            .get(&r.container_id, &r.ifname)
            .await
            .map_err(store_err)?
        {
            let ep = stored.ep;
            let att = self.attachment(&ep.container_id, &ep.ifname, &ep.netns, ep.v4, ep.v6);
            if ep.netns == a.netns && self.dp.check(&att).await.is_ok() {
                return Ok(ep);
            }
            // Stale or different: rebuild from scratch, keeping the address.
            self.dp.del(&ep.host_ifname).await.map_err(dp_err)?;
            self.store
                .remove_at(&r.container_id, &r.ifname, stored.rev)
                .await
                .map_err(store_err)?;
        }
        self.add_fresh(&a, &handle).await
    }

    fn attachment(
        &self,
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

    async fn add_fresh(self: &Arc<Self>, a: &AddArgs, handle: &str) -> Result<Endpoint, ApiError> {
        let r = &a.attachment;
        let ipam = self.ipam.clone();
        let h = handle.to_string();
        let app = a.app.clone();
        let t0 = Instant::now();
        let alloc = blocking(move || ipam.allocate(&h, app.as_deref())).await?;
        let t_alloc = t0.elapsed();
        let addrs = alloc.addrs;
        let release = |this: &Arc<Self>| {
            let ipam = this.ipam.clone();
            let h = handle.to_string();
            async move {
                if let Err(e) = blocking(move || ipam.release(&h)).await {
                    tracing::error!(handle = %handle, error = %e, "rollback: release failed");
                }
            }
        };
        for b in &alloc.own_blocks {
            if let Err(e) = self.ensure_blackhole(*b).await {
                release(self).await;
                return Err(e);
            }
        }
        let att = self.attachment(&r.container_id, &r.ifname, &a.netns, addrs.v4, addrs.v6);
        let t1 = Instant::now();
        let built = match self.dp.add(&att).await {
            Ok(b) => b,
            Err(e) => {
                release(self).await;
                return Err(dp_err(e));
            }
        };
        let ep = Endpoint {
            node: self.cfg.node.name.clone(),
            container_id: r.container_id.clone(),
            ifname: r.ifname.clone(),
            netns: a.netns.clone(),
            host_ifname: built.host_ifname,
            host_mac: built.host_mac,
            container_mac: built.container_mac,
            v4: addrs.v4,
            v6: addrs.v6,
            app: a.app.clone(),
            network: a.network.clone(),
        };
        let t_kernel = t1.elapsed();
        if let Err(e) = self.store.put(&ep, None).await {
            let _ = self.dp.del(&ep.host_ifname).await;
            release(self).await;
            return Err(store_err(e));
        }
        tracing::info!(
            handle = %handle, v4 = ?ep.v4, v6 = ?ep.v6, host_if = %ep.host_ifname, app = ?ep.app,
            ipam_ms = t_alloc.as_secs_f64() * 1e3, kernel_ms = t_kernel.as_secs_f64() * 1e3,
            "endpoint added"
        );
        Ok(ep)
    }

    /// A blackhole route for a block this host owns, installed once.
    async fn ensure_blackhole(&self, net: ipnetwork::IpNetwork) -> Result<(), ApiError> {
        let key = net.to_string();
        let known = self
            .blackholes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key);
        if known {
            return Ok(());
        }
        self.dp.ensure_blackhole(net).await.map_err(dp_err)?;
        self.blackholes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Ok(())
    }

    /// A blackhole route for every block this host owns (at start).
    async fn ensure_blackholes(&self) -> Result<(), ApiError> {
        let ipam = self.ipam.clone();
        let blocks = blocking(move || ipam.blocks()).await?;
        for b in blocks {
            if let Ok(net) = b.cidr.parse::<ipnetwork::IpNetwork>() {
                self.ensure_blackhole(net).await?;
            }
        }
        Ok(())
    }

    async fn del(self: &Arc<Self>, a: DelArgs) -> Result<(), ApiError> {
        let r = &a.attachment;
        if r.container_id.is_empty() {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                "container id is empty",
            ));
        }
        let handle = r.handle();
        let lock = self.lock_for(&handle);
        let _g = lock.lock().await;
        self.remove_attachment(&r.container_id, &r.ifname, true)
            .await?;
        Ok(())
    }

    /// Removes kernel state, the allocation and the record; idempotent.
    /// With `defer_veth` (DEL) a recorded attachment is made inert (host
    /// routes gone) and its veth is deleted by the reaper after the answer;
    /// otherwise (GC, restart, no record) the veth is deleted before.
    async fn remove_attachment(
        &self,
        id: &str,
        ifname: &str,
        defer_veth: bool,
    ) -> Result<(), ApiError> {
        let stored = self.store.get(id, ifname).await.map_err(store_err)?;
        let host_if = match &stored {
            Some(s) => s.ep.host_ifname.clone(),
            None => host_ifname(id, ifname),
        };
        let t0 = Instant::now();
        match &stored {
            Some(s) if defer_veth => {
                let idx = self
                    .dp
                    .detach(&host_if, s.ep.v4, s.ep.v6)
                    .await
                    .map_err(dp_err)?;
                if let Some(i) = idx {
                    let _ = self.reap.send((i, host_if.clone()));
                }
            }
            _ => self.dp.del(&host_if).await.map_err(dp_err)?,
        }
        let t_kernel = t0.elapsed();
        let ipam = self.ipam.clone();
        let h = format!("{id}/{ifname}");
        let t1 = Instant::now();
        // The kernel side is gone: the allocation and the record can go in
        // either order (a crash between them leaves a record without veth or
        // an allocation without record; restart reconciliation removes
        // both), so do both at once.
        let rec = async {
            match &stored {
                Some(s) => self.store.remove_at(id, ifname, s.rev).await,
                None => Ok(()),
            }
        };
        let (rel, rec) = tokio::join!(blocking(move || ipam.release(&h)), rec);
        rel?;
        rec.map_err(store_err)?;
        let t_ipam = t1.elapsed();
        tracing::info!(
            container_id = %id, %ifname,
            kernel_ms = t_kernel.as_secs_f64() * 1e3, ipam_ms = t_ipam.as_secs_f64() * 1e3,
            "endpoint removed"
        );
        Ok(())
    }

    async fn check(self: &Arc<Self>, a: CheckArgs) -> Result<(), ApiError> {
        let r = &a.attachment;
        Self::validate_ref(&r.container_id, &r.ifname)?;
        let lock = self.lock_for(&r.handle());
        let _g = lock.lock().await;
        let ep = self
            .store
            .get(&r.container_id, &r.ifname)
            .await
            .map_err(store_err)?
            .map(|s| s.ep)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("no attachment {} on this host", r.handle()),
                )
            })?;
        if ep.netns != a.netns {
            return Err(ApiError::new(
                ErrorKind::CheckFailed,
                format!("attachment lives in {}, not {}", ep.netns, a.netns),
            ));
        }
        let mine: HashSet<std::net::IpAddr> = [ep.v4.map(Into::into), ep.v6.map(Into::into)]
            .into_iter()
            .flatten()
            .collect();
        let expected: HashSet<std::net::IpAddr> = a.expect_ips.iter().copied().collect();
        if !a.expect_ips.is_empty() && expected != mine {
            return Err(ApiError::new(
                ErrorKind::CheckFailed,
                format!("prevResult addresses {expected:?} differ from the attachment's {mine:?}"),
            ));
        }
        let att = self.attachment(&ep.container_id, &ep.ifname, &ep.netns, ep.v4, ep.v6);
        self.dp.check(&att).await.map_err(dp_err)
    }

    async fn gc(self: &Arc<Self>, a: GcArgs) -> Result<GcReport, ApiError> {
        let _gc = self.gc_lock.write().await;
        let mut valid: HashSet<String> = a.valid.iter().map(|r| r.handle()).collect();
        let (eps, _) = self.store.list().await.map_err(store_err)?;
        let mut removed = Vec::new();
        for ep in eps.into_iter().map(|s| s.ep) {
            let h = format!("{}/{}", ep.container_id, ep.ifname);
            // Another network's attachment is not this GC's business.
            let other_net = a.network.is_some() && ep.network.is_some() && a.network != ep.network;
            if other_net {
                valid.insert(h.clone());
            }
            if valid.contains(&h) {
                continue;
            }
            let lock = self.lock_for(&h);
            let _g = lock.lock().await;
            self.remove_attachment(&ep.container_id, &ep.ifname, false)
                .await?;
            removed.push(h);
        }
        let live = valid;
        let ipam = self.ipam.clone();
        let released = blocking(move || ipam.gc(&live)).await?;
        for h in released {
            if !removed.contains(&h) {
                removed.push(h);
            }
        }
        Ok(GcReport { removed })
    }

    pub async fn status(&self) -> Status {
        let ipam = self.ipam.clone();
        let reachable = tokio::task::spawn_blocking(move || ipam.reachable())
            .await
            .unwrap_or(false);
        let (routing, peers, bgp_reason) = match &self.bgp {
            None => (
                "not configured (no [[bgp.peer]])".to_string(),
                Vec::new(),
                None,
            ),
            Some(b) => {
                let peers = b.peers();
                let up = peers.iter().filter(|p| p.state == "Established").count();
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
        let ipam = self.ipam.clone();
        let (blocks, allocations) =
            blocking(move || Ok((ipam.blocks()?, ipam.allocations()?))).await?;
        Ok(IpamView {
            blocks,
            allocations,
        })
    }

    async fn ipam_check(&self) -> Result<Vec<String>, ApiError> {
        let ipam = self.ipam.clone();
        let mut problems = blocking(move || ipam.check()).await?;
        // Cross-check records against allocations.
        let ipam = self.ipam.clone();
        let allocs = blocking(move || ipam.allocations()).await?;
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
                let h = format!("{}/{}", ep.container_id, ep.ifname);
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
    async fn refresh_gauges(&self) {
        if let Ok((eps, _)) = self.store.list().await {
            self.metrics.endpoints.set(eps.len() as i64);
        }
        let ipam = self.ipam.clone();
        if let Ok(blocks) = blocking(move || ipam.blocks()).await {
            self.metrics
                .ipam_used
                .set(blocks.iter().map(|b| b.used as i64).sum());
            self.metrics
                .ipam_capacity
                .set(blocks.iter().map(|b| b.capacity as i64).sum());
        }
    }

    /// After a (re)start: adopt what is right, repair what is incomplete on
    /// the host side, and remove what belongs to containers that are gone
    /// or to ADDs that never finished.
    pub async fn reconcile(self: &Arc<Self>) -> anyhow::Result<()> {
        let (stored, bad) = self.store.list().await?;
        let eps: Vec<Endpoint> = stored.iter().map(|s| s.ep.clone()).collect();
        for b in bad {
            tracing::warn!(record = %b, "unreadable endpoint record ignored");
            self.metrics.reconcile_errors.inc();
        }
        let links = self.dp.list_links().await?;
        let link_names: HashSet<&str> = links.iter().map(|l| l.name.as_str()).collect();
        let mut live = HashSet::new();
        let (mut adopted, mut removed) = (0, 0);
        for (ep, rev) in eps.iter().zip(stored.iter().map(|s| s.rev)) {
            let h = format!("{}/{}", ep.container_id, ep.ifname);
            if link_names.contains(ep.host_ifname.as_str()) {
                let att = self.attachment(&ep.container_id, &ep.ifname, &ep.netns, ep.v4, ep.v6);
                if let Err(e) = self.dp.check(&att).await {
                    // The veth is there but something is off: rebuild host
                    // and container side in place (same addresses).
                    tracing::warn!(handle = %h, error = %e, "adopted endpoint incomplete; rebuilding");
                    if let Err(e) = self.dp.del(&ep.host_ifname).await.and(Ok(())) {
                        tracing::warn!(error = %e, "reconcile");
                    }
                    match self.dp.add(&att).await {
                        Ok(b) => {
                            let mut ep2 = ep.clone();
                            ep2.host_mac = b.host_mac;
                            ep2.container_mac = b.container_mac;
                            self.store.put(&ep2, Some(rev)).await?;
                        }
                        Err(e) => {
                            tracing::error!(handle = %h, error = %e, "cannot rebuild endpoint; removing");
                            self.metrics.reconcile_errors.inc();
                            let _ = self
                                .remove_attachment(&ep.container_id, &ep.ifname, false)
                                .await;
                            removed += 1;
                            continue;
                        }
                    }
                }
                live.insert(h);
                adopted += 1;
            } else {
                // The veth dies with its namespace: the container is gone.
                if let Err(e) = self
                    .remove_attachment(&ep.container_id, &ep.ifname, false)
                    .await
                {
                    tracing::error!(handle = %h, error = %e, "reconcile: remove failed");
                    self.metrics.reconcile_errors.inc();
                }
                removed += 1;
            }
        }
        let recorded: HashSet<&str> = eps.iter().map(|e| e.host_ifname.as_str()).collect();
        for l in &links {
            if !recorded.contains(l.name.as_str()) {
                tracing::info!(link = %l.name, owner = ?l.owner, "removing veth of an unfinished ADD");
                self.dp.del(&l.name).await?;
                removed += 1;
            }
        }
        let ipam = self.ipam.clone();
        let released = blocking(move || ipam.gc(&live))
            .await
            .map_err(anyhow::Error::from)?;
        self.ensure_blackholes()
            .await
            .map_err(anyhow::Error::from)?;
        tracing::info!(
            adopted,
            removed,
            released = released.len(),
            "reconciled after start"
        );
        Ok(())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Creates the socket (mode 0600, parent directory 0700 when we create it).
pub fn bind_socket(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        // A live flatnetd answers; a dead one left its socket behind.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use: is another flatnetd running?", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accepts control connections forever.
pub async fn serve_api(agent: Arc<Agent>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let agent = agent.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(agent, stream).await {
                        tracing::debug!(error = %e, "control connection");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on control socket");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(agent: Arc<Agent>, stream: UnixStream) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r).take(MAX_LINE as u64);
    let mut line = String::new();
    // A client that connects and says nothing must not pin a task forever.
    match tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut line)).await {
        Ok(res) => {
            res?;
        }
        Err(_) => return Ok(()),
    }
    let result = match serde_json::from_str::<Request>(&line) {
        Err(e) => {
            // Tell an old/new client apart from garbage.
            let v = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("version").and_then(|x| x.as_u64()));
            match v {
                Some(v) if v != u64::from(API_VERSION) => Outcome::Error(ApiError::new(
                    ErrorKind::UnsupportedVersion,
                    format!("flatnetd speaks API version {API_VERSION}, request has {v}"),
                )),
                _ => Outcome::Error(ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!("cannot parse request: {e}"),
                )),
            }
        }
        Ok(req) if req.version != API_VERSION => Outcome::Error(ApiError::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "flatnetd speaks API version {API_VERSION}, request has {}",
                req.version
            ),
        )),
        Ok(req) => match agent.handle(req.op).await {
            Ok(a) => Outcome::Ok(a),
            Err(e) => Outcome::Error(e),
        },
    };
    let resp = Response {
        version: API_VERSION,
        result,
    };
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

use tokio::io::AsyncReadExt as _;

/// Minimal HTTP/1.0 server for `/metrics` and `/healthz`.
pub async fn serve_metrics(agent: Arc<Agent>, listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            // Read the request head (up to 4 KiB, 5 s), however it is split.
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 4096 {
                match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
            }
            let req = String::from_utf8_lossy(&buf);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (code, ctype, body) = match path {
                "/metrics" => {
                    agent.refresh_gauges().await;
                    (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        agent.metrics.encode(),
                    )
                }
                "/healthz" => {
                    if agent.status().await.ready {
                        ("200 OK", "text/plain", "ok\n".to_string())
                    } else {
                        (
                            "503 Service Unavailable",
                            "text/plain",
                            "datastore unreachable\n".to_string(),
                        )
                    }
                }
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let head = format!(
                "HTTP/1.0 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}
