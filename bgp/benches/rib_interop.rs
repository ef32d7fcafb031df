//! Side-by-side full-table ingest: the same 1,000,000-prefix feed (see
//! `rib_feed`) into flatnet's RIB and into BIRD 2, FRR and GoBGP over a
//! real BGP session. A minimal feeder (our codec; OPEN exchange, then the
//! pre-encoded UPDATEs, KEEPALIVEs every second) connects from its own
//! network namespace to each receiver in another; we time from the first
//! UPDATE byte until the receiver reports all prefixes, and read the
//! receiver's peak RSS (VmHWM of its processes in the namespace).
//!
//! flatnet's figure is in-process (decode + `Rib::apply_update`, no TCP):
//! the speaker-over-TCP figure needs the session driver's binary; see
//! docs/benchmarks.md for how it plugs in here.
//!
//! Needs root (network namespaces) and bird, frr (bgpd, zebra), gobgpd.
//! Run: `cargo bench -p flatnet-bgp --bench rib_interop`
//! (FLATNET_RIB_BENCH_N=... to change the size; FLATNET_RIB_BENCH_ONLY=bird,frr,gobgp to choose).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rib_feed;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flatnet_bgp::policy::Policy;
use flatnet_bgp::rib::{DecisionConfig, PeerId, PeerInfo, Rib, RibConfig};
use flatnet_bgp::wire::{Capability, DecodeContext, Family, Message, Open, frame};
use flatnet_lab::bird::Bird;
use flatnet_lab::frr::Frr;
use flatnet_lab::gobgp::Gobgp;
use flatnet_lab::{NeighborConfig, Netns, RouterConfig, Timers, require_root, veth};
use rib_feed::{PEER_AS, feed};

const RX_AS: u32 = 65001;
const RX_ADDR: &str = "10.0.0.1";
const TX_ADDR: &str = "10.0.0.2";

fn status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// (name, pid) of every process whose network namespace is `ns`.
fn procs_in(ns: &Netns) -> Vec<(String, String)> {
    let Ok(ino) = std::fs::metadata(ns.path()).map(|m| m.ino()) else {
        return Vec::new();
    };
    let want = format!("net:[{ino}]");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .is_ok_and(|l| l.to_string_lossy() == want)
        {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            out.push((name, pid));
        }
    }
    out
}

/// Sum of `field` over the receiver's daemons (bird / bgpd+zebra / gobgpd).
fn daemon_kb(ns: &Netns, field: &str) -> (u64, String) {
    let mut total = 0;
    let mut names = Vec::new();
    for (name, pid) in procs_in(ns) {
        if matches!(name.as_str(), "bird" | "bgpd" | "zebra" | "gobgpd") {
            let kb = status_kb(&pid, field);
            total += kb;
            names.push(format!("{name} {} MB", kb / 1024));
        }
    }
    (total, names.join(" + "))
}

fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>, ctx: &DecodeContext) -> Message {
    loop {
        if let Some(n) = frame(buf, ctx).unwrap() {
            let m = Message::decode(&buf[..n], ctx).unwrap();
            buf.drain(..n);
            return m;
        }
        let mut tmp = [0u8; 4096];
        let k = s.read(&mut tmp).unwrap();
        assert!(
            k > 0,
            "receiver closed the session during the OPEN exchange"
        );
        buf.extend_from_slice(&tmp[..k]);
    }
}

