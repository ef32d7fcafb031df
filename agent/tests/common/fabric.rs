//! A leaf-spine fabric in miniature: two ToRs (FRR or BIRD 2) and dual-homed hosts
//! running flatnetd, peering eBGP with both ToRs (AS per host), one shared
//! datastore. Host `i` (1-based) is `10.1.i.2` towards ToR 1 (`10.1.i.1`,
//! AS 65001) and `10.2.i.2` towards ToR 2 (`10.2.i.1`, AS 65002), AS
//! `65100 + i`. The hosts get no static route: what they reach they learn.

use std::time::Duration;

use flatnet_lab::{NeighborConfig, Netns, Router, RouterConfig, Timers, bird::Bird, frr::Frr};
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

/// Which routing daemon plays the ToRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tor {
    Frr,
    Bird,
}

/// A running ToR of either kind; derefs to the [`Router`] driver.
pub struct TorRouter<'a>(Box<dyn Router + 'a>);

impl<'a> std::ops::Deref for TorRouter<'a> {
    type Target = dyn Router + 'a;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::ops::DerefMut for TorRouter<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.0
    }
}

/// Graceful restart on a host's peers (the default fabric).
pub const PEER_GR: &str = "graceful_restart = true\nrestart_time = 60\n";

/// Two ToRs and `n` hosts running flatnetd with `pools` and graceful
/// restart on both peers; `extra_bgp` is appended to each host's config.
pub fn fabric(n: usize, pools: &str, extra_bgp: &str) -> Fabric {
    fabric_with(n, pools, extra_bgp, PEER_GR)
}

/// Like [`fabric`], with `peer_opts` (e.g. [`PEER_GR`], `hold_time = 3`)
/// as the options of each host's `[[bgp.peer]]`.
pub fn fabric_with(n: usize, pools: &str, extra_bgp: &str, peer_opts: &str) -> Fabric {
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
                "[[bgp.peer]]\naddress = \"{}\"\nasn = {}\n{peer_opts}",
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

/// The ToR daemon `kind` in ToR `t`, peered with every host (graceful
/// restart on), once every session is Established.
pub fn start_tor<'a>(kind: Tor, tors: &'a [Netns], hosts: &[Host], t: usize) -> TorRouter<'a> {
    start_tor_with(kind, tors, hosts, t, Timers::default())
}

/// Like [`start_tor`] with the given BGP timers.
pub fn start_tor_with<'a>(
    kind: Tor,
    tors: &'a [Netns],
    hosts: &[Host],
    t: usize,
    timers: Timers,
) -> TorRouter<'a> {
    let mut cfg = RouterConfig::new(
        format!("{}.{}.{}.{}", t + 1, t + 1, t + 1, t + 1)
            .parse()
            .unwrap(),
        TOR_AS[t],
    );
    cfg.timers = timers;
    for i in 1..=hosts.len() {
        let mut n = NeighborConfig::new(host_addr(t, i).parse().unwrap(), host_as(i));
        n.graceful_restart = true;
        n.restart_time = 60;
        n.ipv6_unicast = false;
        cfg = cfg.neighbor(n);
    }
    let tor = TorRouter(match kind {
        Tor::Frr => Box::new(Frr::start(&tors[t], cfg).unwrap()),
        // A forwarding ToR: BIRD needs a kernel protocol for that.
        Tor::Bird => Box::new(Bird::start_with_kernel(&tors[t], cfg).unwrap()),
    });
    for (i, h) in hosts.iter().enumerate() {
        tor.wait_established(&host_addr(t, i + 1), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", h.log()));
    }
    tor
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
pub fn tor_learned(tor: &TorRouter<'_>) -> Vec<String> {
    let mut v = super::learned_prefixes(&**tor);
    v.sort();
    v.dedup();
    v
}

pub fn ping(from: &Netns, to: &str) -> bool {
    from.exec("ping", &["-c", "1", "-W", "1", to]).is_ok()
}

/// Packets received so far on ToR interface `ifname`.
pub fn rx_packets(tor: &Netns, ifname: &str) -> u64 {
    let v = super::ns_ip_json(tor, &["-s", "link", "show", ifname]);
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
}

/// A steady ICMP probe (`ping -D`) from inside a container namespace;
/// [`Probe::finish`] waits for it and parses every reply.
pub struct Probe {
    thread: std::thread::JoinHandle<String>,
    pub interval: Duration,
}

impl Probe {
    /// `count` echo requests to `to` every `interval`.
    pub fn start(from: &Netns, to: &str, interval: Duration, count: u32) -> Probe {
        let mut cmd = from.command("ping");
        cmd.args(["-D", "-n", "-W", "1", "-i"])
            .arg(format!("{:.3}", interval.as_secs_f64()))
            .args(["-c", &count.to_string(), to]);
        let thread = std::thread::spawn(move || {
            let out = cmd.output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        });
        Probe { thread, interval }
    }

    /// Waits for the probe's end: (sequence number, arrival time in Unix
    /// seconds) of every reply, by sequence number.
    pub fn finish(self) -> Vec<(u32, f64)> {
        let out = self.thread.join().unwrap();
        let mut v: Vec<(u32, f64)> = out.lines().filter_map(parse_reply).collect();
        v.sort_by_key(|r| r.0);
        v.dedup_by_key(|r| r.0);
        v
    }
}

/// `[1765000000.123456] 64 bytes from 10.244.0.1: icmp_seq=7 ttl=62 ...`.
fn parse_reply(line: &str) -> Option<(u32, f64)> {
    if !line.contains("bytes from") {
        return None;
    }
    let ts = line.strip_prefix('[')?.split(']').next()?.parse().ok()?;
    let seq = line
        .split("icmp_seq=")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((seq, ts))
}

/// The loss of a probe: (packets lost, the longest window from the first
/// lost packet to the first reply again, in ms). Packets lost after the
/// last reply count as lost with the window up to `end` (Unix seconds).
pub fn loss_window(replies: &[(u32, f64)], interval: Duration, sent: u32, end: f64) -> (u32, f64) {
    let iv = interval.as_secs_f64();
    let (mut lost, mut window) = (0u32, 0.0f64);
    for w in replies.windows(2) {
        let ((a, ta), (b, tb)) = (w[0], w[1]);
        if b > a + 1 {
            lost += b - a - 1;
            window = window.max((tb - ta - iv) * 1e3);
        }
    }
    if let Some(&(last, tl)) = replies.last()
        && last < sent
    {
        lost += sent - last;
        window = window.max((end - tl - iv) * 1e3);
    }
    if let Some(&(first, _)) = replies.first() {
        lost += first - 1;
    }
    (lost, window)
}
