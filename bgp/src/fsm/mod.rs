//! The RFC 4271 section 8 finite state machine, sans-IO.
//!
//! Events go in with the current time ([`Fsm::handle`], [`Fsm::handle_timeout`]);
//! actions come out ([`Fsm::poll_action`]); the next timer deadline is
//! [`Fsm::poll_timeout`]. No sockets, no clock, no randomness of its own (the
//! jitter seed is configuration), so a test replays any scenario exactly.
//!
//! One `Fsm` drives one TCP connection attempt at a time. Connection collision
//! (section 6.8) is decided by [`collision::resolve`] in the driver, which can
//! run a second `Fsm` for an inbound connection while the first is in OpenSent.
//!
//! Deliberate deviations, recorded in docs/adr/0002-fsm.md: a failed TCP
//! connect in Connect goes to Active with a backed-off ConnectRetry (instead of
//! Idle), and after an error the automatic restart waits an idle-hold time
//! that doubles with consecutive failures (RFC 4271 section 8.1.1 "damping").

pub mod collision;
mod messages;
pub mod negotiate;
pub mod timers;
mod transitions;

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::wire::Open;
use crate::wire::{ErrorCode, Notification, subcode};

pub use negotiate::{LocalCapabilities, LocalGracefulRestart, Negotiated};
use timers::{Jitter, backoff};

/// The six states of RFC 4271 section 8.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "speaker", derive(serde::Serialize, serde::Deserialize))]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Per-peer FSM configuration.
#[derive(Debug, Clone)]
pub struct FsmConfig {
    /// Our AS.
    pub local_as: u32,
    /// The AS we expect the peer to announce; `None` accepts any (the driver
    /// then decides eBGP/iBGP from the OPEN).
    pub remote_as: Option<u32>,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we propose (seconds; 0 or >= 3).
    pub hold_time: u16,
    /// Keepalive interval to use (default hold/3).
    pub keepalive: Option<u16>,
    /// Smallest peer hold time we accept (besides 0). RFC 4271 requires 3.
    pub min_hold_time: u16,
    /// Do not initiate connections; wait for the peer.
    pub passive: bool,
    /// Wait this long after TCP is up for the peer's OPEN before sending ours.
    pub delay_open: Option<Duration>,
    /// First ConnectRetry interval; doubles per failed attempt up to `connect_retry_max`.
    pub connect_retry: Duration,
    /// Ceiling of the ConnectRetry backoff.
    pub connect_retry_max: Duration,
    /// First idle-hold time after an error; doubles per consecutive error.
    pub idle_hold: Duration,
    /// Ceiling of the idle-hold damping.
    pub idle_hold_max: Duration,
    /// A session that stayed Established this long resets the damping.
    pub stable_time: Duration,
    /// Restart automatically after errors (false: stay Idle until ManualStart).
    pub auto_restart: bool,
    /// Capabilities we announce.
    pub capabilities: LocalCapabilities,
    /// Seed for timer jitter.
    pub seed: u64,
}

impl FsmConfig {
    /// Defaults suitable for a ToR peering: hold 90 s, ConnectRetry 1 s .. 60 s.
    pub fn new(local_as: u32, remote_as: Option<u32>, router_id: Ipv4Addr) -> FsmConfig {
        FsmConfig {
            local_as,
            remote_as,
            router_id,
            hold_time: 90,
            keepalive: None,
            min_hold_time: 3,
            passive: false,
            delay_open: None,
            connect_retry: Duration::from_secs(1),
            connect_retry_max: Duration::from_secs(60),
            idle_hold: Duration::from_secs(1),
            idle_hold_max: Duration::from_secs(120),
            stable_time: Duration::from_secs(60),
            auto_restart: true,
            capabilities: LocalCapabilities::default(),
            seed: 0,
        }
    }
}

/// A message the FSM wants sent on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Open(Open),
    Keepalive,
    Notification(Notification),
}

