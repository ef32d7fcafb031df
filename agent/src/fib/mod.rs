//! The FIB room: learned BGP routes into the kernel.
//!
//! Owns the routes flatnet learns from its peers: protocol 200 at metric
//! [`writer::FIB_METRIC`], ECMP (RTA_MULTIPATH) when the speaker's
//! multipath set has several next hops. A link-local next hop is installed
//! on the interface of the session it was learned from ([`links_of`]); an
//! IPv4 route with an IPv6 next hop (RFC 8950) is `via inet6` (RTA_VIA).
//! Where the kernel has nexthop objects, routes reference them by `nhid`
//! ([`nh`] decides which objects, [`nhmsg`] speaks the messages): one
//! object per gateway and interface, one group per ECMP set. It may touch only those: host
//! routes and blackholes (also protocol 200, metric 0) belong to
//! [`crate::kernel`] and [`crate::blocks`], and a new route is created
//! without replace, so a route someone else installed is never changed.
//!
//! [`plan`] is pure (desired against installed, unit-tested without root);
//! [`writer`] is the netlink side. [`Fib::run`] follows the speaker's
//! best-path events, and after each burst applies one batch. At start the
//! routes a previous run left are adopted: those the new selection wants
//! as they are stay untouched, the rest are removed only once selection ran
//! after every peer's End-of-RIB (RFC 4724 selection deferral) or the
//! stale timer passed.

pub mod nh;
pub mod nhmsg;
pub mod plan;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use flatnet_bgp::speaker::{RibEvent, Speaker};
use ipnetwork::IpNetwork;
use tokio::sync::{broadcast, watch};

use nh::{NhKey, NhTable};
use nhmsg::{NhError, NhKind, NhRequest};
use plan::{FibPlan, Installed, NextHops, PeerLinks, desired_of, plan as full_plan, plan_dirty};
use writer::{FibWriter, Outcome};

/// The interface of every link-local peer, by index in flatnetd's
/// namespace. An interface that does not exist (yet) is logged and left
/// out: that peer's link-local next hops are not installed until a reload
/// finds it.
pub fn links_of(peers: &[crate::config::BgpPeer]) -> PeerLinks {
    let mut out = PeerLinks::new();
    for p in peers {
        let Some(name) = p.interface.as_deref() else {
            continue;
        };
        match flatnet_bgp::session::socket::if_index(name) {
            Ok(i) => {
                out.insert(p.key(), i);
            }
            Err(e) => {
                tracing::warn!(peer = %p.address, interface = name, error = %e,
                    "interface not found: link-local next hops of this peer are not installed")
            }
        }
    }
    out
}

/// When the routes a previous run left may be swept.
pub enum SweepGate {
    /// Once the speaker's (deferred) route selection ran.
    Selection(watch::Receiver<bool>),
    /// After this long (no graceful restart: no End-of-RIB to wait for).
    Timer(Duration),
}

#[derive(Default)]
struct State {
    /// Interfaces of the link-local peers' sessions.
    links: PeerLinks,
    desired: BTreeMap<IpNetwork, NextHops>,
    installed: BTreeMap<IpNetwork, Installed>,
    /// flatnet's nexthop objects (empty without kernel support).
    nh: NhTable,
    swept: bool,
}

/// The FIB: desired routes from the speaker, installed routes in the kernel.
pub struct Fib {
    writer: FibWriter,
    state: Mutex<State>,
    /// The peers' interfaces changed: rebuild the desired set.
    relink: tokio::sync::Notify,
}

/// Counts of one applied batch (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    pub installed: usize,
    pub removed: usize,
    pub failed: usize,
}

