//! Interop with BIRD 2 in fresh namespaces (our `flatnet-bgpd` against `bird`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod interop_support;

use flatnet_lab::bird::Bird;
use interop_support::*;

#[test]
fn bird_ipv4_ipv6_one_session_caps_and_routes() {
    let p = pair("bcap");
    let mut cfg = tor_cfg(&["10.1.0.0/24", "2001:db8:1::/48"]);
    cfg.neighbors[0].extended_message = true;
    let bird = Bird::start(&p.tor, cfg).unwrap();
    check_caps_and_routes(&bird, &p.host, true);
}

#[test]
fn bird_announce_1000_withdraw_half() {
    let p = pair("b1k");
    let bird = Bird::start(&p.tor, tor_cfg(&["10.1.0.0/24"])).unwrap();
    check_thousand_withdraw_half(&bird, &p.host);
}

#[test]
fn bird_tcp_md5_matching_key_comes_up() {
    assert!(scenario_md5(
        Kind::Bird,
        "bmd5ok",
        Some("s3cr3t"),
        Some("s3cr3t")
    ));
}

#[test]
fn bird_tcp_md5_wrong_or_missing_key_never_established() {
    assert!(!scenario_md5(
        Kind::Bird,
        "bmd5bad",
        Some("s3cr3t"),
        Some("wrong")
    ));
    assert!(!scenario_md5(Kind::Bird, "bmd5no", Some("s3cr3t"), None));
}

#[test]
fn bird_two_peers_same_prefix_multipath() {
    scenario_multipath(Kind::Bird, "bmp");
}

#[test]
fn bird_max_prefix_cease_and_return() {
    scenario_max_prefix(Kind::Bird, "bmax");
}

#[test]
fn bird_graceful_restart_helper_keeps_stale_then_sweeps() {
    scenario_gr_helper(Kind::Bird, "bgrh");
}

#[test]
fn bird_graceful_restart_we_restart_peer_never_withdraws() {
    scenario_gr_restarting(Kind::Bird, "bgrr");
}

#[test]
fn bird_route_refresh_after_import_policy_change() {
    scenario_route_refresh(Kind::Bird, "brr");
}
