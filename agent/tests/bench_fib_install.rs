//! Benchmark (issue 9): 100,000 learned routes into the kernel, flatnet's
//! FIB (one pipelined netlink batch; by nexthop object, and by plain
//! gateway as before nexthop objects) against BIRD 2's kernel
//! protocol exporting the same routes (from a static protocol), in the same
//! run, each into a namespace of its own with the same on-link gateway.
//! Ignored by default; run in release:
//!
//!     cargo test --release -p flatnet-agent --test bench_fib_install -- --ignored --nocapture
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flatnet_agent::fib::Fib;
use flatnet_agent::fib::plan::{FibPlan, NextHop, NextHops};
use flatnet_agent::fib::writer::{FibWriter, Outcome};
use flatnet_lab::{Netns, wait_for};
use ipnetwork::IpNetwork;

const ROUTES: u32 = 100_000;
const GW: &str = "10.0.0.1";

/// A namespace with a fabric link 10.0.0.2/24 (a veth pair inside it, no
/// dummy module here), so 10.0.0.1 is on-link.
fn fabric_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag).unwrap();
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    ns.ip(&["link", "set", "eth0p", "up"]).unwrap();
    ns.addr_add("eth0", "10.0.0.2/24").unwrap();
    ns
}

/// 10.{16..}.x.y/32, `ROUTES` of them.
fn prefixes() -> Vec<IpNetwork> {
    (0..ROUTES)
        .map(|i| {
            let a = std::net::Ipv4Addr::from((10u32 << 24) + (16 << 16) + i);
            IpNetwork::new(a.into(), 32).unwrap()
        })
        .collect()
}

fn count_routes(ns: &Netns, proto: &str) -> usize {
    let out = ns
        .exec_stdout("ip", &["-4", "route", "show", "proto", proto])
        .unwrap();
    out.lines().count()
}

/// flatnet's FIB installing every route in one batch: by nexthop object
/// (`Fib`, as flatnetd runs it: the object created, then the routes by
/// RTA_NH_ID) or by plain RTA_GATEWAY (the `FibWriter` alone, as before
/// nexthop objects). Time and routes installed.
fn flatnet_rate(ns: &Netns, objects: bool) -> (Duration, usize) {
    let nets = prefixes();
    ns.run_in(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let hop: NextHops = [NextHop::via(GW.parse().unwrap())].into();
            let plan = FibPlan {
                add: nets.into_iter().map(|n| (n, hop.clone())).collect(),
                ..FibPlan::default()
            };
            if objects {
                let fib = Fib::open().await.unwrap();
                assert!(fib.uses_nexthop_objects(), "kernel without nexthop objects");
                let t = Instant::now();
                let st = fib.apply(plan).await;
                (t.elapsed(), st.installed)
            } else {
                let w = FibWriter::new().unwrap();
                let t = Instant::now();
                let out = w.apply(plan, |_| None).await;
                let took = t.elapsed();
                let ok = out
                    .iter()
                    .filter(|o| matches!(o, Outcome::Installed(..)))
                    .count();
                (took, ok)
            }
        })
    })
    .unwrap()
}

fn bird_rate(ns: &Netns) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut conf = String::new();
    writeln!(conf, "router id 10.0.0.2;").unwrap();
    writeln!(conf, "protocol device {{ }}").unwrap();
    writeln!(
        conf,
        "protocol kernel {{ ipv4 {{ export all; }}; merge paths off; }}"
    )
    .unwrap();
    writeln!(conf, "protocol static {{ ipv4;").unwrap();
    for n in prefixes() {
        writeln!(conf, " route {n} via {GW};").unwrap();
    }
    writeln!(conf, "}}").unwrap();
    let cfg = dir.path().join("bird.conf");
    std::fs::write(&cfg, conf).unwrap();
    let ctl = dir.path().join("bird.ctl");
    let t = Instant::now();
    let mut d = ns
        .spawn(
            ns.command("bird")
                .arg("-f")
                .arg("-c")
                .arg(&cfg)
                .arg("-s")
                .arg(&ctl)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    wait_for(
        "BIRD installs every route",
        Duration::from_secs(120),
        || Ok((count_routes(ns, "bird") >= ROUTES as usize).then_some(())),
    )
    .unwrap();
    let took = t.elapsed();
    d.terminate(Duration::from_secs(5));
    took
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_kernel_install_100k_flatnet_vs_bird() {
    flatnet_lab::require_root().unwrap();
    let load = loadavg();
    let a = fabric_ns("fibf");
    let (took, ok) = flatnet_rate(&a, true);
    assert_eq!(ok, ROUTES as usize);
    assert_eq!(count_routes(&a, "200"), ROUTES as usize);
    // Every route by the one nexthop object of the gateway.
    let objs = a
        .exec_stdout("ip", &["nexthop", "show", "protocol", "200"])
        .unwrap();
    assert_eq!(objs.lines().count(), 1, "{objs}");
    let first = a
        .exec_stdout("ip", &["-4", "route", "show", "proto", "200"])
        .unwrap();
    assert!(first.lines().all(|l| l.contains("nhid ")), "routes by nhid");
    let p = fabric_ns("fibp");
    let (plain, ok) = flatnet_rate(&p, false);
    assert_eq!(ok, ROUTES as usize);
    let b = fabric_ns("fibb");
    let bird = bird_rate(&b);
    let f_rate = f64::from(ROUTES) / took.as_secs_f64();
    let p_rate = f64::from(ROUTES) / plain.as_secs_f64();
    let b_rate = f64::from(ROUTES) / bird.as_secs_f64();
    println!(
        "kernel install of {ROUTES} /32 routes (one gateway), load average {load} at start, {} at end",
        loadavg()
    );
    println!(
        "flatnet Fib (nexthop object): {:>8.0} ms  {:>9.0} routes/s",
        took.as_secs_f64() * 1e3,
        f_rate
    );
    println!(
        "flatnet plain RTA_GATEWAY:    {:>8.0} ms  {:>9.0} routes/s",
        plain.as_secs_f64() * 1e3,
        p_rate
    );
    println!(
        "BIRD 2 kernel:                {:>8.0} ms  {:>9.0} routes/s  (start to last route, incl. config parse)",
        bird.as_secs_f64() * 1e3,
        b_rate
    );
    println!(
        "ratio flatnet/BIRD: {:.2} (nexthop object), {:.2} (plain)",
        f_rate / b_rate,
        p_rate / b_rate
    );
    let mut r = flatnet_lab::report::Report::new(
        "kernel-install",
        format!(
            "Kernel install of {ROUTES} /32 routes (one gateway), flatnet's Fib vs BIRD 2's kernel protocol"
        ),
        &["installer", "ms", "routes/s"],
    );
    for (who, t, rate) in [
        ("flatnet Fib (nexthop object)", took, f_rate),
        ("flatnet plain RTA_GATEWAY", plain, p_rate),
        ("BIRD 2 kernel (start to last route)", bird, b_rate),
    ] {
        r.row(vec![
            who.into(),
            format!("{:.0}", t.as_secs_f64() * 1e3),
            format!("{rate:.0}"),
        ]);
    }
    r.ratio(
        "rate flatnet (nexthop object) / BIRD",
        f_rate / b_rate,
        Some((">= 1", f_rate >= b_rate)),
    );
    r.ratio("rate flatnet (plain) / BIRD", p_rate / b_rate, None);
    r.ratio(
        "rate flatnet (nexthop object) / 100,000 routes/s",
        f_rate / 1e5,
        Some((">= 1", f_rate >= 1e5)),
    );
    r.emit();
}
