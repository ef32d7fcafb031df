//! Interop with FRR 8.4 (bgpd + zebra) in fresh namespaces: our speaker is the
//! `flatnet-bgpd` binary, FRR is driven through `flatnet_lab::frr`. Every
//! assertion about the session reads the PEER's own JSON as well as ours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod interop_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flatnet_lab::frr::Frr;
use flatnet_lab::{Family, NeighborConfig, Netns, Router, RouterConfig, veth, wait_for};
use interop_support::*;

const T: Duration = Duration::from_secs(30);

fn frr_cfg(n: NeighborConfig) -> RouterConfig {
    RouterConfig::new("1.1.1.1".parse().unwrap(), TOR_AS).neighbor(n)
}

#[test]
fn frr_ipv4_ipv6_one_session_caps_and_routes() {
    let p = pair("fcap");
    let frr = Frr::start(
        &p.tor,
        frr_cfg(NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS))
            .originate("10.1.0.0/24")
            .originate("2001:db8:1::/48"),
    )
    .unwrap();
    let ours = Ours::start(
        &p.host,
        &our_cfg("", &originate(&["10.2.0.0/24", "2001:db8:2::/48"])),
    );
    let st = frr
        .wait_established(HOST_V4, T)
        .unwrap_or_else(|e| fail(e, &ours));
    // The peer's own view of the negotiated capabilities.
    assert!(st.caps.four_octet_as, "{st:?}");
    assert!(st.caps.route_refresh, "{st:?}");
    assert!(st.caps.mp_ipv4_unicast && st.caps.mp_ipv6_unicast, "{st:?}");
    assert!(st.caps.extended_message, "{st:?}");
    assert_eq!(st.remote_as, Some(HOST_AS));
    // Ours.
    let peer = ours.wait_established(TOR_V4, T);
    let caps: Vec<String> = serde_json::from_value(peer["capabilities"].clone()).unwrap();
    for c in [
        "mp:ipv4-unicast",
        "mp:ipv6-unicast",
        "four-octet-as",
        "route-refresh",
        "enhanced-route-refresh",
        "extended-message",
    ] {
        assert!(caps.iter().any(|x| x == c), "missing {c} in {caps:?}");
    }
    assert_eq!(peer["hold_time"], 9);
    // Routes both ways, both families, on the one IPv4 session.
    let r = frr
        .wait_route("10.2.0.0/24", T)
        .unwrap_or_else(|e| fail(e, &ours));
    assert_eq!(r.as_path, vec![HOST_AS]);
    assert_eq!(
        r.next_hops,
        vec![HOST_V4.parse::<std::net::IpAddr>().unwrap()]
    );
    let r6 = frr
        .wait_route("2001:db8:2::/48", T)
        .unwrap_or_else(|e| fail(e, &ours));
    assert_eq!(r6.as_path, vec![HOST_AS]);
    assert!(r6.next_hops.contains(&HOST_V6.parse().unwrap()), "{r6:?}");
    ours.wait("10.1.0.0/24 in our Loc-RIB", T, |o| {
        o.paths("10.1.0.0/24")
            .into_iter()
            .find(|x| x["best"] == true)
    });
    let p6 = ours.wait("2001:db8:1::/48 in our Loc-RIB", T, |o| {
        o.paths("2001:db8:1::/48").into_iter().next()
    });
    assert_eq!(p6["as_path"], serde_json::json!([TOR_AS]));
    assert_eq!(p6["next_hop"], TOR_V6);
    let peer = ours.peer(TOR_V4).unwrap();
    assert_eq!(peer["prefixes_accepted"], 2);
    assert_eq!(peer["prefixes_advertised"], 2);
}

fn learned(frr: &Frr<'_>) -> std::collections::BTreeSet<String> {
    frr.rib(Family::Ipv4Unicast)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.learned)
        .map(|r| r.prefix)
        .collect()
}

