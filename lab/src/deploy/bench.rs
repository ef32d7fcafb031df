//! `flatnet-lab bench`: figures measured on kept labs.
//!
//! - `scale`: the `scale` topology at N hosts — time until every session is
//!   Established and until a sample of container pairs reaches each other,
//!   and flatnetd's resident memory per host. Convergence per host, compared
//!   with the smallest N of the run, shows whether it grows linearly.
//! - `rss`: one host with many local endpoints learning many routes from
//!   its ToR, against the 20 MiB goal.
//!
//! Each run brings its lab up and takes it down again.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{DeployError, LabState, UpOptions, down, routers, summarize};
use crate::topology::Topology;

/// One N of the scale report.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRun {
    pub hosts: usize,
    pub containers: usize,
    /// Seconds from the start of `up` until every session was Established.
    pub established_s: f64,
    /// Seconds from the start of `up` until the reachability sample passed.
    pub reachable_s: f64,
    pub sample_ok: usize,
    pub sample_tried: usize,
    pub rss_mean_kib: u64,
    pub rss_max_kib: u64,
    /// The machine's load average (1/5/15 min) when the run ended.
    pub load: String,
}

/// `/proc/loadavg`'s three averages, for the record next to a figure.
pub fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" / ")
}

/// flatnetd's resident memory (KiB) in a host's namespace.
pub fn flatnetd_rss_kib(netns: &str) -> Option<u64> {
    let ns = crate::Netns::open_kept(netns);
    let pid = crate::feed::pid_in_ns(&ns, "flatnetd")?;
    crate::feed::proc_kib(pid, "VmRSS")
}

fn quiet(_: &str) {}

/// Brings `file` up with `n` hosts, measures, takes it down.
pub fn scale_run(file: &Path, n: usize, opts: &UpOptions) -> Result<ScaleRun, DeployError> {
    let topo = Topology::load_scaled(file, Some(n))?;
    let t0 = Instant::now();
    let result = (|| {
        let state = super::up(&topo, opts, &mut quiet)?;
        let s = summarize(&state, Some(3));
        let reachable_s = t0.elapsed().as_secs_f64();
        let rss = host_rss(&state);
        Ok(ScaleRun {
            hosts: n,
            containers: state.containers.len(),
            established_s: state
                .timings
                .get("established")
                .copied()
                .unwrap_or_default(),
            reachable_s,
            sample_ok: s.reach.iter().filter(|r| r.ping && r.tcp).count(),
            sample_tried: s.reach.len(),
            rss_mean_kib: rss.iter().sum::<u64>() / rss.len().max(1) as u64,
            rss_max_kib: rss.iter().copied().max().unwrap_or_default(),
            load: load_average(),
        })
    })();
    down(&topo.name);
    result
}

fn host_rss(state: &LabState) -> Vec<u64> {
    state
        .nodes
        .iter()
        .filter(|n| n.router.is_none())
        .filter_map(|n| flatnetd_rss_kib(&n.netns))
        .collect()
}

/// The memory run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RssRun {
    pub endpoints: usize,
    pub routes_sent: u64,
    pub rss_kib: u64,
    pub goal_kib: u64,
    pub met: bool,
    pub load: String,
}