impl Fib {
    /// Opens the netlink connection, finds out whether the kernel takes
    /// nexthop objects, and adopts the nexthop objects (protocol 200) and
    /// learned routes a previous run left in the kernel.
    pub async fn open() -> Result<Fib, writer::FibError> {
        let mut writer = FibWriter::new()?;
        let objs = writer.probe_nexthops().await.unwrap_or_default();
        let mut table = NhTable::new(
            objs.iter()
                .filter(|o| o.protocol != crate::kernel::RTPROT_FLATNET)
                .map(|o| o.id),
        );
        let ours = || {
            objs.iter()
                .filter(|o| o.protocol == crate::kernel::RTPROT_FLATNET)
        };
        for o in ours() {
            match &o.kind {
                NhKind::One(k) => table.adopt_one(o.id, *k),
                NhKind::Group(_) => {}
                // Not a shape flatnet makes: left alone, its id not reused.
                NhKind::Other => table.reserve(o.id),
            }
        }
        for o in ours() {
            if let NhKind::Group(m) = &o.kind
                && !table.adopt_group(o.id, m.clone())
            {
                // Left alone, and so are its members: deleting one would
                // change the group under the routes using it.
                table.reserve(o.id);
                for i in m {
                    table.acquire_id(*i);
                }
            }
        }
        let found = writer.dump().await?;
        let mut installed = BTreeMap::new();
        for (n, d) in found {
            let (hops, nhid) = match d.nhid {
                Some(id) if table.acquire_id(id) => {
                    (table.hops_of(id).unwrap_or_default(), Some(id))
                }
                _ => (d.hops, None),
            };
            if hops.is_empty() {
                continue;
            }
            installed.insert(
                n,
                Installed {
                    hops,
                    adopted: true,
                    nhid,
                },
            );
        }
        if writer.nexthops() {
            tracing::info!(adopted = table.len(), "FIB: routes by nexthop objects");
        }
        Ok(Fib {
            writer,
            state: Mutex::new(State {
                installed,
                nh: table,
                ..State::default()
            }),
            relink: tokio::sync::Notify::new(),
        })
    }

    /// Sets the interfaces link-local next hops are installed on (at start
    /// and on reload); a change re-plans every route.
    pub fn set_links(&self, links: PeerLinks) {
        let mut s = self.state();
        if s.links != links {
            s.links = links;
            self.relink.notify_one();
        }
    }

