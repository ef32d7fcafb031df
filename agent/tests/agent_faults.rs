//! Bad input, concurrency, crash and restart of flatnetd, GC.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity,
    clippy::needless_range_loop
)]

mod common;

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use flatnet_lab::{Netns, wait_for};
use serde_json::{Value, json};

fn link_index(ns: &Netns, name: &str) -> u64 {
    ns_ip_json(ns, &["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == name)
        .and_then(|l| l["ifindex"].as_u64())
        .unwrap_or_else(|| panic!("{name} not found"))
}

fn has_link(ns: &Netns, name: &str) -> bool {
    ns_ip_json(ns, &["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["ifname"] == name)
}

#[test]
fn bad_input_gets_the_right_code_and_leaves_nothing() {
    let host = Host::start("h", "[[pool]]\ncidr = \"10.99.0.0/30\"\nblock_size = 30\n");
    let c = Netns::new("c").unwrap();
    let p = c.path();
    fn env(netns: &str) -> Vec<(&'static str, &str)> {
        vec![
            ("CNI_CONTAINERID", "cid"),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
        ]
    }
    let conf = host.conf("1.1.0").to_string();
    let plain = host.dir.path().join("not-a-netns");
    std::fs::write(&plain, "").unwrap();
    let plain = plain.display().to_string();
    let host_ns = host.ns.path();
    let host_state = || {
        (
            host.ip_json(&["route", "show", "table", "all"]),
            host.ip_json(&["addr", "show"]),
        )
    };
    let before = host_state();
    fn with<'a>(netns: &'a str, id: &'a str, ifname: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
        ]
    }
    let long_id = "a".repeat(flatnet_agent::names::MAX_CONTAINER_ID + 1);
    let mut long_app = host.conf("1.1.0");
    long_app["args"] = json!({"flatnet": {"app": "a".repeat(64)}});
    let long_app = long_app.to_string();
    let cases: Vec<(&str, Vec<(&str, &str)>, String, u64)> = vec![
        ("malformed JSON", env(&p), "{\"cniVersion\": ".into(), 6),
        (
            "unknown cniVersion",
            env(&p),
            conf.replace("1.1.0", "0.9.0"),
            1,
        ),
        (
            "missing CNI_NETNS",
            vec![("CNI_CONTAINERID", "cid"), ("CNI_IFNAME", "eth0")],
            conf.clone(),
            4,
        ),
        (
            "nonexistent netns",
            env("/run/netns/fl-does-not-exist"),
            conf.clone(),
            3,
        ),
        ("path is not a netns", env(&plain), conf.clone(), 3),
        // The host's own namespace (flatnetd's) must never become a
        // container's: its interfaces and default route would be taken.
        ("the host's own netns", env(&host_ns), conf.clone(), 4),
        (
            "a mount namespace",
            env("/proc/self/ns/mnt"),
            conf.clone(),
            4,
        ),
        (
            "bad ifname",
            vec![
                ("CNI_CONTAINERID", "cid"),
                ("CNI_NETNS", &p),
                ("CNI_IFNAME", "a:b"),
            ],
            conf.clone(),
            4,
        ),
        (
            "flatnetd unreachable",
            env(&p),
            conf.replace("flatnetd.sock", "nobody.sock"),
            11,
        ),
        // Ids and names that would overflow the interface alias, or that
        // the kernel treats specially, are refused before anything is made.
        (
            "container id longer than the alias holds",
            with(&p, &long_id, "eth0"),
            conf.clone(),
            4,
        ),
        (
            "container id with '/'",
            with(&p, "a/b", "eth0"),
            conf.clone(),
            4,
        ),
        (
            "ifname eth%d (a template)",
            with(&p, "cid", "eth%d"),
            conf.clone(),
            4,
        ),
        (
            "ifname all (sysctl tree)",
            with(&p, "cid", "all"),
            conf.clone(),
            4,
        ),
        (
            "ifname default (sysctl tree)",
            with(&p, "cid", "default"),
            conf.clone(),
            4,
        ),
        ("app id of 64 characters", env(&p), long_app, 7),
        (
            "network name with '/'",
            env(&p),
            conf.replace("\"name\":\"flatnet\"", "\"name\":\"a/b\""),
            7,
        ),
    ];
    for (what, env, stdin, want) in cases {
        let (v, code) = cni_raw("ADD", &env, stdin.as_bytes());
        assert_eq!(code, 1, "{what}: {v}");
        assert_eq!(v["code"].as_u64(), Some(want), "{what}: {v}");
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
        host.assert_clean();
        assert_eq!(
            host_state(),
            before,
            "{what}: the host's routes or addresses changed"
        );
    }

    // flatnetd checks again for clients other than the plugin.
    use flatnet_agent::api::{AddArgs, AttachmentRef, ClientError, ErrorKind, Op, call};
    for (id, ifname, app, kind) in [
        (
            long_id.as_str(),
            "eth0",
            None,
            ErrorKind::InvalidEnvironment,
        ),
        ("cid", "all", None, ErrorKind::InvalidEnvironment),
        (
            "cid",
            "eth0",
            Some("a".repeat(64)),
            ErrorKind::InvalidRequest,
        ),
    ] {
        let op = Op::Add(AddArgs {
            attachment: AttachmentRef::new(id, ifname),
            netns: p.clone(),
            app,
            network: None,
        });
        match call(&host.socket(), op, Duration::from_secs(10)) {
            Err(ClientError::Api(e)) => assert_eq!(e.kind, kind, "{id:.10}/{ifname}: {e}"),
            other => panic!("{id:.10}/{ifname}: {other:?}"),
        }
        host.assert_clean();
    }
    assert_eq!(host_state(), before);

    // Interface name already taken inside the container.
    c.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .unwrap();
    let (v, code) = host.cni("ADD", "cid", &p, "eth0", &host.conf("1.1.0"));
    assert_eq!((code, v["code"].as_u64()), (1, Some(110)), "{v}");
    host.assert_clean();
    c.ip(&["link", "del", "eth0"]).unwrap();

    // Pool exhausted: a /30 holds 4 containers; the fifth fails cleanly.
    let cs: Vec<Netns> = (0..5).map(|_| Netns::new("x").unwrap()).collect();
    for (i, n) in cs.iter().take(4).enumerate() {
        host.add(&format!("full{i}"), n);
    }
    let (v, code) = host.cni("ADD", "full4", &cs[4].path(), "eth0", &host.conf("1.1.0"));
    assert_eq!((code, v["code"].as_u64()), (1, Some(111)), "{v}");
    assert_eq!(host.flatnet_links().len(), 4);
    assert_eq!(host.allocations().len(), 4);
    assert!(!has_link(&cs[4], "eth0"));
    for i in 0..4 {
        host.del(&format!("full{i}"), &cs[i].path());
    }
    host.assert_clean();
}

#[test]
fn unreadable_stdin_is_an_io_failure() {
    // A directory as stdin: read(2) fails with EISDIR.
    let out = std::process::Command::new(CNI)
        .env("CNI_COMMAND", "ADD")
        .stdin(std::fs::File::open("/").unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 5, "{v}");
}

#[test]
fn thirty_two_concurrent_adds_then_dels() {
    let host = Host::start("h", POOLS_V4);
    let cs: Vec<Netns> = (0..32).map(|_| Netns::new("c").unwrap()).collect();
    let results: Vec<(Value, i32)> = std::thread::scope(|s| {
        let hs: Vec<_> = cs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let host = &host;
                s.spawn(move || {
                    host.cni(
                        "ADD",
                        &format!("c{i}"),
                        &c.path(),
                        "eth0",
                        &host.conf("1.1.0"),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs = HashSet::new();
    for (i, (v, code)) in results.iter().enumerate() {
        assert_eq!(*code, 0, "ADD {i}: {v}\n{}", host.log());
        assert!(
            addrs.insert(result_v4(v)),
            "duplicate address {}",
            result_v4(v)
        );
        let a = ns_ip_json(&cs[i], &["-4", "addr", "show", "eth0"]);
        assert_eq!(a[0]["addr_info"][0]["local"], result_v4(v).as_str());
    }
    assert_eq!(host.flatnet_links().len(), 32);
    assert_eq!(host.cli_json(&["ipam", "check"])["ok"], true);
    std::thread::scope(|s| {
        for (i, c) in cs.iter().enumerate() {
            let host = &host;
            s.spawn(move || host.del(&format!("c{i}"), &c.path()));
        }
    });
    host.assert_clean();
}

#[test]
fn sigkill_during_concurrent_adds_then_restart_and_gc() {
    let mut host = Host::start("h", POOLS_V4);
    let cs: Vec<Netns> = (0..32).map(|_| Netns::new("c").unwrap()).collect();
    let (tx, rx) = mpsc::channel();
    let mut daemon = host.daemon.take().unwrap();
    let results: Vec<(usize, Value, i32)> = std::thread::scope(|s| {
        for (i, c) in cs.iter().enumerate() {
            let (host, tx) = (&host, tx.clone());
            s.spawn(move || {
                let (v, code) = host.cni(
                    "ADD",
                    &format!("k{i}"),
                    &c.path(),
                    "eth0",
                    &host.conf("1.1.0"),
                );
                tx.send((i, v, code)).unwrap();
            });
        }
        drop(tx);
        let mut got = Vec::new();
        // Kill once a few have succeeded, while the rest are in flight.
        while let Ok(r) = rx.recv_timeout(Duration::from_secs(60)) {
            let ok = r.2 == 0;
            got.push(r);
            if ok && got.iter().filter(|r| r.2 == 0).count() == 6 {
                daemon.kill9();
            }
        }
        got
    });
    assert_eq!(results.len(), 32);
    let ok: Vec<&(usize, Value, i32)> = results.iter().filter(|r| r.2 == 0).collect();
    let failed: Vec<&(usize, Value, i32)> = results.iter().filter(|r| r.2 != 0).collect();
    eprintln!(
        "crash test: {} ADDs succeeded before the kill, {} failed",
        ok.len(),
        failed.len()
    );
    assert!(ok.len() >= 6, "{} succeeded", ok.len());
    assert!(
        !failed.is_empty(),
        "the kill came too late to test anything"
    );
    for f in &failed {
        assert_eq!(
            f.1["code"], 11,
            "a failure while flatnetd died must say try again: {}",
            f.1
        );
    }

    host.start_daemon();

    // Every success still works, with the address it was given.
    let mut addrs = HashSet::new();
    for (i, v, _) in &ok {
        assert!(addrs.insert(result_v4(v)), "duplicate {}", result_v4(v));
        let mut conf = host.conf("1.1.0");
        conf["prevResult"] = v.clone();
        let (out, code) = host.cni("CHECK", &format!("k{i}"), &cs[*i].path(), "eth0", &conf);
        assert_eq!(code, 0, "k{i} broken after restart: {out}\n{}", host.log());
    }
    let (a, b) = (ok[0], ok[1]);
    assert!(
        cs[a.0]
            .exec("ping", &["-c1", "-W2", &result_v4(&b.1)])
            .is_ok()
    );
    // Unfinished ADDs left nothing in their containers. An ADD whose record
    // was committed just before the kill, with the answer lost, is complete
    // (recorded, checks out): the runtime DELs it after the error, and GC
    // below removes it as well.
    let recorded: HashSet<String> = host
        .cli_json(&["endpoints"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["container_id"].as_str().unwrap().to_string())
        .collect();
    for (i, _, _) in &failed {
        if has_link(&cs[*i], "eth0") {
            assert!(
                recorded.contains(&format!("k{i}")),
                "c{i} kept a half-made eth0"
            );
        }
    }
    assert_eq!(host.cli_json(&["ipam", "check"])["ok"], true);

    // GC with the successes as the valid set: nothing else remains.
    let valid: Vec<Value> = ok
        .iter()
        .map(|(i, _, _)| json!({"containerID": format!("k{i}"), "ifname": "eth0"}))
        .collect();
    let mut conf = host.conf("1.1.0");
    conf["cni.dev/valid-attachments"] = Value::from(valid);
    let (out, code) = host.cni("GC", "", "", "", &conf);
    assert_eq!(code, 0, "{out}");
    assert_eq!(host.allocations().len(), ok.len());
    assert_eq!(host.flatnet_links().len(), ok.len());
    assert_eq!(
        host.cli_json(&["endpoints"]).as_array().unwrap().len(),
        ok.len()
    );
    for (i, _, _) in &failed {
        assert!(!has_link(&cs[*i], "eth0"), "c{i}: GC left its eth0");
    }
    for (i, _, _) in &ok {
        host.del(&format!("k{i}"), &cs[*i].path());
    }
    host.assert_clean();
}

#[test]
fn gc_releases_only_stale_attachments() {
    let host = Host::start("h", POOLS_V4);
    let cs: Vec<Netns> = (0..3).map(|_| Netns::new("c").unwrap()).collect();
    let rs: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| host.add(&format!("g{i}"), c))
        .collect();
    // An attachment of another CNI network on the same flatnetd.
    let other = Netns::new("o").unwrap();
    let mut other_conf = host.conf("1.1.0");
    other_conf["name"] = json!("other-net");
    let (r, code) = host.cni("ADD", "o0", &other.path(), "eth0", &other_conf);
    assert_eq!(code, 0, "{r}");
    let mut conf = host.conf("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([
        {"containerID": "g0", "ifname": "eth0"},
        {"containerID": "g1", "ifname": "eth0"},
    ]);
    let (out, code) = host.cni("GC", "", "", "", &conf);
    assert_eq!(code, 0, "{out}");
    let allocs = host.allocations();
    assert_eq!(allocs.len(), 3, "{allocs:?}");
    assert!(allocs.iter().all(|a| a["handle"] != "g2/eth0"));
    assert!(
        allocs.iter().any(|a| a["handle"] == "o0/eth0"),
        "other network's allocation kept"
    );
    assert_eq!(host.flatnet_links().len(), 3);
    assert!(has_link(&other, "eth0"));
    host.del("o0", &other.path());
    assert!(!has_link(&cs[2], "eth0"));
    for i in 0..2 {
        let mut c = host.conf("1.1.0");
        c["prevResult"] = rs[i].clone();
        assert_eq!(
            host.cni("CHECK", &format!("g{i}"), &cs[i].path(), "eth0", &c)
                .1,
            0
        );
    }
    // GC needs 1.1.0.
    let mut old = conf.clone();
    old["cniVersion"] = json!("1.0.0");
    assert_eq!(host.cni("GC", "", "", "", &old).0["code"], 1);
    for i in 0..2 {
        host.del(&format!("g{i}"), &cs[i].path());
    }
    host.assert_clean();
}

#[test]
fn restart_adopts_running_containers_and_cleans_gone_ones() {
    let mut host = Host::start("h", POOLS_V4);
    let c1 = Netns::new("c1").unwrap();
    let c2 = Netns::new("c2").unwrap();
    let r1 = host.add("r1", &c1);
    host.add("r2", &c2);
    let hif1 = r1["interfaces"][0]["name"].as_str().unwrap().to_string();
    let (host_idx, cont_idx) = (link_index(&host.ns, &hif1), link_index(&c1, "eth0"));

    host.daemon
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(5));
    drop(c2); // container 2 goes away while flatnetd is down
    host.start_daemon();

    // c1 untouched: same interfaces (not re-created), still checks out.
    assert_eq!(link_index(&host.ns, &hif1), host_idx);
    assert_eq!(link_index(&c1, "eth0"), cont_idx);
    let mut conf = host.conf("1.1.0");
    conf["prevResult"] = r1.clone();
    assert_eq!(host.cni("CHECK", "r1", &c1.path(), "eth0", &conf).1, 0);
    // c2's allocation, rules and record are gone.
    wait_for("r2 cleaned up", Duration::from_secs(5), || {
        Ok((host.allocations().len() == 1).then_some(()))
    })
    .unwrap();
    assert_eq!(host.flatnet_links(), vec![hif1.clone()]);
    assert_eq!(host.spoof_rules("iptables").len(), 1);
    let eps = host.cli_json(&["endpoints"]);
    assert_eq!(eps.as_array().unwrap().len(), 1);
    assert_eq!(eps[0]["container_id"], "r1");

    // A new container reaches the adopted one.
    let c3 = Netns::new("c3").unwrap();
    host.add("r3", &c3);
    assert!(c3.exec("ping", &["-c1", "-W2", &result_v4(&r1)]).is_ok());
    host.del("r1", &c1.path());
    host.del("r3", &c3.path());
    host.assert_clean();
}

#[test]
fn failure_after_the_veth_exists_rolls_everything_back() {
    // Dual-stack host; the container refuses IPv6, so the ADD fails inside
    // the container after the veth pair and the IPv4 address exist.
    let host = Host::start("h", POOLS_DUAL);
    let c = Netns::new("c").unwrap();
    c.sysctl("net.ipv6.conf.all.disable_ipv6", "1").unwrap();
    c.sysctl("net.ipv6.conf.default.disable_ipv6", "1").unwrap();
    let (v, code) = host.cni("ADD", "rb", &c.path(), "eth0", &host.conf("1.1.0"));
    assert_eq!((code, v["code"].as_u64()), (1, Some(100)), "{v}");
    assert!(v["details"].as_str().unwrap().contains("/128"), "{v}");
    assert!(
        !has_link(&c, "eth0"),
        "half-made interface left in the container"
    );
    host.assert_clean();
    // The same container works once it accepts IPv6.
    c.sysctl("net.ipv6.conf.all.disable_ipv6", "0").unwrap();
    c.sysctl("net.ipv6.conf.default.disable_ipv6", "0").unwrap();
    host.add("rb", &c);
    host.del("rb", &c.path());
    host.assert_clean();
}

#[test]
fn gc_racing_adds_never_splits_records_from_allocations() {
    let host = Host::start("h", POOLS_V4);
    let cs: Vec<Netns> = (0..16).map(|_| Netns::new("c").unwrap()).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let mut conf = host.conf("1.1.0");
            conf["cni.dev/valid-attachments"] = json!([]);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (out, code) = host.cni("GC", "", "", "", &conf);
                assert_eq!(code, 0, "{out}");
                n += 1;
            }
            n
        });
        let adds: Vec<_> = cs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let host = &host;
                s.spawn(move || {
                    host.cni(
                        "ADD",
                        &format!("r{i}"),
                        &c.path(),
                        "eth0",
                        &host.conf("1.1.0"),
                    )
                })
            })
            .collect();
        for a in adds {
            let (v, code) = a.join().unwrap();
            assert_eq!(code, 0, "{v}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(gc.join().unwrap() > 0);
    });
    // Whatever GC removed, it removed whole: records, allocations and veths agree.
    let check = host.cli_json(&["ipam", "check"]);
    assert_eq!(check["ok"], true, "{check}");
    let eps = host.cli_json(&["endpoints"]).as_array().unwrap().len();
    assert_eq!(host.allocations().len(), eps);
    assert_eq!(host.flatnet_links().len(), eps);
    for (i, c) in cs.iter().enumerate() {
        host.del(&format!("r{i}"), &c.path());
    }
    host.assert_clean();
}
