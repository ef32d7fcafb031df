//! Real routers peer with each other in fresh namespaces: FRR with BIRD and
//! FRR with GoBGP, IPv4 + IPv6 unicast on one IPv4 session, each originating
//! a prefix per family. Checks the lab's query API against live daemons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use flatnet_lab::bird::Bird;
use flatnet_lab::frr::Frr;
use flatnet_lab::gobgp::Gobgp;
use flatnet_lab::{Family, NeighborConfig, Netns, Route, Router, RouterConfig, require_root, veth};

const T: Duration = Duration::from_secs(30);

/// Two namespaces joined by a veth with 10.0.0.1/30 + 2001:db8::1/64 on `a`
/// and .2 / ::2 on `b`.
fn pair(tag: &str) -> (Netns, Netns) {
    require_root().unwrap();
    let a = Netns::new(&format!("{tag}a")).unwrap();
    let b = Netns::new(&format!("{tag}b")).unwrap();
    veth(&a, "eth0", &b, "eth0").unwrap();
    a.addr_add("eth0", "10.0.0.1/30").unwrap();
    a.addr_add("eth0", "2001:db8::1/64").unwrap();
    b.addr_add("eth0", "10.0.0.2/30").unwrap();
    b.addr_add("eth0", "2001:db8::2/64").unwrap();
    (a, b)
}

fn frr_cfg() -> RouterConfig {
    let mut n = NeighborConfig::new("10.0.0.2".parse().unwrap(), 65002);
    n.graceful_restart = true;
    RouterConfig::new("1.1.1.1".parse().unwrap(), 65001)
        .neighbor(n)
        .originate("10.1.0.0/24")
        .originate("2001:db8:1::/48")
}

fn peer_cfg() -> RouterConfig {
    let mut n = NeighborConfig::new("10.0.0.1".parse().unwrap(), 65001);
    n.graceful_restart = true;
    RouterConfig::new("2.2.2.2".parse().unwrap(), 65002)
        .neighbor(n)
        .originate("10.2.0.0/24")
        .originate("2001:db8:2::/48")
}