/// One ToR advertising `routes` /32s to one host with `endpoints`
/// containers; flatnetd's RSS once the ToR has sent them all.
pub fn rss_run(endpoints: usize, routes: usize, opts: &UpOptions) -> Result<RssRun, DeployError> {
    let dir = std::env::temp_dir().join(format!("flatnet-lab-rss-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tor1")).map_err(|e| DeployError::Io(dir.clone(), e))?;
    let file = dir.join("rss.clab.yml");
    let mut frr = String::from(
        "router bgp 65001\n bgp router-id 10.255.0.1\n no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n timers bgp 3 9\n neighbor 10.255.1.1 remote-as 64601\n address-family ipv4 unicast\n  neighbor 10.255.1.1 activate\n",
    );
    for i in 0..routes {
        let _ = writeln!(
            frr,
            "  network 10.{}.{}.{}/32",
            200 + i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    frr.push_str(" exit-address-family\n!\n");
    let mut y = String::from(
        "name: rss\ntopology:\n  nodes:\n    tor1:\n      kind: linux\n      labels: { flatnet.role: tor }\n      binds: [\"tor1/frr.conf:/etc/frr/frr.conf\"]\n      exec:\n        - sysctl -qw net.ipv4.ip_forward=1\n        - ip addr add 10.255.1.0/31 dev eth1\n    host1:\n      kind: linux\n      labels: { flatnet.role: host }\n      exec: [\"ip addr add 10.255.1.1/31 dev eth0\"]\n  links:\n    - endpoints: [\"tor1:eth1\", \"host1:eth0\"]\nflatnet:\n  pools: [{ cidr: 10.244.0.0/16, block-size: 26 }]\n  hosts:\n    host1:\n      asn: 64601\n      router-id: 10.255.0.11\n      peers: [{ address: 10.255.1.0, asn: 65001 }]\n      containers:\n",
    );
    for i in 0..endpoints {
        let _ = writeln!(y, "        - {{ name: e{i} }}");
    }
    let io = |e| DeployError::Io(file.clone(), e);
    std::fs::write(dir.join("tor1/frr.conf"), frr).map_err(io)?;
    std::fs::write(&file, y).map_err(|e| DeployError::Io(file.clone(), e))?;
    let topo = Topology::load(&file)?;
    let result = (|| {
        let state = super::up(&topo, opts, &mut quiet)?;
        let tor = state
            .nodes
            .iter()
            .find(|n| n.router.is_some())
            .ok_or_else(|| DeployError::UnknownNode("tor1".into(), "rss".into()))?;
        let deadline = Instant::now() + opts.timeout;
        let mut sent = 0;
        while sent < routes as u64 && Instant::now() < deadline {
            sent = routers::frr_json(&tor.ns(), &tor.dir, "show bgp neighbors 10.255.1.1 json")
                .ok()
                .and_then(|v| {
                    v["10.255.1.1"]["addressFamilyInfo"]["ipv4Unicast"]["sentPrefixCounter"]
                        .as_u64()
                })
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(200));
        }
        // Let flatnetd take in what was sent, then take the highest reading.
        let mut rss = 0;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            rss = rss.max(host_rss(&state).into_iter().max().unwrap_or(0));
            std::thread::sleep(Duration::from_millis(100));
        }
        let goal_kib = 20 * 1024;
        Ok(RssRun {
            endpoints: state.containers.len(),
            routes_sent: sent,
            rss_kib: rss,
            goal_kib,
            met: rss > 0 && rss < goal_kib && sent >= routes as u64,
            load: load_average(),
        })
    })();
    down(&topo.name);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The `scale` runs as a report: one row per N, and the per-host time at
/// the largest N against the smallest (linear growth = 1).
pub fn scale_report(runs: &[ScaleRun]) -> crate::report::Report {
    let mut r = crate::report::Report::new(
        "scale",
        "The `scale` topology: 2 FRR ToRs and N hosts (3 containers each), seconds from the start of `up` until every session is Established and a reachability sample passes",
        &[
            "hosts",
            "containers",
            "all Established",
            "sample reachable",
            "per host (vs smallest N)",
            "reach sample",
            "flatnetd RSS mean / max",
            "load average",
        ],
    );
    let base = runs
        .first()
        .map(|x| x.reachable_s / x.hosts.max(1) as f64)
        .unwrap_or(1.0);
    for x in runs {
        let per = x.reachable_s / x.hosts.max(1) as f64;
        r.row(vec![
            x.hosts.to_string(),
            x.containers.to_string(),
            format!("{:.1} s", x.established_s),
            format!("{:.1} s", x.reachable_s),
            format!("{:.0} ms ({:.2}×)", per * 1000.0, per / base.max(1e-9)),
            format!("{}/{}", x.sample_ok, x.sample_tried),
            format!(
                "{:.1} / {:.1} MiB",
                x.rss_mean_kib as f64 / 1024.0,
                x.rss_max_kib as f64 / 1024.0
            ),
            x.load.clone(),
        ]);
    }
    if let (Some(a), Some(b)) = (runs.first(), runs.last()) {
        let per = |x: &ScaleRun| x.reachable_s / x.hosts.max(1) as f64;
        let g = per(b) / per(a).max(1e-9);
        r.ratio(
            format!(
                "time per host at N={} / at N={} (linear growth = 1)",
                b.hosts, a.hosts
            ),
            g,
            Some(("<= 1 (no worse than linear)", g <= 1.0)),
        );
    }
    r
}
