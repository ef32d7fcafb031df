//! The sans-IO speaker core driven with simulated time: graceful restart
//! (stale marking, the stale timer, End-of-RIB), enhanced route refresh
//! (BoRR / EoRR, the timer when EoRR never comes) and max-prefix (Cease
//! with its RFC 4486 data, the warning threshold, the restart interval).
//! No sockets, no sleeps: every instant is `t0 + offset`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use flatnet_bgp::fsm::{DownReason, LocalCapabilities, LocalGracefulRestart, Negotiated, State};
use flatnet_bgp::session::{GracefulRestartConfig, MaxPrefix, PeerConfig};
use flatnet_bgp::speaker::OriginAttrs;
use flatnet_bgp::speaker::core::{Action, Core, CoreConfig, Event, PeerCommand, cease_data};
use flatnet_bgp::wire::{
    AsPath, AttrValue, Capability, ErrorCode, Family, GracefulRestart, GracefulRestartFamily,
    Ipv4Prefix, Nlri4, Open, Origin, PathAttribute, Prefix, RouteRefresh, Update, subcode,
};

const LOCAL_AS: u32 = 65000;
const PEER_AS: u32 = 65001;
const RESTART_TIME: u16 = 120;
const STALE_TIME: Duration = Duration::from_secs(30);

fn peer_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))
}

fn core() -> Core {
    Core::new(CoreConfig {
        asn: LOCAL_AS,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        policies: HashMap::new(),
        max_paths: 8,
        multipath_relax: true,
    })
}

fn peer_cfg() -> PeerConfig {
    let mut p = PeerConfig::new(peer_ip(), PEER_AS);
    p.families = vec![Family::IPV4_UNICAST];
    p.import_policy = Some("accept".into());
    p.export_policy = Some("accept".into());
    p.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 90,
        stale_time: STALE_TIME,
    });
    p
}

/// What both sides agree on: IPv4 unicast, (enhanced) route refresh, and
/// the peer's graceful restart with or without the Forwarding State bit.
fn negotiated(forwarding: bool) -> Box<Negotiated> {
    let local = LocalCapabilities {
        families: vec![Family::IPV4_UNICAST],
        graceful_restart: Some(LocalGracefulRestart {
            restart_time: 90,
            restarting: false,
            forwarding: false,
            notification: false,
        }),
        ..LocalCapabilities::default()
    };
    let caps = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::RouteRefresh,
        Capability::EnhancedRouteRefresh,
        Capability::GracefulRestart(GracefulRestart {
            flags: 0,
            restart_time: RESTART_TIME,
            families: vec![GracefulRestartFamily {
                family: Family::IPV4_UNICAST,
                flags: if forwarding {
                    GracefulRestartFamily::FORWARDING_STATE
                } else {
                    0
                },
            }],
        }),
        Capability::FourOctetAs(PEER_AS),
    ];
    let open = Open::new(PEER_AS, 90, Ipv4Addr::new(192, 0, 2, 2), caps);
    Box::new(Negotiated::new(&local, None, 90, &open))
}

fn up(c: &mut Core, forwarding: bool, now: Instant) {
    c.handle(
        Event::PeerUp {
            peer: peer_ip(),
            negotiated: negotiated(forwarding),
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 179),
            connected: Vec::new(),
        },
        now,
    )
    .unwrap();
}

fn down(c: &mut Core, now: Instant) {
    c.handle(
        Event::PeerDown {
            peer: peer_ip(),
            reason: DownReason::ConnectionLost,
            was_established: true,
        },
        now,
    )
    .unwrap();
}

fn p4(a: [u8; 4], len: u8) -> Ipv4Prefix {
    Ipv4Prefix::new(Ipv4Addr::from(a), len).unwrap()
}

fn announce(c: &mut Core, prefixes: &[Ipv4Prefix], now: Instant) {
    let u = Update {
        withdrawn: Vec::new(),
        attributes: vec![
            PathAttribute::new(AttrValue::Origin(Origin::Igp)),
            PathAttribute::new(AttrValue::AsPath(AsPath::sequence(vec![PEER_AS]))),
            PathAttribute::new(AttrValue::NextHop(Ipv4Addr::new(192, 0, 2, 2))),
        ],
        nlri: prefixes.iter().map(|p| Nlri4::new(*p)).collect(),
    };
    c.handle(Event::Update(peer_ip(), Box::new(u)), now)
        .unwrap();
}

