//! Deterministic walks through every FSM state and transition, including the
//! error paths, with time passed in as data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use flatnet_bgp::fsm::collision::{self, Direction, ExistingState, Resolution};
use flatnet_bgp::fsm::negotiate::LocalGracefulRestart;
use flatnet_bgp::fsm::{Action, DownReason, Event, Fsm, FsmConfig, Outgoing, State};
use flatnet_bgp::wire::Family;
use flatnet_bgp::wire::Notification;
use flatnet_bgp::wire::{
    AddPathFamily, AddPathMode, Capability, GracefulRestart, GracefulRestartFamily, Open,
};

const LOCAL_AS: u32 = 65001;
const PEER_AS: u32 = 65000;

fn cfg() -> FsmConfig {
    let mut c = FsmConfig::new(LOCAL_AS, Some(PEER_AS), Ipv4Addr::new(10, 0, 0, 1));
    c.seed = 42;
    c
}

fn drain(f: &mut Fsm) -> Vec<Action> {
    std::iter::from_fn(|| f.poll_action()).collect()
}

fn peer_caps() -> Vec<Capability> {
    vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::Multiprotocol(Family::IPV6_UNICAST),
        Capability::RouteRefresh,
        Capability::EnhancedRouteRefresh,
        Capability::ExtendedMessage,
        Capability::FourOctetAs(PEER_AS),
    ]
}

fn peer_open(hold: u16) -> Open {
    Open::new(PEER_AS, hold, Ipv4Addr::new(10, 0, 0, 2), peer_caps())
}

fn sent_notification(actions: &[Action]) -> Option<(u8, u8)> {
    actions.iter().find_map(|a| match a {
        Action::Send(Outgoing::Notification(n)) => Some((n.code, n.subcode)),
        _ => None,
    })
}

/// Drives a fresh FSM to Established; returns it and the time reached.
fn established(c: FsmConfig) -> (Fsm, Instant) {
    let t = Instant::now();
    let mut f = Fsm::new(c);
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    f.handle(Event::Open(peer_open(9)), t);
    f.handle(Event::Keepalive, t);
    assert_eq!(f.state(), State::Established);
    drain(&mut f);
    (f, t)
}

#[test]
fn idle_to_established_active_open() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    assert_eq!(f.state(), State::Idle);
    assert_eq!(f.poll_timeout(), None);

    f.handle(Event::ManualStart, t);
    assert_eq!(f.state(), State::Connect);
    assert_eq!(drain(&mut f), vec![Action::Connect]);
    assert!(f.poll_timeout().is_some(), "ConnectRetry runs in Connect");

    f.handle(Event::TcpConnected, t);
    assert_eq!(f.state(), State::OpenSent);
    let a = drain(&mut f);
    let Some(Action::Send(Outgoing::Open(open))) = a.first() else {
        panic!("expected OPEN, got {a:?}")
    };
    assert_eq!(open.asn(), LOCAL_AS);
    assert_eq!(open.hold_time, 90);
    assert!(
        open.capabilities()
            .any(|c| *c == Capability::FourOctetAs(LOCAL_AS))
    );
    // Large hold timer while waiting for OPEN.
    assert_eq!(f.poll_timeout(), Some(t + Duration::from_secs(240)));

    f.handle(Event::Open(peer_open(9)), t);
    assert_eq!(f.state(), State::OpenConfirm);
    assert_eq!(drain(&mut f), vec![Action::Send(Outgoing::Keepalive)]);
    let n = f.negotiated().unwrap();
    assert_eq!(n.hold_time, 9, "hold is the smaller of both");
    assert_eq!(n.keepalive, Duration::from_secs(3));

    f.handle(Event::Keepalive, t);
    assert_eq!(f.state(), State::Established);
    let a = drain(&mut f);
    assert!(matches!(a.as_slice(), [Action::Established(n)] if n.remote_as == PEER_AS));
    f.check_invariants().unwrap();
}

#[test]
fn passive_waits_in_active_and_accepts() {
    let t = Instant::now();
    let mut c = cfg();
    c.passive = true;
    let mut f = Fsm::new(c);
    f.handle(Event::ManualStart, t);
    assert_eq!(f.state(), State::Active);
    assert!(drain(&mut f).is_empty(), "a passive peer never connects");
    f.handle(Event::TcpAccepted, t);
    assert_eq!(f.state(), State::OpenSent);
    assert!(matches!(
        drain(&mut f).as_slice(),
        [Action::Send(Outgoing::Open(_))]
    ));
}

