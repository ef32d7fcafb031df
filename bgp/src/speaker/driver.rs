//! The tokio driver of [`Core`]: feeds it peer events and API requests with
//! the wall clock, sleeps until [`Core::poll_timeout`], and carries out its
//! actions (commands to peer tasks, subscriber events, the change counter).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::core::{Action, AdjRib, Core, CoreConfig, Event, PeerCommand, normalize};
use super::{OriginAttrs, PeerStatus, RibEntry, RibEvent, SpeakerConfig, SpeakerError, Stats};
use crate::policy::Policy;
use crate::session::{PeerCmd, PeerConfig, PeerEvent, socket, spawn_peer};
use crate::wire::{Notification, Prefix};

/// Requests from the [`super::Speaker`] handle and the accept tasks.
pub(super) enum CoreMsg {
    Accepted(TcpStream, SocketAddr),
    AddPeer(Box<PeerConfig>, oneshot::Sender<Result<(), SpeakerError>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), SpeakerError>>),
    Originate(Prefix, OriginAttrs),
    Withdraw(Prefix),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Rib(oneshot::Sender<Vec<RibEntry>>),
    AdjRib(
        IpAddr,
        AdjRib,
        oneshot::Sender<Result<Vec<RibEntry>, SpeakerError>>,
    ),
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

/// The driver task's state: the core plus the I/O it cannot own.
pub(super) struct Driver {
    core: Core,
    asn: u32,
    router_id: Ipv4Addr,
    restarting: bool,
    listeners: Vec<Arc<TcpListener>>,
    /// Command channel of each peer task.
    tasks: HashMap<IpAddr, mpsc::UnboundedSender<PeerCmd>>,
    events: broadcast::Sender<RibEvent>,
    generation: watch::Sender<u64>,
    /// True once route selection ran (at once unless restarting).
    selected: watch::Sender<bool>,
    peer_tx: mpsc::UnboundedSender<PeerEvent>,
    peer_rx: mpsc::UnboundedReceiver<PeerEvent>,
}

impl Driver {
    /// A driver with the configured peers started and prefixes originated.
    pub(super) fn new(
        cfg: SpeakerConfig,
        listeners: Vec<Arc<TcpListener>>,
        events: broadcast::Sender<RibEvent>,
        generation: watch::Sender<u64>,
        selected: watch::Sender<bool>,
        selection_deferral: Option<Duration>,
    ) -> Driver {
        // Peer tasks talk to the driver on their own channel, read in
        // batches: no relay task, no extra wakeup per UPDATE.
        let (peer_tx, peer_rx) = mpsc::unbounded_channel();
        let core = Core::new(CoreConfig {
            asn: cfg.asn,
            router_id: cfg.router_id,
            policies: cfg.policies,
            max_paths: cfg.max_paths,
            multipath_relax: cfg.multipath_relax,
        });
        let mut core = core;
        let now = Instant::now();
        match selection_deferral {
            Some(limit) => core.defer_selection(now, limit),
            None => {
                selected.send_replace(true);
            }
        }
        let mut d = Driver {
            core,
            asn: cfg.asn,
            router_id: cfg.router_id,
            restarting: cfg.restarting,
            listeners,
            tasks: HashMap::new(),
            events,
            generation,
            selected,
            peer_tx,
            peer_rx,
        };
        for p in cfg.peers {
            if let Err(e) = d.add_peer(p, now) {
                tracing::error!("{e}");
            }
        }
        for (p, a) in cfg.originate {
            let _ = d.core.handle(Event::Originate(p, a), now);
        }
        d.drain();
        d
    }