#[test]
fn frr_announce_1000_withdraw_half_and_receive() {
    let p = pair("f1k");
    let frr = Frr::start(
        &p.tor,
        frr_cfg(NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS))
            .originate("10.1.0.0/24")
            .originate("10.1.1.0/24"),
    )
    .unwrap();
    let all = thousand(1000);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let ours = Ours::start(&p.host, &our_cfg("", &originate(&refs)));
    frr.wait_established(HOST_V4, T)
        .unwrap_or_else(|e| fail(e, &ours));
    let want: std::collections::BTreeSet<String> = all.iter().cloned().collect();
    wait_for("FRR has our 1000 prefixes", T, || {
        Ok((learned(&frr) == want).then_some(()))
    })
    .unwrap_or_else(|e| fail(e, &ours));
    // Withdraw every other prefix by reloading the config.
    let keep: Vec<&str> = refs.iter().step_by(2).copied().collect();
    ours.reload(&our_cfg("", &originate(&keep)));
    let want_half: std::collections::BTreeSet<String> =
        keep.iter().map(|s| s.to_string()).collect();
    wait_for("FRR has exactly the 500 remaining", T, || {
        Ok((learned(&frr) == want_half).then_some(()))
    })
    .unwrap_or_else(|e| fail(e, &ours));
    assert_eq!(learned(&frr).len(), 500);
    // Routes received from FRR are in our Loc-RIB.
    ours.wait("FRR's routes in our Loc-RIB", T, |o| {
        let r = o.rib_prefixes();
        (r.contains(&"10.1.0.0/24".to_string()) && r.contains(&"10.1.1.0/24".to_string()))
            .then_some(())
    });
    assert_eq!(ours.peer(TOR_V4).unwrap()["prefixes_advertised"], 500);
}

#[test]
fn frr_two_peers_same_prefix_multipath() {
    flatnet_lab::require_root().unwrap();
    let host = Netns::new("fmph").unwrap();
    let t1 = Netns::new("fmp1").unwrap();
    let t2 = Netns::new("fmp2").unwrap();
    veth(&t1, "eth0", &host, "eth1").unwrap();
    veth(&t2, "eth0", &host, "eth2").unwrap();
    t1.addr_add("eth0", "10.0.1.1/30").unwrap();
    host.addr_add("eth1", "10.0.1.2/30").unwrap();
    t2.addr_add("eth0", "10.0.2.1/30").unwrap();
    host.addr_add("eth2", "10.0.2.2/30").unwrap();
    let mk = |id: &str, asn: u32, nbr: &str| {
        RouterConfig::new(id.parse().unwrap(), asn)
            .neighbor(NeighborConfig::new(nbr.parse().unwrap(), HOST_AS))
            .originate("10.9.0.0/24")
    };
    let f1 = Frr::start(&t1, mk("1.1.1.1", 65001, "10.0.1.2")).unwrap();
    let f2 = Frr::start(&t2, mk("3.3.3.3", 65003, "10.0.2.2")).unwrap();
    let cfg = format!(
        r#"router_id = "2.2.2.2"
asn = {HOST_AS}
listen = ["0.0.0.0:179"]
[[peer]]
address = "10.0.1.1"
remote_as = 65001
hold_time = 9
import_policy = "accept"
export_policy = "accept"
families = ["ipv4-unicast"]
[[peer]]
address = "10.0.2.1"
remote_as = 65003
hold_time = 9
import_policy = "accept"
export_policy = "accept"
families = ["ipv4-unicast"]
"#
    );
    let ours = Ours::start(&host, &cfg);
    f1.wait_established("10.0.1.2", T)
        .unwrap_or_else(|e| fail(e, &ours));
    f2.wait_established("10.0.2.2", T)
        .unwrap_or_else(|e| fail(e, &ours));
    let paths = ours.wait("two paths for 10.9.0.0/24", T, |o| {
        let p = o.paths("10.9.0.0/24");
        (p.len() == 2).then_some(p)
    });
    assert!(paths.iter().all(|p| p["multipath"] == true), "{paths:?}");
    assert_eq!(paths.iter().filter(|p| p["best"] == true).count(), 1);
    let mut nh: Vec<&str> = paths
        .iter()
        .filter_map(|p| p["next_hop"].as_str())
        .collect();
    nh.sort();
    assert_eq!(nh, vec!["10.0.1.1", "10.0.2.1"]);
}