#[test]
fn keepalive_and_hold_timers_in_established() {
    let (mut f, t) = established(cfg());
    // Keepalive at hold/3 with jitter in [0.75, 1.0].
    let ka = f.poll_timeout().unwrap();
    assert!(ka >= t + Duration::from_millis(2250) && ka <= t + Duration::from_secs(3));
    f.handle_timeout(ka);
    assert_eq!(drain(&mut f), vec![Action::Send(Outgoing::Keepalive)]);
    assert_eq!(f.state(), State::Established);

    // A received message restarts the hold timer.
    f.handle(Event::Update, t + Duration::from_secs(5));
    f.handle_timeout(t + Duration::from_secs(9));
    assert_eq!(f.state(), State::Established, "hold restarted by UPDATE");

    // Silence past the hold time: Hold Timer Expired, Idle, Down.
    let mut now = t + Duration::from_secs(5);
    let mut notified = None;
    while f.state() == State::Established {
        now = f.poll_timeout().unwrap();
        f.handle_timeout(now);
        let a = drain(&mut f);
        if let Some(n) = sent_notification(&a) {
            notified = Some(n);
            assert!(a.contains(&Action::Disconnect));
            assert!(a.iter().any(|x| matches!(
                x,
                Action::Down {
                    was_established: true,
                    ..
                }
            )));
        }
    }
    assert_eq!(notified, Some((4, 0)));
    assert_eq!(now, t + Duration::from_secs(14));
    assert_eq!(f.state(), State::Idle);
    f.check_invariants().unwrap();
    // Automatic restart after the idle hold.
    let restart = f.poll_timeout().unwrap();
    f.handle_timeout(restart);
    assert_eq!(f.state(), State::Connect);
    assert_eq!(drain(&mut f), vec![Action::Connect]);
}

#[test]
fn hold_time_zero_means_no_keepalives() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    f.handle(Event::Open(peer_open(0)), t);
    f.handle(Event::Keepalive, t);
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn connect_retry_backs_off_with_jitter() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    drain(&mut f);
    let mut now = t;
    let mut gaps = Vec::new();
    for _ in 0..8 {
        let next = f.poll_timeout().unwrap();
        gaps.push(next - now);
        now = next;
        f.handle_timeout(now);
        assert_eq!(f.state(), State::Connect);
        assert_eq!(drain(&mut f), vec![Action::Connect]);
    }
    // 1 s, 2 s, 4 s ... capped at 60 s, each scaled by [0.75, 1.0].
    for (i, g) in gaps.iter().enumerate() {
        let nominal = Duration::from_secs((1u64 << i).min(60));
        assert!(
            *g <= nominal && *g >= nominal.mul_f64(0.75),
            "gap {i}: {g:?}"
        );
    }
}

#[test]
fn connect_failure_goes_active_then_retries() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    drain(&mut f);
    f.handle(Event::TcpFailed, t);
    assert_eq!(f.state(), State::Active);
    let retry = f.poll_timeout().unwrap();
    assert!(retry > t);
    // An inbound connection while Active is accepted.
    let mut g = Fsm::new(cfg());
    g.handle(Event::ManualStart, t);
    g.handle(Event::TcpFailed, t);
    g.handle(Event::TcpAccepted, t);
    assert_eq!(g.state(), State::OpenSent);
    // Otherwise ConnectRetry moves us back to Connect.
    f.handle_timeout(retry);
    assert_eq!(f.state(), State::Connect);
    assert_eq!(drain(&mut f), vec![Action::Connect]);
}

#[test]
fn delay_open_peer_speaks_first() {
    let t = Instant::now();
    let mut c = cfg();
    c.delay_open = Some(Duration::from_secs(5));
    let mut f = Fsm::new(c);
    f.handle(Event::ManualStart, t);
    drain(&mut f);
    f.handle(Event::TcpConnected, t);
    assert_eq!(f.state(), State::Connect);
    assert!(drain(&mut f).is_empty(), "OPEN is delayed");
    f.handle(Event::Open(peer_open(9)), t + Duration::from_secs(1));
    assert_eq!(f.state(), State::OpenConfirm);
    let a = drain(&mut f);
    assert!(matches!(
        a.as_slice(),
        [
            Action::Send(Outgoing::Open(_)),
            Action::Send(Outgoing::Keepalive)
        ]
    ));
}