fn drain(c: &mut Core) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

/// Loc-RIB prefixes, in order.
fn loc_rib(c: &Core) -> Vec<String> {
    c.rib_entries()
        .into_iter()
        .map(|e| e.prefix.to_string())
        .collect()
}

fn stale(c: &Core, now: Instant) -> usize {
    c.peer_status(now)[0].stale_paths
}

/// A core with the peer Established and 10.0.0.0/24, 10.0.1.0/24 learned.
fn established_with_two_routes(t0: Instant) -> Core {
    let mut c = core();
    c.handle(Event::AddPeer(Box::new(peer_cfg())), t0).unwrap();
    up(&mut c, true, t0);
    announce(&mut c, &[p4([10, 0, 0, 0], 24), p4([10, 0, 1, 0], 24)], t0);
    drain(&mut c);
    assert_eq!(loc_rib(&c), ["10.0.0.0/24", "10.0.1.0/24"]);
    assert_eq!(c.poll_timeout(), None);
    c
}

#[test]
fn adding_a_peer_starts_its_task_and_announces_one_change() {
    let t0 = Instant::now();
    let mut c = core();
    c.handle(Event::AddPeer(Box::new(peer_cfg())), t0).unwrap();
    let a = drain(&mut c);
    assert_eq!(
        a,
        [Action::StartPeer(Box::new(peer_cfg())), Action::Changed]
    );
    assert!(c.handle(Event::AddPeer(Box::new(peer_cfg())), t0).is_err());
    assert!(
        c.handle(Event::StartPeer("192.0.2.9".parse().unwrap()), t0)
            .is_err()
    );
}