    /// Whether routes go by nexthop objects.
    pub fn uses_nexthop_objects(&self) -> bool {
        self.writer.nexthops()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many routes a previous run left (at start: whether we restart).
    pub fn adopted(&self) -> usize {
        self.state()
            .installed
            .values()
            .filter(|i| i.adopted)
            .count()
    }

    /// The learned routes flatnet has in the kernel.
    pub fn installed(&self) -> BTreeMap<IpNetwork, NextHops> {
        self.state()
            .installed
            .iter()
            .map(|(n, i)| (*n, i.hops.clone()))
            .collect()
    }

    /// Takes one event into the desired set; returns its prefix.
    fn take(&self, e: &RibEvent) -> Option<IpNetwork> {
        let mut s = self.state();
        let (net, hops) = desired_of(e, &s.links)?;
        match hops {
            Some(h) => s.desired.insert(net, h),
            None => s.desired.remove(&net),
        };
        Some(net)
    }

    /// The nexthop objects for the routes a plan adds or replaces, created
    /// in the kernel where new: prefix → object. A route whose gateway is
    /// not on-link, or whose object the kernel refused, is left out (plain
    /// next hops).
    async fn objects_for(&self, plan: &FibPlan) -> BTreeMap<IpNetwork, u32> {
        let mut want = BTreeMap::new();
        if !self.writer.nexthops() {
            return want;
        }
        let routes = || plan.add.iter().chain(&plan.replace);
        let gws: BTreeSet<IpAddr> = routes()
            .flat_map(|(_, h)| h.iter())
            .filter(|h| h.ifindex.is_none())
            .map(|h| h.gateway)
            .collect();
        let oifs: BTreeMap<IpAddr, Option<u32>> = futures::future::join_all(
            gws.into_iter()
                .map(|g| async move { (g, self.writer.on_link(g).await) }),
        )
        .await
        .into_iter()
        .collect();
        let mut create = Vec::new();
        {
            let mut s = self.state();
            for (net, hops) in routes() {
                let keys: Option<BTreeSet<NhKey>> = hops
                    .iter()
                    .map(|h| {
                        Some(NhKey {
                            gateway: h.gateway,
                            ifindex: h.ifindex.or(oifs.get(&h.gateway).copied().flatten())?,
                        })
                    })
                    .collect();
                if let Some(id) = keys.and_then(|k| s.nh.acquire(&k, &mut create)) {
                    want.insert(*net, id);
                }
            }
        }
        if create.is_empty() {
            return want;
        }
        let ids: Vec<u32> = create.iter().map(|(i, _)| *i).collect();
        let reqs = create
            .into_iter()
            .map(|(i, spec)| NhRequest::New(i, spec))
            .collect();
        let res = self.writer.nexthop_requests(reqs).await;
        let mut s = self.state();
        for (id, r) in ids.into_iter().zip(res) {
            if let Err(e) = r {
                tracing::warn!(id, error = %e, "nexthop object not created: plain next hops");
                s.nh.forget(id);
                s.nh.reserve(id);
            }
        }
        want.retain(|_, id| s.nh.contains(*id));
        want
    }

    /// Deletes the nexthop objects no route uses any more.
    async fn collect_objects(&self) {
        let dead = self.state().nh.garbage();
        if dead.is_empty() {
            return;
        }
        let reqs = dead.iter().map(|i| NhRequest::Del(*i)).collect();
        let res = self.writer.nexthop_requests(reqs).await;
        let mut s = self.state();
        for (id, r) in dead.into_iter().zip(res) {
            match r {
                Ok(()) | Err(NhError::Errno(2)) => {}
                Err(e) => {
                    tracing::warn!(id, error = %e, "nexthop object not deleted");
                    s.nh.reserve(id);
                }
            }
        }
    }

    /// Applies a plan and records what the kernel now holds: nexthop
    /// objects first, then the routes (one pipelined batch), then the
    /// objects no route uses any more are deleted. Public for benchmarks.
    pub async fn apply(&self, plan: FibPlan) -> BatchStats {
        let mut st = BatchStats::default();
        let want = self.objects_for(&plan).await;
        if !plan.is_empty() {
            for o in self.writer.apply(plan, |n| want.get(n).copied()).await {
                let mut s = self.state();
                match o {
                    Outcome::Installed(n, hops, nhid) => {
                        st.installed += 1;
                        let old = s.installed.insert(
                            n,
                            Installed {
                                hops,
                                adopted: false,
                                nhid,
                            },
                        );
                        if let Some(id) = old.and_then(|o| o.nhid) {
                            s.nh.release(id);
                        }
                    }
                    Outcome::Removed(n) => {
                        st.removed += 1;
                        if let Some(id) = s.installed.remove(&n).and_then(|o| o.nhid) {
                            s.nh.release(id);
                        }
                    }
                    Outcome::Failed(n, e) => {
                        st.failed += 1;
                        if let Some(id) = want.get(&n) {
                            s.nh.release(*id);
                        }
                        tracing::warn!(prefix = %n, error = %e, "kernel route not programmed");
                    }
                }
            }
        }
        self.collect_objects().await;
        st
    }

    /// The changes for `dirty` prefixes; adopted routes the selection wants
    /// as they are become this run's (left alone, removed on withdraw).
    fn plan_for(&self, dirty: &BTreeSet<IpNetwork>) -> FibPlan {
        let mut s = self.state();
        let p = plan_dirty(dirty, &s.desired, &s.installed);
        let State {
            desired, installed, ..
        } = &mut *s;
        for n in dirty {
            if desired.contains_key(n)
                && let Some(i) = installed.get_mut(n)
            {
                i.adopted = false;
            }
        }
        p
    }

    /// Rebuilds the desired set from the speaker's whole Loc-RIB (at start,
    /// and when the event stream lagged).
    async fn resync(&self, speaker: &Speaker) -> BTreeSet<IpNetwork> {
        let rib = match speaker.rib().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "FIB resync: speaker stopped");
                return BTreeSet::new();
            }
        };
        let links = self.state().links.clone();
        let mut desired = BTreeMap::new();
        for entry in rib {
            let best = entry.paths.iter().find(|p| p.best).cloned();
            let multipath = entry
                .paths
                .iter()
                .filter(|p| p.multipath)
                .cloned()
                .collect();
            let e = RibEvent {
                prefix: entry.prefix,
                best,
                multipath,
            };
            if let Some((n, Some(h))) = desired_of(&e, &links) {
                desired.insert(n, h);
            }
        }
        let mut s = self.state();
        let dirty: BTreeSet<IpNetwork> = desired
            .keys()
            .chain(s.desired.keys())
            .chain(s.installed.keys())
            .copied()
            .collect();
        s.desired = desired;
        dirty
    }

    /// Removes what a previous run left and nobody selected.
    async fn sweep(&self) -> BatchStats {
        let p = {
            let mut s = self.state();
            s.swept = true;
            let p = full_plan(&s.desired, &s.installed, true);
            for i in s.installed.values_mut() {
                i.adopted = false;
            }
            p
        };
        let st = self.apply(p).await;
        tracing::info!(
            removed = st.removed,
            "FIB: stale routes of the previous run swept"
        );
        st
    }

    /// Follows the speaker forever: each burst of events is one batch.
    pub async fn run(self: std::sync::Arc<Self>, speaker: Speaker, gate: SweepGate) {
        let mut rx = speaker.subscribe();
        let mut dirty = self.resync(&speaker).await;
        let (mut selected, deadline) = match gate {
            SweepGate::Selection(w) => (Some(w), None),
            SweepGate::Timer(d) => (None, Some(tokio::time::Instant::now() + d)),
        };
        loop {
            if !self.state().swept {
                let ready = match (&selected, deadline) {
                    (Some(w), _) => *w.borrow(),
                    (None, Some(d)) => tokio::time::Instant::now() >= d,
                    (None, None) => true,
                };
                if ready {
                    let p = self.plan_for(&std::mem::take(&mut dirty));
                    self.apply(p).await;
                    self.sweep().await;
                }
            }
            if !dirty.is_empty() {
                let p = self.plan_for(&std::mem::take(&mut dirty));
                let big = p.add.len() + p.replace.len() + p.remove.len() >= TRIM_AFTER;
                let st = self.apply(p).await;
                tracing::debug!(?st, "FIB batch");
                if big {
                    // Off the runtime's threads: trimming walks the heaps.
                    drop(tokio::task::spawn_blocking(release_free_memory));
                }
            }
            let swept = self.state().swept;
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => dirty.extend(self.take(&e)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "FIB fell behind the speaker: resync");
                        dirty.extend(self.resync(&speaker).await);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                r = async { match selected.as_mut() { Some(w) => w.changed().await, None => std::future::pending().await } }, if !swept => {
                    if r.is_err() { selected = None; }
                }
                _ = self.relink.notified() => dirty.extend(self.resync(&speaker).await),
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } }, if !swept => {}
            }
            // The rest of the burst, without waiting.
            loop {
                match rx.try_recv() {
                    Ok(e) => dirty.extend(self.take(&e)),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        dirty.extend(self.resync(&speaker).await);
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// Route changes in one batch after which freed heap is handed back.
const TRIM_AFTER: usize = 1000;

/// A burst of thousands of routes (a ToR's full table at start) leaves the
/// transient memory of its events and plans freed but resident in glibc's
/// heaps; hand the free pages back to the kernel once the burst is in.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; no pointer of
    // ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}
