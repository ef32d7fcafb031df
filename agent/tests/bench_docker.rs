//! Docker benchmark (ignored by default; run as root):
//! `cargo test -p flatnet-agent --test bench_docker -- --ignored --nocapture`
//!
//! One host namespace with flatnetd (`[docker]` on, debug log) and a real dockerd
//! (Debian's docker.io 20.10). The time from `docker run -d` to the first
//! ping answered from the host namespace, on a flatnet network and, in the
//! same run and interleaved, on Docker's own bridge driver (a
//! `docker network create -d bridge` network; dockerd runs with
//! `--iptables=false`). `BENCH_ROUNDS` rounds (default 7), median of each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::docker::{Docker, NET_CREATE, enable_docker};
use common::{Host, POOLS_V4};

fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// `docker run -d` on `net`, then ping from the host until it answers.
fn run_to_ping(h: &Host, docker: &Docker, name: &str, net: &str) -> Duration {
    let t0 = Instant::now();
    docker.sleeper(name, net);
    let ip = docker.ip(name, net);
    let deadline = t0 + Duration::from_secs(30);
    loop {
        if h.ns.exec("ping", &["-c", "1", "-W", "0.1", &ip]).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "{name} ({ip}) never answered");
    }
    let t = t0.elapsed();
    docker.ok(&["rm", "-f", name]);
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore]
fn bench_docker_run_to_first_ping_flatnet_vs_bridge() {
    let mut h = Host::start("dkb", POOLS_V4);
    let plugins = enable_docker(&mut h);
    let docker = Docker::start(&h.ns, &plugins);
    docker.ok(&[NET_CREATE, &["flat1"]].concat());
    docker.ok(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--subnet",
        "172.30.0.0/24",
        "br1",
    ]);
    // One of each first: image and plugin warm.
    run_to_ping(&h, &docker, "warm-f", "flat1");
    run_to_ping(&h, &docker, "warm-b", "br1");
    let (mut f, mut b) = (Vec::new(), Vec::new());
    for i in 0..rounds() {
        f.push(run_to_ping(&h, &docker, &format!("f{i}"), "flat1"));
        b.push(run_to_ping(&h, &docker, &format!("b{i}"), "br1"));
    }
    let (mf, mb) = (median(f.clone()), median(b.clone()));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("docker run -> first ping, {} rounds, median:", f.len());
    println!(
        "  flatnet (remote driver + IPAM): {:.1} ms  all {:?}",
        mf.as_secs_f64() * 1e3,
        f
    );
    println!(
        "  bridge (Docker's own):          {:.1} ms  all {:?}",
        mb.as_secs_f64() * 1e3,
        b
    );
    println!(
        "  flatnet / bridge = {:.2}x   load {}",
        mf.as_secs_f64() / mb.as_secs_f64(),
        load.trim()
    );
    let mut r = flatnet_lab::report::Report::new(
        "docker",
        format!(
            "Docker: `docker run` to first ping, median of {} rounds (ms)",
            f.len()
        ),
        &["network driver", "median ms"],
    );
    r.row(vec![
        "flatnet (remote driver + IPAM)".into(),
        format!("{:.1}", mf.as_secs_f64() * 1e3),
    ]);
    r.row(vec![
        "bridge (Docker's own)".into(),
        format!("{:.1}", mb.as_secs_f64() * 1e3),
    ]);
    r.ratio(
        "flatnet / bridge",
        mf.as_secs_f64() / mb.as_secs_f64(),
        None,
    );
    r.emit();
    docker.ok(&["network", "rm", "flat1", "br1"]);
    drop(docker);
    h.assert_clean();
}