#[test]
fn gr_stale_routes_are_swept_when_the_restart_timer_expires() {
    let t0 = Instant::now();
    let mut c = established_with_two_routes(t0);
    let t1 = t0 + Duration::from_secs(10);
    down(&mut c, t1);
    drain(&mut c);
    // Kept as stale, still in the Loc-RIB, until the peer's restart time.
    assert_eq!(stale(&c, t1), 2);
    assert_eq!(loc_rib(&c).len(), 2);
    let deadline = t1 + Duration::from_secs(u64::from(RESTART_TIME));
    assert_eq!(c.poll_timeout(), Some(deadline));
    c.handle(Event::Timeout, deadline - Duration::from_millis(1))
        .unwrap();
    assert_eq!(loc_rib(&c).len(), 2, "an early wakeup sweeps nothing");
    c.handle(Event::Timeout, deadline).unwrap();
    drain(&mut c);
    assert!(loc_rib(&c).is_empty());
    assert_eq!(stale(&c, deadline), 0);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn gr_end_of_rib_sweeps_only_what_was_not_refreshed() {
    let t0 = Instant::now();
    let mut c = established_with_two_routes(t0);
    down(&mut c, t0 + Duration::from_secs(1));
    // The peer comes back within its restart time, forwarding state kept.
    let t2 = t0 + Duration::from_secs(5);
    up(&mut c, true, t2);
    assert_eq!(stale(&c, t2), 2);
    assert_eq!(c.poll_timeout(), Some(t2 + STALE_TIME));
    announce(&mut c, &[p4([10, 0, 1, 0], 24)], t2);
    assert_eq!(stale(&c, t2), 1);
    c.handle(
        Event::Update(
            peer_ip(),
            Box::new(Update::end_of_rib(Family::IPV4_UNICAST)),
        ),
        t2,
    )
    .unwrap();
    drain(&mut c);
    assert_eq!(loc_rib(&c), ["10.0.1.0/24"]);
    assert_eq!(stale(&c, t2), 0);
    assert_eq!(c.poll_timeout(), None, "nothing stale: no timer");
}

#[test]
fn gr_families_without_forwarding_state_are_swept_at_reconnect() {
    let t0 = Instant::now();
    let mut c = established_with_two_routes(t0);
    down(&mut c, t0);
    let t1 = t0 + Duration::from_secs(3);
    up(&mut c, false, t1);
    drain(&mut c);
    assert!(loc_rib(&c).is_empty());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn gr_stale_timer_after_reconnect_sweeps_without_end_of_rib() {
    let t0 = Instant::now();
    let mut c = established_with_two_routes(t0);
    down(&mut c, t0);
    let t1 = t0 + Duration::from_secs(2);
    up(&mut c, true, t1);
    announce(&mut c, &[p4([10, 0, 0, 0], 24)], t1);
    let deadline = c.poll_timeout().unwrap();
    assert_eq!(deadline, t1 + STALE_TIME);
    c.handle(Event::Timeout, deadline).unwrap();
    drain(&mut c);
    assert_eq!(loc_rib(&c), ["10.0.0.0/24"]);
    assert_eq!(c.peer_status(deadline)[0].state, State::Established);
}

#[test]
fn borr_marks_stale_and_eorr_sweeps_what_was_not_resent() {
    let t0 = Instant::now();
    let mut c = established_with_two_routes(t0);
    let v4 = Family::IPV4_UNICAST;
    c.handle(Event::Demarcation(peer_ip(), v4, RouteRefresh::BORR), t0)
        .unwrap();
    assert_eq!(stale(&c, t0), 2);
    assert_eq!(c.poll_timeout(), Some(t0 + STALE_TIME));
    announce(&mut c, &[p4([10, 0, 0, 0], 24)], t0);
    c.handle(Event::Demarcation(peer_ip(), v4, RouteRefresh::EORR), t0)
        .unwrap();
    drain(&mut c);
    assert_eq!(loc_rib(&c), ["10.0.0.0/24"]);
    assert_eq!(stale(&c, t0), 0);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn borr_without_eorr_is_swept_by_the_stale_timer() {
    let t0 = Instant::now();
    let mut c = established_with_two_routes(t0);
    let t1 = t0 + Duration::from_secs(7);
    c.handle(
        Event::Demarcation(peer_ip(), Family::IPV4_UNICAST, RouteRefresh::BORR),
        t1,
    )
    .unwrap();
    let deadline = c.poll_timeout().unwrap();
    assert_eq!(deadline, t1 + STALE_TIME);
    c.handle(Event::Timeout, deadline - Duration::from_secs(1))
        .unwrap();
    assert_eq!(loc_rib(&c).len(), 2, "stale routes stay usable until then");
    c.handle(Event::Timeout, deadline).unwrap();
    let actions = drain(&mut c);
    assert!(loc_rib(&c).is_empty());
    assert_eq!(c.peer_status(deadline)[0].prefixes_received, 0);
    assert_eq!(c.peer_status(deadline)[0].state, State::Established);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Peer(_, PeerCommand::LocalError { .. }))),
        "no session reset: {actions:?}"
    );
}

#[test]
fn enhanced_refresh_request_is_answered_between_borr_and_eorr() {
    let t0 = Instant::now();
    let mut c = established_with_two_routes(t0);
    let prefix: Prefix = "10.244.3.0/26".parse().unwrap();
    c.handle(Event::Originate(prefix, OriginAttrs::default()), t0)
        .unwrap();
    drain(&mut c);
    let v4 = Family::IPV4_UNICAST;
    c.handle(Event::RouteRefresh(peer_ip(), v4), t0).unwrap();
    let cmds: Vec<PeerCommand> = drain(&mut c)
        .into_iter()
        .filter_map(|a| match a {
            Action::Peer(ip, cmd) if ip == peer_ip() => Some(cmd),
            _ => None,
        })
        .collect();
    assert_eq!(cmds.len(), 3, "{cmds:?}");
    assert_eq!(cmds[0], PeerCommand::Demarcation(v4, RouteRefresh::BORR));
    assert!(
        matches!(&cmds[1], PeerCommand::Send(u) if !u.is_empty()),
        "{cmds:?}"
    );
    assert_eq!(cmds[2], PeerCommand::Demarcation(v4, RouteRefresh::EORR));
}

