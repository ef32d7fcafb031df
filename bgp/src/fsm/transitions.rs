//! The transitions that start, stop and time out a session (RFC 4271 section 8.2.2):
//! administrative events, TCP events and timer expiries.

use std::time::{Duration, Instant};

use super::*;

impl Fsm {
    pub(super) fn error_with_notification(&mut self, n: Notification, now: Instant) {
        if self.connected {
            self.send(Outgoing::Notification(n.clone()));
        }
        self.go_idle(DownReason::NotificationSent(n), now, None);
    }

    pub(super) fn fsm_error(&mut self, now: Instant) {
        let sub = match self.state {
            State::OpenSent => subcode::fsm::UNEXPECTED_IN_OPENSENT,
            State::OpenConfirm => subcode::fsm::UNEXPECTED_IN_OPENCONFIRM,
            State::Established => subcode::fsm::UNEXPECTED_IN_ESTABLISHED,
            _ => subcode::fsm::UNSPECIFIED,
        };
        self.error_with_notification(Notification::new(ErrorCode::FSM, sub, Vec::new()), now);
    }

    // ---- events --------------------------------------------------------

    pub(super) fn start(&mut self, now: Instant) {
        self.connect_retry_counter = 0;
        self.timers = Timers::default();
        if self.cfg.passive {
            self.state = State::Active;
            // In Active the ConnectRetry timer only moves us to Connect; a
            // passive peer never connects, so no timer.
        } else {
            self.state = State::Connect;
            self.start_connect_retry(now);
            self.push(Action::Connect);
        }
    }

    pub(super) fn manual_start(&mut self, now: Instant) {
        self.stopped = false;
        if self.state == State::Idle {
            self.error_count = 0;
            self.start(now);
        }
    }

    pub(super) fn automatic_start(&mut self, now: Instant) {
        if self.state == State::Idle && !self.stopped {
            self.start(now);
        }
    }

    pub(super) fn automatic_start_passive(&mut self, now: Instant) {
        if self.accepts_inbound(now) {
            self.connect_retry_counter = 0;
            self.timers = Timers::default();
            self.state = State::Active;
            if !self.cfg.passive {
                self.start_connect_retry(now);
            }
        }
    }

    pub(super) fn manual_stop(&mut self, n: Option<Notification>, now: Instant) {
        self.stopped = true;
        if self.state == State::Idle {
            self.timers = Timers::default();
            return;
        }
        if self.connected
            && matches!(
                self.state,
                State::OpenSent | State::OpenConfirm | State::Established
            )
        {
            let n = n.unwrap_or_else(|| {
                Notification::new(
                    ErrorCode::CEASE,
                    subcode::cease::ADMINISTRATIVE_SHUTDOWN,
                    Vec::new(),
                )
            });
            self.send(Outgoing::Notification(n));
        }
        self.connect_retry_counter = 0;
        self.go_idle(DownReason::ManualStop, now, Some(None));
    }

    pub(super) fn local_error(
        &mut self,
        n: Notification,
        restart_after: Option<Duration>,
        now: Instant,
    ) {
        if self.state == State::Idle {
            return;
        }
        if self.connected {
            self.send(Outgoing::Notification(n.clone()));
        }
        self.go_idle(DownReason::NotificationSent(n), now, Some(restart_after));
    }

    pub(super) fn tcp_up(&mut self, now: Instant) {
        match self.state {
            State::Connect | State::Active => {
                self.connected = true;
                self.timers.connect_retry = None;
                if let Some(d) = self.cfg.delay_open {
                    self.timers.delay_open = Some(now + d);
                } else {
                    self.send_open(now);
                }
            }
            // A second connection is the driver's business (collision); the
            // FSM only tracks one.
            _ => {}
        }
    }

    pub(super) fn tcp_failed(&mut self, now: Instant) {
        match self.state {
            State::Idle => {}
            State::Connect | State::Active => {
                self.connected = false;
                self.timers.delay_open = None;
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.state = State::Active;
                if !self.cfg.passive {
                    self.start_connect_retry(now);
                }
            }
            State::OpenSent => {
                // RFC 4271: close, restart ConnectRetry, go Active.
                self.connected = false;
                self.timers = Timers::default();
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.last_down = Some(DownReason::ConnectionLost);
                self.push(Action::Down {
                    reason: DownReason::ConnectionLost,
                    was_established: false,
                });
                self.state = State::Active;
                if !self.cfg.passive {
                    self.start_connect_retry(now);
                }
            }
            State::OpenConfirm | State::Established => {
                self.connected = false;
                self.go_idle(DownReason::ConnectionLost, now, None);
            }
        }
    }

    pub(super) fn connect_retry_expired(&mut self, now: Instant) {
        match self.state {
            State::Connect => {
                // Attempt timed out: drop it and try again.
                self.disconnect();
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.start_connect_retry(now);
                self.push(Action::Connect);
            }
            State::Active => {
                self.state = State::Connect;
                self.start_connect_retry(now);
                self.push(Action::Connect);
            }
            State::Idle => {}
            _ => self.fsm_error(now),
        }
    }

    pub(super) fn delay_open_expired(&mut self, now: Instant) {
        if matches!(self.state, State::Connect | State::Active) && self.connected {
            self.send_open(now);
        }
    }

    pub(super) fn hold_expired(&mut self, now: Instant) {
        if matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            self.error_with_notification(
                Notification::new(ErrorCode::HOLD_TIMER_EXPIRED, 0, Vec::new()),
                now,
            );
        }
    }

    pub(super) fn keepalive_expired(&mut self, now: Instant) {
        if matches!(self.state, State::OpenConfirm | State::Established)
            && let Some(n) = &self.negotiated
        {
            let ka = n.keepalive;
            self.send(Outgoing::Keepalive);
            if !ka.is_zero() {
                self.timers.keepalive = Some(now + self.jitter.apply(ka));
            }
        }
    }
}
