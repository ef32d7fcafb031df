//! The peering models of docs/operations.md, each with FRR as the ToR and
//! flatnetd on the hosts: the session comes up and the host's block reaches
//! the ToR (and, through it, the other host where the model allows).
//! eBGP AS-per-rack, eBGP AS-per-host, iBGP to FRR as route reflector, and
//! unnumbered (IPv6 link-local only on the fabric link, RFC 8950; two
//! unnumbered hosts reach each other's containers by `via inet6` routes,
//! with FRR and with BIRD 2 as the ToR).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::fabric::Tor;
use common::{Host, POOLS_V4};
use flatnet_lab::bird::Bird;
use flatnet_lab::frr::Frr;
use flatnet_lab::{NeighborConfig, Netns, Router, RouterConfig, wait_for};

const T: Duration = Duration::from_secs(30);
const TOR_AS: u32 = 65001;

/// A ToR namespace and hosts linked to it (ToR 10.0.i.1/30 on eth<i>, host
/// i 10.0.i.2/30 on eth0), all hosts on one datastore; flatnetd peers with
/// the ToR from host i as AS `host_as[i-1]`.
struct Rack {
    tor: Netns,
    hosts: Vec<Host>,
    _ds: tempfile::TempDir,
}

fn rack(tag: &str, tor_as: u32, host_as: &[u32]) -> Rack {
    flatnet_lab::require_root().unwrap();
    let tor = Netns::new(&format!("{tag}t")).unwrap();
    let ds = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", ds.path().display());
    let mut hosts = Vec::new();
    for (i, asn) in (1u8..).zip(host_as) {
        let ns = Netns::new(&format!("{tag}{i}")).unwrap();
        flatnet_lab::veth(&tor, &format!("eth{i}"), &ns, "eth0").unwrap();
        tor.addr_add(&format!("eth{i}"), &format!("10.0.{i}.1/30"))
            .unwrap();
        ns.addr_add("eth0", &format!("10.0.{i}.2/30")).unwrap();
        let rest = format!("{POOLS_V4}[[bgp.peer]]\naddress = \"10.0.{i}.1\"\nasn = {tor_as}\n");
        hosts.push(Host::start_with(
            ns,
            tempfile::tempdir().unwrap(),
            &format!("{tag}{i}"),
            &format!("router_id = \"10.0.{i}.2\"\nasn = {asn}"),
            &rest,
            &url,
        ));
    }
    Rack {
        tor,
        hosts,
        _ds: ds,
    }
}

fn tor_config(tor_as: u32, host_as: &[u32]) -> RouterConfig {
    let mut c = RouterConfig::new("1.1.1.1".parse().unwrap(), tor_as);
    for (i, asn) in (1u8..).zip(host_as) {
        c = c.neighbor(NeighborConfig::new(
            format!("10.0.{i}.2").parse().unwrap(),
            *asn,
        ));
    }
    c
}

/// Each host starts a container; returns each host's block and the
/// containers (deleted on drop).
fn blocks(r: &Rack) -> (Vec<String>, Vec<Netns>) {
    r.hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let c = Netns::new(&format!("c{i}")).unwrap();
            h.add(&format!("pm{i}"), &c);
            let b = h.cli_json(&["ipam", "show"])["blocks"][0]["cidr"]
                .as_str()
                .unwrap()
                .to_string();
            (b, c)
        })
        .unzip()
}

/// Waits until `host`'s Loc-RIB (`flatnet bgp routes`) has `prefix`; its best path.
fn host_learns(host: &Host, prefix: &str) -> serde_json::Value {
    wait_for(&format!("host learns {prefix}"), T, || {
        let rib = host.cli_json(&["bgp", "routes"]);
        Ok(rib
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == prefix)
            .map(|r| r["paths"][0].clone()))
    })
    .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()))
}

fn wait_up(frr: &Frr, n: usize, host: &Host) {
    for i in 1..=n {
        frr.wait_established(&format!("10.0.{i}.2"), T)
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    }
}