/// Connects from the feeder namespace, exchanges OPEN/KEEPALIVE, then
/// writes the feed and keeps the session alive until `stop`. Returns when
/// the first UPDATE is about to be written (the clock starts then).
fn start_feeder(tx: &Netns, msgs: Arc<Vec<Vec<u8>>>, stop: Arc<AtomicBool>) -> Instant {
    let path = tx.path();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        flatnet_lab::netns::enter(&path).unwrap();
        let ctx = DecodeContext {
            four_octet_as: true,
            ..DecodeContext::default()
        };
        let addr: SocketAddr = format!("{RX_ADDR}:179").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200)); // retry pacing, not synchronisation
                }
                Err(e) => panic!("connect to receiver: {e}"),
            }
        };
        s.set_nodelay(true).unwrap();
        let caps = vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(PEER_AS),
        ];
        let open = Message::Open(Open::new(PEER_AS, 90, TX_ADDR.parse().unwrap(), caps));
        s.write_all(&open.to_bytes(&ctx).unwrap()).unwrap();
        let mut buf = Vec::new();
        loop {
            match read_message(&mut s, &mut buf, &ctx) {
                Message::Open(_) => break,
                Message::Notification(n) => panic!("receiver refused: {n}"),
                _ => {}
            }
        }
        let ka = Message::Keepalive.to_bytes(&ctx).unwrap();
        s.write_all(&ka).unwrap();
        loop {
            match read_message(&mut s, &mut buf, &ctx) {
                Message::Keepalive => break,
                Message::Notification(n) => panic!("receiver refused: {n}"),
                _ => {}
            }
        }
        // Drain whatever the receiver sends from now on.
        let mut r = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut tmp = [0u8; 65536];
            while r.read(&mut tmp).is_ok_and(|k| k > 0) {}
        });
        let t0 = Instant::now();
        started_tx.send(t0).unwrap();
        let mut last_ka = Instant::now();
        for m in msgs.iter() {
            s.write_all(m).unwrap();
            if last_ka.elapsed() > Duration::from_secs(1) {
                s.write_all(&ka).unwrap();
                last_ka = Instant::now();
            }
        }
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(&ka).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500)); // keepalive interval
        }
    });
    started_rx
        .recv_timeout(Duration::from_secs(90))
        .expect("feeder did not reach Established")
}

/// Poll the receiver every 200 ms (its CLI costs CPU we are measuring) until `f` says done.
fn poll(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<()>) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if f().is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting until {what}"));
        }
        std::thread::sleep(Duration::from_millis(200)); // poll interval with a deadline
    }
}