fn limit(limit: usize, restart: Option<Duration>) -> MaxPrefix {
    MaxPrefix {
        family: Family::IPV4_UNICAST,
        limit,
        warning_percent: 50,
        restart_interval: restart,
        warning_only: false,
    }
}

/// The peer Established with this max-prefix limit.
fn with_limit(mp: MaxPrefix, t0: Instant) -> Core {
    let mut cfg = peer_cfg();
    cfg.max_prefix = vec![mp];
    let mut c = core();
    c.handle(Event::AddPeer(Box::new(cfg)), t0).unwrap();
    up(&mut c, true, t0);
    drain(&mut c);
    c
}

fn with_max_prefix(n: usize, restart: Option<Duration>, t0: Instant) -> Core {
    with_limit(limit(n, restart), t0)
}

fn local_errors(actions: &[Action]) -> Vec<(Vec<u8>, u8, u8, Option<Duration>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Peer(
                _,
                PeerCommand::LocalError {
                    notification,
                    restart_after,
                },
            ) => Some((
                notification.data.clone(),
                notification.code,
                notification.subcode,
                *restart_after,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn max_prefix_exceeded_sends_cease_1_with_rfc4486_data() {
    let t0 = Instant::now();
    let mut c = with_max_prefix(2, Some(Duration::from_secs(30)), t0);
    let three: Vec<Ipv4Prefix> = (0..3).map(|i| p4([10, 1, i, 0], 24)).collect();
    announce(&mut c, &three, t0);
    let errs = local_errors(&drain(&mut c));
    assert_eq!(
        errs,
        [(
            vec![0, 1, 1, 0, 0, 0, 2], // AFI 1, SAFI 1, limit 2
            ErrorCode::CEASE.0,
            subcode::cease::MAX_PREFIXES,
            Some(Duration::from_secs(30)),
        )]
    );
    let st = &c.peer_status(t0)[0];
    assert_eq!(st.max_prefix_resets, 1);
    assert_eq!(st.state, State::Idle);
    // Until the session comes back, more UPDATEs do not count again.
    announce(&mut c, &[p4([10, 1, 9, 0], 24)], t0);
    assert!(local_errors(&drain(&mut c)).is_empty());
    assert_eq!(c.peer_status(t0)[0].max_prefix_resets, 1);
}

#[test]
fn max_prefix_without_restart_interval_stays_down() {
    let t0 = Instant::now();
    let mut c = with_max_prefix(1, None, t0);
    announce(&mut c, &[p4([10, 1, 0, 0], 24), p4([10, 1, 1, 0], 24)], t0);
    let errs = local_errors(&drain(&mut c));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].3, None);
}

#[test]
fn max_prefix_warning_threshold_and_the_limit_itself_do_not_reset() {
    let t0 = Instant::now();
    let mut c = with_max_prefix(4, Some(Duration::from_secs(30)), t0);
    // 3 of 4: past the 50 % warning, then exactly at the limit.
    announce(
        &mut c,
        &(0..3).map(|i| p4([10, 1, i, 0], 24)).collect::<Vec<_>>(),
        t0,
    );
    announce(&mut c, &[p4([10, 1, 3, 0], 24)], t0);
    assert!(local_errors(&drain(&mut c)).is_empty());
    let st = &c.peer_status(t0)[0];
    assert_eq!(st.state, State::Established);
    assert_eq!(st.max_prefix_resets, 0);
    assert_eq!(st.prefixes_received, 4);
    announce(&mut c, &[p4([10, 1, 4, 0], 24)], t0);
    assert_eq!(local_errors(&drain(&mut c)).len(), 1);
}

#[test]
fn max_prefix_warning_only_keeps_the_session_past_the_limit() {
    let t0 = Instant::now();
    let mut c = with_max_prefix(100, None, t0);
    let five: Vec<Ipv4Prefix> = (0..5).map(|i| p4([10, 1, i, 0], 24)).collect();
    announce(&mut c, &five, t0);
    announce(&mut c, &[p4([10, 1, 9, 0], 24)], t0);
    assert!(local_errors(&drain(&mut c)).is_empty());
    let st = &c.peer_status(t0)[0];
    assert_eq!(st.state, State::Established);
    assert_eq!(st.max_prefix_resets, 0);
    assert_eq!(st.prefixes_received, 6);
    assert_eq!(loc_rib(&c).len(), 6);
}

#[test]
fn cease_data_is_afi_safi_and_a_saturated_u32_limit() {
    assert_eq!(
        cease_data(Family::IPV4_UNICAST, 1000),
        [0, 1, 1, 0, 0, 3, 0xe8]
    );
    assert_eq!(
        cease_data(Family::IPV6_UNICAST, usize::MAX),
        [0, 2, 1, 0xff, 0xff, 0xff, 0xff]
    );
}

#[test]
fn a_batch_of_updates_is_announced_once() {
    let t0 = Instant::now();
    let mut c = established_with_two_routes(t0);
    for i in 0..5 {
        announce(&mut c, &[p4([10, 2, i, 0], 24)], t0);
    }
    let changed = drain(&mut c)
        .into_iter()
        .filter(|a| *a == Action::Changed)
        .count();
    assert_eq!(changed, 1);
}

#[test]
fn peer_status_counts_updates_and_prefixes_per_family() {
    let t0 = Instant::now();
    let mut c = with_max_prefix(100, None, t0);
    // What went out at session up (the initial table's End-of-RIB).
    let sent_at_up = c.peer_status(t0)[0].updates_out;
    announce(
        &mut c,
        &(0..5).map(|i| p4([10, 1, i, 0], 24)).collect::<Vec<_>>(),
        t0,
    );
    announce(&mut c, &[p4([10, 1, 9, 0], 24)], t0);
    drain(&mut c);
    let st = &c.peer_status(t0)[0];
    assert_eq!(st.updates_in, 2);
    assert_eq!(
        st.updates_out, sent_at_up,
        "nothing to send back to the only peer"
    );
    assert_eq!(st.families.len(), 2);
    assert_eq!(
        (
            st.families[0].family.as_str(),
            st.families[0].received,
            st.families[0].accepted
        ),
        ("ipv4-unicast", 6, 6)
    );
    assert_eq!(
        (st.families[1].family.as_str(), st.families[1].received),
        ("ipv6-unicast", 0)
    );
}

#[test]
fn adj_rib_in_marks_best_and_out_is_empty_without_exports() {
    use flatnet_bgp::speaker::core::AdjRib;
    let t0 = Instant::now();
    let c = established_with_two_routes(t0);
    let rin = c.adj_rib(peer_ip(), AdjRib::In).unwrap();
    let got: Vec<(String, bool)> = rin
        .iter()
        .map(|e| (e.prefix.to_string(), e.paths[0].best))
        .collect();
    assert_eq!(
        got,
        [
            ("10.0.0.0/24".to_string(), true),
            ("10.0.1.0/24".to_string(), true)
        ]
    );
    assert_eq!(rin[0].paths[0].source.to_string(), peer_ip().to_string());
    // Nothing is originated: nothing goes back to the peer it came from.
    assert!(c.adj_rib(peer_ip(), AdjRib::Out).unwrap().is_empty());
    assert!(c.adj_rib("192.0.2.9".parse().unwrap(), AdjRib::In).is_err());
}

// RFC 4724 §4.1 selection deferral while this speaker restarts.

const DEFER: Duration = Duration::from_secs(60);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

/// A peer at 192.0.2.`last` (AS 6500`last`), graceful restart configured.
fn gr_peer(last: u8) -> PeerConfig {
    let mut p = peer_cfg();
    p.address = ip(last);
    p.remote_as = 65000 + u32::from(last);
    p
}

/// What the peer at 192.0.2.`last` agreed on; `gr`: it announced graceful restart.
fn negotiated_with(last: u8, gr: bool) -> Box<Negotiated> {
    let local = LocalCapabilities {
        families: vec![Family::IPV4_UNICAST],
        graceful_restart: Some(LocalGracefulRestart {
            restart_time: 90,
            restarting: true,
            forwarding: true,
            notification: false,
        }),
        ..LocalCapabilities::default()
    };
    let asn = 65000 + u32::from(last);
    let mut caps = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::FourOctetAs(asn),
    ];
    if gr {
        caps.push(Capability::GracefulRestart(GracefulRestart {
            flags: 0,
            restart_time: RESTART_TIME,
            families: vec![GracefulRestartFamily {
                family: Family::IPV4_UNICAST,
                flags: GracefulRestartFamily::FORWARDING_STATE,
            }],
        }));
    }
    let open = Open::new(asn, 90, Ipv4Addr::new(192, 0, 2, last), caps);
    Box::new(Negotiated::new(&local, None, 90, &open))
}

