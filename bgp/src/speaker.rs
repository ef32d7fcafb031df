//! The public handle of the BGP speaker: peers at runtime, originated
//! prefixes, subscriptions to best-path/multipath changes, and queries.
//!
//! One core task owns the RIB and every peer's Adj-RIB-Out; peer tasks
//! ([`crate::session`]) own the sockets. The [`Speaker`] handle only sends
//! messages to the core, so it is cheap to clone and safe to use anywhere.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::fsm::{DownReason, Negotiated, State};
use crate::policy::Policy;
use crate::rib::{Attrs, Changes, DecisionConfig, PeerId, PeerInfo, Rib, RibConfig};
use crate::session::{PeerCmd, PeerConfig, PeerEvent, socket, spawn_peer};
use crate::wire::{
    Community, Family, LargeCommunity, MpNextHop, Notification, Origin, Prefix, RouteRefresh,
};

/// Errors of the speaker API.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// Could not bind a listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The peer exists already.
    #[error("peer {0} already configured")]
    PeerExists(IpAddr),
    /// No such peer.
    #[error("no peer {0}")]
    NoPeer(IpAddr),
    /// TCP MD5 key could not be installed.
    #[error("TCP MD5 for {peer}: {source}")]
    Md5 {
        /// Peer.
        peer: IpAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The shutdown communication is too long.
    #[error("shutdown message: {0}")]
    ShutdownMessage(#[from] crate::wire::ShutdownMessageError),
    /// The speaker task has stopped.
    #[error("the speaker has stopped")]
    Stopped,
}

/// Attributes of a prefix we originate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginAttrs {
    /// MED.
    pub med: Option<u32>,
    /// LOCAL_PREF (iBGP only).
    pub local_pref: Option<u32>,
    /// Communities.
    pub communities: Vec<Community>,
    /// Large communities.
    pub large_communities: Vec<LargeCommunity>,
}

/// Speaker configuration.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Listen addresses (e.g. `0.0.0.0:179`, `[::]:179`); empty: no passive TCP.
    pub listen: Vec<SocketAddr>,
    /// Peers at start.
    pub peers: Vec<PeerConfig>,
    /// Named import/export policies.
    pub policies: HashMap<String, Policy>,
    /// Prefixes originated at start.
    pub originate: Vec<(Prefix, OriginAttrs)>,
    /// We are restarting (graceful restart R bit in the first OPENs).
    pub restarting: bool,
    /// Largest multipath (ECMP) set.
    pub max_paths: usize,
    /// Multipath across different neighbour ASes (two ToRs in two ASes).
    pub multipath_relax: bool,
}

/// A path as shown to API users.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathInfo {
    /// `local` or the peer address.
    pub source: String,
    /// Next hop.
    pub next_hop: Option<IpAddr>,
    /// AS_PATH flattened.
    pub as_path: Vec<u32>,
    /// LOCAL_PREF.
    pub local_pref: u32,
    /// MED.
    pub med: u32,
    /// Stale (graceful restart).
    pub stale: bool,
    /// Best path.
    pub best: bool,
    /// In the multipath set.
    pub multipath: bool,
}

/// One prefix of the Loc-RIB.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RibEntry {
    /// Prefix.
    pub prefix: String,
    /// Paths, best first.
    pub paths: Vec<PathInfo>,
}

/// A best-path / multipath change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RibEvent {
    /// Prefix.
    pub prefix: String,
    /// New best path (None: withdrawn).
    pub best: Option<PathInfo>,
    /// New multipath set (best first).
    pub multipath: Vec<PathInfo>,
}

/// Cheap summary for polling (O(peers), no RIB walk).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Prefixes in the Loc-RIB.
    pub loc_rib_len: usize,
    /// Every peer.
    pub peers: Vec<PeerStatus>,
}

/// One peer's status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// Address.
    pub address: IpAddr,
    /// Configured remote AS.
    pub remote_as: u32,
    /// FSM state.
    pub state: State,
    /// Seconds since Established.
    pub uptime_secs: Option<u64>,
    /// Negotiated capabilities (names).
    pub capabilities: Vec<String>,
    /// Negotiated hold time.
    pub hold_time: Option<u16>,
    /// The peer's restart time if it announced graceful restart.
    pub peer_restart_time: Option<u16>,
    /// Prefixes received (before import policy).
    pub prefixes_received: usize,
    /// Prefixes accepted into the RIB.
    pub prefixes_accepted: usize,
    /// Prefixes advertised to the peer.
    pub prefixes_advertised: usize,
    /// Stale paths kept for the peer (graceful restart helper).
    pub stale_paths: usize,
    /// Last error (NOTIFICATION or connection loss).
    pub last_error: Option<String>,
    /// NOTIFICATION codes sent with max-prefix (Cease/1) so far.
    pub max_prefix_resets: u32,
}

