//! Policy apply: 500 local endpoints and 10,000 policy edges, side by side
//! in one run, each in a fresh lab namespace (never the machine's own):
//! - flatnet's full apply (compile + `ipset restore` + reconcile against
//!   `iptables-save` + `iptables-restore --noflush`; v4 only, as there is
//!   no v6 pool);
//! - a bare `iptables-restore --noflush` of one plain rule per policy edge
//!   (the reference: the "same number of rules", 10,000), and of
//!   as many plain rules as flatnet's v4 payload holds (edges that share a
//!   destination app and port are one rule over a `list:set`, so that is
//!   far fewer);
//! - one `iptables -A` call per edge (timed over a sample and scaled, as
//!   10,000 calls take minutes);
//! - a membership change (one container of an existing app appears):
//!   the engine's path: sets recomputed under the applied chains and the
//!   `ipset restore` delta, median of the runs.
//!
//! Run (root): `cargo bench -p flatnet-agent --bench policy_apply`
//! Env: `POLICY_BENCH_RUNS` (default 3), `POLICY_BENCH_SAMPLE` (one-call
//! sample size, default 500).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flatnet_agent::netfilter::Netfilter;
use flatnet_agent::policy::compile::{Cluster, EndpointAddr, compile};
use flatnet_agent::policy::enforce::{Applied, Enforcer, Phases};
use flatnet_agent::policy::model::Policy;
use flatnet_lab::Netns;

const APPS: usize = 100;
const PER_APP: usize = 5;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// 100 apps × 5 endpoints; every app may reach every other on tcp/5432
/// (9,900 edges) plus one ingress CIDR per app (100): 10,000 edges.
fn inputs() -> (Vec<Policy>, Vec<EndpointAddr>) {
    let mut text = String::from("name = \"bench\"\n");
    for a in 0..APPS {
        for b in (0..APPS).filter(|b| *b != a) {
            let _ = write!(
                text,
                "[[allow]]\nfrom = \"app{a}\"\nto = \"app{b}\"\nproto = \"tcp\"\nports = [5432]\n"
            );
        }
        let _ = write!(
            text,
            "[[ingress]]\napp = \"app{a}\"\nfrom_cidr = \"198.51.{a}.0/24\"\nproto = \"tcp\"\nports = [443]\n"
        );
    }
    let (_, p) = Policy::parse(&text, "bench").unwrap();
    assert_eq!(p.allow.len() + p.ingress.len(), 10_000);
    let eps = (0..APPS * PER_APP)
        .map(|i| EndpointAddr {
            app: Some(format!("app{}", i % APPS)),
            addrs: vec![IpAddr::V4(Ipv4Addr::new(
                10,
                244,
                (i / 250) as u8,
                (i % 250) as u8 + 1,
            ))],
        })
        .collect();
    (vec![p], eps)
}