#[test]
fn ebgp_as_per_rack() {
    // Every host of the rack is AS 65100; the ToR overrides the AS on the
    // way back so the hosts accept each other's blocks.
    let r = rack("pr", TOR_AS, &[65100, 65100]);
    let frr = Frr::start(&r.tor, tor_config(TOR_AS, &[65100, 65100])).unwrap();
    frr.configure_bgp(&[
        "address-family ipv4 unicast",
        "neighbor 10.0.1.2 as-override",
        "neighbor 10.0.2.2 as-override",
    ])
    .unwrap();
    wait_up(&frr, 2, &r.hosts[0]);
    let (b, _containers) = blocks(&r);
    assert_ne!(b[0], b[1]);
    for blk in &b {
        let route = frr.wait_route(blk, T).unwrap();
        assert_eq!(route.as_path, vec![65100], "{route:?}");
    }
    let p = host_learns(&r.hosts[1], &b[0]);
    assert_eq!(p["next_hop"], "10.0.2.1", "{p}");
    assert_eq!(p["as_path"], serde_json::json!([TOR_AS, TOR_AS]), "{p}");
}

#[test]
fn ebgp_as_per_host() {
    let r = rack("ph", TOR_AS, &[65101, 65102]);
    let frr = Frr::start(&r.tor, tor_config(TOR_AS, &[65101, 65102])).unwrap();
    wait_up(&frr, 2, &r.hosts[0]);
    let (b, _containers) = blocks(&r);
    assert_eq!(frr.wait_route(&b[0], T).unwrap().as_path, vec![65101]);
    assert_eq!(frr.wait_route(&b[1], T).unwrap().as_path, vec![65102]);
    let p = host_learns(&r.hosts[1], &b[0]);
    assert_eq!(p["as_path"], serde_json::json!([TOR_AS, 65101]), "{p}");
    assert_eq!(p["next_hop"], "10.0.2.1", "{p}");
}

#[test]
fn ibgp_to_a_route_reflector() {
    // One AS for the fabric; FRR reflects, flatnet is a client whose own
    // blocks carry itself as next hop.
    let r = rack("pi", 65000, &[65000, 65000]);
    let frr = Frr::start(&r.tor, tor_config(65000, &[65000, 65000])).unwrap();
    frr.configure_bgp(&[
        "bgp cluster-id 1.1.1.1",
        "address-family ipv4 unicast",
        "neighbor 10.0.1.2 route-reflector-client",
        "neighbor 10.0.2.2 route-reflector-client",
    ])
    .unwrap();
    wait_up(&frr, 2, &r.hosts[0]);
    let (b, _containers) = blocks(&r);
    let route = frr.wait_route(&b[0], T).unwrap();
    assert!(route.as_path.is_empty(), "iBGP: {route:?}");
    assert!(
        route
            .next_hops
            .contains(&"10.0.1.2".parse::<IpAddr>().unwrap()),
        "next-hop-self: {route:?}"
    );
    // Reflected to the other client unchanged: the next hop is host 1.
    let p = host_learns(&r.hosts[1], &b[0]);
    assert_eq!(p["next_hop"], "10.0.1.2", "{p}");
    assert_eq!(p["as_path"], serde_json::json!([]), "{p}");
}

fn link_local(ns: &Netns, ifname: &str) -> std::net::Ipv6Addr {
    ns.link_local(ifname, T).unwrap()
}

#[test]
fn unnumbered_ipv6_link_local_fabric_carries_ipv4_blocks() {
    flatnet_lab::require_root().unwrap();
    let tor = Netns::new("punt").unwrap();
    let ns = Netns::new("punh").unwrap();
    // No IPv4 address on the fabric link at all.
    flatnet_lab::veth(&tor, "eth1", &ns, "eth0").unwrap();
    let tor_ll = link_local(&tor, "eth1");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dir.path().display());
    let rest = format!(
        "{POOLS_V4}[[bgp.peer]]\naddress = \"{tor_ll}\"\ninterface = \"eth0\"\nasn = {TOR_AS}\nextended_next_hop = true\n"
    );
    let host = Host::start_with(
        ns,
        dir,
        "punh",
        "router_id = \"192.0.2.21\"\nasn = 65101",
        &rest,
        &url,
    );
    let host_ll = link_local(&host.ns, "eth0");
    // FRR peers with the host's link-local on its interface, extended next hop.
    let mut n = NeighborConfig::new(IpAddr::V6(host_ll), 65101);
    n.interface = Some("eth1".into());
    n.extended_nexthop = true;
    let frr = Frr::start(
        &tor,
        RouterConfig::new("1.1.1.1".parse().unwrap(), TOR_AS).neighbor(n),
    )
    .unwrap();
    let st = wait_for("FRR unnumbered session Established", T, || {
        Ok(frr.neighbors()?.into_iter().find(|n| n.established()))
    })
    .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    assert!(st.caps.extended_nexthop, "{st:?}");
    let nb = host.cli_json(&["bgp", "neighbors"]);
    assert_eq!(nb[0]["state"], "Established", "{nb}");
    assert!(
        nb[0]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "extended-next-hop"),
        "{nb}"
    );
    let c = Netns::new("punc").unwrap();
    host.add("un1", &c);
    let block = host.cli_json(&["ipam", "show"])["blocks"][0]["cidr"]
        .as_str()
        .unwrap()
        .to_string();
    let r = frr
        .wait_route(&block, T)
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    assert_eq!(r.as_path, vec![65101], "{r:?}");
    assert!(
        r.next_hops.contains(&IpAddr::V6(host_ll)),
        "IPv4 block via the host's link-local: {r:?} (want {host_ll})"
    );
    assert!(
        !host
            .ns
            .exec_stdout("ip", &["-4", "-o", "addr", "show", "dev", "eth0"])
            .unwrap()
            .contains("inet "),
        "no IPv4 on the fabric link"
    );
}