#[test]
fn delay_open_timer_expires() {
    let t = Instant::now();
    let mut c = cfg();
    c.delay_open = Some(Duration::from_secs(5));
    let mut f = Fsm::new(c);
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    drain(&mut f);
    assert_eq!(f.poll_timeout(), Some(t + Duration::from_secs(5)));
    f.handle_timeout(t + Duration::from_secs(5));
    assert_eq!(f.state(), State::OpenSent);
    assert!(matches!(
        drain(&mut f).as_slice(),
        [Action::Send(Outgoing::Open(_))]
    ));
}

fn open_error(open: Open, mut c: FsmConfig) -> (u8, u8, Vec<u8>) {
    c.auto_restart = true;
    let t = Instant::now();
    let mut f = Fsm::new(c);
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    drain(&mut f);
    f.handle(Event::Open(open), t);
    assert_eq!(f.state(), State::Idle);
    let a = drain(&mut f);
    let n = a
        .iter()
        .find_map(|x| match x {
            Action::Send(Outgoing::Notification(n)) => Some(n.clone()),
            _ => None,
        })
        .expect("a NOTIFICATION");
    assert!(a.contains(&Action::Disconnect));
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Down {
            reason: DownReason::NotificationSent(_),
            was_established: false
        }
    )));
    f.check_invariants().unwrap();
    (n.code, n.subcode, n.data)
}

#[test]
fn open_unsupported_version() {
    let mut o = peer_open(9);
    o.version = 3;
    assert_eq!(open_error(o, cfg()), (2, 1, vec![0, 4]));
}

#[test]
fn open_bad_peer_as() {
    let o = Open::new(
        64999,
        9,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![Capability::FourOctetAs(64999)],
    );
    assert_eq!(
        open_error(o, cfg()),
        (2, 2, 64999u16.to_be_bytes().to_vec())
    );
}

#[test]
fn open_bad_peer_as_four_octet() {
    // AS_TRANS in my_as, real AS in the capability.
    let o = Open::new(
        4_200_000_000,
        9,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![Capability::FourOctetAs(4_200_000_000)],
    );
    assert_eq!(o.my_as, 23456);
    let (c, s, _) = open_error(o, cfg());
    assert_eq!((c, s), (2, 2));
}

#[test]
fn open_as_zero_is_bad_peer_as_rfc7607() {
    // Even with no remote AS configured (any AS accepted).
    for caps in [vec![], vec![Capability::FourOctetAs(0)]] {
        let mut c = cfg();
        c.remote_as = None;
        let (code, sub, _) = open_error(Open::new(0, 9, Ipv4Addr::new(10, 0, 0, 2), caps), c);
        assert_eq!((code, sub), (2, 2));
    }
    // My AS fine, the 4-octet capability says 0.
    let mut c = cfg();
    c.remote_as = None;
    let o = Open::new(
        64999,
        9,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![Capability::FourOctetAs(0)],
    );
    assert_eq!(open_error(o, c).1, 2);
}

#[test]
fn open_bad_bgp_identifier() {
    let (c, s, d) = open_error(
        Open::new(PEER_AS, 9, Ipv4Addr::UNSPECIFIED, peer_caps()),
        cfg(),
    );
    assert_eq!((c, s, d), (2, 3, vec![0, 0, 0, 0]));
    // iBGP with our own identifier.
    let mut ib = cfg();
    ib.remote_as = Some(LOCAL_AS);
    let o = Open::new(
        LOCAL_AS,
        9,
        Ipv4Addr::new(10, 0, 0, 1),
        vec![Capability::FourOctetAs(LOCAL_AS)],
    );
    assert_eq!(open_error(o, ib).1, 3);
}

#[test]
fn open_unacceptable_hold_time() {
    for hold in [1u16, 2] {
        assert_eq!(
            open_error(peer_open(hold), cfg()),
            (2, 6, hold.to_be_bytes().to_vec())
        );
    }
    let mut c = cfg();
    c.min_hold_time = 10;
    assert_eq!(open_error(peer_open(9), c).1, 6);
}

#[test]
fn unknown_capability_is_ignored_rfc5492() {
    // RFC 5492 5: sending Unsupported Capability (2/7) is optional; flatnet
    // ignores capabilities it does not know and negotiates the rest.
    let f = Fsm::new(cfg());
    let mut caps = peer_caps();
    caps.push(Capability::Unknown {
        code: 200,
        value: vec![1, 2],
    });
    assert_eq!(
        f.check_open(&Open::new(PEER_AS, 9, Ipv4Addr::new(10, 0, 0, 2), caps)),
        Ok(())
    );
}

