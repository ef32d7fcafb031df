//! The transitions driven by received messages (OPEN checks of RFC 4271 section 6.2,
//! NOTIFICATION, KEEPALIVE, UPDATE) and the invariant check the tests use.

use std::time::{Duration, Instant};

use super::*;

impl Fsm {
    /// Checks the peer's OPEN (RFC 4271 section 6.2). `Err` is the
    /// NOTIFICATION to send.
    pub fn check_open(&self, open: &Open) -> Result<(), Notification> {
        use subcode::open as s;
        if open.version != 4 {
            return Err(Notification::new(
                ErrorCode::OPEN_MESSAGE,
                s::UNSUPPORTED_VERSION,
                4u16.to_be_bytes().to_vec(),
            ));
        }
        // RFC 7607 2: AS 0 (in My AS or the 4-octet capability) is a Bad Peer AS
        // even where any remote AS is accepted.
        if open.my_as == 0
            || open.four_octet_as() == Some(0)
            || self.cfg.remote_as.is_some_and(|e| open.asn() != e)
        {
            return Err(Notification::new(
                ErrorCode::OPEN_MESSAGE,
                s::BAD_PEER_AS,
                open.my_as.to_be_bytes().to_vec(),
            ));
        }
        let ibgp = open.asn() == self.cfg.local_as;
        // RFC 6286: any non-zero value; must differ from ours within an AS.
        if open.bgp_id.is_unspecified() || (ibgp && open.bgp_id == self.cfg.router_id) {
            return Err(Notification::new(
                ErrorCode::OPEN_MESSAGE,
                s::BAD_BGP_IDENTIFIER,
                open.bgp_id.octets().to_vec(),
            ));
        }
        if open.hold_time != 0 && open.hold_time < self.cfg.min_hold_time.max(3) {
            return Err(Notification::new(
                ErrorCode::OPEN_MESSAGE,
                s::UNACCEPTABLE_HOLD_TIME,
                open.hold_time.to_be_bytes().to_vec(),
            ));
        }
        Ok(())
    }

    pub(super) fn accept_open(&mut self, open: &Open, now: Instant) -> bool {
        if let Err(n) = self.check_open(open) {
            self.error_with_notification(n, now);
            return false;
        }
        let neg = Negotiated::new(
            &self.cfg.capabilities,
            self.cfg.keepalive,
            self.cfg.hold_time,
            open,
        );
        self.timers.connect_retry = None;
        self.timers.delay_open = None;
        if neg.hold_time > 0 {
            self.timers.hold = Some(now + Duration::from_secs(u64::from(neg.hold_time)));
            self.timers.keepalive = Some(now + self.jitter.apply(neg.keepalive));
        } else {
            self.timers.hold = None;
            self.timers.keepalive = None;
        }
        self.negotiated = Some(neg);
        true
    }

    pub(super) fn open_received(&mut self, open: Open, now: Instant) {
        match self.state {
            State::Connect | State::Active
                if self.connected && self.timers.delay_open.is_some() =>
            {
                // DelayOpen: the peer spoke first; answer with OPEN + KEEPALIVE.
                if self.accept_open(&open, now) {
                    let ours = self.our_open();
                    self.send(Outgoing::Open(ours));
                    self.send(Outgoing::Keepalive);
                    self.state = State::OpenConfirm;
                }
            }
            State::OpenSent => {
                if self.accept_open(&open, now) {
                    self.send(Outgoing::Keepalive);
                    self.state = State::OpenConfirm;
                }
            }
            State::Idle => {}
            State::Connect | State::Active => {
                // OPEN without DelayOpen running: FSM error, close.
                self.error_with_notification(
                    Notification::new(ErrorCode::FSM, subcode::fsm::UNSPECIFIED, Vec::new()),
                    now,
                );
            }
            State::OpenConfirm | State::Established => self.fsm_error(now),
        }
    }

    pub(super) fn notification_received(&mut self, n: Notification, now: Instant) {
        if self.state == State::Idle {
            return;
        }
        self.go_idle(DownReason::NotificationReceived(n), now, None);
    }

    pub(super) fn keepalive_received(&mut self, now: Instant) {
        match self.state {
            State::OpenConfirm => {
                self.restart_hold(now);
                self.state = State::Established;
                self.established_at = Some(now);
                self.connect_retry_counter = 0;
                if let Some(n) = &self.negotiated {
                    self.push(Action::Established(Box::new(n.clone())));
                }
            }
            State::Established => self.restart_hold(now),
            State::Idle => {}
            State::Connect | State::Active => self.error_with_notification(
                Notification::new(ErrorCode::FSM, subcode::fsm::UNSPECIFIED, Vec::new()),
                now,
            ),
            State::OpenSent => self.fsm_error(now),
        }
    }

    pub(super) fn update_received(&mut self, now: Instant) {
        match self.state {
            State::Established => self.restart_hold(now),
            State::Idle => {}
            State::Connect | State::Active => self.error_with_notification(
                Notification::new(ErrorCode::FSM, subcode::fsm::UNSPECIFIED, Vec::new()),
                now,
            ),
            State::OpenSent | State::OpenConfirm => self.fsm_error(now),
        }
    }

    pub(super) fn restart_hold(&mut self, now: Instant) {
        if let Some(n) = &self.negotiated
            && n.hold_time > 0
        {
            self.timers.hold = Some(now + Duration::from_secs(u64::from(n.hold_time)));
        }
    }

    /// Internal consistency, checked by the property tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let t = &self.timers;
        match self.state {
            State::Idle => {
                if self.connected {
                    return Err("connected in Idle".into());
                }
                if t.hold.is_some() || t.keepalive.is_some() || t.connect_retry.is_some() {
                    return Err("session timers running in Idle".into());
                }
                if self.negotiated.is_some() {
                    return Err("negotiated kept in Idle".into());
                }
            }
            State::Connect | State::Active => {
                if t.hold.is_some() || t.keepalive.is_some() {
                    return Err(format!("hold/keepalive running in {}", self.state));
                }
                if t.idle_hold.is_some() {
                    return Err("idle hold running while started".into());
                }
            }
            State::OpenSent => {
                if !self.connected {
                    return Err("OpenSent without connection".into());
                }
                if t.hold.is_none() {
                    return Err("OpenSent without hold timer".into());
                }
            }
            State::OpenConfirm | State::Established => {
                if !self.connected || self.negotiated.is_none() {
                    return Err(format!("{} without connection/negotiation", self.state));
                }
            }
        }
        if self.state == State::Established && self.established_at.is_none() {
            return Err("Established without timestamp".into());
        }
        Ok(())
    }
}