fn up_peer(c: &mut Core, last: u8, gr: bool, now: Instant) {
    c.handle(
        Event::PeerUp {
            peer: ip(last),
            negotiated: negotiated_with(last, gr),
            local: SocketAddr::new(ip(1), 179),
            connected: Vec::new(),
        },
        now,
    )
    .unwrap();
}

fn announce_from(c: &mut Core, last: u8, prefix: Ipv4Prefix, now: Instant) {
    let u = Update {
        withdrawn: Vec::new(),
        attributes: vec![
            PathAttribute::new(AttrValue::Origin(Origin::Igp)),
            PathAttribute::new(AttrValue::AsPath(AsPath::sequence(vec![
                65000 + u32::from(last),
            ]))),
            PathAttribute::new(AttrValue::NextHop(Ipv4Addr::new(192, 0, 2, last))),
        ],
        nlri: vec![Nlri4::new(prefix)],
    };
    c.handle(Event::Update(ip(last), Box::new(u)), now).unwrap();
}

fn end_of_rib(c: &mut Core, last: u8, now: Instant) {
    c.handle(
        Event::Update(ip(last), Box::new(Update::end_of_rib(Family::IPV4_UNICAST))),
        now,
    )
    .unwrap();
}

/// Counts in a drain: UPDATE batches sent to peers, RIB events, SelectionDone.
fn selection_outputs(actions: &[Action]) -> (usize, usize, usize) {
    let sends = actions
        .iter()
        .filter(|a| matches!(a, Action::Peer(_, PeerCommand::Send(_))))
        .count();
    let ribs = actions
        .iter()
        .filter(|a| matches!(a, Action::Rib(_)))
        .count();
    let done = actions
        .iter()
        .filter(|a| matches!(a, Action::SelectionDone))
        .count();
    (sends, ribs, done)
}