#[test]
fn check_open_accepts_good_open() {
    let f = Fsm::new(cfg());
    assert_eq!(f.check_open(&peer_open(9)), Ok(()));
    assert_eq!(f.check_open(&peer_open(0)), Ok(()));
}

fn unexpected(state: State, event: Event) -> Option<(u8, u8)> {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    if state != State::OpenSent {
        f.handle(Event::Open(peer_open(9)), t);
    }
    if state == State::Established {
        f.handle(Event::Keepalive, t);
    }
    assert_eq!(f.state(), state);
    drain(&mut f);
    f.handle(event, t);
    assert_eq!(f.state(), State::Idle);
    sent_notification(&drain(&mut f))
}

#[test]
fn fsm_errors_rfc6608_subcodes() {
    assert_eq!(unexpected(State::OpenSent, Event::Keepalive), Some((5, 1)));
    assert_eq!(unexpected(State::OpenSent, Event::Update), Some((5, 1)));
    assert_eq!(unexpected(State::OpenConfirm, Event::Update), Some((5, 2)));
    assert_eq!(
        unexpected(State::OpenConfirm, Event::Open(peer_open(9))),
        Some((5, 2))
    );
    assert_eq!(
        unexpected(State::Established, Event::Open(peer_open(9))),
        Some((5, 3))
    );
}

#[test]
fn decode_errors_send_their_notification() {
    let n = Notification::new(flatnet_bgp::wire::ErrorCode::UPDATE_MESSAGE, 1, vec![]);
    assert_eq!(
        unexpected(State::Established, Event::DecodeError(n.clone())),
        Some((3, 1))
    );
    let h = Notification::new(flatnet_bgp::wire::ErrorCode::MESSAGE_HEADER, 1, vec![]);
    assert_eq!(
        unexpected(State::OpenSent, Event::DecodeError(h)),
        Some((1, 1))
    );
}

#[test]
fn collision_dump_sends_cease7() {
    assert_eq!(
        unexpected(State::OpenConfirm, Event::OpenCollisionDump),
        Some((6, 7))
    );
}

#[test]
fn notification_received_goes_idle() {
    let (mut f, t) = established(cfg());
    let n = Notification::new(flatnet_bgp::wire::ErrorCode::CEASE, 2, vec![]);
    f.handle(Event::Notification(n.clone()), t);
    assert_eq!(f.state(), State::Idle);
    let a = drain(&mut f);
    assert_eq!(
        a,
        vec![
            Action::Disconnect,
            Action::Down {
                reason: DownReason::NotificationReceived(n),
                was_established: true
            }
        ]
    );
}

#[test]
fn tcp_failure_in_each_state() {
    // OpenSent → Active with ConnectRetry.
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    drain(&mut f);
    f.handle(Event::TcpFailed, t);
    assert_eq!(f.state(), State::Active);
    assert!(drain(&mut f).iter().any(|a| matches!(
        a,
        Action::Down {
            reason: DownReason::ConnectionLost,
            was_established: false
        }
    )));
    f.check_invariants().unwrap();
    // OpenConfirm → Idle.
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    f.handle(Event::Open(peer_open(9)), t);
    f.handle(Event::TcpFailed, t);
    assert_eq!(f.state(), State::Idle);
    // Established → Idle, Down with was_established.
    let (mut f, t) = established(cfg());
    f.handle(Event::TcpFailed, t);
    assert_eq!(f.state(), State::Idle);
    assert!(drain(&mut f).iter().any(|a| matches!(
        a,
        Action::Down {
            reason: DownReason::ConnectionLost,
            was_established: true
        }
    )));
}