enum CoreMsg {
    Accepted(TcpStream, SocketAddr),
    AddPeer(Box<PeerConfig>, oneshot::Sender<Result<(), SpeakerError>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), SpeakerError>>),
    Originate(Prefix, OriginAttrs),
    Withdraw(Prefix),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Rib(oneshot::Sender<Vec<RibEntry>>),
    Stats(oneshot::Sender<Stats>),
    SetPolicy(String, Policy),
    SetPeerPolicy {
        peer: IpAddr,
        import: Option<String>,
        export: Option<String>,
        reply: oneshot::Sender<Result<(), SpeakerError>>,
    },
    PeerStop(
        IpAddr,
        Option<Notification>,
        oneshot::Sender<Result<(), SpeakerError>>,
    ),
    PeerStart(IpAddr, oneshot::Sender<Result<(), SpeakerError>>),
    SoftResetIn(IpAddr, oneshot::Sender<Result<(), SpeakerError>>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to a running speaker. Cloning is cheap.
#[derive(Clone)]
pub struct Speaker {
    tx: mpsc::UnboundedSender<CoreMsg>,
    events: broadcast::Sender<RibEvent>,
    changed: watch::Receiver<u64>,
}

impl Speaker {
    /// Binds the listeners, starts every configured peer, and returns the handle.
    pub async fn start(cfg: SpeakerConfig) -> Result<Speaker, SpeakerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(65536);
        let (gen_tx, gen_rx) = watch::channel(0u64);
        let mut listeners = Vec::new();
        for addr in &cfg.listen {
            let l = socket::listen(*addr).map_err(|source| SpeakerError::Listen {
                addr: *addr,
                source,
            })?;
            // GTSM peers need our SYN-ACK at TTL 255 too; harmless for others.
            let v6 = addr.is_ipv6();
            let fd = l.as_raw_fd();
            let _ = set_ttl255(fd, v6);
            let l = Arc::new(l);
            listeners.push(l.clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, a)) => {
                            if tx.send(CoreMsg::Accepted(s, a)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("accept: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
        // Peer tasks talk to the core on their own channel, read in batches
        // by the core itself: no relay task, no extra wakeup per UPDATE.
        let (peer_tx, peer_rx) = mpsc::unbounded_channel();
        let mut core = Core {
            asn: cfg.asn,
            router_id: cfg.router_id,
            restarting: cfg.restarting,
            listeners,
            peers: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            policies: cfg.policies.clone(),
            rib: Rib::new(RibConfig {
                local_as: cfg.asn,
                router_id: cfg.router_id,
                decision: DecisionConfig {
                    always_compare_med: false,
                    max_paths: cfg.max_paths.max(1),
                    multipath_relax: cfg.multipath_relax,
                },
            }),
            pending: BTreeSet::new(),
            eorr: Vec::new(),
            events: events.clone(),
            generation: gen_tx,
            peer_tx,
            deferring: false,
            dirty: false,
        };
        for p in cfg.peers {
            if let Err(e) = core.add_peer(p) {
                tracing::error!("{e}");
            }
        }
        for (p, a) in cfg.originate {
            core.originate(p, a);
        }
        tokio::spawn(core.run(rx, peer_rx));
        Ok(Speaker {
            tx,
            events,
            changed: gen_rx,
        })
    }

    async fn ask<T>(
        &self,
        f: impl FnOnce(oneshot::Sender<T>) -> CoreMsg,
    ) -> Result<T, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(f(tx)).map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Adds a peer and starts it.
    pub async fn add_peer(&self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        self.ask(|r| CoreMsg::AddPeer(Box::new(cfg), r)).await?
    }

    /// Removes a peer (Cease/Peer De-configured) and its routes.
    pub async fn remove_peer(&self, peer: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| CoreMsg::RemovePeer(peer, r)).await?
    }

    /// Changes a peer: policies are applied in place (with a route refresh);
    /// anything else restarts only that peer.
    pub async fn change_peer(&self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        let addr = cfg.address;
        let current = self.peers().await?;
        if !current.iter().any(|p| p.address == addr) {
            return Err(SpeakerError::NoPeer(addr));
        }
        self.remove_peer(addr).await?;
        self.add_peer(cfg).await
    }

    /// Administrative shutdown with an RFC 8203 shutdown communication.
    pub async fn shutdown_peer(
        &self,
        peer: IpAddr,
        message: Option<&str>,
    ) -> Result<(), SpeakerError> {
        let n = match message {
            Some(m) => Some(Notification::shutdown(
                crate::wire::subcode::cease::ADMINISTRATIVE_SHUTDOWN,
                m,
            )?),
            None => None,
        };
        self.ask(|r| CoreMsg::PeerStop(peer, n, r)).await?
    }

    /// Starts a peer that was shut down.
    pub async fn start_peer(&self, peer: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| CoreMsg::PeerStart(peer, r)).await?
    }

    /// Soft reset inbound: ask the peer to resend its routes (route refresh).
    pub async fn soft_reset_in(&self, peer: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| CoreMsg::SoftResetIn(peer, r)).await?
    }

    /// Defines or replaces a named policy.
    pub fn set_policy(&self, name: &str, policy: Policy) -> Result<(), SpeakerError> {
        self.tx
            .send(CoreMsg::SetPolicy(name.to_string(), policy))
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Changes a peer's import/export policy names; the import side is
    /// applied with a route refresh, without resetting the session.
    pub async fn set_peer_policy(
        &self,
        peer: IpAddr,
        import: Option<String>,
        export: Option<String>,
    ) -> Result<(), SpeakerError> {
        self.ask(|reply| CoreMsg::SetPeerPolicy {
            peer,
            import,
            export,
            reply,
        })
        .await?
    }

    /// Originates (or updates) a prefix.
    pub fn originate(&self, prefix: Prefix, attrs: OriginAttrs) -> Result<(), SpeakerError> {
        self.tx
            .send(CoreMsg::Originate(prefix, attrs))
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Withdraws an originated prefix.
    pub fn withdraw(&self, prefix: Prefix) -> Result<(), SpeakerError> {
        self.tx
            .send(CoreMsg::Withdraw(prefix))
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Best-path and multipath changes.
    pub fn subscribe(&self) -> broadcast::Receiver<RibEvent> {
        self.events.subscribe()
    }

    /// A counter bumped on every peer state or RIB change (for state dumps).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// All peers.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, SpeakerError> {
        self.ask(CoreMsg::Peers).await
    }

    /// Loc-RIB size and peers, without walking the RIB.
    pub async fn stats(&self) -> Result<Stats, SpeakerError> {
        self.ask(CoreMsg::Stats).await
    }

    /// The Loc-RIB.
    pub async fn rib(&self) -> Result<Vec<RibEntry>, SpeakerError> {
        self.ask(CoreMsg::Rib).await
    }

    /// Stops every peer (Cease/Administrative Shutdown) and the core.
    pub async fn shutdown(&self) -> Result<(), SpeakerError> {
        self.ask(CoreMsg::Shutdown).await
    }
}

fn set_ttl255(fd: std::os::fd::RawFd, v6: bool) -> std::io::Result<()> {
    let v: libc::c_int = 255;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
    } else {
        (libc::IPPROTO_IP, libc::IP_TTL)
    };
    // SAFETY: valid listening socket fd; `v` outlives the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

struct PeerEntry {
    id: PeerId,
    cfg: PeerConfig,
    tx: mpsc::UnboundedSender<PeerCmd>,
    state: State,
    up_since: Option<Instant>,
    negotiated: Option<Negotiated>,
    last_error: Option<String>,
    /// Graceful restart helper: sweep the stale routes at this time.
    stale_deadline: Option<Instant>,
    warned: HashSet<Family>,
    max_prefix_resets: u32,
}

struct Core {
    asn: u32,
    router_id: Ipv4Addr,
    restarting: bool,
    listeners: Vec<Arc<TcpListener>>,
    peers: HashMap<IpAddr, PeerEntry>,
    ids: HashMap<PeerId, IpAddr>,
    next_id: u32,
    policies: HashMap<String, Policy>,
    rib: Rib,
    /// Peers with UPDATEs waiting in the RIB.
    pending: BTreeSet<PeerId>,
    /// EoRR to send after the next flush (RFC 7313).
    eorr: Vec<(PeerId, Family)>,
    events: broadcast::Sender<RibEvent>,
    generation: watch::Sender<u64>,
    peer_tx: mpsc::UnboundedSender<PeerEvent>,
    /// Applying a batch of peer events: `apply` defers the generation bump.
    deferring: bool,
    /// The RIB changed during the deferred batch.
    dirty: bool,
}

fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)),
        a => a,
    }
}