/// Input events (RFC 4271 section 8.1, timer events come via [`Fsm::handle_timeout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Event 1: operator start.
    ManualStart,
    /// Event 2: operator stop, with the NOTIFICATION to send (e.g. an RFC 8203
    /// shutdown communication). `None` sends Cease/Administrative Shutdown.
    ManualStop(Option<Notification>),
    /// Stop because of a local limit (max-prefix): send the NOTIFICATION, go
    /// Idle, and restart automatically after `restart_after` (`None`: stay Idle).
    LocalError {
        notification: Notification,
        restart_after: Option<Duration>,
    },
    /// Event 5 (AutomaticStart_with_PassiveTcpEstablishment): the peer
    /// connected while we wait out a clean session end; go Active and take
    /// its connection instead of waiting for the idle hold.
    AutomaticStartPassive,
    /// Event 16/17: our outbound connection completed.
    TcpConnected,
    /// Event 17: an inbound connection was accepted for this peer.
    TcpAccepted,
    /// Event 18: the connection failed or closed.
    TcpFailed,
    /// Event 19: a valid OPEN (syntax checked by the codec).
    Open(Open),
    /// Events 21/22/28: the codec rejected a message; send this NOTIFICATION.
    DecodeError(Notification),
    /// Event 24/25: a NOTIFICATION arrived.
    Notification(Notification),
    /// Event 26.
    Keepalive,
    /// Event 27: a well-formed UPDATE (the RIB handles its contents).
    Update,
    /// A ROUTE-REFRESH arrived (RFC 2918; refreshes the hold timer like any message).
    RouteRefresh,
    /// Event 23: collision resolution chose to close this connection.
    OpenCollisionDump,
}

/// Why a session (or an attempt) went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Operator stop.
    ManualStop,
    /// We sent this NOTIFICATION (hold timer, FSM error, OPEN error, max-prefix ...).
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// TCP closed or failed without a NOTIFICATION.
    ConnectionLost,
}

impl DownReason {
    /// Whether this end counts towards peer-oscillation damping (RFC 4271
    /// 8.1.1). A Cease (administrative shutdown, reset, de-configuration,
    /// collision, ...) and the peer closing a working session are how
    /// operators restart peers, not errors: the next attempt comes after
    /// the initial idle hold, never a growing one. Protocol errors either
    /// way, a lost attempt before Established and a peer's max-prefix Cease
    /// are damped.
    pub fn damps(&self, was_established: bool) -> bool {
        let benign_cease = |n: &Notification| {
            n.code == ErrorCode::CEASE.0 && n.subcode != subcode::cease::MAX_PREFIXES
        };
        match self {
            DownReason::ManualStop => false,
            DownReason::NotificationSent(n) | DownReason::NotificationReceived(n) => {
                !benign_cease(n)
            }
            DownReason::ConnectionLost => !was_established,
        }
    }