#[test]
fn manual_stop_with_shutdown_communication() {
    let (mut f, t) = established(cfg());
    let n = Notification::shutdown(2, "maintenance, back at 12:00").unwrap();
    f.handle(Event::ManualStop(Some(n.clone())), t);
    assert_eq!(f.state(), State::Idle);
    let a = drain(&mut f);
    assert_eq!(a.first(), Some(&Action::Send(Outgoing::Notification(n))));
    assert!(a.contains(&Action::Disconnect));
    assert!(a.contains(&Action::Down {
        reason: DownReason::ManualStop,
        was_established: true
    }));
    assert_eq!(
        f.poll_timeout(),
        None,
        "no automatic restart after a manual stop"
    );
    // ManualStop from Connect: no NOTIFICATION (no BGP session yet).
    let mut g = Fsm::new(cfg());
    g.handle(Event::ManualStart, t);
    drain(&mut g);
    g.handle(Event::ManualStop(None), t);
    assert_eq!(g.state(), State::Idle);
    assert!(sent_notification(&drain(&mut g)).is_none());
    // And ManualStart brings it back.
    f.handle(Event::ManualStart, t);
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn max_prefix_cease_and_restart_interval() {
    let (mut f, t) = established(cfg());
    let n = Notification::new(flatnet_bgp::wire::ErrorCode::CEASE, 1, vec![]);
    f.handle(
        Event::LocalError {
            notification: n,
            restart_after: Some(Duration::from_secs(30)),
        },
        t,
    );
    assert_eq!(f.state(), State::Idle);
    assert_eq!(sent_notification(&drain(&mut f)), Some((6, 1)));
    assert_eq!(f.poll_timeout(), Some(t + Duration::from_secs(30)));
    f.handle_timeout(t + Duration::from_secs(29));
    assert_eq!(f.state(), State::Idle);
    f.handle_timeout(t + Duration::from_secs(30));
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn idle_hold_damping_doubles() {
    let t = Instant::now();
    let mut c = cfg();
    c.idle_hold = Duration::from_secs(2);
    c.idle_hold_max = Duration::from_secs(10);
    let mut f = Fsm::new(c);
    f.handle(Event::ManualStart, t);
    let mut now = t;
    let mut holds = Vec::new();
    for _ in 0..5 {
        f.handle(Event::TcpConnected, now);
        // Peer sends garbage: header error.
        let h = Notification::new(flatnet_bgp::wire::ErrorCode::MESSAGE_HEADER, 1, vec![]);
        f.handle(Event::DecodeError(h), now);
        assert_eq!(f.state(), State::Idle);
        let next = f.poll_timeout().unwrap();
        holds.push(next - now);
        now = next;
        f.handle_timeout(now);
        assert_eq!(f.state(), State::Connect);
    }
    let secs: Vec<u64> = holds.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![2, 4, 8, 10, 10]);
}

#[test]
fn stable_session_resets_damping() {
    let err = || Notification::new(flatnet_bgp::wire::ErrorCode::MESSAGE_HEADER, 1, vec![]);
    let (mut f, t) = established(cfg());
    // An error right away: one counted.
    f.handle(Event::DecodeError(err()), t);
    assert_eq!(f.error_count(), 1);
    let (mut g, t) = established(cfg());
    g.handle(Event::DecodeError(err()), t + Duration::from_secs(61));
    assert_eq!(g.error_count(), 1, "reset to 0, then this error");
}

/// Cease (every administrative subcode) and a clean close of a working
/// session are not errors: ten in a row, each restart waits the initial
/// idle hold, never more.
#[test]
fn cease_and_clean_close_never_grow_the_wait() {
    use flatnet_bgp::wire::ErrorCode;
    let mut c = cfg();
    c.idle_hold = Duration::from_secs(1);
    c.idle_hold_max = Duration::from_secs(60);
    let (mut f, mut now) = established(c);
    for i in 0..10u8 {
        if i % 2 == 0 {
            // Administrative Shutdown / Reset / De-configured, in turn.
            let sub = [2, 4, 3][usize::from(i / 2) % 3];
            f.handle(
                Event::Notification(Notification::new(ErrorCode::CEASE, sub, vec![])),
                now,
            );
        } else {
            f.handle(Event::TcpFailed, now);
        }
        assert_eq!(f.state(), State::Idle);
        assert_eq!(f.error_count(), 0, "round {i}");
        let next = f.next_start().unwrap();
        assert_eq!(next - now, Duration::from_secs(1), "round {i}");
        now = next;
        f.handle_timeout(now);
        f.handle(Event::TcpConnected, now);
        f.handle(Event::Open(peer_open(9)), now);
        f.handle(Event::Keepalive, now);
        assert_eq!(f.state(), State::Established, "round {i}");
        drain(&mut f);
    }
}

/// A peer's errors and its max-prefix Cease are damped; a failure before
/// Established too.
#[test]
fn errors_are_damped_and_bounded() {
    use flatnet_bgp::wire::ErrorCode;
    let down = |r: DownReason, est| r.damps(est);
    let n = |code, sub| Notification::new(code, sub, vec![]);
    assert!(down(
        DownReason::NotificationReceived(n(ErrorCode::UPDATE_MESSAGE, 3)),
        true
    ));
    assert!(down(
        DownReason::NotificationReceived(n(ErrorCode::CEASE, 1)),
        true
    ));
    assert!(down(
        DownReason::NotificationSent(n(ErrorCode::HOLD_TIMER_EXPIRED, 0)),
        true
    ));
    assert!(down(DownReason::ConnectionLost, false));
    assert!(!down(DownReason::ConnectionLost, true));
    assert!(!down(
        DownReason::NotificationReceived(n(ErrorCode::CEASE, 2)),
        true
    ));
    assert!(!down(
        DownReason::NotificationSent(n(ErrorCode::CEASE, 4)),
        true
    ));
    assert!(!down(DownReason::ManualStop, true));
}

/// While Idle after a clean end, the peer's connection starts the session
/// at once (RFC 4271 event 5); while damped, or stopped, it is refused.
#[test]
fn inbound_connection_while_idle() {
    use flatnet_bgp::wire::ErrorCode;
    let (mut f, t) = established(cfg());
    f.handle(
        Event::Notification(Notification::new(ErrorCode::CEASE, 4, vec![])),
        t,
    );
    assert!(f.accepts_inbound(t));
    f.handle(Event::AutomaticStartPassive, t);
    assert_eq!(f.state(), State::Active);
    assert!(
        drain(&mut f).iter().all(|a| *a != Action::Connect),
        "no outbound race"
    );
    f.handle(Event::TcpAccepted, t);
    assert_eq!(f.state(), State::OpenSent);
    f.check_invariants().unwrap();

    let (mut g, t) = established(cfg());
    let err = Notification::new(ErrorCode::MESSAGE_HEADER, 1, vec![]);
    g.handle(Event::DecodeError(err), t);
    assert!(
        !g.accepts_inbound(t),
        "damped: refused until the wait is over"
    );
    g.handle(Event::AutomaticStartPassive, t);
    assert_eq!(g.state(), State::Idle);
    g.handle(Event::ManualStop(None), t);
    assert!(!g.accepts_inbound(t + Duration::from_secs(600)), "stopped");
}

#[test]
fn negotiation_intersects_capabilities() {
    let mut c = cfg();
    c.capabilities.extended_next_hop = true;
    c.capabilities.graceful_restart = Some(LocalGracefulRestart {
        restart_time: 120,
        restarting: false,
        forwarding: true,
        notification: true,
    });
    c.capabilities.add_path = vec![(Family::IPV4_UNICAST, AddPathMode::BOTH)];
    let mut caps = peer_caps();
    caps.retain(|c| *c != Capability::EnhancedRouteRefresh);
    caps.push(Capability::ExtendedNextHop(vec![
        flatnet_bgp::wire::ExtendedNextHop {
            nlri_afi: flatnet_bgp::wire::Afi::IPV4,
            nlri_safi: 1,
            next_hop_afi: flatnet_bgp::wire::Afi::IPV6,
        },
    ]));
    caps.push(Capability::GracefulRestart(GracefulRestart {
        flags: GracefulRestart::RESTART_STATE,
        restart_time: 30,
        families: vec![GracefulRestartFamily {
            family: Family::IPV4_UNICAST,
            flags: 0x80,
        }],
    }));
    caps.push(Capability::AddPath(vec![AddPathFamily {
        family: Family::IPV4_UNICAST,
        mode: AddPathMode::RECEIVE,
    }]));
    let open = Open::new(PEER_AS, 30, Ipv4Addr::new(10, 0, 0, 2), caps);
    let f = Fsm::new(c.clone());
    let n = flatnet_bgp::fsm::Negotiated::new(&c.capabilities, None, 90, &open);
    let _ = f;
    assert_eq!(n.families, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert!(n.four_octet_as && n.route_refresh && n.extended_message && n.extended_next_hop_ipv4);
    assert!(!n.enhanced_route_refresh);
    assert_eq!(n.hold_time, 30);
    let gr = n.graceful_restart.as_ref().unwrap();
    assert_eq!(gr.restart_time, 30);
    assert!(gr.restarting && !gr.notification);
    assert_eq!(gr.families, vec![(Family::IPV4_UNICAST, true)]);
    assert!(n.add_path_ipv4.send && !n.add_path_ipv4.receive);
    let enc = n.encode_context();
    let dec = n.decode_context();
    assert!(enc.add_path_ipv4 && !dec.add_path_ipv4);
    assert!(dec.four_octet_as && dec.extended_message);
}

#[test]
fn negotiation_without_mp_implies_ipv4() {
    let c = cfg();
    let open = Open::new(PEER_AS, 90, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let n = flatnet_bgp::fsm::Negotiated::new(&c.capabilities, None, 90, &open);
    assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
    assert!(!n.four_octet_as && !n.route_refresh);
    assert!(n.graceful_restart.is_none());
}

#[test]
fn collision_resolution() {
    let lo = Ipv4Addr::new(1, 1, 1, 1);
    let hi = Ipv4Addr::new(2, 2, 2, 2);
    // Local id higher: keep our outbound connection.
    assert_eq!(collision::keep_direction(hi, 1, lo, 2), Direction::Outbound);
    assert_eq!(collision::keep_direction(lo, 1, hi, 2), Direction::Inbound);
    // Equal ids (RFC 6286): larger AS keeps its own.
    assert_eq!(collision::keep_direction(lo, 5, lo, 2), Direction::Outbound);
    assert_eq!(collision::keep_direction(lo, 1, lo, 2), Direction::Inbound);
    assert_eq!(
        collision::resolve(
            hi,
            1,
            lo,
            2,
            Direction::Outbound,
            ExistingState::OpenConfirm
        ),
        Resolution::CloseNew
    );
    assert_eq!(
        collision::resolve(hi, 1, lo, 2, Direction::Inbound, ExistingState::OpenConfirm),
        Resolution::CloseExisting
    );
    assert_eq!(
        collision::resolve(
            lo,
            1,
            hi,
            2,
            Direction::Outbound,
            ExistingState::Established
        ),
        Resolution::CloseNew
    );
    assert_eq!(
        collision::resolve(
            lo,
            1,
            hi,
            2,
            Direction::Outbound,
            ExistingState::OpenSentNoId
        ),
        Resolution::KeepBoth
    );
}

#[test]
fn graceful_restart_retention_rules() {
    use flatnet_bgp::wire::ErrorCode;
    assert!(DownReason::ConnectionLost.keeps_routes(false));
    assert!(!DownReason::ManualStop.keeps_routes(true));
    let hold = Notification::new(ErrorCode::HOLD_TIMER_EXPIRED, 0, vec![]);
    assert!(!DownReason::NotificationSent(hold.clone()).keeps_routes(false));
    assert!(DownReason::NotificationSent(hold).keeps_routes(true));
    let hard = Notification::new(ErrorCode::CEASE, 9, vec![]);
    assert!(!DownReason::NotificationReceived(hard).keeps_routes(true));
}

#[test]
fn restarting_bit_in_open() {
    let t = Instant::now();
    let mut c = cfg();
    c.capabilities.graceful_restart = Some(LocalGracefulRestart {
        restart_time: 120,
        restarting: true,
        forwarding: true,
        notification: false,
    });
    let mut f = Fsm::new(c);
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    let a = drain(&mut f);
    let Some(Action::Send(Outgoing::Open(o))) = a.last() else {
        panic!()
    };
    let gr = o
        .capabilities()
        .find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        gr.flags & GracefulRestart::RESTART_STATE,
        GracefulRestart::RESTART_STATE
    );
    assert_eq!(gr.restart_time, 120);
    assert!(gr.families.iter().all(|f| f.flags == 0x80));
}

#[test]
fn events_in_idle_are_ignored() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    for e in [
        Event::TcpFailed,
        Event::Keepalive,
        Event::Update,
        Event::Open(peer_open(9)),
        Event::Notification(Notification::new(
            flatnet_bgp::wire::ErrorCode::CEASE,
            0,
            vec![],
        )),
        Event::ManualStop(None),
    ] {
        f.handle(e, t);
        assert_eq!(f.state(), State::Idle);
        assert!(drain(&mut f).is_empty());
    }
}

#[test]
fn unexpected_messages_in_connect() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    // Without DelayOpen we are in OpenSent already; use DelayOpen to stay in Connect.
    let mut c = cfg();
    c.delay_open = Some(Duration::from_secs(3));
    let mut g = Fsm::new(c);
    g.handle(Event::ManualStart, t);
    g.handle(Event::TcpConnected, t);
    drain(&mut g);
    g.handle(Event::Update, t);
    assert_eq!(g.state(), State::Idle);
    assert_eq!(sent_notification(&drain(&mut g)), Some((5, 0)));
}

