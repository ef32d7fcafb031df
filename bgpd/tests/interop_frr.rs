//! Interop with FRR 8.4 (bgpd + zebra) in fresh namespaces: our speaker is the
//! `flatnet-bgpd` binary, FRR is driven through `flatnet_lab::frr`. Every
//! assertion about the session reads the PEER's own JSON as well as ours.
//! Scenarios shared with BIRD and GoBGP live in `interop_support`; the FRR
//! tests add the checks only FRR's JSON (vtysh) allows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod interop_support;

use std::time::Duration;

use flatnet_lab::frr::Frr;
use flatnet_lab::{NeighborConfig, Netns, Router, RouterConfig, veth, wait_for};
use interop_support::*;

const T: Duration = Duration::from_secs(30);

fn frr_cfg(n: NeighborConfig) -> RouterConfig {
    RouterConfig::new("1.1.1.1".parse().unwrap(), TOR_AS).neighbor(n)
}

#[test]
fn frr_ipv4_ipv6_one_session_caps_and_routes() {
    let p = pair("fcap");
    let frr = Frr::start(&p.tor, tor_cfg(&["10.1.0.0/24", "2001:db8:1::/48"])).unwrap();
    let c = check_caps_and_routes(&frr, &p.host, true);
    assert_eq!(c.st.remote_as, Some(HOST_AS));
    for cap in ["enhanced-route-refresh", "extended-message"] {
        assert!(
            c.caps.iter().any(|x| x == cap),
            "missing {cap} in {:?}",
            c.caps
        );
    }
    assert_eq!(c.peer["hold_time"], 9);
    // Both families on the one IPv4 session, with the right next hops.
    assert_eq!(
        c.r.next_hops,
        vec![HOST_V4.parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(
        c.r6.next_hops.contains(&HOST_V6.parse().unwrap()),
        "{:?}",
        c.r6
    );
    assert_eq!(c.p6["next_hop"], TOR_V6);
    // The state file is a periodic snapshot: its counters may trail the RIB.
    c.ours.wait("2 prefixes accepted and 2 advertised", T, |o| {
        o.peer(TOR_V4)
            .filter(|p| p["prefixes_accepted"] == 2 && p["prefixes_advertised"] == 2)
    });
}

#[test]
fn frr_announce_1000_withdraw_half_and_receive() {
    let p = pair("f1k");
    let frr = Frr::start(&p.tor, tor_cfg(&["10.1.0.0/24", "10.1.1.0/24"])).unwrap();
    let ours = check_thousand_withdraw_half(&frr, &p.host);
    assert_eq!(learned_v4(&frr).len(), 500);
    // Routes received from FRR are in our Loc-RIB.
    ours.wait("FRR's routes in our Loc-RIB", T, |o| {
        let r = o.rib_prefixes();
        (r.contains(&"10.1.0.0/24".to_string()) && r.contains(&"10.1.1.0/24".to_string()))
            .then_some(())
    });
    ours.wait("500 prefixes advertised", T, |o| {
        o.peer(TOR_V4).filter(|p| p["prefixes_advertised"] == 500)
    });
}

#[test]
fn frr_two_peers_same_prefix_multipath() {
    scenario_multipath(Kind::Frr, "fmp");
}

#[test]
fn frr_tcp_md5_matching_key_comes_up() {
    assert!(scenario_md5(
        Kind::Frr,
        "fmd5ok",
        Some("s3cr3t"),
        Some("s3cr3t")
    ));
}

#[test]
fn frr_tcp_md5_wrong_key_never_established() {
    assert!(!scenario_md5(
        Kind::Frr,
        "fmd5bad",
        Some("s3cr3t"),
        Some("wrong")
    ));
}

#[test]
fn frr_tcp_md5_missing_key_never_established() {
    assert!(!scenario_md5(Kind::Frr, "fmd5no", Some("s3cr3t"), None));
    assert!(!scenario_md5(Kind::Frr, "fmd5no2", None, Some("s3cr3t")));
}

#[test]
fn frr_max_prefix_cease_and_return() {
    let p = pair("fmax");
    let mut frr = Frr::start(&p.tor, max_prefix_tor_cfg()).unwrap();
    let back = check_max_prefix(&mut frr, &p.host, |frr, ours| {
        // FRR's own view: the session was reset by our NOTIFICATION.
        let frr_view = wait_for("FRR saw the Cease", T, || {
            let s = frr.vtysh_json("show bgp neighbors json")?.to_string();
            Ok(s.contains("Maximum Number of Prefixes").then_some(s))
        })
        .unwrap_or_else(|e| fail(e, ours));
        assert!(frr_view.contains("Cease") || frr_view.contains("Maximum"));
    });
    assert!(back < T, "back after {back:?}");
}

#[test]
fn frr_graceful_restart_we_restart_peer_never_withdraws() {
    let gr = scenario_gr_restarting(Kind::Frr, "fgrr");
    assert!(gr.saw_stale, "FRR kept them as stale while we were gone");
    assert!(
        gr.logs.contains("restarting"),
        "the restarted speaker set the R bit"
    );
}

#[test]
fn frr_graceful_restart_helper_keeps_stale_then_sweeps() {
    scenario_gr_helper(Kind::Frr, "fgrh");
}

#[test]
fn frr_route_refresh_after_import_policy_change() {
    let p = pair("frr");
    let frr = Frr::start(&p.tor, tor_cfg(&["10.1.0.0/24", "10.7.0.0/24"])).unwrap();
    check_route_refresh(&frr, &p.host, |frr, _| {
        // No session reset: FRR counted one connection only, and saw our ROUTE-REFRESH.
        let v = frr.vtysh_json("show bgp neighbors json").unwrap();
        assert_eq!(v[HOST_V4]["connectionsEstablished"], 1);
        let rr_rx = &v[HOST_V4]["messageStats"]["routeRefreshRecv"];
        assert!(
            rr_rx.as_u64().unwrap_or(0) >= 1,
            "FRR received a ROUTE-REFRESH: {}",
            v[HOST_V4]["messageStats"]
        );
    });
}

fn link_local(ns: &Netns, ifname: &str) -> std::net::Ipv6Addr {
    ns.link_local(ifname, T).unwrap()
}

#[test]
fn frr_ipv4_over_ipv6_link_local_extended_next_hop() {
    flatnet_lab::require_root().unwrap();
    let tor = Netns::new("flltor").unwrap();
    let host = Netns::new("fllhost").unwrap();
    veth(&tor, "eth0", &host, "eth0").unwrap();
    let tor_ll = link_local(&tor, "eth0");
    let host_ll = link_local(&host, "eth0");
    let mut n = NeighborConfig::new(std::net::IpAddr::V6(host_ll), HOST_AS);
    n.interface = Some("eth0".into());
    n.extended_nexthop = true;
    let frr = Frr::start(&tor, frr_cfg(n).originate("10.1.0.0/24")).unwrap();
    let cfg = format!(
        r#"router_id = "2.2.2.2"
asn = {HOST_AS}
listen = ["[::]:179"]
[[peer]]
address = "{tor_ll}"
interface = "eth0"
remote_as = {TOR_AS}
hold_time = 9
extended_next_hop = true
import_policy = "accept"
export_policy = "accept"
{}"#,
        originate(&["10.2.0.0/24"])
    );
    let ours = Ours::start(&host, &cfg);
    let peer = ours.wait_established(&tor_ll.to_string(), T);
    let caps: Vec<String> = serde_json::from_value(peer["capabilities"].clone()).unwrap();
    assert!(caps.iter().any(|c| c == "extended-next-hop"), "{caps:?}");
    let st = wait_for("FRR interface peer Established", T, || {
        Ok(frr.neighbors()?.into_iter().find(|n| n.established()))
    })
    .unwrap_or_else(|e| fail(e, &ours));
    assert!(st.caps.extended_nexthop, "FRR's view: {st:?}");
    // IPv4 route from FRR with an IPv6 (link-local) next hop.
    let p = ours.wait("10.1.0.0/24 via IPv6", T, |o| {
        o.paths("10.1.0.0/24").into_iter().next()
    });
    let nh: std::net::IpAddr = p["next_hop"].as_str().unwrap().parse().unwrap();
    assert!(nh.is_ipv6(), "{p}");
    // Our IPv4 route in FRR's RIB with our link-local as next hop.
    let r = frr
        .wait_route("10.2.0.0/24", T)
        .unwrap_or_else(|e| fail(e, &ours));
    assert!(
        r.next_hops.contains(&std::net::IpAddr::V6(host_ll)),
        "{r:?} (want {host_ll})"
    );
}

fn gtsm_case(tag: &str, frr_hops: Option<u8>, our_hops: Option<u8>) -> bool {
    let p = pair(tag);
    let mut n = NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS);
    n.ttl_security = frr_hops;
    let frr = Frr::start(&p.tor, frr_cfg(n)).unwrap();
    let extra = our_hops
        .map(|h| format!("ttl_security = {h}"))
        .unwrap_or_default();
    let ours = Ours::start(&p.host, &our_cfg(&extra, ""));
    let up = frr
        .wait_established(HOST_V4, Duration::from_secs(10))
        .is_ok();
    if up {
        ours.wait_established(TOR_V4, T);
    } else {
        assert_ne!(ours.peer(TOR_V4).unwrap()["state"], "Established");
    }
    up
}

#[test]
fn frr_gtsm_ttl_security_both_sides_comes_up() {
    assert!(gtsm_case("fgtsm", Some(1), Some(1)));
}

#[test]
fn frr_gtsm_peer_requires_ttl_255_we_send_default_ttl_never_established() {
    assert!(!gtsm_case("fgtsmno", Some(1), None));
}

#[test]
fn frr_soft_reset_in_on_the_peer_is_answered_without_reset() {
    let p = pair("fsoft");
    let mut n = NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS);
    n.graceful_restart = true;
    let frr = Frr::start(&p.tor, frr_cfg(n)).unwrap();
    let gr = "[peer.graceful_restart]\nrestart_time = 60\n";
    let ours = Ours::start(&p.host, &our_cfg(gr, &originate(&["10.2.0.0/24"])));
    frr.wait_established(HOST_V4, T)
        .unwrap_or_else(|e| fail(e, &ours));
    frr.wait_route("10.2.0.0/24", T)
        .unwrap_or_else(|e| fail(e, &ours));
    // FRR sends us a ROUTE-REFRESH; we answer with BoRR, the routes, EoRR.
    frr.soft_in(HOST_V4).unwrap();
    ours.wait("the refresh request reached us", T, |o| {
        o.logs()
            .contains("peer asked for a route refresh")
            .then_some(())
    });
    frr.wait_route("10.2.0.0/24", T)
        .unwrap_or_else(|e| fail(e, &ours));
    let v = frr.vtysh_json("show bgp neighbors json").unwrap();
    assert_eq!(v[HOST_V4]["connectionsEstablished"], 1, "no session reset");
    assert!(
        v[HOST_V4]["messageStats"]["routeRefreshSent"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
    assert!(ours.peer(TOR_V4).unwrap()["last_error"].is_null());
}
