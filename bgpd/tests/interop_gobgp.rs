//! Interop with GoBGP 3 in fresh namespaces (our `flatnet-bgpd` against `gobgpd`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod interop_support;

use flatnet_lab::gobgp::Gobgp;
use interop_support::*;

#[test]
fn gobgp_ipv4_ipv6_one_session_caps_and_routes() {
    let p = pair("gcap");
    let cfg = tor_cfg(&["10.1.0.0/24", "2001:db8:1::/48"]);
    let gobgp = Gobgp::start(&p.tor, cfg).unwrap();
    check_caps_and_routes(&gobgp, &p.host, false);
}

#[test]
fn gobgp_announce_1000_withdraw_half() {
    let p = pair("g1k");
    let gobgp = Gobgp::start(&p.tor, tor_cfg(&["10.1.0.0/24"])).unwrap();
    check_thousand_withdraw_half(&gobgp, &p.host);
}

#[test]
fn gobgp_tcp_md5_matching_key_comes_up() {
    assert!(scenario_md5(
        Kind::Gobgp,
        "gmd5ok",
        Some("s3cr3t"),
        Some("s3cr3t")
    ));
}

#[test]
fn gobgp_tcp_md5_wrong_or_missing_key_never_established() {
    assert!(!scenario_md5(
        Kind::Gobgp,
        "gmd5bad",
        Some("s3cr3t"),
        Some("wrong")
    ));
    assert!(!scenario_md5(Kind::Gobgp, "gmd5no", Some("s3cr3t"), None));
}

#[test]
fn gobgp_two_peers_same_prefix_multipath() {
    scenario_multipath(Kind::Gobgp, "gmp");
}

#[test]
fn gobgp_max_prefix_cease_and_return() {
    scenario_max_prefix(Kind::Gobgp, "gmax");
}

#[test]
fn gobgp_graceful_restart_helper_keeps_stale_then_sweeps() {
    scenario_gr_helper(Kind::Gobgp, "ggrh");
}

#[test]
fn gobgp_graceful_restart_we_restart_peer_never_withdraws() {
    scenario_gr_restarting(Kind::Gobgp, "ggrr");
}

#[test]
fn gobgp_route_refresh_after_import_policy_change() {
    scenario_route_refresh(Kind::Gobgp, "grr");
}
