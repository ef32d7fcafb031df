//! flatnetd under a flood of control clients and with answers of many
//! MiB: idle and slow clients neither shut out the runtime nor pin memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use flatnet_lab::wait_for;
use serde_json::Value;

/// The test process holds thousands of sockets itself.
fn raise_own_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = hard.min(1 << 16).max(soft);
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    assert!(
        want >= 8192,
        "need >= 8192 open files for this test, hard limit is {hard}"
    );
}

/// Restarts `host`'s flatnetd with extra `[api]` keys.
fn restart_with_api(host: &mut Host, api_keys: &str) {
    host.daemon
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(5));
    let p = host.dir.path().join("flatnetd.toml");
    let cfg = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        cfg.replacen("[api]\n", &format!("[api]\n{api_keys}\n"), 1),
    )
    .unwrap();
    host.start_daemon();
}

/// A gauge or counter from `/metrics` (0 when absent).
fn metric(host: &Host, name: &str) -> f64 {
    let body = http_get(&host.ns, "/metrics");
    body.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn two_thousand_idle_and_slow_clients_shut_out_neither_cni_nor_healthz() {
    raise_own_open_files();
    let mut host = Host::start("load", POOLS_V4);
    restart_with_api(&mut host, "client_timeout = 4");
    let pid = host.daemon.as_ref().unwrap().pid().unwrap();
    let rss_before = rss_kib(pid);

    // 1,000 say nothing, 500 send half a request and stall, 500 send a
    // whole request and never read the answer.
    let mut held = Vec::new();
    for i in 0..2000 {
        let mut s = UnixStream::connect(host.socket()).unwrap();
        match i % 4 {
            0 | 1 => {}
            2 => s.write_all(br#"{"version":1,"op":"#).unwrap(),
            _ => s
                .write_all(b"{\"version\":1,\"op\":\"endpoints\"}\n")
                .unwrap(),
        }
        held.push(s);
    }
    // The daemon has taken them all (not left them in the backlog); the
    // 500 whole requests were answered and closed.
    wait_for(
        "1,500 idle connections held by flatnetd",
        Duration::from_secs(20),
        || Ok((metric(&host, "flatnet_api_connections") >= 1500.0).then_some(())),
    )
    .unwrap();

    let c = flatnet_lab::Netns::new("c").unwrap();
    let t = Instant::now();
    let (v, code) = host.cni("ADD", "busy1", &c.path(), "eth0", &host.conf("1.1.0"));
    let add = t.elapsed();
    assert_eq!(code, 0, "ADD among 2,000 idle clients: {v}\n{}", host.log());
    let t = Instant::now();
    let health = http_get(&host.ns, "/healthz");
    let healthz = t.elapsed();
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let rss = rss_kib(pid);
    eprintln!(
        "with 2,000 idle/slow control clients: CNI ADD {} ms (runtime side), /healthz {} ms, \
         flatnetd RSS {} KiB (before {} KiB); goal: ADD and /healthz < 100 ms",
        add.as_millis(),
        healthz.as_millis(),
        rss,
        rss_before
    );
    // Before the fix the ADD waited ~30 s for idle clients to time out.
    assert!(add < Duration::from_secs(2), "ADD took {add:?}");
    assert!(
        healthz < Duration::from_secs(2),
        "/healthz took {healthz:?}"
    );
    assert!(rss < 48 * 1024, "flatnetd RSS {rss} KiB with 2,000 clients");

    // Idle and slow clients are closed after api.client_timeout; the ones
    // that never read were answered and closed too.
    wait_for("idle clients closed", Duration::from_secs(20), || {
        Ok((metric(&host, "flatnet_api_connections") <= 1.0).then_some(()))
    })
    .unwrap();
    let mut buf = Vec::new();
    held[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    held[0].read_to_end(&mut buf).unwrap();
    let timed_out: Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(timed_out["error"]["kind"], "invalid_request", "{timed_out}");
    assert!(
        timed_out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 4 s")
    );
    drop(held);
    host.del("busy1", &c.path());
    host.assert_clean();
}

#[test]
fn over_the_connection_cap_a_client_is_told_busy_at_once() {
    raise_own_open_files();
    let mut host = Host::start("cap", POOLS_V4);
    restart_with_api(&mut host, "max_connections = 50");
    // The start's own readiness probes must be gone before counting.
    wait_for("no connections", Duration::from_secs(10), || {
        Ok((metric(&host, "flatnet_api_connections") == 0.0).then_some(()))
    })
    .unwrap();
    let held: Vec<UnixStream> = (0..50)
        .map(|_| UnixStream::connect(host.socket()).unwrap())
        .collect();
    wait_for("50 connections accepted", Duration::from_secs(10), || {
        Ok((metric(&host, "flatnet_api_connections") >= 50.0).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {}", http_get(&host.ns, "/metrics")));
    let c = flatnet_lab::Netns::new("c").unwrap();
    let t = Instant::now();
    let (v, code) = host.cni("ADD", "cap1", &c.path(), "eth0", &host.conf("1.1.0"));
    assert_ne!(code, 0);
    assert_eq!(v["code"], 11, "busy is CNI 'try again later': {v}");
    assert!(
        v["details"]
            .as_str()
            .unwrap()
            .contains("api.max_connections"),
        "{v}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "refused at once, not after a timeout"
    );
    assert!(metric(&host, "flatnet_api_connections_refused_total") >= 1.0);
    // Nothing was made by the refused ADD.
    assert!(host.flatnet_links().is_empty());
    drop(held);
    wait_for("slots free", Duration::from_secs(10), || {
        Ok((metric(&host, "flatnet_api_connections") <= 1.0).then_some(()))
    })
    .unwrap();
    host.add("cap1", &c);
    host.del("cap1", &c.path());
    host.assert_clean();
}

#[test]
fn a_list_of_ten_thousand_endpoints_reaches_the_cli() {
    let host = Host::start("big", POOLS_V4);
    // Records as another writer of the shared datastore would leave them
    // (the endpoint list is read from the datastore, not the kernel).
    let store = flatnet_ipam::FileStore::open(host.dir.path().join("datastore")).unwrap();
    for chunk in (0..10_000u32).collect::<Vec<_>>().chunks(500) {
        let mut txn = flatnet_ipam::Txn::new();
        for &i in chunk {
            let id = format!("{i:064x}");
            let ep = flatnet_agent::api::Endpoint {
                node: "big".into(),
                container_id: id.clone(),
                ifname: "eth0".into(),
                netns: format!("/var/run/netns/cni-{i:08x}-0000-0000-0000-000000000000"),
                host_ifname: format!("fn{i:011x}"),
                host_mac: "ee:ee:ee:ee:ee:ee".into(),
                container_mac: "02:00:00:00:00:01".into(),
                v4: Some(std::net::Ipv4Addr::from(0x0a14_0000 + i)),
                v6: None,
                app: Some("bulk".into()),
                network: Some("flatnet".into()),
                mtu: None,
                dns: None,
            };
            txn = txn.then(flatnet_ipam::Op::put(
                flatnet_agent::store::endpoint_key("big", &id, "eth0"),
                serde_json::to_vec(&ep).unwrap(),
            ));
        }
        store.txn_sync(&txn).unwrap();
    }
    let v = host.cli_json(&["endpoints"]);
    let bytes = serde_json::to_vec(&v).unwrap().len();
    assert!(bytes > 1 << 20, "answer is {bytes} bytes");
    assert_eq!(v.as_array().unwrap().len(), 10_000);
}