fn parse_count(s: &str, key: &str) -> Option<u64> {
    let i = s.find(key)? + key.len();
    s[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

struct Row {
    name: String,
    secs: f64,
    peak_mb: f64,
    per_route: f64,
    detail: String,
}

fn run_receiver(which: &str, msgs: &Arc<Vec<Vec<u8>>>, n: u64) -> Result<Row, String> {
    let rx = Netns::new("rbrx").map_err(|e| e.to_string())?;
    let tx = Netns::new("rbtx").map_err(|e| e.to_string())?;
    veth(&rx, "eth0", &tx, "eth0").map_err(|e| e.to_string())?;
    rx.addr_add("eth0", &format!("{RX_ADDR}/30"))
        .map_err(|e| e.to_string())?;
    tx.addr_add("eth0", &format!("{TX_ADDR}/30"))
        .map_err(|e| e.to_string())?;
    let mut nb = NeighborConfig::new(TX_ADDR.parse().unwrap(), PEER_AS);
    nb.ipv6_unicast = false;
    nb.passive = true;
    let mut cfg = RouterConfig::new(Ipv4Addr::new(1, 1, 1, 1), RX_AS).neighbor(nb);
    cfg.timers = Timers {
        keepalive: 30,
        hold: 90,
        connect_retry: 1,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let timeout = Duration::from_secs(600);
    // Each arm: start, baseline RSS, feed, poll the receiver's own count.
    let (secs, base_kb, (hwm, detail)) = match which {
        "bird" => {
            let r = Bird::start(&rx, cfg).map_err(|e| e.to_string())?;
            let base = daemon_kb(&rx, "VmRSS:").0;
            let t0 = start_feeder(&tx, Arc::clone(msgs), Arc::clone(&stop));
            poll("bird has all routes", timeout, || {
                let out = r.birdc(&["show", "route", "count"]).unwrap_or_default();
                // "1000000 of 1000000 routes for 1000000 networks in table master4"
                let c: Option<u64> = out
                    .lines()
                    .find(|l| l.contains("routes for"))
                    .and_then(|l| l.split_whitespace().next()?.parse().ok());
                c.is_some_and(|c| c >= n).then_some(())
            })?;
            (t0.elapsed().as_secs_f64(), base, daemon_kb(&rx, "VmHWM:"))
        }
        "frr" => {
            let r = Frr::start(&rx, cfg).map_err(|e| e.to_string())?;
            let base = daemon_kb(&rx, "VmRSS:").0;
            let t0 = start_feeder(&tx, Arc::clone(msgs), Arc::clone(&stop));
            poll("frr has all routes", timeout, || {
                let v = r.vtysh_json("show bgp ipv4 unicast summary json").ok()?;
                let c = v["peers"][TX_ADDR]["pfxRcd"].as_u64()?;
                (c >= n).then_some(())
            })?;
            (t0.elapsed().as_secs_f64(), base, daemon_kb(&rx, "VmHWM:"))
        }
        _ => {
            let r = Gobgp::start(&rx, cfg).map_err(|e| e.to_string())?;
            let base = daemon_kb(&rx, "VmRSS:").0;
            let t0 = start_feeder(&tx, Arc::clone(msgs), Arc::clone(&stop));
            poll("gobgp has all routes", timeout, || {
                let out = r
                    .cli(&["global", "rib", "summary", "-a", "ipv4"])
                    .unwrap_or_default();
                // "Table ipv4-unicast\nDestination: 1000000, Path: 1000000"
                parse_count(&out, "Destination:")
                    .is_some_and(|c| c >= n)
                    .then_some(())
            })?;
            (t0.elapsed().as_secs_f64(), base, daemon_kb(&rx, "VmHWM:"))
        }
    };
    stop.store(true, Ordering::Relaxed);
    Ok(Row {
        name: which.to_string(),
        secs,
        peak_mb: hwm as f64 / 1024.0,
        per_route: (hwm.saturating_sub(base_kb)) as f64 * 1024.0 / n as f64,
        detail: format!("peak {detail}"),
    })
}

fn ours(msgs: &[Vec<u8>], n: u64) -> Row {
    let ctx = DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    };
    let rss0 = status_kb("self", "VmRSS:");
    let mut rib = Rib::new(RibConfig {
        local_as: RX_AS,
        router_id: Ipv4Addr::new(1, 1, 1, 1),
        decision: DecisionConfig::default(),
    });
    let mut i = PeerInfo::new(
        RX_AS,
        PEER_AS,
        TX_ADDR.parse().unwrap(),
        TX_ADDR.parse().unwrap(),
    );
    i.import = Some(Policy::accept_all("all"));
    i.families = vec![Family::IPV4_UNICAST];
    rib.peer_up(PeerId(1), i);
    let t0 = Instant::now();
    for m in msgs {
        let Message::Update(u) = Message::decode(m, &ctx).unwrap() else {
            panic!("not an UPDATE")
        };
        rib.apply_update(PeerId(1), &u).unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(rib.loc_rib_len() as u64, n);
    let rss = status_kb("self", "VmRSS:").saturating_sub(rss0);
    Row {
        name: "flatnet RIB (in-process)".into(),
        secs,
        peak_mb: status_kb("self", "VmHWM:") as f64 / 1024.0,
        per_route: rss as f64 * 1024.0 / n as f64,
        detail: "decode + apply_update, no TCP; peak = whole bench process incl. feed".into(),
    }
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        println!(
            "rib_interop: run with `cargo bench` (needs root and the routers); skipped under `cargo test`"
        );
        return;
    }
    require_root().expect("rib_interop needs root for network namespaces");
    let n: u32 = std::env::var("FLATNET_RIB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("FLATNET_RIB_BENCH_ONLY").unwrap_or_else(|_| "bird,frr,gobgp".into());
    let sets = 4_000.min(n / 10).max(1);
    let msgs = Arc::new(feed(n, sets, TX_ADDR.parse().unwrap()));
    println!(
        "feed: {n} IPv4 prefixes (70% /24, 30% /32), {sets} attribute sets, {} UPDATEs",
        msgs.len()
    );
    let mut rows = vec![ours(&msgs, u64::from(n))];
    for which in only.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match run_receiver(which, &msgs, u64::from(n)) {
            Ok(r) => rows.push(r),
            Err(e) => println!("{which}: FAILED: {e}"),
        }
    }
    println!(
        "\n| receiver | time to {n} prefixes | prefixes/s | peak RSS | RSS growth per route | notes |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} s | {:.0} | {:.0} MB | {:.0} B | {} |",
            r.name,
            r.secs,
            f64::from(n) / r.secs,
            r.peak_mb,
            r.per_route,
            r.detail
        );
    }
}
