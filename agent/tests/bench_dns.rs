//! DNS benchmark (ignored by default; run as root, release build):
//! `cargo test --release -p flatnet-agent --test bench_dns -- --ignored --nocapture`
//! (or `flatnet-lab bench dns`, which keeps its report as JSON)
//!
//! One host namespace with flatnetd (`[dns]` on 169.254.1.1:53, forwarding
//! off) following `BENCH_APPS` apps × `BENCH_PER_APP` endpoint records
//! (default 100 × 10, written to the datastore as another host's records
//! would be), and in the same namespace dnsmasq 2.90 (Debian's
//! dnsmasq-base) on 169.254.1.2:53 serving the same names and addresses
//! from a hosts file (`--addn-hosts`, `--local-ttl=5`). The clients run in
//! a container namespace (a real CNI ADD): `BENCH_CLIENTS` threads
//! (default 16), each with its own UDP socket, closed loop (send an A
//! query for one of the app names in turn, wait for the answer), for
//! `BENCH_SECS` seconds (default 3) per round; rounds alternate between
//! the two servers (`BENCH_ROUNDS`, default 3). Reported: queries per
//! second and p50 / p99 latency of each (the median round), and the ratio.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::dns::*;
use common::policy::in_ns;
use common::{Host, POOLS_V4};
use flatnet_lab::Netns;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

struct Round {
    qps: f64,
    p50_us: u64,
    p99_us: u64,
    lost: u64,
}