fn md5_case(tag: &str, frr_pw: Option<&str>, our_pw: Option<&str>) -> bool {
    let p = pair(tag);
    let mut n = NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS);
    n.password = frr_pw.map(String::from);
    let frr = Frr::start(&p.tor, frr_cfg(n).originate("10.1.0.0/24")).unwrap();
    let extra = our_pw
        .map(|pw| format!("password = \"{pw}\""))
        .unwrap_or_default();
    let ours = Ours::start(&p.host, &our_cfg(&extra, ""));
    let up = frr
        .wait_established(HOST_V4, Duration::from_secs(12))
        .is_ok();
    let ours_up = ours
        .peer(TOR_V4)
        .map(|p| p["state"] == "Established")
        .unwrap_or(false);
    assert_eq!(up, ours_up || up, "both sides agree");
    if up {
        ours.wait_established(TOR_V4, T);
    } else {
        assert!(!ours_up, "we must not be Established when FRR is not");
    }
    up
}

#[test]
fn frr_tcp_md5_matching_key_comes_up() {
    assert!(md5_case("fmd5ok", Some("s3cr3t"), Some("s3cr3t")));
}

#[test]
fn frr_tcp_md5_wrong_key_never_established() {
    assert!(!md5_case("fmd5bad", Some("s3cr3t"), Some("wrong")));
}

#[test]
fn frr_tcp_md5_missing_key_never_established() {
    assert!(!md5_case("fmd5no", Some("s3cr3t"), None));
    assert!(!md5_case("fmd5no2", None, Some("s3cr3t")));
}

