//! The tokio driver of one peer: TCP (active and passive), framing with the
//! codec, timers from the sans-IO [`Fsm`], and connection collision handling
//! with a second FSM for an inbound connection that races our outbound one.
//!
//! A peer task talks to the speaker core through two channels: commands in
//! ([`PeerCmd`]), events out ([`PeerEvent`]). It never touches the RIB.

mod config;
mod messages;
pub mod socket;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::fsm::collision::{self, Direction, ExistingState, Resolution};
use crate::fsm::{Action, Event, Fsm, Outgoing, State};
use crate::wire::{
    DecodeContext, DecodeError, ErrorCode, Message, Notification, RouteRefresh, decode, frame,
    subcode,
};

pub use config::{Damping, GracefulRestartConfig, MaxPrefix, PeerConfig};
pub use messages::{PeerCmd, PeerCommand, PeerEvent};
pub use socket::ConnectOptions;

struct Conn {
    rd: OwnedReadHalf,
    wr: mpsc::UnboundedSender<Vec<u8>>,
    buf: Vec<u8>,
    dir: Direction,
    local: SocketAddr,
    rx_ctx: DecodeContext,
    tx_ctx: DecodeContext,
}

impl Conn {
    fn new(stream: TcpStream, dir: Direction) -> io::Result<Conn> {
        let local = stream.local_addr()?;
        let (rd, mut w) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = w.shutdown().await;
        });
        Ok(Conn {
            rd,
            wr: tx,
            buf: Vec::with_capacity(65536),
            dir,
            local,
            rx_ctx: DecodeContext::legacy(),
            tx_ctx: DecodeContext::legacy(),
        })
    }

    fn send(&self, m: &Message) {
        match m.to_bytes(&self.tx_ctx) {
            Ok(b) => {
                let _ = self.wr.send(b);
            }
            Err(e) => tracing::error!("cannot encode {m:?}: {e}"),
        }
    }
}

struct Slot {
    fsm: Fsm,
    conn: Option<Conn>,
}

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 65536;