    /// Whether a graceful-restart helper keeps the peer's routes as stale
    /// (RFC 4724 section 4.2; RFC 8538 for notifications when N was negotiated).
    pub fn keeps_routes(&self, gr_notification: bool) -> bool {
        match self {
            DownReason::ConnectionLost => true,
            DownReason::NotificationSent(n) | DownReason::NotificationReceived(n) => {
                gr_notification
                    && !(n.code == ErrorCode::CEASE.0 && n.subcode == subcode::cease::HARD_RESET)
            }
            DownReason::ManualStop => false,
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::ManualStop => f.write_str("administratively stopped"),
            DownReason::NotificationSent(n) => write!(f, "sent NOTIFICATION {n}"),
            DownReason::NotificationReceived(n) => write!(f, "received NOTIFICATION {n}"),
            DownReason::ConnectionLost => f.write_str("TCP connection lost"),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open an outbound TCP connection to the peer.
    Connect,
    /// Send a message on the current connection.
    Send(Outgoing),
    /// Close the current connection (after flushing queued sends).
    Disconnect,
    /// The session is Established with these capabilities.
    Established(Box<Negotiated>),
    /// The session (or an attempt past OpenSent) ended. `was_established`
    /// tells whether routes learned on it must be handled (flushed or, under
    /// graceful restart, kept as stale).
    Down {
        reason: DownReason,
        was_established: bool,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Timers {
    connect_retry: Option<Instant>,
    hold: Option<Instant>,
    keepalive: Option<Instant>,
    delay_open: Option<Instant>,
    idle_hold: Option<Instant>,
}

/// The FSM of one peer.
#[derive(Debug)]
pub struct Fsm {
    cfg: FsmConfig,
    state: State,
    timers: Timers,
    actions: VecDeque<Action>,
    jitter: Jitter,
    /// Failed connection attempts since the last Established (drives ConnectRetry backoff).
    connect_retry_counter: u32,
    /// Consecutive errors since the last stable session (drives idle-hold damping).
    error_count: u32,
    /// Set by ManualStop: no automatic restarts until ManualStart.
    stopped: bool,
    negotiated: Option<Negotiated>,
    established_at: Option<Instant>,
    /// Whether we have a TCP connection right now.
    connected: bool,
    last_down: Option<DownReason>,
}

/// Hold time used while waiting for the peer's OPEN (RFC 4271 suggests 4 minutes).
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

impl Fsm {
    /// A new FSM in Idle. Nothing happens until [`Event::ManualStart`].
    pub fn new(cfg: FsmConfig) -> Fsm {
        let jitter = Jitter::new(cfg.seed);
        Fsm {
            cfg,
            state: State::Idle,
            timers: Timers::default(),
            actions: VecDeque::new(),
            jitter,
            connect_retry_counter: 0,
            error_count: 0,
            stopped: true,
            negotiated: None,
            established_at: None,
            connected: false,
            last_down: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Configuration (read-only).
    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// Replace the capabilities announced in the next OPEN (e.g. clear the GR
    /// Restart State bit once we have re-converged).
    pub fn set_capabilities(&mut self, caps: LocalCapabilities) {
        self.cfg.capabilities = caps;
    }

    /// Switch passive mode (takes effect at the next start).
    pub fn set_passive(&mut self, passive: bool) {
        self.cfg.passive = passive;
    }

    /// Switch automatic restarts after errors.
    pub fn set_auto_restart(&mut self, on: bool) {
        self.cfg.auto_restart = on;
    }

    /// What was negotiated, while OpenConfirm or Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// When the session became Established.
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }

    /// The reason of the last Down.
    pub fn last_down(&self) -> Option<&DownReason> {
        self.last_down.as_ref()
    }

    /// Consecutive errors counted for damping.
    pub fn error_count(&self) -> u32 {
        self.error_count
    }

    /// When the next automatic start is due (the idle hold), while Idle.
    pub fn next_start(&self) -> Option<Instant> {
        if self.state == State::Idle {
            self.timers.idle_hold
        } else {
            None
        }
    }

    /// Whether an inbound connection may start the session now (RFC 4271
    /// event 5): Idle, not stopped by the operator, restarting automatically,
    /// and not damped (no error since the last stable session, or the
    /// damping wait is over). A damped peer is refused until then.
    pub fn accepts_inbound(&self, now: Instant) -> bool {
        self.state == State::Idle
            && !self.stopped
            && self.cfg.auto_restart
            && (self.error_count == 0 || self.timers.idle_hold.is_none_or(|t| t <= now))
    }

    /// Whether a TCP connection is currently held.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest timer deadline, if any timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        [
            t.connect_retry,
            t.hold,
            t.keepalive,
            t.delay_open,
            t.idle_hold,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The driver sent a message (e.g. an UPDATE): restarts the keepalive timer
    /// since any message serves as a keepalive.
    pub fn on_message_sent(&mut self, now: Instant) {
        if self.state == State::Established
            && self.timers.keepalive.is_some()
            && let Some(n) = &self.negotiated
        {
            let ka = n.keepalive;
            self.timers.keepalive = Some(now + self.jitter.apply(ka));
        }
    }

    /// Fire every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Fire one at a time: each may change state and the other timers.
        loop {
            let t = self.timers;
            let due = |d: Option<Instant>| d.is_some_and(|d| d <= now);
            if due(t.idle_hold) {
                self.timers.idle_hold = None;
                self.automatic_start(now);
            } else if due(t.connect_retry) {
                self.timers.connect_retry = None;
                self.connect_retry_expired(now);
            } else if due(t.delay_open) {
                self.timers.delay_open = None;
                self.delay_open_expired(now);
            } else if due(t.hold) {
                self.timers.hold = None;
                self.hold_expired(now);
            } else if due(t.keepalive) {
                self.timers.keepalive = None;
                self.keepalive_expired(now);
            } else {
                break;
            }
        }
    }

    /// Feed one event.
    pub fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::ManualStart => self.manual_start(now),
            Event::ManualStop(n) => self.manual_stop(n, now),
            Event::LocalError {
                notification,
                restart_after,
            } => self.local_error(notification, restart_after, now),
            Event::AutomaticStartPassive => self.automatic_start_passive(now),
            Event::TcpConnected | Event::TcpAccepted => self.tcp_up(now),
            Event::TcpFailed => self.tcp_failed(now),
            Event::Open(open) => self.open_received(open, now),
            Event::DecodeError(n) => {
                if self.state != State::Idle {
                    self.error_with_notification(n, now);
                }
            }
            Event::Notification(n) => self.notification_received(n, now),
            Event::Keepalive => self.keepalive_received(now),
            Event::Update | Event::RouteRefresh => self.update_received(now),
            Event::OpenCollisionDump => {
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) || (self.connected && self.state != State::Idle)
                {
                    self.error_with_notification(
                        Notification::new(
                            ErrorCode::CEASE,
                            subcode::cease::CONNECTION_COLLISION_RESOLUTION,
                            Vec::new(),
                        ),
                        now,
                    );
                }
            }
        }
    }

    // ---- helpers -------------------------------------------------------

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn send(&mut self, m: Outgoing) {
        self.push(Action::Send(m));
    }

    fn disconnect(&mut self) {
        if self.connected {
            self.connected = false;
            self.push(Action::Disconnect);
        }
    }

    fn connect_retry_interval(&mut self) -> Duration {
        let d = backoff(
            self.cfg.connect_retry,
            self.connect_retry_counter,
            self.cfg.connect_retry_max,
        );
        self.jitter.apply(d)
    }

    fn start_connect_retry(&mut self, now: Instant) {
        let d = self.connect_retry_interval();
        self.timers.connect_retry = Some(now + d);
    }

    fn our_open(&self) -> Open {
        Open::new(
            self.cfg.local_as,
            self.cfg.hold_time,
            self.cfg.router_id,
            self.cfg.capabilities.to_capabilities(self.cfg.local_as),
        )
    }

    fn send_open(&mut self, now: Instant) {
        let open = self.our_open();
        self.send(Outgoing::Open(open));
        self.timers.hold = Some(now + LARGE_HOLD_TIME);
        self.state = State::OpenSent;
    }

    /// Stop every timer except the idle-hold (used when the driver tears down a
    /// connection it never reported).
    pub fn reset_timers(&mut self) {
        let idle = self.timers.idle_hold;
        self.timers = Timers {
            idle_hold: idle,
            ..Timers::default()
        };
    }

    /// Common exit to Idle: drop the connection, stop timers, report Down if
    /// the attempt got past TCP, and schedule an automatic restart.
    fn go_idle(
        &mut self,
        reason: DownReason,
        now: Instant,
        restart_after: Option<Option<Duration>>,
    ) {
        let was_established = self.state == State::Established;
        let was_open = matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        );
        self.disconnect();
        self.timers = Timers::default();
        if was_established {
            let stable = self
                .established_at
                .is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.stable_time);
            if stable {
                self.error_count = 0;
            }
        }
        let is_error = !matches!(reason, DownReason::ManualStop);
        if is_error {
            self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        }
        if reason.damps(was_established) {
            self.error_count = self.error_count.saturating_add(1);
        }
        self.state = State::Idle;
        self.negotiated = None;
        self.established_at = None;
        if was_open || was_established || is_error {
            self.last_down = Some(reason.clone());
        }
        if was_open || was_established {
            self.push(Action::Down {
                reason,
                was_established,
            });
        }
        // Schedule the automatic restart (idle hold with damping).
        let restart = match restart_after {
            Some(explicit) => explicit,
            None if self.stopped || !self.cfg.auto_restart => None,
            None => Some(self.idle_hold_time()),
        };
        if let Some(d) = restart {
            self.timers.idle_hold = Some(now + d);
        }
    }

    /// Idle-hold with damping: `idle_hold * 2^(errors-1)`, capped.
    pub fn idle_hold_time(&self) -> Duration {
        backoff(
            self.cfg.idle_hold,
            self.error_count.saturating_sub(1),
            self.cfg.idle_hold_max,
        )
    }
}