/// Sessions come up, capabilities are reported, and each side's prefixes
/// arrive at the other with the expected next hop and AS path.
fn check_pair(frr: &mut Frr<'_>, peer: &mut dyn Router) {
    let n = frr.wait_established("10.0.0.2", T).unwrap();
    assert_eq!(n.remote_as, Some(65002));
    assert!(n.caps.four_octet_as, "{n:?}");
    assert!(n.caps.mp_ipv4_unicast && n.caps.mp_ipv6_unicast, "{n:?}");
    assert!(n.caps.route_refresh, "{n:?}");
    assert!(n.caps.graceful_restart, "{n:?}");
    let p = peer.wait_established("10.0.0.1", T).unwrap();
    assert_eq!(p.remote_as, Some(65001));
    assert!(p.caps.four_octet_as && p.caps.mp_ipv6_unicast, "{p:?}");

    let r = frr.wait_route("10.2.0.0/24", T).unwrap();
    assert_eq!(
        r.next_hops,
        vec!["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(r.as_path, vec![65002]);
    let r6 = frr.wait_route("2001:db8:2::/48", T).unwrap();
    assert!(
        r6.next_hops.contains(&"2001:db8::2".parse().unwrap()),
        "{r6:?}"
    );
    let r = peer.wait_route("10.1.0.0/24", T).unwrap();
    assert_eq!(
        r.next_hops,
        vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(r.as_path, vec![65001]);
    let r6 = peer.wait_route("2001:db8:1::/48", T).unwrap();
    assert!(
        r6.next_hops.contains(&"2001:db8::1".parse().unwrap()),
        "{r6:?}"
    );

    // Runtime announce / withdraw on both sides.
    let mut extra = Route::new("10.3.0.0/24");
    extra.communities = vec![(65000, 7)];
    frr.announce(extra).unwrap();
    let r = peer.wait_route("10.3.0.0/24", T).unwrap();
    assert_eq!(r.as_path, vec![65001]);
    frr.withdraw("10.3.0.0/24").unwrap();
    peer.wait_no_route("10.3.0.0/24", T).unwrap();

    let mut extra6 = Route::new("2001:db8:4::/48");
    extra6.prepend = 2;
    peer.announce(extra6).unwrap();
    let r = frr.wait_route("2001:db8:4::/48", T).unwrap();
    assert_eq!(r.as_path, vec![65002, 65002, 65002]);
    peer.withdraw("2001:db8:4::/48").unwrap();
    frr.wait_no_route("2001:db8:4::/48", T).unwrap();

    // Locally originated routes show as not learned.
    let own = frr.rib(Family::Ipv4Unicast).unwrap();
    assert!(
        own.iter().any(|e| e.prefix == "10.1.0.0/24" && !e.learned),
        "{own:?}"
    );

    // Graceful restart: SIGKILL the peer, FRR keeps its routes marked stale;
    // the peer restarts and the session comes back.
    peer.kill9().unwrap();
    let stale = flatnet_lab::wait_for("stale route on FRR", T, || {
        Ok(frr
            .rib(Family::Ipv4Unicast)?
            .into_iter()
            .find(|e| e.prefix == "10.2.0.0/24" && e.stale))
    })
    .unwrap();
    assert!(stale.learned);
    peer.restart().unwrap();
    frr.wait_established("10.0.0.2", T).unwrap();
    flatnet_lab::wait_for("fresh route on FRR", T, || {
        Ok(frr
            .rib(Family::Ipv4Unicast)?
            .into_iter()
            .find(|e| e.prefix == "10.2.0.0/24" && !e.stale && e.learned))
    })
    .unwrap();
}

#[test]
fn frr_peers_with_bird() {
    let (a, b) = pair("rb");
    let mut frr = Frr::start(&a, frr_cfg()).unwrap();
    let mut bird = Bird::start(&b, peer_cfg()).unwrap();
    check_pair(&mut frr, &mut bird);
}

#[test]
fn frr_peers_with_gobgp() {
    let (a, b) = pair("rg");
    let mut frr = Frr::start(&a, frr_cfg()).unwrap();
    let mut gobgp = Gobgp::start(&b, peer_cfg()).unwrap();
    check_pair(&mut frr, &mut gobgp);

    // The other way round: SIGKILL FRR, GoBGP (GR helper) keeps FRR's routes
    // as stale; FRR restarts from the same config and the session returns.
    gobgp.wait_route("10.1.0.0/24", T).unwrap();
    frr.kill9().unwrap();
    flatnet_lab::wait_for("stale route on GoBGP", T, || {
        Ok(gobgp
            .rib(Family::Ipv4Unicast)?
            .into_iter()
            .find(|e| e.prefix == "10.1.0.0/24" && e.stale))
    })
    .unwrap();
    frr.restart().unwrap();
    gobgp.wait_established("10.0.0.1", T).unwrap();
    flatnet_lab::wait_for("fresh route on GoBGP", T, || {
        Ok(gobgp
            .rib(Family::Ipv4Unicast)?
            .into_iter()
            .find(|e| e.prefix == "10.1.0.0/24" && !e.stale && e.learned))
    })
    .unwrap();
}

/// TCP MD5, GTSM and ADD-PATH on one FRR<->BIRD session; bulk announce and
/// withdraw of 200 prefixes.
#[test]
fn frr_bird_md5_gtsm_addpath_bulk() {
    let (a, b) = pair("rm");
    let secure = |n: &mut NeighborConfig| {
        n.password = Some("flatnet-md5".into());
        n.ttl_security = Some(1);
        n.add_path = flatnet_lab::AddPath {
            send: true,
            receive: true,
        };
    };
    let mut cfg = frr_cfg();
    secure(&mut cfg.neighbors[0]);
    let mut frr = Frr::start(&a, cfg).unwrap();
    let mut pcfg = peer_cfg();
    secure(&mut pcfg.neighbors[0]);
    let bird = Bird::start(&b, pcfg).unwrap();
    let n = frr.wait_established("10.0.0.2", T).unwrap();
    assert!(
        n.caps.add_path_ipv4_send && n.caps.add_path_ipv4_receive,
        "{n:?}"
    );
    assert!(
        n.caps.add_path_ipv6_send && n.caps.add_path_ipv6_receive,
        "{n:?}"
    );
    let p = bird.wait_established("10.0.0.1", T).unwrap();
    assert!(
        p.caps.add_path_ipv4_send && p.caps.add_path_ipv6_receive,
        "{p:?}"
    );
    bird.wait_route("10.1.0.0/24", T).unwrap();

    let bulk: Vec<Route> = (0..200)
        .map(|i| Route::new(&format!("10.{}.{}.0/24", 100 + i / 100, i % 100)))
        .collect();
    frr.announce_many(bulk.clone()).unwrap();
    let learned = |r: &Bird<'_>| {
        r.rib(Family::Ipv4Unicast)
            .unwrap()
            .into_iter()
            .filter(|e| e.learned && e.prefix.starts_with("10.10"))
            .count()
    };
    flatnet_lab::wait_for("200 routes at BIRD", T, || {
        Ok((learned(&bird) == 200).then_some(()))
    })
    .unwrap();
    let half: Vec<String> = bulk.iter().take(100).map(|r| r.prefix.clone()).collect();
    frr.withdraw_many(&half).unwrap();
    flatnet_lab::wait_for("100 routes at BIRD", T, || {
        Ok((learned(&bird) == 100).then_some(()))
    })
    .unwrap();
}

/// IPv4 and IPv6 over an IPv6 link-local session with extended next hop
/// (RFC 8950), FRR <-> BIRD.
#[test]
fn frr_bird_link_local_extended_nexthop() {
    require_root().unwrap();
    let a = Netns::new("rla").unwrap();
    let b = Netns::new("rlb").unwrap();
    veth(&a, "eth0", &b, "eth0").unwrap();
    a.addr_add("eth0", "fe80::1/64").unwrap();
    b.addr_add("eth0", "fe80::2/64").unwrap();
    let ll = |addr: &str, asn| {
        let mut n = NeighborConfig::new(addr.parse().unwrap(), asn);
        n.interface = Some("eth0".into());
        n.extended_nexthop = true;
        n
    };
    let cfg = RouterConfig::new("1.1.1.1".parse().unwrap(), 65001)
        .neighbor(ll("fe80::2", 65002))
        .originate("10.1.0.0/24")
        .originate("2001:db8:1::/48");
    let frr = Frr::start(&a, cfg).unwrap();
    let pcfg = RouterConfig::new("2.2.2.2".parse().unwrap(), 65002)
        .neighbor(ll("fe80::1", 65001))
        .originate("10.2.0.0/24")
        .originate("2001:db8:2::/48");
    let bird = Bird::start(&b, pcfg).unwrap();
    let n = frr.wait_established("fe80::2", T).unwrap();
    assert!(n.caps.extended_nexthop && n.caps.mp_ipv4_unicast, "{n:?}");
    let r = frr.wait_route("10.2.0.0/24", T).unwrap();
    assert!(r.next_hops.iter().all(|h| h.is_ipv6()), "{r:?}");
    frr.wait_route("2001:db8:2::/48", T).unwrap();
    let p = bird.wait_established("fe80::1", T).unwrap();
    assert!(p.caps.extended_nexthop, "{p:?}");
    bird.wait_route("10.1.0.0/24", T).unwrap();
    bird.wait_route("2001:db8:1::/48", T).unwrap();
}

/// A wrong TCP MD5 key keeps the session down: proves the password is
/// really configured on both daemons.
#[test]
fn frr_bird_wrong_md5_key_never_establishes() {
    let (a, b) = pair("rw");
    let mut cfg = frr_cfg();
    cfg.neighbors[0].password = Some("right".into());
    let frr = Frr::start(&a, cfg).unwrap();
    let mut pcfg = peer_cfg();
    pcfg.neighbors[0].password = Some("wrong".into());
    let _bird = Bird::start(&b, pcfg).unwrap();
    // Plain sessions come up in ~1.5 s here; give it 6 s.
    let up = frr.wait_established("10.0.0.2", Duration::from_secs(6));
    assert!(up.is_err(), "session came up with mismatched MD5 keys");
}