#[test]
fn passive_peer_accepts_the_tors_connection_on_bgp_listen() {
    flatnet_lab::require_root().unwrap();
    let tor = Netns::new("ppt").unwrap();
    let ns = Netns::new("pph").unwrap();
    flatnet_lab::veth(&tor, "eth1", &ns, "eth0").unwrap();
    tor.addr_add("eth1", "10.0.1.1/30").unwrap();
    ns.addr_add("eth0", "10.0.1.2/30").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dir.path().display());
    let rest = format!(
        "{POOLS_V4}[bgp]\nlisten = [\"10.0.1.2:179\"]\n[[bgp.peer]]\naddress = \"10.0.1.1\"\nasn = {TOR_AS}\npassive = true\n"
    );
    let host = Host::start_with(
        ns,
        dir,
        "pph",
        "router_id = \"10.0.1.2\"\nasn = 65101",
        &rest,
        &url,
    );
    // FRR connects; flatnetd never does (passive), so the session is FRR's.
    let frr = Frr::start(&tor, tor_config(TOR_AS, &[65101])).unwrap();
    wait_up(&frr, 1, &host);
    let c = Netns::new("ppc").unwrap();
    host.add("pp1", &c);
    let block = host.cli_json(&["ipam", "show"])["blocks"][0]["cidr"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(frr.wait_route(&block, T).unwrap().as_path, vec![65101]);
    let n = frr.vtysh_json("show bgp neighbors json").unwrap();
    // FRR opened the connection: its local port is ephemeral, the host's 179.
    assert_eq!(n["10.0.1.2"]["portForeign"], 179, "{}", n["10.0.1.2"]);
}

/// Two unnumbered hosts behind one FRR ToR (IPv6 link-local only on every
/// fabric link, extended next hop): each host's container reaches the
/// other's over IPv4 by the route flatnetd learned, installed as proto 200
/// `via inet6 fe80::… dev eth0`; no static route on either host.
#[test]
fn unnumbered_hosts_reach_each_other_by_learned_routes_via_inet6() {
    unnumbered_hosts(Tor::Frr);
}

/// The same with BIRD 2 as the ToR (its kernel protocol forwards IPv4 via
/// the hosts' IPv6 link-locals).
#[test]
fn bird_unnumbered_hosts_reach_each_other_by_learned_routes_via_inet6() {
    unnumbered_hosts(Tor::Bird);
}