#[test]
fn open_confirm_timers_and_stop() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    f.handle(Event::Open(peer_open(9)), t);
    drain(&mut f);
    assert_eq!(f.state(), State::OpenConfirm);
    // Keepalive timer fires in OpenConfirm too.
    let ka = f.poll_timeout().unwrap();
    f.handle_timeout(ka);
    assert_eq!(f.state(), State::OpenConfirm);
    assert_eq!(drain(&mut f), vec![Action::Send(Outgoing::Keepalive)]);
    // No KEEPALIVE from the peer: hold expires in OpenConfirm.
    f.handle_timeout(t + Duration::from_secs(9));
    assert_eq!(f.state(), State::Idle);
    assert_eq!(sent_notification(&drain(&mut f)), Some((4, 0)));
    // ManualStop in OpenConfirm sends Cease/2.
    let mut g = Fsm::new(cfg());
    g.handle(Event::ManualStart, t);
    g.handle(Event::TcpConnected, t);
    g.handle(Event::Open(peer_open(9)), t);
    drain(&mut g);
    g.handle(Event::ManualStop(None), t);
    assert_eq!(sent_notification(&drain(&mut g)), Some((6, 2)));
    assert_eq!(g.state(), State::Idle);
}

#[test]
fn open_sent_hold_timer_and_notification() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    drain(&mut f);
    // No OPEN within the large hold time (240 s): Hold Timer Expired.
    f.handle_timeout(t + Duration::from_secs(240));
    assert_eq!(f.state(), State::Idle);
    assert_eq!(sent_notification(&drain(&mut f)), Some((4, 0)));
    // A NOTIFICATION in OpenSent (e.g. the peer rejects our OPEN) goes Idle without answering.
    let mut g = Fsm::new(cfg());
    g.handle(Event::ManualStart, t);
    g.handle(Event::TcpConnected, t);
    drain(&mut g);
    let n = Notification::new(flatnet_bgp::wire::ErrorCode::OPEN_MESSAGE, 2, vec![]);
    g.handle(Event::Notification(n.clone()), t);
    assert_eq!(g.state(), State::Idle);
    let a = drain(&mut g);
    assert!(sent_notification(&a).is_none());
    assert!(a.contains(&Action::Down {
        reason: DownReason::NotificationReceived(n),
        was_established: false
    }));
    assert!(
        g.last_down()
            .map(|d| d.to_string())
            .unwrap_or_default()
            .contains("Bad Peer AS")
    );
}