fn next_hop_ip(nh: &Option<MpNextHop>) -> Option<IpAddr> {
    match nh {
        Some(MpNextHop::Ipv4(a)) if a.is_unspecified() => None,
        Some(MpNextHop::Ipv4(a)) => Some(IpAddr::V4(*a)),
        Some(MpNextHop::Ipv6 { global, link_local }) => {
            if global.is_unspecified() {
                link_local.map(IpAddr::V6).filter(|a| !a.is_unspecified())
            } else {
                Some(IpAddr::V6(*global))
            }
        }
        _ => None,
    }
}

fn family_from_name(n: &str) -> Option<Family> {
    match n {
        "ipv4-unicast" => Some(Family::IPV4_UNICAST),
        "ipv6-unicast" => Some(Family::IPV6_UNICAST),
        _ => None,
    }
}

const FAMILIES: [Family; 2] = [Family::IPV4_UNICAST, Family::IPV6_UNICAST];

impl Core {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<CoreMsg>,
        mut peer_rx: mpsc::UnboundedReceiver<PeerEvent>,
    ) {
        const BATCH: usize = 4096;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut batch = Vec::new();
        let mut events = Vec::new();
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => batch.push(m),
                    None => break,
                },
                // The core holds a sender itself, so this never reports closed.
                _ = peer_rx.recv_many(&mut events, BATCH) => {}
                _ = tick.tick() => {
                    self.report_if_listening();
                    self.on_tick();
                    self.flush();
                    continue;
                }
            };
            self.report_if_listening();
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            // Whatever else is queued, applied before one flush: per-peer
            // order is kept (one channel per direction, FIFO).
            while events.len() < BATCH {
                match peer_rx.try_recv() {
                    Ok(e) => events.push(e),
                    Err(_) => break,
                }
            }
            self.deferring = true;
            for e in events.drain(..) {
                self.peer_event(e);
            }
            self.deferring = false;
            if std::mem::take(&mut self.dirty) {
                self.bump();
            }
            let mut stop = None;
            for m in batch.drain(..) {
                if let CoreMsg::Shutdown(r) = m {
                    stop = Some(r);
                    continue;
                }
                self.handle(m);
            }
            self.flush();
            if let Some(r) = stop {
                for p in self.peers.values() {
                    let _ = p.tx.send(PeerCmd::Stop(None));
                }
                // Give peer tasks a moment to write their NOTIFICATIONs.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = r.send(());
                break;
            }
        }
    }

    /// Loc-RIB changes become events only for subscribers: skip building
    /// them (one per changed prefix) while nobody listens.
    fn report_if_listening(&mut self) {
        let listening = self.events.receiver_count() > 0;
        self.rib.set_report_loc_rib(listening);
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    fn addr_of(&self, id: PeerId) -> Option<IpAddr> {
        self.ids.get(&id).copied()
    }

    /// Applies what a RIB operation changed: events, pending UPDATEs,
    /// route refresh requests, log lines.
    fn apply(&mut self, ch: Changes) {
        for n in &ch.notices {
            tracing::warn!("{n}");
        }
        // Formatting events costs more than the RIB work on a full-table
        // feed: only build them when someone listens.
        let listening = self.events.receiver_count() > 0;
        for c in ch.loc_rib.into_iter().filter(|_| listening) {
            let mp: Vec<PathInfo> = c
                .multipath
                .iter()
                .enumerate()
                .map(|(i, p)| self.path_info(p.peer, &p.attrs, false, i == 0, true))
                .collect();
            let _ = self.events.send(RibEvent {
                prefix: c.prefix.to_string(),
                best: c
                    .best
                    .as_ref()
                    .map(|p| self.path_info(p.peer, &p.attrs, false, true, true)),
                multipath: mp,
            });
        }
        self.pending.extend(ch.peers_with_updates);
        for (id, fam) in ch.route_refresh_needed {
            self.send_refresh(id, fam);
        }
        // While a batch of peer events is applied, announce once at its end
        // (see `run`) rather than once per UPDATE; API calls announce at
        // once, before their reply.
        if self.deferring {
            self.dirty = true;
        } else {
            self.bump();
        }
    }

    fn send_refresh(&mut self, id: PeerId, fam: Family) {
        let Some(ip) = self.addr_of(id) else { return };
        let Some(p) = self.peers.get(&ip) else { return };
        match &p.negotiated {
            Some(n) if n.route_refresh || n.enhanced_route_refresh => {
                let _ = p.tx.send(PeerCmd::RouteRefresh(fam));
            }
            Some(_) => {
                tracing::warn!(peer = %ip, "peer does not support route refresh: resetting the session to apply the import policy");
                let n = Notification::new(
                    crate::wire::ErrorCode::CEASE,
                    crate::wire::subcode::cease::OTHER_CONFIGURATION_CHANGE,
                    Vec::new(),
                );
                let _ = p.tx.send(PeerCmd::LocalError {
                    notification: n,
                    restart_after: Some(Duration::from_secs(1)),
                });
            }
            None => {}
        }
    }

    fn path_info(
        &self,
        peer: PeerId,
        a: &Attrs,
        stale: bool,
        best: bool,
        multipath: bool,
    ) -> PathInfo {
        PathInfo {
            source: if peer == PeerId::LOCAL {
                "local".into()
            } else {
                self.addr_of(peer)
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| peer.to_string())
            },
            next_hop: next_hop_ip(&a.next_hop),
            as_path: a
                .as_path
                .segments
                .iter()
                .flat_map(|s| s.asns.iter().copied())
                .collect(),
            local_pref: a.local_pref_or_default(),
            med: a.med.unwrap_or(0),
            stale,
            best,
            multipath,
        }
    }

    fn resolve(&self, name: Option<&str>, peer: IpAddr, dir: &str) -> Option<Policy> {
        match name {
            None => None,
            Some("accept") | Some("accept-all") => Some(Policy::accept_all("accept")),
            Some("reject") | Some("reject-all") => Some(Policy::reject_all("reject")),
            Some(n) => Some(self.policies.get(n).cloned().unwrap_or_else(|| {
                tracing::error!(%peer, policy = n, "{dir} policy is not defined: rejecting everything");
                Policy::reject_all(n)
            })),
        }
    }

    fn handle(&mut self, m: CoreMsg) {
        match m {
            CoreMsg::Accepted(stream, addr) => {
                let ip = normalize(addr.ip());
                match self.peers.get(&ip) {
                    Some(p) => {
                        let _ = p.tx.send(PeerCmd::Inbound(stream));
                    }
                    None => tracing::info!("rejecting connection from unknown {addr}"),
                }
            }
            CoreMsg::AddPeer(cfg, r) => {
                let res = self.add_peer(*cfg);
                let _ = r.send(res);
            }
            CoreMsg::RemovePeer(ip, r) => {
                let res = self.remove_peer(ip);
                let _ = r.send(res);
            }
            CoreMsg::Originate(p, a) => self.originate(p, a),
            CoreMsg::Withdraw(p) => {
                let ch = self.rib.withdraw(p);
                self.apply(ch);
            }
            CoreMsg::Peers(r) => {
                let _ = r.send(self.peer_status());
            }
            CoreMsg::Rib(r) => {
                let _ = r.send(self.rib_entries());
            }
            CoreMsg::Stats(r) => {
                let _ = r.send(Stats {
                    loc_rib_len: self.rib.loc_rib_len(),
                    peers: self.peer_status(),
                });
            }
            CoreMsg::SetPolicy(name, pol) => {
                self.policies.insert(name.clone(), pol);
                let users: Vec<IpAddr> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| {
                        p.cfg.import_policy.as_deref() == Some(&name)
                            || p.cfg.export_policy.as_deref() == Some(&name)
                    })
                    .map(|(ip, _)| *ip)
                    .collect();
                for ip in users {
                    self.reapply_policies(ip);
                }
            }
            CoreMsg::SetPeerPolicy {
                peer,
                import,
                export,
                reply,
            } => {
                let res = match self.peers.get_mut(&peer) {
                    None => Err(SpeakerError::NoPeer(peer)),
                    Some(p) => {
                        p.cfg.import_policy = import;
                        p.cfg.export_policy = export;
                        Ok(())
                    }
                };
                if res.is_ok() {
                    self.reapply_policies(peer);
                }
                let _ = reply.send(res);
            }
            CoreMsg::PeerStop(ip, n, r) => {
                let res = match self.peers.get(&ip) {
                    Some(p) => {
                        let _ = p.tx.send(PeerCmd::Stop(n));
                        Ok(())
                    }
                    None => Err(SpeakerError::NoPeer(ip)),
                };
                let _ = r.send(res);
            }
            CoreMsg::PeerStart(ip, r) => {
                let res = match self.peers.get(&ip) {
                    Some(p) => {
                        let _ = p.tx.send(PeerCmd::Start);
                        Ok(())
                    }
                    None => Err(SpeakerError::NoPeer(ip)),
                };
                let _ = r.send(res);
            }
            CoreMsg::SoftResetIn(ip, r) => {
                let res = match self.peers.get(&ip) {
                    Some(p) => {
                        let fams = p
                            .negotiated
                            .as_ref()
                            .map(|n| n.families.clone())
                            .unwrap_or_default();
                        let id = p.id;
                        for f in fams {
                            self.send_refresh(id, f);
                        }
                        Ok(())
                    }
                    None => Err(SpeakerError::NoPeer(ip)),
                };
                let _ = r.send(res);
            }
            CoreMsg::Shutdown(_) => {}
        }
    }

    fn reapply_policies(&mut self, ip: IpAddr) {
        let Some(p) = self.peers.get(&ip) else { return };
        let id = p.id;
        let up = p.state == State::Established;
        let import = self.resolve(p.cfg.import_policy.as_deref(), ip, "import");
        let export = self.resolve(p.cfg.export_policy.as_deref(), ip, "export");
        if !up {
            return; // applied at the next peer_up
        }
        let mut all = Changes::default();
        match self.rib.set_import_policy(id, import) {
            Ok(ch) => merge(&mut all, ch),
            Err(e) => tracing::error!(peer = %ip, "import policy: {e}"),
        }
        match self.rib.set_export_policy(id, export) {
            Ok(ch) => merge(&mut all, ch),
            Err(e) => tracing::error!(peer = %ip, "export policy: {e}"),
        }
        self.apply(all);
    }

    fn add_peer(&mut self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        let ip = normalize(cfg.address);
        if self.peers.contains_key(&ip) {
            return Err(SpeakerError::PeerExists(ip));
        }
        if let Some(pw) = &cfg.connect.password {
            for l in &self.listeners {
                let fam_ok = l
                    .local_addr()
                    .map(|a| a.is_ipv4() == ip.is_ipv4())
                    .unwrap_or(false);
                if fam_ok {
                    socket::set_md5(l.as_raw_fd(), ip, Some(pw.as_bytes()))
                        .map_err(|source| SpeakerError::Md5 { peer: ip, source })?;
                }
            }
        }
        let id = PeerId(self.next_id);
        self.next_id += 1;
        let tx = spawn_peer(
            cfg.clone(),
            self.asn,
            self.router_id,
            self.restarting,
            self.peer_tx.clone(),
        );
        self.ids.insert(id, ip);
        self.peers.insert(
            ip,
            PeerEntry {
                id,
                cfg,
                tx,
                state: State::Idle,
                up_since: None,
                negotiated: None,
                last_error: None,
                stale_deadline: None,
                warned: HashSet::new(),
                max_prefix_resets: 0,
            },
        );
        self.bump();
        Ok(())
    }

    fn remove_peer(&mut self, ip: IpAddr) -> Result<(), SpeakerError> {
        let ip = normalize(ip);
        let Some(p) = self.peers.remove(&ip) else {
            return Err(SpeakerError::NoPeer(ip));
        };
        let _ = p.tx.send(PeerCmd::Remove);
        if p.cfg.connect.password.is_some() {
            for l in &self.listeners {
                let _ = socket::set_md5(l.as_raw_fd(), ip, None);
            }
        }
        let ch = self.rib.peer_down(p.id, &[]);
        self.apply(ch);
        Ok(())
    }

    fn originate(&mut self, prefix: Prefix, a: OriginAttrs) {
        let attrs = Attrs {
            origin: Origin::Igp,
            // None = self: next-hop-self per family on export (the RIB's
            // export cache is keyed by family, so IPv4 and IPv6 originations
            // may share one interned set).
            next_hop: None,
            med: a.med,
            local_pref: a.local_pref,
            communities: a.communities,
            large_communities: a.large_communities,
            ..Attrs::default()
        };
        let ch = self.rib.originate(prefix, attrs);
        self.apply(ch);
    }

    fn peer_event(&mut self, e: PeerEvent) {
        match e {
            PeerEvent::State(ip, s) => {
                if let Some(p) = self.peers.get_mut(&ip) {
                    p.state = s;
                    if s != State::Established {
                        p.up_since = None;
                    }
                    self.bump();
                }
            }
            PeerEvent::Up {
                peer,
                negotiated,
                local,
            } => self.peer_up(peer, *negotiated, local),
            PeerEvent::Down {
                peer,
                reason,
                was_established,
            } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                if !matches!(reason, DownReason::ManualStop) {
                    p.last_error = Some(reason.to_string());
                }
                if !was_established {
                    self.bump();
                    return;
                }
                let id = p.id;
                let gr = p.negotiated.take().and_then(|n| n.graceful_restart);
                p.up_since = None;
                let retain: Vec<Family> = match &gr {
                    Some(g) if reason.keeps_routes(g.notification) && g.restart_time > 0 => g
                        .families
                        .iter()
                        .filter_map(|(n, _)| family_from_name(n))
                        .collect(),
                    _ => Vec::new(),
                };
                if let (false, Some(g)) = (retain.is_empty(), &gr) {
                    tracing::info!(%peer, restart_time = g.restart_time, "graceful restart: keeping routes as stale");
                    p.stale_deadline =
                        Some(Instant::now() + Duration::from_secs(u64::from(g.restart_time)));
                } else {
                    p.stale_deadline = None;
                }
                let ch = self.rib.peer_down(id, &retain);
                self.apply(ch);
            }
            PeerEvent::Update(peer, u, _permit) => {
                let Some(id) = self.peers.get(&peer).map(|p| p.id) else {
                    return;
                };
                match self.rib.apply_update(id, &u) {
                    Ok(ch) => {
                        if let Some(f) = ch.end_of_rib {
                            tracing::info!(%peer, family = %f, "End-of-RIB");
                            self.after_eor(peer);
                        }
                        self.apply(ch);
                    }
                    Err(e) => tracing::debug!(%peer, "UPDATE ignored: {e}"),
                }
                self.check_max_prefix(peer);
            }
            PeerEvent::Withdraw(peer, w) => {
                let Some(id) = self.peers.get(&peer).map(|p| p.id) else {
                    return;
                };
                if let Ok(ch) = self.rib.apply_withdraw(id, &w.ipv4, &w.ipv6) {
                    self.apply(ch);
                }
            }
            PeerEvent::RouteRefresh(peer, family) => {
                let Some(p) = self.peers.get(&peer) else {
                    return;
                };
                let id = p.id;
                tracing::info!(%peer, %family, "peer asked for a route refresh");
                // RFC 7313: wrap the re-advertisement in BoRR .. EoRR.
                let enhanced = p
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.enhanced_route_refresh);
                if enhanced {
                    let _ = p.tx.send(PeerCmd::Demarcation(family, RouteRefresh::BORR));
                }
                if let Ok(ch) = self.rib.resend(id, family) {
                    self.apply(ch);
                }
                if enhanced {
                    self.eorr.push((id, family));
                }
            }
            PeerEvent::Demarcation(peer, family, subtype) => {
                let Some(id) = self.peers.get(&peer).map(|p| p.id) else {
                    return;
                };
                if subtype == RouteRefresh::BORR {
                    // Everything not re-sent before EoRR is gone.
                    let n = self.rib.mark_stale(id, family);
                    tracing::debug!(%peer, %family, marked = n, "BoRR");
                    // RFC 7313 4: a peer that never sends EoRR must not pin
                    // stale routes forever: sweep them after the stale time
                    // (on_tick), unless an earlier deadline is pending.
                    if let Some(p) = self.peers.get_mut(&peer)
                        && p.stale_deadline.is_none()
                    {
                        let stale_time = p
                            .cfg
                            .graceful_restart
                            .as_ref()
                            .map_or(Duration::from_secs(360), |g| g.stale_time);
                        p.stale_deadline = Some(Instant::now() + stale_time);
                    }
                } else if subtype == RouteRefresh::EORR {
                    let ch = self.rib.sweep_stale(id, family);
                    tracing::debug!(%peer, %family, swept = ch.loc_rib.len(), "EoRR");
                    self.after_eor(peer);
                    self.apply(ch);
                }
            }
            PeerEvent::Gone(_) => {}
        }
    }

    fn peer_up(&mut self, peer: IpAddr, n: Negotiated, local: SocketAddr) {
        let now = Instant::now();
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let id = p.id;
        let import = self.resolve(p.cfg.import_policy.as_deref(), peer, "import");
        let export = self.resolve(p.cfg.export_policy.as_deref(), peer, "export");
        let mut info = PeerInfo::new(self.asn, p.cfg.remote_as, n.remote_id, peer);
        info.families = n.families.clone();
        info.import = import;
        info.export = export;
        info.decode = n.decode_context();
        info.encode = n.encode_context();
        info.keep_rejected = p.cfg.soft_reconfiguration_inbound;
        let lip = normalize(local.ip());
        info.local_v4 = p.cfg.next_hop_ipv4.or(match lip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        });
        match lip {
            IpAddr::V6(a) if a.is_unicast_link_local() => {
                info.local_v6_link_local = Some(a);
                // A link-local-only session: the link-local is also the global next hop.
                info.local_v6 = Some(p.cfg.next_hop_ipv6.unwrap_or(a));
            }
            IpAddr::V6(a) => info.local_v6 = Some(p.cfg.next_hop_ipv6.unwrap_or(a)),
            IpAddr::V4(_) => info.local_v6 = p.cfg.next_hop_ipv6,
        }
        let stale_time = p
            .cfg
            .graceful_restart
            .as_ref()
            .map(|g| g.stale_time)
            .unwrap_or(Duration::from_secs(360));
        let had_stale = p.stale_deadline.is_some();
        // RFC 4724 4.2: families the restarted peer did not preserve (no F bit) are swept now.
        let preserved: Vec<Family> = n
            .graceful_restart
            .as_ref()
            .map(|g| {
                g.families
                    .iter()
                    .filter(|(_, f)| *f)
                    .filter_map(|(nm, _)| family_from_name(nm))
                    .collect()
            })
            .unwrap_or_default();
        let mut all = self.rib.peer_up(id, info);
        if had_stale {
            for f in FAMILIES {
                if !preserved.contains(&f) {
                    merge(&mut all, self.rib.sweep_stale(id, f));
                }
            }
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.state = State::Established;
            p.up_since = Some(now);
            p.negotiated = Some(n);
            p.stale_deadline = if had_stale && !preserved.is_empty() {
                Some(now + stale_time)
            } else {
                None
            };
            p.warned.clear();
        }
        self.apply(all);
    }

    fn after_eor(&mut self, peer: IpAddr) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let left: usize = FAMILIES
            .iter()
            .map(|f| self.rib.counts(p.id, *f).stale)
            .sum();
        if left == 0 {
            p.stale_deadline = None;
        }
    }

    fn check_max_prefix(&mut self, peer: IpAddr) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.state != State::Established {
            return;
        }
        let mut exceeded = None;
        for mp in &p.cfg.max_prefix {
            let count = self.rib.counts(p.id, mp.family).received;
            let warn_at = mp.limit * usize::from(mp.warning_percent) / 100;
            if count >= warn_at && count <= mp.limit && p.warned.insert(mp.family) {
                tracing::warn!(%peer, family = %mp.family, count, limit = mp.limit, "max-prefix warning threshold reached");
            }
            if count > mp.limit {
                exceeded = Some(mp.clone());
            }
        }
        if let Some(mp) = exceeded {
            tracing::error!(%peer, family = %mp.family, limit = mp.limit, "max-prefix exceeded: sending Cease/1");
            p.max_prefix_resets += 1;
            p.state = State::Idle;
            // RFC 4486: data is AFI (2), SAFI (1), prefix upper bound (4).
            let mut data = mp.family.afi.0.to_be_bytes().to_vec();
            data.push(mp.family.safi.0);
            data.extend_from_slice(&u32::try_from(mp.limit).unwrap_or(u32::MAX).to_be_bytes());
            let n = Notification::new(
                crate::wire::ErrorCode::CEASE,
                crate::wire::subcode::cease::MAX_PREFIXES,
                data,
            );
            let _ = p.tx.send(PeerCmd::LocalError {
                notification: n,
                restart_after: mp.restart_interval,
            });
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let expired: Vec<(IpAddr, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.stale_deadline.is_some_and(|d| d <= now))
            .map(|(ip, p)| (*ip, p.id))
            .collect();
        for (ip, id) in expired {
            tracing::warn!(peer = %ip, "stale timer expired (graceful restart or enhanced route refresh without EoRR): sweeping stale routes");
            if let Some(p) = self.peers.get_mut(&ip) {
                p.stale_deadline = None;
            }
            let mut all = Changes::default();
            for f in FAMILIES {
                merge(&mut all, self.rib.sweep_stale(id, f));
            }
            self.apply(all);
        }
    }

    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for id in pending {
            let Some(ip) = self.addr_of(id) else { continue };
            let Some(p) = self.peers.get(&ip) else {
                continue;
            };
            if p.state != State::Established {
                continue;
            }
            match self.rib.take_updates(id) {
                Ok(u) if !u.is_empty() => {
                    let _ = p.tx.send(PeerCmd::Send(u));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(peer = %ip, "no updates: {e}"),
            }
        }
        for (id, family) in std::mem::take(&mut self.eorr) {
            if let Some(p) = self.addr_of(id).and_then(|ip| self.peers.get(&ip)) {
                let _ = p.tx.send(PeerCmd::Demarcation(family, RouteRefresh::EORR));
            }
        }
    }

    fn peer_status(&self) -> Vec<PeerStatus> {
        let mut v: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(ip, p)| {
                let c: Vec<_> = FAMILIES.iter().map(|f| self.rib.counts(p.id, *f)).collect();
                PeerStatus {
                    address: *ip,
                    remote_as: p.cfg.remote_as,
                    state: p.state,
                    uptime_secs: p.up_since.map(|t| t.elapsed().as_secs()),
                    capabilities: p
                        .negotiated
                        .as_ref()
                        .map(|n| n.capability_names())
                        .unwrap_or_default(),
                    hold_time: p.negotiated.as_ref().map(|n| n.hold_time),
                    peer_restart_time: p
                        .negotiated
                        .as_ref()
                        .and_then(|n| n.graceful_restart.as_ref().map(|g| g.restart_time)),
                    prefixes_received: c.iter().map(|x| x.received).sum(),
                    prefixes_accepted: c.iter().map(|x| x.accepted).sum(),
                    prefixes_advertised: c.iter().map(|x| x.advertised).sum(),
                    stale_paths: c.iter().map(|x| x.stale).sum(),
                    last_error: p.last_error.clone(),
                    max_prefix_resets: p.max_prefix_resets,
                }
            })
            .collect();
        v.sort_by_key(|p| p.address);
        v
    }

    fn rib_entries(&self) -> Vec<RibEntry> {
        let mut prefixes: Vec<Prefix> = self.rib.loc_rib().into_iter().map(|(p, _)| p).collect();
        prefixes.sort();
        prefixes
            .into_iter()
            .map(|pr| {
                let mut paths: Vec<PathInfo> = self
                    .rib
                    .routes(&pr)
                    .into_iter()
                    .filter_map(|r| {
                        r.post
                            .map(|a| self.path_info(r.peer, &a, r.stale, r.best, r.multipath))
                    })
                    .collect();
                paths.sort_by_key(|p| (!p.best, !p.multipath));
                RibEntry {
                    prefix: pr.to_string(),
                    paths,
                }
            })
            .collect()
    }
}

fn merge(into: &mut Changes, o: Changes) {
    into.loc_rib.extend(o.loc_rib);
    into.peers_with_updates.extend(o.peers_with_updates);
    into.end_of_rib = into.end_of_rib.or(o.end_of_rib);
    into.route_refresh_needed.extend(o.route_refresh_needed);
    into.notices.extend(o.notices);
}