    /// The driver task: batches of inputs, one drain (and flush) per batch.
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<CoreMsg>) {
        const BATCH: usize = 4096;
        let mut batch = Vec::new();
        let mut events = Vec::new();
        loop {
            let deadline = self.core.poll_timeout();
            let timer = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => batch.push(m),
                    None => break,
                },
                // The driver holds a sender itself, so this never reports closed.
                _ = self.peer_rx.recv_many(&mut events, BATCH) => {}
                _ = timer => {
                    self.report_if_listening();
                    let _ = self.core.handle(Event::Timeout, Instant::now());
                    self.drain();
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
                match self.peer_rx.try_recv() {
                    Ok(e) => events.push(e),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            for e in events.drain(..) {
                self.peer_event(e, now);
            }
            self.drain();
            let mut stop = None;
            for m in batch.drain(..) {
                if let CoreMsg::Shutdown(r) = m {
                    stop = Some(r);
                    continue;
                }
                self.request(m, now);
            }
            self.drain();
            if let Some(r) = stop {
                for tx in self.tasks.values() {
                    let _ = tx.send(PeerCmd::Core(PeerCommand::Stop(None)));
                }
                // Give peer tasks a moment to write their NOTIFICATIONs.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = r.send(());
                break;
            }
        }
    }

    /// Loc-RIB changes become events only for subscribers.
    fn report_if_listening(&mut self) {
        self.core.set_listening(self.events.receiver_count() > 0);
    }

    /// Carries out everything the core asks for.
    fn drain(&mut self) {
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::StartPeer(cfg) => {
                    let ip = normalize(cfg.address);
                    let tx = spawn_peer(
                        *cfg,
                        self.asn,
                        self.router_id,
                        self.restarting,
                        self.peer_tx.clone(),
                    );
                    self.tasks.insert(ip, tx);
                }
                Action::RemovePeer(cfg) => {
                    let ip = normalize(cfg.address);
                    if let Some(tx) = self.tasks.remove(&ip) {
                        let _ = tx.send(PeerCmd::Remove);
                    }
                    if cfg.connect.password.is_some() {
                        for l in &self.listeners {
                            let _ = socket::set_md5(l.as_raw_fd(), ip, None);
                        }
                    }
                }
                Action::Peer(ip, c) => {
                    if let Some(tx) = self.tasks.get(&ip) {
                        let _ = tx.send(PeerCmd::Core(c));
                    }
                }
                Action::Rib(e) => {
                    let _ = self.events.send(e);
                }
                Action::Changed => self.generation.send_modify(|g| *g += 1),
                Action::SelectionDone => {
                    self.selected.send_replace(true);
                }
            }
        }
    }

    fn peer_event(&mut self, e: PeerEvent, now: Instant) {
        let ev = match e {
            PeerEvent::State(ip, s) => Event::PeerState(ip, s),
            PeerEvent::Retry { peer, at, errors } => Event::PeerRetry { peer, at, errors },
            PeerEvent::Up {
                peer,
                negotiated,
                local,
                connected,
            } => Event::PeerUp {
                peer,
                negotiated,
                local,
                connected,
            },
            PeerEvent::Down {
                peer,
                reason,
                was_established,
            } => Event::PeerDown {
                peer,
                reason,
                was_established,
            },
            PeerEvent::Update(peer, u, permit) => {
                let _ = self.core.handle(Event::Update(peer, u), now);
                // Applied: the peer task may read its next UPDATE.
                drop(permit);
                return;
            }
            PeerEvent::Withdraw(peer, w) => Event::TreatAsWithdraw(peer, w),
            PeerEvent::RouteRefresh(peer, f) => Event::RouteRefresh(peer, f),
            PeerEvent::Demarcation(peer, f, s) => Event::Demarcation(peer, f, s),
            PeerEvent::Gone(_) => return,
        };
        let _ = self.core.handle(ev, now);
    }

    /// Installs the TCP MD5 key on the listeners, then configures the peer.
    fn add_peer(&mut self, cfg: PeerConfig, now: Instant) -> Result<(), SpeakerError> {
        let ip = normalize(cfg.address);
        if self.core.has_peer(ip) {
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
        Ok(self.core.handle(Event::AddPeer(Box::new(cfg)), now)?)
    }

    /// Answers one request; what it changed is carried out before the reply.
    fn request(&mut self, m: CoreMsg, now: Instant) {
        match m {
            CoreMsg::Accepted(stream, addr) => {
                let ip = normalize(addr.ip());
                match self.tasks.get(&ip) {
                    Some(tx) => {
                        let _ = tx.send(PeerCmd::Inbound(stream));
                    }
                    None => tracing::info!("rejecting connection from unknown {addr}"),
                }
            }
            CoreMsg::AddPeer(cfg, r) => {
                let res = self.add_peer(*cfg, now);
                self.reply(r, res);
            }
            CoreMsg::RemovePeer(ip, r) => {
                let res = self.handle(Event::RemovePeer(ip), now);
                self.reply(r, res);
            }
            CoreMsg::Originate(p, a) => {
                let _ = self.core.handle(Event::Originate(p, a), now);
            }
            CoreMsg::Withdraw(p) => {
                let _ = self.core.handle(Event::WithdrawOrigin(p), now);
            }
            CoreMsg::Peers(r) => {
                let _ = r.send(self.core.peer_status(now));
            }
            CoreMsg::Rib(r) => {
                let _ = r.send(self.core.rib_entries());
            }
            CoreMsg::AdjRib(peer, dir, r) => {
                let _ = r.send(self.core.adj_rib(peer, dir).map_err(SpeakerError::from));
            }
            CoreMsg::Stats(r) => {
                let _ = r.send(self.core.stats(now));
            }
            CoreMsg::SetPolicy(name, pol) => {
                let _ = self.core.handle(Event::SetPolicy(name, pol), now);
            }
            CoreMsg::SetPeerPolicy {
                peer,
                import,
                export,
                reply,
            } => {
                let res = self.handle(
                    Event::SetPeerPolicy {
                        peer,
                        import,
                        export,
                    },
                    now,
                );
                self.reply(reply, res);
            }
            CoreMsg::PeerStop(ip, n, r) => {
                let res = self.handle(Event::StopPeer(ip, n), now);
                self.reply(r, res);
            }
            CoreMsg::PeerStart(ip, r) => {
                let res = self.handle(Event::StartPeer(ip), now);
                self.reply(r, res);
            }
            CoreMsg::SoftResetIn(ip, r) => {
                let res = self.handle(Event::SoftResetIn(ip), now);
                self.reply(r, res);
            }
            CoreMsg::Shutdown(_) => {}
        }
    }

    fn handle(&mut self, e: Event, now: Instant) -> Result<(), SpeakerError> {
        Ok(self.core.handle(e, now)?)
    }

    /// API calls see their effects announced before their reply.
    fn reply<T>(&mut self, r: oneshot::Sender<T>, v: T) {
        self.drain();
        let _ = r.send(v);
    }
}