#[test]
fn delay_open_tcp_failure_goes_active() {
    let t = Instant::now();
    let mut c = cfg();
    c.delay_open = Some(Duration::from_secs(5));
    let mut f = Fsm::new(c);
    f.handle(Event::ManualStart, t);
    f.handle(Event::TcpConnected, t);
    f.handle(Event::TcpFailed, t);
    assert_eq!(f.state(), State::Active);
    assert!(
        f.poll_timeout().unwrap() < t + Duration::from_secs(5),
        "ConnectRetry, not DelayOpen"
    );
    f.check_invariants().unwrap();
}

#[test]
fn connect_retry_resets_after_established() {
    let t = Instant::now();
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart, t);
    // Three failed attempts back off to ~8 s.
    let mut now = t;
    for _ in 0..3 {
        f.handle(Event::TcpFailed, now);
        now = f.poll_timeout().unwrap();
        f.handle_timeout(now);
    }
    f.handle(Event::TcpConnected, now);
    f.handle(Event::Open(peer_open(9)), now);
    f.handle(Event::Keepalive, now);
    assert_eq!(f.state(), State::Established);
    // Peer goes away: after the idle hold we are back to a 1 s ConnectRetry.
    f.handle(Event::TcpFailed, now);
    let restart = f.poll_timeout().unwrap();
    f.handle_timeout(restart);
    assert_eq!(f.state(), State::Connect);
    let next = f.poll_timeout().unwrap();
    assert!(
        next - restart <= Duration::from_secs(1),
        "{:?}",
        next - restart
    );
}

#[test]
fn keepalive_sent_resets_on_update_sent() {
    let (mut f, t) = established(cfg());
    let first = f.poll_timeout().unwrap();
    f.on_message_sent(t + Duration::from_secs(2));
    let later = f.poll_timeout().unwrap();
    assert!(later > first, "an UPDATE we sent counts as a keepalive");
}