fn unnumbered_hosts(kind: Tor) {
    flatnet_lab::require_root().unwrap();
    let tag = match kind {
        Tor::Frr => "pul",
        Tor::Bird => "pbl",
    };
    let tor = Netns::new(&format!("{tag}t")).unwrap();
    tor.sysctl("net.ipv4.ip_forward", "1").unwrap();
    let ds = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", ds.path().display());
    let mut hosts = Vec::new();
    let mut tor_cfg = RouterConfig::new("1.1.1.1".parse().unwrap(), TOR_AS);
    for i in 1..=2u32 {
        let ns = Netns::new(&format!("{tag}{i}")).unwrap();
        let tif = format!("eth{i}");
        flatnet_lab::veth(&tor, &tif, &ns, "eth0").unwrap();
        let tor_ll = link_local(&tor, &tif);
        let rest = format!(
            "{POOLS_V4}[[bgp.peer]]\naddress = \"{tor_ll}\"\ninterface = \"eth0\"\nasn = {TOR_AS}\nextended_next_hop = true\n"
        );
        let asn = 65100 + i;
        let host = Host::start_with(
            ns,
            tempfile::tempdir().unwrap(),
            &format!("{tag}{i}"),
            &format!("router_id = \"192.0.2.{i}\"\nasn = {asn}"),
            &rest,
            &url,
        );
        let mut n = NeighborConfig::new(IpAddr::V6(link_local(&host.ns, "eth0")), asn);
        n.interface = Some(tif);
        n.extended_nexthop = true;
        n.ipv6_unicast = false;
        tor_cfg = tor_cfg.neighbor(n);
        hosts.push((host, tor_ll));
    }
    let router: Box<dyn Router + '_> = match kind {
        Tor::Frr => Box::new(Frr::start(&tor, tor_cfg).unwrap()),
        Tor::Bird => Box::new(Bird::start_with_kernel(&tor, tor_cfg).unwrap()),
    };
    wait_for("both unnumbered sessions Established", T, || {
        let n = router.neighbors()?;
        Ok((n.iter().filter(|n| n.established()).count() == 2).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", hosts[0].0.log()));

    let cs: Vec<Netns> = (1..=2)
        .map(|i| Netns::new(&format!("{tag}c{i}")).unwrap())
        .collect();
    let ips: Vec<String> = hosts
        .iter()
        .zip(&cs)
        .enumerate()
        .map(|(i, ((h, _), c))| common::result_v4(&h.add(&format!("ul{i}"), c)))
        .collect();
    let blocks: Vec<String> = hosts
        .iter()
        .map(|(h, _)| {
            h.cli_json(&["ipam", "show"])["blocks"][0]["cidr"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_ne!(blocks[0], blocks[1]);
    for (i, (h, tor_ll)) in hosts.iter().enumerate() {
        let other = &blocks[1 - i];
        // The learned route in the kernel: proto 200, via inet6 the ToR's
        // link-local on the fabric link.
        let r = wait_for("learned via inet6 route", T, || {
            Ok(h.flatnet_routes("-4")
                .into_iter()
                .find(|r| r["dst"] == other.as_str()))
        })
        .unwrap_or_else(|e| {
            panic!(
                "host {}: {e}\nroutes: {:?}\nlog:\n{}",
                i + 1,
                h.flatnet_routes("-4"),
                h.log()
            )
        });
        // (`flatnet_routes` lists `proto 200` only.)
        assert_eq!(r["metric"], 20, "{r}");
        assert_eq!(r["via"]["family"], "inet6", "{r}");
        assert_eq!(r["via"]["host"], tor_ll.to_string(), "{r}");
        assert_eq!(r["dev"], "eth0", "{r}");
        assert!(r["nhid"].is_u64(), "by a nexthop object: {r}");
        // `flatnet fib` shows the object and the link-local next hop.
        let fib = h.cli_json(&["fib"]);
        let f = fib
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["prefix"] == other.as_str())
            .unwrap_or_else(|| panic!("{fib}"));
        assert_eq!(f["nexthop_id"], r["nhid"], "{f}");
        assert_eq!(f["nexthops"][0]["gateway"], tor_ll.to_string(), "{f}");
        assert_eq!(f["nexthops"][0]["dev"], "eth0", "{f}");
        // No static route, no IPv4 on the fabric link.
        let d = h.ip_json(&["-4", "route", "show", "default"]);
        assert_eq!(d.as_array().map(Vec::len), Some(0), "{d}");
        let a =
            h.ns.exec_stdout("ip", &["-4", "-o", "addr", "show", "dev", "eth0"])
                .unwrap();
        assert!(!a.contains("inet "), "no IPv4 on the fabric link: {a}");
    }
    for (a, b) in [(0, 1), (1, 0)] {
        wait_for("ping over the unnumbered fabric", T, || {
            Ok(cs[a]
                .exec("ping", &["-c", "1", "-W", "1", &ips[b]])
                .is_ok()
                .then_some(()))
        })
        .unwrap_or_else(|e| panic!("c{} -> c{} ({}): {e}", a + 1, b + 1, ips[b]));
    }
}