async fn read_some(conn: Option<&mut Conn>) -> io::Result<usize> {
    match conn {
        Some(c) => {
            if c.buf.capacity() - c.buf.len() < 4096 {
                c.buf.reserve(READ_CHUNK);
            }
            // At most one chunk per read, however large the buffer grew: a
            // read decodes into UPDATEs in flight, so this bounds how far a
            // fast peer overshoots the in-flight limit (and the memory).
            (&mut c.rd)
                .take(READ_CHUNK as u64)
                .read_buf(&mut c.buf)
                .await
        }
        None => std::future::pending().await,
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// A running peer task.
pub struct PeerTask {
    cfg: PeerConfig,
    primary: Slot,
    secondary: Option<Slot>,
    events: mpsc::UnboundedSender<PeerEvent>,
    connecting: Option<(oneshot::Receiver<io::Result<TcpStream>>, JoinHandle<()>)>,
    reported: State,
    /// Last next-attempt/damping pair told to the core.
    reported_retry: (Option<std::time::Instant>, u32),
    /// Events read from the wire, sent after the FSM's own actions so that
    /// `Up` always precedes the UPDATEs that arrived with the last KEEPALIVE.
    pending: Vec<PeerEvent>,
    /// UPDATEs in flight to the core (see [`PeerEvent::Update`]).
    inflight: std::sync::Arc<tokio::sync::Semaphore>,
    local_as: u32,
    router_id: std::net::Ipv4Addr,
}

/// Spawns the task for one peer; it starts (ManualStart) right away.
pub fn spawn_peer(
    cfg: PeerConfig,
    local_as: u32,
    router_id: std::net::Ipv4Addr,
    restarting: bool,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> mpsc::UnboundedSender<PeerCmd> {
    let (tx, rx) = mpsc::unbounded_channel();
    let fsm = Fsm::new(cfg.fsm_config(local_as, router_id, restarting));
    let task = PeerTask {
        cfg,
        primary: Slot { fsm, conn: None },
        secondary: None,
        events,
        connecting: None,
        reported: State::Idle,
        reported_retry: (None, 0),
        pending: Vec::new(),
        inflight: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_UPDATES_IN_FLIGHT)),
        local_as,
        router_id,
    };
    tokio::spawn(task.run(rx));
    tx
}

/// UPDATEs one peer may have queued for the core before we stop reading.
pub const MAX_UPDATES_IN_FLIGHT: usize = 512;

/// Free permits needed before the socket is read again.
const READ_RESUME: u32 = (MAX_UPDATES_IN_FLIGHT / 2) as u32;

enum Wake {
    Cmd(Option<PeerCmd>),
    Read(bool, io::Result<usize>),
    Connected(io::Result<TcpStream>),
    Timer,
}

impl PeerTask {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<PeerCmd>) {
        let addr = self.cfg.address;
        self.primary.fsm.handle(Event::ManualStart, now());
        let mut removing = false;
        loop {
            self.process_actions();
            if removing {
                break;
            }
            let deadline = [
                self.primary.fsm.poll_timeout(),
                self.secondary.as_ref().and_then(|s| s.fsm.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let connecting = async {
                match self.connecting.as_mut() {
                    Some((rx, _)) => rx
                        .await
                        .unwrap_or_else(|_| Err(io::Error::other("connect task ended"))),
                    None => std::future::pending().await,
                }
            };
            let sec = self.secondary.as_mut().and_then(|s| s.conn.as_mut());
            // Backpressure: with every permit in flight, wait for one instead of reading.
            // Resume only once half the permits are back: one read decodes
            // many UPDATEs, so resuming at the first free permit would read a
            // whole chunk per UPDATE applied and let the queue grow unbounded.
            let can_read = self.inflight.available_permits() >= READ_RESUME as usize;
            let inflight = self.inflight.clone();
            let wake = tokio::select! {
                c = cmds.recv() => Wake::Cmd(c),
                r = read_some(self.primary.conn.as_mut()), if can_read => Wake::Read(true, r),
                _ = inflight.acquire_many(READ_RESUME), if !can_read => Wake::Timer,
                r = read_some(sec) => Wake::Read(false, r),
                c = connecting => Wake::Connected(c),
                () = timer => Wake::Timer,
            };
            match wake {
                Wake::Cmd(None) => {
                    self.primary.fsm.handle(Event::ManualStop(None), now());
                    removing = true;
                }
                Wake::Cmd(Some(PeerCmd::Remove)) => {
                    let n = Notification::new(
                        ErrorCode::CEASE,
                        subcode::cease::PEER_DECONFIGURED,
                        Vec::new(),
                    );
                    self.primary.fsm.handle(Event::ManualStop(Some(n)), now());
                    self.secondary = None;
                    removing = true;
                }
                Wake::Cmd(Some(c)) => self.command(c),
                Wake::Read(primary, r) => self.on_read(primary, r),
                Wake::Connected(r) => {
                    self.connecting = None;
                    self.on_connected(r);
                }
                Wake::Timer => {
                    let n = now();
                    self.primary.fsm.handle_timeout(n);
                    if let Some(s) = self.secondary.as_mut() {
                        s.fsm.handle_timeout(n);
                    }
                }
            }
        }
        self.process_actions();
        let _ = self.events.send(PeerEvent::Gone(addr));
    }

    fn command(&mut self, c: PeerCmd) {
        match c {
            PeerCmd::Inbound(stream) => self.on_inbound(stream),
            PeerCmd::Core(c) => self.core_command(c),
            PeerCmd::Remove => {}
        }
    }

    fn core_command(&mut self, c: PeerCommand) {
        let t = now();
        match c {
            PeerCommand::Send(updates) => {
                if self.primary.fsm.state() == State::Established
                    && let Some(conn) = &self.primary.conn
                {
                    for u in updates {
                        tracing::trace!(peer = %self.cfg.address, ?u, "sending UPDATE");
                        conn.send(&Message::Update(u));
                    }
                    self.primary.fsm.on_message_sent(t);
                }
            }
            PeerCommand::Start => self.primary.fsm.handle(Event::ManualStart, t),
            PeerCommand::Stop(n) => {
                self.secondary = None;
                self.primary.fsm.handle(Event::ManualStop(n), t);
            }
            PeerCommand::LocalError {
                notification,
                restart_after,
            } => {
                self.secondary = None;
                self.primary.fsm.handle(
                    Event::LocalError {
                        notification,
                        restart_after,
                    },
                    t,
                );
            }
            PeerCommand::RouteRefresh(family) => {
                if self.primary.fsm.state() == State::Established
                    && let Some(conn) = &self.primary.conn
                {
                    tracing::info!(peer = %self.cfg.address, %family, "sending ROUTE-REFRESH");
                    conn.send(&Message::RouteRefresh(RouteRefresh::request(family)));
                }
            }
            PeerCommand::Demarcation(family, subtype) => {
                if self.primary.fsm.state() == State::Established
                    && let Some(conn) = &self.primary.conn
                {
                    conn.send(&Message::RouteRefresh(RouteRefresh { family, subtype }));
                }
            }
        }
    }

    fn attach(&mut self, stream: TcpStream, dir: Direction) -> Option<Conn> {
        let apply = match dir {
            Direction::Inbound => socket::apply_accepted(&stream, &self.cfg.connect),
            Direction::Outbound => Ok(()),
        };
        if let Err(e) = apply {
            tracing::warn!(peer = %self.cfg.address, "socket options on accepted connection: {e}");
            return None;
        }
        match Conn::new(stream, dir) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(peer = %self.cfg.address, "connection unusable: {e}");
                None
            }
        }
    }

    fn on_inbound(&mut self, stream: TcpStream) {
        let t = now();
        match self.primary.fsm.state() {
            State::Idle if self.primary.fsm.accepts_inbound(t) => {
                // The peer is back before our idle hold ended (a ToR
                // restarted or cleared): take its connection now.
                tracing::info!(peer = %self.cfg.address, "inbound connection while Idle: starting");
                self.primary.fsm.handle(Event::AutomaticStartPassive, t);
                if let Some(c) = self.attach(stream, Direction::Inbound) {
                    self.primary.conn = Some(c);
                    self.primary.fsm.handle(Event::TcpAccepted, t);
                }
            }
            State::Idle => {
                let why = match self.primary.fsm.next_start() {
                    Some(at) => format!(
                        "damped after {} consecutive errors, next attempt in {} ms",
                        self.primary.fsm.error_count(),
                        at.saturating_duration_since(t).as_millis()
                    ),
                    None => "administratively stopped".into(),
                };
                tracing::info!(peer = %self.cfg.address, "rejecting inbound connection: peer is Idle ({why})");
                reject(stream);
            }
            State::Connect | State::Active if self.primary.conn.is_none() => {
                if let Some((_, h)) = self.connecting.take() {
                    h.abort();
                }
                if let Some(c) = self.attach(stream, Direction::Inbound) {
                    self.primary.conn = Some(c);
                    self.primary.fsm.handle(Event::TcpAccepted, t);
                }
            }
            State::OpenSent | State::OpenConfirm if self.secondary.is_none() => {
                // Possible collision: run the inbound connection in its own FSM.
                let mut cfg = self.primary.fsm.config().clone();
                cfg.passive = true;
                cfg.auto_restart = false;
                cfg.seed = cfg.seed.wrapping_add(1);
                let mut fsm = Fsm::new(cfg);
                fsm.handle(Event::ManualStart, t);
                if let Some(c) = self.attach(stream, Direction::Inbound) {
                    fsm.handle(Event::TcpAccepted, t);
                    self.secondary = Some(Slot { fsm, conn: Some(c) });
                }
            }
            // Established (or already two connections).
            _ => reject(stream),
        }
    }

    fn on_connected(&mut self, r: io::Result<TcpStream>) {
        let t = now();
        match r {
            Ok(stream) => {
                if self.primary.conn.is_some()
                    || !matches!(self.primary.fsm.state(), State::Connect | State::Active)
                {
                    return; // an inbound connection won the race; drop ours
                }
                match self.attach(stream, Direction::Outbound) {
                    Some(c) => {
                        self.primary.conn = Some(c);
                        self.primary.fsm.handle(Event::TcpConnected, t);
                    }
                    None => self.primary.fsm.handle(Event::TcpFailed, t),
                }
            }
            Err(e) => {
                tracing::debug!(peer = %self.cfg.address, "connect failed: {e}");
                if self.primary.conn.is_none() {
                    self.primary.fsm.handle(Event::TcpFailed, t);
                }
            }
        }
    }

    fn on_read(&mut self, primary: bool, r: io::Result<usize>) {
        let t = now();
        let closed = !matches!(r, Ok(n) if n > 0);
        {
            let Some(slot) = (if primary {
                Some(&mut self.primary)
            } else {
                self.secondary.as_mut()
            }) else {
                return;
            };
            if closed {
                slot.conn = None;
                slot.fsm.handle(Event::TcpFailed, t);
            } else {
                // Decode every whole message in the buffer.
                let mut msgs = Vec::new();
                let mut failure = None;
                if let Some(conn) = slot.conn.as_mut() {
                    let mut off = 0;
                    loop {
                        let rest = conn.buf.get(off..).unwrap_or_default();
                        match frame(rest, &conn.rx_ctx) {
                            Ok(Some(n)) => {
                                let m = rest.get(..n).unwrap_or_default();
                                msgs.push(decode(m, &conn.rx_ctx));
                                off += n;
                            }
                            Ok(None) => break,
                            Err(n) => {
                                failure = Some(n);
                                break;
                            }
                        }
                    }
                    conn.buf.drain(..off.min(conn.buf.len()));
                }
                for m in msgs {
                    let peer = self.cfg.address;
                    match m {
                        Ok(d) => match d.message {
                            Message::Open(o) => slot.fsm.handle(Event::Open(o), t),
                            Message::Keepalive => slot.fsm.handle(Event::Keepalive, t),
                            Message::Notification(n) => {
                                tracing::warn!(%peer, "received NOTIFICATION {n}");
                                slot.fsm.handle(Event::Notification(n), t);
                            }
                            Message::Update(u) => {
                                tracing::trace!(%peer, ?u, "UPDATE");
                                let est = slot.fsm.state() == State::Established;
                                slot.fsm.handle(Event::Update, t);
                                if est {
                                    let permit = self.inflight.clone().try_acquire_owned().ok();
                                    self.pending
                                        .push(PeerEvent::Update(peer, Box::new(u), permit));
                                }
                            }
                            Message::RouteRefresh(rr) => {
                                let est = slot.fsm.state() == State::Established;
                                slot.fsm.handle(Event::RouteRefresh, t);
                                if est && rr.subtype == RouteRefresh::REQUEST {
                                    self.pending.push(PeerEvent::RouteRefresh(peer, rr.family));
                                } else if est {
                                    self.pending
                                        .push(PeerEvent::Demarcation(peer, rr.family, rr.subtype));
                                }
                            }
                        },
                        Err(DecodeError::SessionReset(n)) => {
                            tracing::warn!(%peer, "malformed message, resetting: {n}");
                            slot.fsm.handle(Event::DecodeError(n), t);
                        }
                        Err(DecodeError::TreatAsWithdraw(w)) => {
                            tracing::warn!(%peer, "treat-as-withdraw: {:?}", w.errors);
                            slot.fsm.handle(Event::Update, t);
                            self.pending.push(PeerEvent::Withdraw(peer, w));
                        }
                    }
                    // Adopt the negotiated context as soon as the OPEN is accepted.
                    if let (Some(n), Some(c)) = (slot.fsm.negotiated(), slot.conn.as_mut()) {
                        c.rx_ctx = n.decode_context();
                        c.tx_ctx = n.encode_context();
                    }
                    if slot.fsm.state() == State::Idle {
                        break;
                    }
                }
                if let Some(n) = failure {
                    slot.fsm.handle(Event::DecodeError(n), t);
                }
            }
        }
        self.check_collision();
    }

    /// RFC 4271 6.8: once both connections know the peer's identifier, keep one.
    fn check_collision(&mut self) {
        let Some(sec) = self.secondary.as_ref() else {
            return;
        };
        let t = now();
        let (Some(sec_neg), p_state) = (sec.fsm.negotiated(), self.primary.fsm.state()) else {
            if sec.fsm.state() == State::Idle {
                self.secondary = None;
            }
            return;
        };
        let existing = match p_state {
            State::Established => ExistingState::Established,
            State::OpenConfirm => ExistingState::OpenConfirm,
            State::OpenSent => ExistingState::OpenSentNoId,
            _ => {
                // Primary failed meanwhile: promote the inbound connection.
                if let Some(mut s) = self.secondary.take() {
                    self.drain_slot_actions(&mut s, false);
                    s.fsm.set_passive(self.cfg.passive);
                    s.fsm.set_auto_restart(true);
                    self.primary = s;
                }
                return;
            }
        };
        let p_dir = self
            .primary
            .conn
            .as_ref()
            .map(|c| c.dir)
            .unwrap_or(Direction::Outbound);
        let res = collision::resolve(
            self.router_id,
            self.local_as,
            sec_neg.remote_id,
            sec_neg.remote_as,
            p_dir,
            existing,
        );
        if res != Resolution::KeepBoth {
            tracing::info!(peer = %self.cfg.address, existing = ?p_dir, ?res, "connection collision (RFC 4271 6.8)");
        }
        match res {
            Resolution::KeepBoth => {}
            Resolution::CloseNew => {
                if let Some(mut s) = self.secondary.take() {
                    s.fsm.handle(Event::OpenCollisionDump, t);
                    self.drain_slot_actions(&mut s, false);
                }
            }
            Resolution::CloseExisting => {
                if let Some(mut s) = self.secondary.take() {
                    self.primary.fsm.handle(Event::OpenCollisionDump, t);
                    // Send the loser's Cease before swapping.
                    let mut old = self.take_primary();
                    self.drain_slot_actions(&mut old, false);
                    self.drain_slot_actions(&mut s, false);
                    s.fsm.set_passive(self.cfg.passive);
                    s.fsm.set_auto_restart(true);
                    self.primary = s;
                }
            }
        }
    }

    /// Executes a slot's actions; `report` forwards session events to the core.
    fn drain_slot_actions(&mut self, slot: &mut Slot, report: bool) {
        while let Some(a) = slot.fsm.poll_action() {
            self.execute(slot, a, report);
        }
    }

    fn execute(&mut self, slot: &mut Slot, a: Action, report: bool) {
        let peer = self.cfg.address;
        match a {
            Action::Connect => {
                if let Some((_, h)) = self.connecting.take() {
                    h.abort();
                }
                let (tx, rx) = oneshot::channel();
                let opts = self.cfg.connect.clone();
                let port = self.cfg.port;
                let h = tokio::spawn(async move {
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        socket::connect(peer, port, &opts),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                    });
                    let _ = tx.send(r);
                });
                self.connecting = Some((rx, h));
            }
            Action::Send(m) => {
                if let Some(c) = &slot.conn {
                    let msg = match m {
                        Outgoing::Open(o) => Message::Open(o),
                        Outgoing::Keepalive => Message::Keepalive,
                        Outgoing::Notification(n) => {
                            tracing::warn!(%peer, "sending NOTIFICATION {n}");
                            Message::Notification(n)
                        }
                    };
                    c.send(&msg);
                }
            }
            Action::Disconnect => {
                slot.conn = None;
            }
            Action::Established(n) => {
                // RFC 4724: the Restart State bit belongs only in the OPENs right
                // after our restart; later sessions announce a normal GR capability.
                let mut caps = slot.fsm.config().capabilities.clone();
                if let Some(gr) = caps.graceful_restart.as_mut()
                    && gr.restarting
                {
                    gr.restarting = false;
                    slot.fsm.set_capabilities(caps);
                }
                if let Some(c) = slot.conn.as_mut() {
                    c.rx_ctx = n.decode_context();
                    c.tx_ctx = n.encode_context();
                }
                if report {
                    let local = slot
                        .conn
                        .as_ref()
                        .map(|c| c.local)
                        .unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
                    tracing::info!(%peer, caps = ?n.capability_names(), "session Established");
                    let connected = socket::connected_subnets(local.ip());
                    let _ = self.events.send(PeerEvent::Up {
                        peer,
                        negotiated: n,
                        local,
                        connected,
                    });
                }
            }
            Action::Down {
                reason,
                was_established,
            } => {
                if report {
                    tracing::warn!(%peer, %reason, was_established, "session down");
                    if self.primary_idle_hint(slot)
                        && let Some((_, h)) = self.connecting.take()
                    {
                        h.abort();
                    }
                    let _ = self.events.send(PeerEvent::Down {
                        peer,
                        reason,
                        was_established,
                    });
                }
            }
        }
    }

    fn take_primary(&mut self) -> Slot {
        let placeholder = Slot {
            fsm: Fsm::new(self.primary.fsm.config().clone()),
            conn: None,
        };
        std::mem::replace(&mut self.primary, placeholder)
    }

    fn primary_idle_hint(&self, slot: &Slot) -> bool {
        slot.fsm.state() == State::Idle
    }

    fn process_actions(&mut self) {
        // Loop until both FSMs are quiet (an action can trigger another).
        loop {
            let mut any = false;
            let mut p = self.take_primary();
            while let Some(a) = p.fsm.poll_action() {
                any = true;
                self.execute(&mut p, a, true);
            }
            self.primary = p;
            if let Some(mut s) = self.secondary.take() {
                let mut promote = None;
                while let Some(a) = s.fsm.poll_action() {
                    any = true;
                    if matches!(a, Action::Established(_)) {
                        promote = Some(a);
                        continue;
                    }
                    // The inbound candidate reports only once promoted.
                    self.execute(&mut s, a, false);
                }
                if let Some(est) = promote {
                    // The inbound connection got Established first: it wins.
                    let t = now();
                    self.primary.fsm.handle(Event::OpenCollisionDump, t);
                    let mut old = self.take_primary();
                    self.drain_slot_actions(&mut old, true);
                    s.fsm.set_passive(self.cfg.passive);
                    s.fsm.set_auto_restart(true);
                    self.execute(&mut s, est, true);
                    self.primary = s;
                } else if s.fsm.state() != State::Idle {
                    self.secondary = Some(s);
                }
            }
            // A candidate that reached Established before the primary did
            // would already have won the collision; nothing else to check.
            if !any {
                break;
            }
            self.check_collision();
        }
        if self.primary.fsm.state() == State::Idle
            && let Some((_, h)) = self.connecting.take()
        {
            h.abort();
        }
        for e in self.pending.drain(..) {
            let _ = self.events.send(e);
        }
        let retry = (
            self.primary.fsm.next_start(),
            self.primary.fsm.error_count(),
        );
        if retry != self.reported_retry {
            self.reported_retry = retry;
            let _ = self.events.send(PeerEvent::Retry {
                peer: self.cfg.address,
                at: retry.0,
                errors: retry.1,
            });
        }
        let s = self.primary.fsm.state();
        if s != self.reported {
            self.reported = s;
            let _ = self.events.send(PeerEvent::State(self.cfg.address, s));
        }
    }
}

/// Refuses a connection with Cease/Connection Rejected (RFC 4486), so the
/// peer's log says why instead of seeing a silent close.
fn reject(stream: TcpStream) {
    let n = Notification::new(
        ErrorCode::CEASE,
        subcode::cease::CONNECTION_REJECTED,
        Vec::new(),
    );
    if let Ok(b) = Message::Notification(n).to_bytes(&DecodeContext::legacy()) {
        tokio::spawn(async move {
            let mut s = stream;
            let _ = s.write_all(&b).await;
            let _ = s.shutdown().await;
        });
    }
}