/// A restarting core (listening for RIB events) with two graceful-restart peers.
fn restarting_with_two_peers(t0: Instant) -> Core {
    let mut c = core();
    c.set_listening(true);
    c.defer_selection(t0, DEFER);
    c.handle(Event::AddPeer(Box::new(gr_peer(2))), t0).unwrap();
    c.handle(Event::AddPeer(Box::new(gr_peer(3))), t0).unwrap();
    c.handle(
        Event::Originate(Prefix::V4(p4([10, 244, 0, 0], 26)), OriginAttrs::default()),
        t0,
    )
    .unwrap();
    drain(&mut c);
    c
}

#[test]
fn deferral_holds_updates_and_selection_until_every_peer_sent_end_of_rib() {
    let t0 = Instant::now();
    let mut c = restarting_with_two_peers(t0);
    assert_eq!(c.poll_timeout(), Some(t0 + DEFER));

    let t1 = t0 + Duration::from_secs(1);
    up_peer(&mut c, 2, true, t1);
    announce_from(&mut c, 2, p4([10, 1, 0, 0], 24), t1);
    end_of_rib(&mut c, 2, t1);
    assert_eq!(
        selection_outputs(&drain(&mut c)),
        (0, 0, 0),
        "one peer's End-of-RIB of two: nothing selected, nothing sent"
    );
    assert!(c.deferring());

    let t2 = t0 + Duration::from_secs(2);
    up_peer(&mut c, 3, true, t2);
    announce_from(&mut c, 3, p4([10, 1, 0, 0], 24), t2);
    announce_from(&mut c, 3, p4([10, 3, 0, 0], 24), t2);
    assert_eq!(selection_outputs(&drain(&mut c)), (0, 0, 0));

    end_of_rib(&mut c, 3, t2);
    let out = drain(&mut c);
    let (sends, ribs, done) = selection_outputs(&out);
    assert!(!c.deferring());
    assert_eq!(done, 1, "{out:?}");
    assert_eq!(sends, 2, "UPDATEs (and End-of-RIB) to both peers: {out:?}");
    // Our own block and both learned prefixes reach the subscriber, before
    // SelectionDone.
    let last_rib = out.iter().rposition(|a| matches!(a, Action::Rib(_)));
    let done_at = out.iter().position(|a| matches!(a, Action::SelectionDone));
    assert!(last_rib < done_at, "{out:?}");
    let mut prefixes: Vec<String> = out
        .iter()
        .filter_map(|a| match a {
            Action::Rib(e) => Some(e.prefix.to_string()),
            _ => None,
        })
        .collect();
    prefixes.sort();
    prefixes.dedup();
    assert_eq!(prefixes, ["10.1.0.0/24", "10.244.0.0/26", "10.3.0.0/24"]);
    assert!(ribs >= 3);
    // Our End-of-RIB went out last to each peer.
    for a in &out {
        if let Action::Peer(_, PeerCommand::Send(u)) = a {
            assert!(
                u.last().is_some_and(|u| u.end_of_rib_family().is_some()),
                "{u:?}"
            );
        }
    }
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn deferral_limit_selects_without_the_missing_end_of_rib() {
    let t0 = Instant::now();
    let mut c = restarting_with_two_peers(t0);
    up_peer(&mut c, 2, true, t0);
    announce_from(&mut c, 2, p4([10, 1, 0, 0], 24), t0);
    end_of_rib(&mut c, 2, t0);
    assert_eq!(selection_outputs(&drain(&mut c)), (0, 0, 0));
    // Peer 3 never comes up: a timeout before the limit changes nothing.
    c.handle(Event::Timeout, t0 + DEFER - Duration::from_millis(1))
        .unwrap();
    assert_eq!(selection_outputs(&drain(&mut c)), (0, 0, 0));
    assert!(c.deferring());
    c.handle(Event::Timeout, t0 + DEFER).unwrap();
    let (sends, ribs, done) = selection_outputs(&drain(&mut c));
    assert_eq!((sends, done), (1, 1), "UPDATEs to the one Established peer");
    assert_eq!(ribs, 2, "10.1.0.0/24 and our block");
    assert!(!c.deferring());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn deferral_does_not_wait_for_peers_without_graceful_restart() {
    let t0 = Instant::now();
    let mut c = restarting_with_two_peers(t0);
    up_peer(&mut c, 2, true, t0);
    end_of_rib(&mut c, 2, t0);
    assert_eq!(selection_outputs(&drain(&mut c)), (0, 0, 0));
    // Peer 3 came back without the capability: it sends no End-of-RIB we
    // could wait for.
    up_peer(&mut c, 3, false, t0);
    let (sends, _, done) = selection_outputs(&drain(&mut c));
    assert_eq!((sends, done), (2, 1));
}

#[test]
fn deferral_ends_when_the_missing_peer_is_removed() {
    let t0 = Instant::now();
    let mut c = restarting_with_two_peers(t0);
    up_peer(&mut c, 2, true, t0);
    end_of_rib(&mut c, 2, t0);
    drain(&mut c);
    c.handle(Event::RemovePeer(ip(3)), t0).unwrap();
    let (_, _, done) = selection_outputs(&drain(&mut c));
    assert_eq!(done, 1);
}

#[test]
fn a_speaker_that_is_not_restarting_never_defers() {
    let t0 = Instant::now();
    let mut c = core();
    c.set_listening(true);
    c.handle(Event::AddPeer(Box::new(gr_peer(2))), t0).unwrap();
    up_peer(&mut c, 2, true, t0);
    announce_from(&mut c, 2, p4([10, 1, 0, 0], 24), t0);
    let (sends, ribs, done) = selection_outputs(&drain(&mut c));
    assert!(!c.deferring());
    assert_eq!((ribs, done), (1, 0));
    assert_eq!(sends, 1, "End-of-RIB at once");
}
