//! A leaf-spine fabric in miniature: two FRR ToRs and dual-homed hosts
//! running flatnetd, peering eBGP with both ToRs (AS per host), one shared
//! datastore. Host `i` (1-based) is `10.1.i.2` towards ToR 1 (`10.1.i.1`,
//! AS 65001) and `10.2.i.2` towards ToR 2 (`10.2.i.1`, AS 65002), AS
//! `65100 + i`. The hosts get no static route: what they reach they learn.

use std::time::Duration;

use flatnet_lab::{NeighborConfig, Netns, Router, RouterConfig, frr::Frr};
use serde_json::Value;

use super::Host;

pub const TOR_AS: [u32; 2] = [65001, 65002];

pub fn host_as(i: usize) -> u32 {
    65100 + i as u32
}

/// ToR `t` (0 or 1)'s address on its link to host `i`.
pub fn tor_addr(t: usize, i: usize) -> String {
    format!("10.{}.{i}.1", t + 1)
}

/// Host `i`'s address on its link to ToR `t`.
pub fn host_addr(t: usize, i: usize) -> String {
    format!("10.{}.{i}.2", t + 1)
}

/// The ToR namespaces, linked to `n` host namespaces (not started yet).
pub struct Fabric {
    pub tors: Vec<Netns>,
    pub hosts: Vec<Host>,
}

/// Two ToRs and `n` hosts running flatnetd with `pools` and graceful
/// restart on both peers; `extra_bgp` is appended to each host's config.
pub fn fabric(n: usize, pools: &str, extra_bgp: &str) -> Fabric {
    flatnet_lab::require_root().unwrap();
    let tors: Vec<Netns> = (0..2)
        .map(|t| Netns::new(&format!("tor{}", t + 1)).unwrap())
        .collect();
    for t in &tors {
        t.sysctl("net.ipv4.ip_forward", "1").unwrap();
    }
    let dsdir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dsdir.path().display());
    let mut hosts = Vec::new();
    for i in 1..=n {
        let tag = format!("h{i}");
        let ns = Netns::new(&tag).unwrap();
        let mut peers = String::new();
        for (t, tor) in tors.iter().enumerate() {
            let ifname = format!("eth{}", t + 1);
            let tif = format!("h{i}");
            flatnet_lab::veth(tor, &tif, &ns, &ifname).unwrap();
            tor.addr_add(&tif, &format!("{}/30", tor_addr(t, i)))
                .unwrap();
            ns.addr_add(&ifname, &format!("{}/30", host_addr(t, i)))
                .unwrap();
            peers.push_str(&format!(
                "[[bgp.peer]]\naddress = \"{}\"\nasn = {}\ngraceful_restart = true\nrestart_time = 60\n",
                tor_addr(t, i),
                TOR_AS[t]
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let rest = format!("{pools}{extra_bgp}{peers}");
        let node = format!("router_id = \"{}\"\nasn = {}", host_addr(0, i), host_as(i));
        hosts.push(Host::start_with(ns, dir, &tag, &node, &rest, &url));
    }
    // The datastore directory lives as long as the hosts' processes need it.
    std::mem::forget(dsdir);
    Fabric { tors, hosts }
}

/// FRR in ToR `t`, peered with every host (graceful restart on), once every
/// session is Established.
pub fn start_tor<'a>(tors: &'a [Netns], hosts: &[Host], t: usize) -> Frr<'a> {
    let mut cfg = RouterConfig::new(
        format!("{}.{}.{}.{}", t + 1, t + 1, t + 1, t + 1)
            .parse()
            .unwrap(),
        TOR_AS[t],
    );
    for i in 1..=hosts.len() {
        let mut n = NeighborConfig::new(host_addr(t, i).parse().unwrap(), host_as(i));
        n.graceful_restart = true;
        n.restart_time = 60;
        n.ipv6_unicast = false;
        cfg = cfg.neighbor(n);
    }
    let frr = Frr::start(&tors[t], cfg).unwrap();
    for (i, h) in hosts.iter().enumerate() {
        frr.wait_established(&host_addr(t, i + 1), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", h.log()));
    }
    frr
}

/// The learned (proto 200, metric 20) IPv4 routes of a host: prefix →
/// sorted gateways.
pub fn learned_routes(h: &Host) -> Vec<(String, Vec<String>)> {
    let v = h.ip_json(&["-4", "route", "show", "proto", "200"]);
    let mut out = Vec::new();
    for r in v.as_array().cloned().unwrap_or_default() {
        if r["metric"].as_u64() != Some(20) {
            continue;
        }
        let mut gws: Vec<String> = match r["nexthops"].as_array() {
            Some(n) => n
                .iter()
                .filter_map(|h| h["gateway"].as_str().map(String::from))
                .collect(),
            None => r["gateway"]
                .as_str()
                .map(String::from)
                .into_iter()
                .collect(),
        };
        gws.sort();
        let dst = r["dst"].as_str().unwrap_or_default();
        // `ip -j` shows host routes without their length.
        let dst = if dst.contains('/') {
            dst.to_string()
        } else {
            format!("{dst}/32")
        };
        out.push((dst, gws));
    }
    out.sort();
    out
}

/// The block (IPv4 /26) a host owns, from its IPAM view.
pub fn blocks(h: &Host) -> Vec<String> {
    let v: Value = h.cli_json(&["ipam", "show"]);
    let mut b: Vec<String> = v["blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|b| b["cidr"].as_str().map(String::from))
        .collect();
    b.sort();
    b
}

/// IPv4 prefixes a ToR learned (not its own).
pub fn tor_learned(frr: &Frr<'_>) -> Vec<String> {
    let mut v = super::learned_prefixes(frr);
    v.sort();
    v.dedup();
    v
}

pub fn ping(from: &Netns, to: &str) -> bool {
    from.exec("ping", &["-c", "1", "-W", "1", to]).is_ok()
}
