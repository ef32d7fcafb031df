//! The datastore failing under flatnetd (etcd stopped during concurrent
//! ADDs), and flatnetd killed during DEL and during GC: clear codes,
//! nothing half-made, nothing lost, nothing leaked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use flatnet_lab::etcd::Etcd;
use flatnet_lab::{Netns, wait_for};
use serde_json::{Value, json};

fn has_eth0(c: &Netns) -> bool {
    c.exec("ip", &["link", "show", "eth0"]).is_ok()
}

fn add_all(host: &Host, cs: &[Netns], prefix: &str) -> Vec<(Value, i32)> {
    std::thread::scope(|s| {
        let hs: Vec<_> = cs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                s.spawn(move || {
                    host.cni(
                        "ADD",
                        &format!("{prefix}{i}"),
                        &c.path(),
                        "eth0",
                        &host.conf("1.1.0"),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn etcd_stopped_during_concurrent_adds_fails_them_cleanly_and_they_work_once_it_is_back() {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("hs").unwrap();
    let mut etcd = Etcd::start(&ns).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start_in(ns, dir, "hs", POOLS_V4, "etcd://127.0.0.1:2379");
    let first = Netns::new("c").unwrap();
    host.add("live", &first);

    // etcd goes away; 8 ADDs at once.
    etcd.stop();
    let cs: Vec<Netns> = (0..8).map(|_| Netns::new("c").unwrap()).collect();
    let t = std::time::Instant::now();
    let results = add_all(&host, &cs, "d");
    eprintln!("8 ADDs with etcd down answered within {:?}", t.elapsed());
    for (i, (v, code)) in results.iter().enumerate() {
        assert_eq!(*code, 1, "ADD d{i} succeeded with etcd down: {v}");
        assert_eq!(v["code"], 11, "d{i}: etcd down is 'try again later': {v}");
        assert!(
            v["details"].as_str().unwrap_or("").contains("2379"),
            "d{i}: the error names the datastore: {v}"
        );
        assert!(!has_eth0(&cs[i]), "d{i}: a half-made eth0 was left");
    }
    // Only the live container's veth exists.
    assert_eq!(host.flatnet_links().len(), 1);

    // etcd is back: the same ADDs work, with distinct addresses, and the
    // datastore agrees with the kernel.
    etcd.restart(&host.ns).unwrap();
    let results = wait_for("ADDs work again", Duration::from_secs(30), || {
        let r = add_all(&host, &cs, "d");
        if r.iter().all(|(_, c)| *c == 0) {
            return Ok(Some(r));
        }
        // Retried ADDs that failed left nothing; clean partial successes
        // the way a runtime does (DEL after a failed ADD).
        for (i, (_, c)) in r.iter().enumerate() {
            if *c != 0 {
                let _ = host.cni(
                    "DEL",
                    &format!("d{i}"),
                    &cs[i].path(),
                    "eth0",
                    &host.conf("1.1.0"),
                );
            } else {
                host.del(&format!("d{i}"), &cs[i].path());
            }
        }
        Ok(None)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", host.log()));
    let addrs: HashSet<String> = results.iter().map(|(v, _)| result_v4(v)).collect();
    assert_eq!(addrs.len(), 8);
    assert_eq!(host.flatnet_links().len(), 9);
    assert_eq!(host.allocations().len(), 9);
    assert_eq!(host.cli_json(&["ipam", "check"])["ok"], true);
    for (i, c) in cs.iter().enumerate() {
        host.del(&format!("d{i}"), &c.path());
    }
    host.del("live", &first.path());
    host.assert_clean();
}

/// Kills flatnetd while `op` runs in `n` threads, once `after` have
/// answered; returns each call's (index, answer, exit code).
fn kill_during(
    host: &mut Host,
    n: usize,
    after: usize,
    op: impl Fn(&Host, usize) -> (Value, i32) + Sync,
) -> Vec<(usize, Value, i32)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut daemon = host.daemon.take().unwrap();
    let host = &*host;
    let op = &op;
    std::thread::scope(|s| {
        for i in 0..n {
            let tx = tx.clone();
            s.spawn(move || {
                let (v, code) = op(host, i);
                tx.send((i, v, code)).unwrap();
            });
        }
        drop(tx);
        let mut got = Vec::new();
        while let Ok(r) = rx.recv_timeout(Duration::from_secs(60)) {
            got.push(r);
            if got.len() == after {
                daemon.kill9();
            }
        }
        if got.len() < after {
            daemon.kill9();
        }
        got
    })
}

#[test]
fn sigkill_during_concurrent_dels_loses_and_leaks_nothing() {
    let mut host = Host::start("h", POOLS_V4);
    // DELs are fast: the kill (after the first answer) can come when every
    // DEL is already done. Then the round proves nothing; try a new one.
    let mut round = 0;
    let (cs, results, failed) = loop {
        round += 1;
        let cs: Vec<Netns> = (0..24).map(|_| Netns::new("c").unwrap()).collect();
        for (i, c) in cs.iter().enumerate() {
            host.add(&format!("k{round}-{i}"), c);
        }
        let results = kill_during(&mut host, 24, 1, |h, i| {
            h.cni(
                "DEL",
                &format!("k{round}-{i}"),
                &cs[i].path(),
                "eth0",
                &h.conf("1.1.0"),
            )
        });
        let failed: Vec<usize> = results.iter().filter(|r| r.2 != 0).map(|r| r.0).collect();
        eprintln!(
            "DEL crash test, round {round}: {} DELs answered before the kill, {} failed",
            results.len() - failed.len(),
            failed.len()
        );
        if !failed.is_empty() || round == 5 {
            break (cs, results, failed);
        }
        host.start_daemon();
    };
    let id = |i: usize| format!("k{round}-{i}");
    assert!(
        !failed.is_empty(),
        "the kill came too late to test anything"
    );
    for r in results.iter().filter(|r| r.2 != 0) {
        assert_eq!(
            r.1["code"], 11,
            "a DEL cut off by the crash says try again: {}",
            r.1
        );
    }
    host.start_daemon();
    // A successful DEL stays done: its container has no eth0, its address
    // is free.
    let allocs: Vec<String> = host
        .allocations()
        .iter()
        .map(|a| a["handle"].as_str().unwrap().to_string())
        .collect();
    for r in results.iter().filter(|r| r.2 == 0) {
        assert!(
            !has_eth0(&cs[r.0]),
            "{} kept eth0 after its DEL succeeded",
            id(r.0)
        );
        assert!(
            !allocs.contains(&format!("{}/eth0", id(r.0))),
            "{} kept its address",
            id(r.0)
        );
    }
    let check = host.cli_json(&["ipam", "check"]);
    assert_eq!(check["ok"], true, "{check}\n{}", host.log());
    // The runtime retries the failed DELs: everything is gone.
    for i in failed {
        host.del(&id(i), &cs[i].path());
    }
    host.assert_clean();
    for c in &cs {
        assert!(!has_eth0(c));
    }
}

#[test]
fn sigkill_during_gc_loses_and_leaks_nothing() {
    let mut host = Host::start("h", POOLS_V4);
    let cs: Vec<Netns> = (0..24).map(|_| Netns::new("c").unwrap()).collect();
    let rs: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| host.add(&format!("g{i}"), c))
        .collect();
    // The first 8 are valid; GC removes the other 16, and is killed
    // while it does.
    let valid: Vec<Value> = (0..8)
        .map(|i| json!({"containerID": format!("g{i}"), "ifname": "eth0"}))
        .collect();
    let mut conf = host.conf("1.1.0");
    conf["cni.dev/valid-attachments"] = Value::from(valid);
    let log_before = host.log().len();
    let mut daemon = host.daemon.take().unwrap();
    std::thread::scope(|s| {
        let h = &host;
        let conf = &conf;
        let gc = s.spawn(move || h.cni("GC", "", "", "", conf));
        // Kill once GC has started removing.
        let _ = wait_for("GC removing", Duration::from_secs(20), || {
            Ok(h.log()[log_before..]
                .contains("endpoint removed")
                .then_some(()))
        });
        daemon.kill9();
        let (v, code) = gc.join().unwrap();
        eprintln!("GC cut off by SIGKILL: exit {code}, {v}");
    });
    host.start_daemon();
    let left = host.allocations().len();
    eprintln!("after the killed GC: {left} of 24 allocations left (8 valid)");
    assert!(left > 8, "the kill came too late to test anything");
    // The valid ones are untouched.
    for (i, r) in rs.iter().enumerate().take(8) {
        let mut check = host.conf("1.1.0");
        check["prevResult"] = r.clone();
        let (out, code) = host.cni("CHECK", &format!("g{i}"), &cs[i].path(), "eth0", &check);
        assert_eq!(code, 0, "g{i} damaged by a killed GC: {out}");
    }
    assert_eq!(host.cli_json(&["ipam", "check"])["ok"], true);
    // GC again (what a runtime does on its next pass): exactly the valid
    // ones remain, nothing leaked.
    let (out, code) = host.cni("GC", "", "", "", &conf);
    assert_eq!(code, 0, "{out}");
    assert_eq!(host.allocations().len(), 8);
    assert_eq!(host.flatnet_links().len(), 8);
    assert_eq!(host.cli_json(&["endpoints"]).as_array().unwrap().len(), 8);
    for (i, c) in cs.iter().enumerate().take(8) {
        host.del(&format!("g{i}"), &c.path());
    }
    host.assert_clean();
}