/// `clients` threads in `ns` querying `server` for `secs`.
fn load(ns: &Netns, server: SocketAddr, names: &[String], clients: usize, secs: u64) -> Round {
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(secs);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let queries: Vec<Vec<u8>> = names
                .iter()
                .map(|n| {
                    let mut q = Message::query();
                    q.metadata.recursion_desired = true;
                    q.add_query(Query::query(Name::from_ascii(n).unwrap(), RecordType::A));
                    q.to_vec().unwrap()
                })
                .collect();
            in_ns(ns, move || {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.connect(server).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut lat = Vec::with_capacity(200_000);
                let mut lost = 0u64;
                let mut buf = [0u8; 2048];
                let mut i = c;
                while Instant::now() < start {
                    std::thread::sleep(Duration::from_millis(1));
                }
                while Instant::now() < end {
                    let q = &queries[i % queries.len()];
                    i += 1;
                    let t = Instant::now();
                    s.send(q).unwrap();
                    // The answer to this query: same ID (first two octets).
                    loop {
                        match s.recv(&mut buf) {
                            Ok(n) if n >= 2 && buf[..2] == q[..2] => {
                                lat.push(t.elapsed().as_micros() as u64);
                                break;
                            }
                            Ok(_) => continue,
                            Err(_) => {
                                lost += 1;
                                break;
                            }
                        }
                    }
                }
                (lat, lost)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut lost = 0;
    for h in handles {
        let (l, x) = h.join().unwrap();
        all.extend(l);
        lost += x;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Round {
        qps: all.len() as f64 / secs as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        lost,
    }
}

fn median_round(mut v: Vec<Round>) -> Round {
    v.sort_by(|a, b| a.qps.total_cmp(&b.qps));
    v.swap_remove(v.len() / 2)
}

#[test]
#[ignore]
fn bench_dns_qps_and_p99_flatnetd_vs_dnsmasq() {
    let (apps, per_app) = (env("BENCH_APPS", 100), env("BENCH_PER_APP", 10));
    let (clients, secs, rounds) = (
        env("BENCH_CLIENTS", 16),
        env("BENCH_SECS", 3) as u64,
        env("BENCH_ROUNDS", 3),
    );
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("dnsb").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dir.path().display());
    // The records, as another host would have written them.
    let store = flatnet_ipam::FileStore::open(dir.path().join("datastore")).unwrap();
    let mut hosts = String::new();
    let mut names = Vec::new();
    for a in 0..apps {
        let app = format!("app{a}");
        names.push(format!("{app}.apps.internal."));
        let mut txn = flatnet_ipam::Txn::new();
        for i in 0..per_app {
            let id = format!("{a:04x}{i:060x}");
            let v4 = std::net::Ipv4Addr::from(0x0a14_0000 + (a * per_app + i) as u32);
            hosts += &format!("{v4} {app}.apps.internal\n");
            let ep = flatnet_agent::api::Endpoint {
                node: "other".into(),
                container_id: id.clone(),
                ifname: "eth0".into(),
                netns: String::new(),
                host_ifname: String::new(),
                host_mac: String::new(),
                container_mac: String::new(),
                v4: Some(v4),
                v6: None,
                app: Some(app.clone()),
                network: None,
                mtu: None,
                dns: None,
            };
            txn = txn.then(flatnet_ipam::Op::put(
                flatnet_agent::store::endpoint_key("other", &id, "eth0"),
                serde_json::to_vec(&ep).unwrap(),
            ));
        }
        store.txn_sync(&txn).unwrap();
    }
    drop(store);
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "").unwrap();
    let rest = format!("{POOLS_V4}{}", dns_section(false, &resolv));
    let host = Host::start_in(ns, dir, "dnsb", &rest, &url);
    // dnsmasq beside it, on an address of its own, from a hosts file.
    host.ns.addr_add("lo", "169.254.1.2/32").unwrap();
    let hosts_file = host.dir.path().join("hosts");
    std::fs::write(&hosts_file, &hosts).unwrap();
    let _dnsmasq = dnsmasq(
        &host.ns,
        "169.254.1.2",
        host.dir.path(),
        &[
            format!("--addn-hosts={}", hosts_file.display()),
            "--local-ttl=5".into(),
            "--cache-size=10000".into(),
        ],
    );
    let client = Netns::new("dnsc").unwrap();
    host.add("client", &client);
    let ours: SocketAddr = LISTEN.parse().unwrap();
    let theirs: SocketAddr = "169.254.1.2:53".parse().unwrap();
    // Both serve the same answers before anything is measured.
    for server in [ours, theirs] {
        flatnet_lab::wait_for("server answers", Duration::from_secs(10), || {
            let m = query(
                &client,
                &server.to_string(),
                &names[0],
                RecordType::A,
                false,
            );
            Ok(m.filter(|m| addrs(m).len() == per_app).map(|_| ()))
        })
        .unwrap_or_else(|e| panic!("{server}: {e}\n{}", host.log()));
    }
    let (mut f, mut d) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        f.push(load(&client, ours, &names, clients, secs));
        d.push(load(&client, theirs, &names, clients, secs));
    }
    let (f, d) = (median_round(f), median_round(d));
    println!(
        "\nDNS, {clients} clients, {apps} apps x {per_app} addresses, {rounds} x {secs} s alternating, median round (load {})",
        flatnet_lab::report::loadavg()
    );
    println!("| server | queries/s | p50 | p99 | lost |");
    println!("|---|---|---|---|---|");
    for (name, r) in [("flatnetd", &f), ("dnsmasq 2.90", &d)] {
        println!(
            "| {name} | {:.0} | {} µs | {} µs | {} |",
            r.qps, r.p50_us, r.p99_us, r.lost
        );
    }
    println!(
        "flatnetd / dnsmasq: {:.2}x queries/s, p99 {:.2}x",
        f.qps / d.qps,
        f.p99_us as f64 / d.p99_us.max(1) as f64
    );
    let mut r = flatnet_lab::report::Report::new(
        "dns",
        format!(
            "DNS: {clients} clients, {apps} apps x {per_app} addresses, median of {rounds} x {secs} s rounds"
        ),
        &["server", "queries/s", "p50 µs", "p99 µs", "lost"],
    );
    for (name, x) in [("flatnetd", &f), ("dnsmasq (hosts file)", &d)] {
        r.row(vec![
            name.into(),
            format!("{:.0}", x.qps),
            x.p50_us.to_string(),
            x.p99_us.to_string(),
            x.lost.to_string(),
        ]);
    }
    r.ratio("queries/s, flatnetd / dnsmasq", f.qps / d.qps, None);
    r.ratio(
        "p99, flatnetd / dnsmasq",
        f.p99_us as f64 / d.p99_us.max(1) as f64,
        None,
    );
    r.emit();
    assert!(f.qps > 0.0 && d.qps > 0.0);
    host.del("client", &client.path());
}