/// Runs `f` in a thread that entered `ns`, with a runtime of its own.
fn in_ns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A bare `iptables-restore --noflush` of `n` plain rules in a fresh
/// namespace.
fn bare_restore(ipt: &str, n: usize) -> Duration {
    let ns = Netns::new("pbare").unwrap();
    let mut payload = String::from("*filter\n:BENCH - [0:0]\n");
    for i in 0..n {
        let _ = writeln!(
            payload,
            "-A BENCH -s 10.{}.{}.{}/32 -p tcp -m tcp --dport 5432 -j ACCEPT",
            i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    payload.push_str("COMMIT\n");
    let bin = format!("{ipt}-restore");
    let t = in_ns(&ns, move || {
        let t = Instant::now();
        let mut c = Command::new(&bin)
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(payload.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
        t.elapsed()
    });
    drop(ns);
    t
}

fn restore_bin() -> String {
    let v = Command::new("iptables").arg("-V").output().unwrap();
    let nft = String::from_utf8_lossy(&v.stdout).contains("nf_tables");
    if nft {
        "iptables-nft"
    } else {
        "iptables-legacy"
    }
    .to_string()
}

fn main() {
    flatnet_lab::require_root().unwrap();
    let runs = env_usize("POLICY_BENCH_RUNS", 3);
    let sample = env_usize("POLICY_BENCH_SAMPLE", 500);
    let (policies, eps) = inputs();
    let cluster = Cluster {
        pools: vec![("10.244.0.0/16".parse().unwrap(), false)],
        ..Cluster::default()
    };
    let probe = compile(&policies, &eps, &cluster);
    let payload4 = probe.v4.iptables_payload(Default::default(), &[], None);
    let n_rules = payload4.lines().filter(|l| l.starts_with("-A ")).count();
    println!(
        "policy_apply: {} endpoints, 10000 edges -> {n_rules} v4 rules, {} sets",
        eps.len(),
        probe.v4.sets.len()
    );
    let ipt = restore_bin();

    let (mut full, mut bare, mut member) = (vec![], vec![], vec![]);
    let mut bare_same = vec![];
    let n_edges: usize = policies
        .iter()
        .map(|p| p.allow.len() + p.ingress.len() + p.egress.len())
        .sum();
    let mut phases = vec![];
    for _ in 0..runs {
        // flatnet, from an empty namespace, then membership changes.
        let ns = Netns::new("pbench").unwrap();
        let (p, e, c) = (policies.clone(), eps.clone(), cluster.clone());
        let (f, m, tc, ph) = in_ns(&ns, move || {
            rt().block_on(async move {
                let nf = Arc::new(Netfilter::detect().await.unwrap());
                let enf = Enforcer::new(nf);
                let t = Instant::now();
                let compiled = compile(&p, &e, &c);
                let tc = t.elapsed();
                let a = enf.apply(compiled).await.unwrap();
                let full = t.elapsed();
                let ph = enf.phases();
                assert_eq!(a, Applied::Rules);
                let mut ms = vec![];
                let mut e = e;
                for i in 0..10u8 {
                    e.push(EndpointAddr {
                        app: Some("app7".into()),
                        addrs: vec![IpAddr::V4(Ipv4Addr::new(10, 244, 200, i + 1))],
                    });
                    // What the engine does for a known app: sets only.
                    let t = Instant::now();
                    let a = enf.apply_members(&e).await.unwrap();
                    ms.push(t.elapsed());
                    assert_eq!(a, Some(Applied::Members));
                }
                (full, median(ms), tc, ph)
            })
        });
        phases.push((tc, ph));
        full.push(f);
        member.push(m);
        drop(ns);

        // The reference: one plain rule per policy edge in one restore
        // (the "same number of rules"), and as many plain rules
        // as flatnet wrote.
        bare.push(bare_restore(&ipt, n_edges));
        bare_same.push(bare_restore(&ipt, n_rules));
    }

    // One call per rule, over a sample, scaled to the rule count.
    let ns = Netns::new("pcall").unwrap();
    let ipt2 = ipt.clone();
    let per_call = in_ns(&ns, move || {
        Command::new(&ipt2)
            .args(["-w", "-N", "BENCH"])
            .status()
            .unwrap();
        let t = Instant::now();
        for i in 0..sample {
            let src = format!("10.0.{}.{}/32", i / 256, i % 256);
            let ok = Command::new(&ipt2)
                .args([
                    "-w", "-A", "BENCH", "-s", &src, "-p", "tcp", "--dport", "5432", "-j", "ACCEPT",
                ])
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        t.elapsed() / sample as u32
    });
    drop(ns);
    let one_by_one = per_call * n_edges as u32;

    let (f, b, m) = (median(full), median(bare), median(member));
    let bs = median(bare_same);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("full apply (flatnet, v4: no v6 pool):   {:.1} ms", ms(f));
    // Where the full apply went (medians of each phase over the runs).
    let ph =
        |f: &dyn Fn(&(Duration, Phases)) -> Duration| ms(median(phases.iter().map(f).collect()));
    println!(
        "  compile {:.1} | ipset restore + iptables-save reads (concurrent) {:.1} | plan {:.1} | iptables-restore {:.1} | stale sets {:.1} ms",
        ph(&|p| p.0),
        ph(&|p| p.1.sets_and_read),
        ph(&|p| p.1.plan),
        ph(&|p| p.1.restore),
        ph(&|p| p.1.stale_sets),
    );
    println!(
        "bare iptables-restore, {n_edges} rules (one per edge): {:.1} ms",
        ms(b)
    );
    println!(
        "bare iptables-restore, {n_rules} rules (as many as flatnet's): {:.1} ms",
        ms(bs)
    );
    println!(
        "one iptables call per edge:           {:.1} ms (from {sample} calls, {:.2} ms each)",
        ms(one_by_one),
        ms(per_call)
    );
    println!(
        "ratio full / bare of {n_edges}:            {:.2} (goal <= 1.5)",
        ms(f) / ms(b)
    );
    println!(
        "ratio full / bare of {n_rules}:              {:.2}",
        ms(f) / ms(bs)
    );
    println!(
        "ratio one-by-one / full:              {:.1}",
        ms(one_by_one) / ms(f)
    );
    println!(
        "membership change (median):           {:.2} ms (goal < 20)",
        ms(m)
    );
    println!("load average: {}", load.trim());
    let mut r = flatnet_lab::report::Report::new(
        "policy",
        format!(
            "Policy apply: {} endpoints, {n_edges} edges compiled to {n_rules} IPv4 rules and {} lists (ms, medians of {runs} runs)",
            eps.len(),
            probe.v4.lists.len()
        ),
        &["what", "ms"],
    );
    for (what, x) in [
        (
            "full apply (compile, sets and lists, plan, iptables-restore)",
            ms(f),
        ),
        ("bare iptables-restore, one plain rule per edge", ms(b)),
        (
            "bare iptables-restore, as many plain rules as flatnet wrote",
            ms(bs),
        ),
        ("one iptables call per edge (extrapolated)", ms(one_by_one)),
        ("membership change", ms(m)),
    ] {
        r.row(vec![what.into(), format!("{x:.1}")]);
    }
    r.ratio(
        "full apply / bare restore of one rule per edge",
        ms(f) / ms(b),
        Some(("<= 1.5", ms(f) / ms(b) <= 1.5)),
    );
    r.ratio(
        "full apply / bare restore of as many rules as flatnet wrote",
        ms(f) / ms(bs),
        None,
    );
    r.ratio("one-by-one / full apply", ms(one_by_one) / ms(f), None);
    r.ratio(
        "membership change in ms",
        ms(m),
        Some(("< 20 ms", ms(m) < 20.0)),
    );
    r.emit();
}