#[test]
fn frr_max_prefix_cease_and_return() {
    let p = pair("fmax");
    let mut cfg = frr_cfg(NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS));
    for i in 0..20 {
        cfg = cfg.originate(&format!("10.50.{i}.0/24"));
    }
    let mut frr = Frr::start(&p.tor, cfg).unwrap();
    let extra = "[[peer.max_prefix]]\nfamily = \"ipv4-unicast\"\nlimit = 10\nwarning_percent = 50\nrestart_interval = 4\n";
    let ours = Ours::start(&p.host, &our_cfg(extra, ""));
    // We send Cease/1 once FRR's 20 prefixes exceed the limit of 10.
    let peer = ours.wait("max-prefix Cease", T, |o| {
        o.peer(TOR_V4).filter(|p| {
            p["max_prefix_resets"].as_u64().unwrap_or(0) >= 1
                && p["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("Maximum Number"))
        })
    });
    let err = peer["last_error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("Maximum Number of Prefixes Reached"), "{err}");
    // FRR's own view: the session was reset by our NOTIFICATION.
    let frr_view = wait_for("FRR saw the Cease", T, || {
        let v = frr.vtysh_json("show bgp neighbors json")?;
        let s = v.to_string();
        Ok(s.contains("Maximum Number of Prefixes").then_some(s))
    })
    .unwrap_or_else(|e| fail(e, &ours));
    assert!(frr_view.contains("Cease") || frr_view.contains("Maximum"));
    // The routes are gone from our RIB while the session is down.
    ours.wait("routes flushed", T, |o| {
        (!o.rib_prefixes().iter().any(|p| p.starts_with("10.50."))).then_some(())
    });
    // FRR withdraws 15 prefixes; after the restart interval we come back and stay up.
    for i in 0..15 {
        frr.withdraw(&format!("10.50.{i}.0/24")).unwrap();
    }
    let back = Instant::now();
    ours.wait_established(TOR_V4, T);
    ours.wait("5 prefixes accepted", T, |o| {
        o.peer(TOR_V4).filter(|p| p["prefixes_accepted"] == 5)
    });
    let resets = ours.peer(TOR_V4).unwrap()["max_prefix_resets"]
        .as_u64()
        .unwrap();
    assert!(back.elapsed() < T);
    frr.wait_established(HOST_V4, T)
        .unwrap_or_else(|e| fail(e, &ours));
    assert_eq!(
        ours.peer(TOR_V4).unwrap()["max_prefix_resets"]
            .as_u64()
            .unwrap(),
        resets,
        "stays up"
    );
}

#[test]
fn frr_graceful_restart_we_restart_peer_never_withdraws() {
    let p = pair("fgrr");
    let mut n = NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS);
    n.graceful_restart = true;
    let frr = Frr::start(&p.tor, frr_cfg(n)).unwrap();
    let gr = "[peer.graceful_restart]\nrestart_time = 60\n";
    let mut ours = Ours::start(
        &p.host,
        &our_cfg(gr, &originate(&["10.2.0.0/24", "10.2.1.0/24"])),
    );
    let st = frr
        .wait_established(HOST_V4, T)
        .unwrap_or_else(|e| fail(e, &ours));
    assert!(st.caps.graceful_restart, "{st:?}");
    frr.wait_route("10.2.0.0/24", T)
        .unwrap_or_else(|e| fail(e, &ours));
    frr.wait_route("10.2.1.0/24", T)
        .unwrap_or_else(|e| fail(e, &ours));
    // Poll FRR's RIB continuously (on this thread) while another thread
    // SIGKILLs our speaker and starts it again.
    let mut polls = 0usize;
    let mut missing = Vec::new();
    let mut saw_stale = false;
    let done = AtomicBool::new(false);
    let stale_seen = AtomicBool::new(false);
    std::thread::scope(|s| {
        let restarter = s.spawn(|| {
            ours.kill9();
            // Stay down until FRR shows our routes as stale (or 10 s), so the
            // window in which FRR could withdraw them is observable.
            let t0 = Instant::now();
            while !stale_seen.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            ours.restart(); // start again with the state file present
            ours.wait_established(TOR_V4, T);
            done.store(true, Ordering::SeqCst);
        });
        let deadline = Instant::now() + T;
        let mut clear_since: Option<Instant> = None;
        loop {
            let rib = frr.rib(Family::Ipv4Unicast).unwrap_or_default();
            polls += 1;
            let ours_routes: Vec<_> = rib
                .iter()
                .filter(|r| r.prefix.starts_with("10.2."))
                .collect();
            for pfx in ["10.2.0.0/24", "10.2.1.0/24"] {
                if !ours_routes.iter().any(|r| r.prefix == pfx) {
                    missing.push(pfx.to_string());
                }
            }
            if ours_routes.iter().any(|r| r.stale) {
                saw_stale = true;
                stale_seen.store(true, Ordering::SeqCst);
            }
            // Done once we are back and FRR's stale flags cleared (our End-of-RIB).
            let clear = done.load(Ordering::SeqCst)
                && ours_routes.len() == 2
                && ours_routes.iter().all(|r| !r.stale);
            if clear {
                let t = *clear_since.get_or_insert_with(Instant::now);
                if t.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "stale flags never cleared");
            std::thread::sleep(Duration::from_millis(20));
        }
        restarter.join().unwrap();
    });
    assert!(polls > 5, "the poller ran");
    assert!(
        missing.is_empty(),
        "FRR withdrew our routes during the restart: {missing:?}"
    );
    assert!(saw_stale, "FRR kept them as stale while we were gone");
    assert!(
        ours.logs().contains("restarting"),
        "the restarted speaker set the R bit"
    );
}

#[test]
fn frr_graceful_restart_helper_keeps_stale_then_sweeps() {
    let p = pair("fgrh");
    let mut n = NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS);
    n.graceful_restart = true;
    n.restart_time = 5;
    let mut frr = Frr::start(&p.tor, frr_cfg(n).originate("10.1.0.0/24")).unwrap();
    let gr = "[peer.graceful_restart]\nrestart_time = 60\n";
    let ours = Ours::start(&p.host, &our_cfg(gr, ""));
    let peer = ours.wait_established(TOR_V4, T);
    assert_eq!(peer["peer_restart_time"], 5);
    ours.wait("route from FRR", T, |o| {
        o.paths("10.1.0.0/24").into_iter().next()
    });
    let killed = Instant::now();
    frr.kill9().unwrap();
    // Kept, marked stale.
    let path = ours.wait("route marked stale", T, |o| {
        o.paths("10.1.0.0/24")
            .into_iter()
            .find(|p| p["stale"] == true)
    });
    assert_eq!(path["source"], TOR_V4);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "stale before the restart time"
    );
    // Swept after the peer's restart time (5 s) since it does not come back.
    ours.wait("stale route swept", T, |o| {
        o.paths("10.1.0.0/24").is_empty().then_some(())
    });
    assert!(
        killed.elapsed() >= Duration::from_secs(4),
        "not swept early: {:?}",
        killed.elapsed()
    );
}

#[test]
fn frr_route_refresh_after_import_policy_change() {
    let p = pair("frr");
    let frr = Frr::start(
        &p.tor,
        frr_cfg(NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS))
            .originate("10.1.0.0/24")
            .originate("10.7.0.0/24"),
    )
    .unwrap();
    let policy = |accept_7: bool| {
        format!(
            "[[policy]]\nname = \"in\"\ndefault = \"reject\"\n[[policy.rule]]\nprefix = \"10.1.0.0/16\"\nle = 24\naction = \"accept\"\n{}",
            if accept_7 {
                "[[policy.rule]]\nprefix = \"10.7.0.0/16\"\nle = 24\naction = \"accept\"\n"
            } else {
                ""
            }
        )
    };
    // FRR 8.4 ignores a ROUTE-REFRESH that arrives before it sent End-of-RIB,
    // and sends End-of-RIB only to peers that announced graceful restart.
    let cfg = |accept_7: bool| {
        our_cfg(
            "[peer.graceful_restart]\nrestart_time = 60\n",
            &policy(accept_7),
        )
        .replace("import_policy = \"accept\"", "import_policy = \"in\"")
    };
    let ours = Ours::start(&p.host, &cfg(false));
    ours.wait_established(TOR_V4, T);
    ours.wait("10.1.0.0/24 accepted", T, |o| {
        o.paths("10.1.0.0/24").into_iter().next()
    });
    assert!(
        ours.paths("10.7.0.0/24").is_empty(),
        "filtered by import policy"
    );
    let up_before =
        frr.vtysh_json("show bgp neighbors json").unwrap()[HOST_V4]["connectionsEstablished"]
            .clone();
    ours.reload(&cfg(true));
    let got = wait_for("10.7.0.0/24 after route refresh", T, || {
        Ok(ours.paths("10.7.0.0/24").into_iter().next())
    });
    if got.is_err() {
        let log = std::fs::read_to_string(frr.dir().join("bgpd.log")).unwrap_or_default();
        let v = frr.vtysh_json("show bgp neighbors json").unwrap();
        let mut n = v[HOST_V4].clone();
        n["messageStats"] = serde_json::Value::Null;
        panic!("no refresh: {}\nFRR log:\n{log}\nours:\n{}", n, ours.logs());
    }
    // No session reset: FRR counted one connection only, and saw our ROUTE-REFRESH.
    let v = frr.vtysh_json("show bgp neighbors json").unwrap();
    assert_eq!(v[HOST_V4]["connectionsEstablished"], up_before);
    assert_eq!(v[HOST_V4]["connectionsEstablished"], 1);
    let rr_rx = &v[HOST_V4]["messageStats"]["routeRefreshRecv"];
    assert!(
        rr_rx.as_u64().unwrap_or(0) >= 1,
        "FRR received a ROUTE-REFRESH: {}",
        v[HOST_V4]["messageStats"]
    );
    assert!(ours.peer(TOR_V4).unwrap()["last_error"].is_null());
}

fn link_local(ns: &Netns, ifname: &str) -> std::net::Ipv6Addr {
    wait_for("link-local address", T, || {
        let out = ns.exec_stdout(
            "ip",
            &["-6", "-o", "addr", "show", "dev", ifname, "scope", "link"],
        )?;
        if out.contains("tentative") {
            return Ok(None);
        }
        Ok(out
            .split_whitespace()
            .find(|w| w.starts_with("fe80"))
            .and_then(|w| w.split('/').next())
            .and_then(|a| a.parse().ok()))
    })
    .unwrap()
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
