//! flatnetd as a daemon: config checking, socket permissions, API
//! versioning, metrics and health, the CLI's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use flatnet_lab::Netns;

#[test]
fn check_config_accepts_good_and_locates_bad() {
    let ok = Command::new(FLATNETD)
        .arg("--check-config")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/flatnetd.example.toml"
        ))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.0.0.0/8\"\nblok_size = 26\n",
    )
    .unwrap();
    let out = Command::new(FLATNETD)
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:5:1:", bad.display())), "{err}");
    assert!(err.contains("unknown field `blok_size`"), "{err}");
}

#[test]
fn socket_is_root_only_metrics_and_health_answer() {
    let host = Host::start("h", POOLS_V4);
    let mode = std::fs::metadata(host.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let c = Netns::new("c").unwrap();
    host.add("m1", &c);
    let health = http_get(&host.ns, "/healthz");
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    let m = http_get(&host.ns, "/metrics");
    assert!(
        m.contains("flatnet_cni_operations_total{op=\"add\",result=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("flatnet_cni_operation_duration_seconds_bucket"),
        "{m}"
    );
    assert!(m.contains("flatnet_endpoints 1"), "{m}");
    assert!(m.contains("flatnet_ipam_addresses_used 1"), "{m}");
    host.del("m1", &c.path());
}

/// Several requests on one connection (HTTP/1.1 keep-alive, pipelined):
/// health, an unknown path, a wrong method, and metrics last.
#[test]
fn metrics_server_keeps_alive_and_answers_404_and_405() {
    let host = Host::start("h", POOLS_V4);
    let out = host
        .ns
        .run_in(|| {
            let mut s = std::net::TcpStream::connect("127.0.0.1:9469").unwrap();
            s.write_all(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
                  GET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
                  POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n\
                  GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap();
    let statuses: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(|l| &l[9..12])
        .collect();
    assert_eq!(statuses, vec!["200", "404", "405", "200"], "{out}");
    assert!(out.contains("flatnet_endpoints 0"), "{out}");
}

#[test]
fn api_rejects_other_versions_and_garbage() {
    let host = Host::start("h", POOLS_V4);
    let ask = |line: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(host.socket()).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let v = ask("{\"version\":2,\"op\":\"status\"}\n");
    assert_eq!(v["error"]["kind"], "unsupported_version", "{v}");
    let v = ask("{\"version\":99,\"op\":\"frobnicate\"}\n");
    assert_eq!(v["error"]["kind"], "unsupported_version", "{v}");
    let v = ask("not json\n");
    assert_eq!(v["error"]["kind"], "invalid_request", "{v}");
    let v = ask("{\"version\":1,\"op\":\"status\"}\n");
    assert_eq!(v["ok"]["kind"], "status", "{v}");
    assert_eq!(v["ok"]["data"]["ready"], true, "{v}");
}

#[test]
fn cli_prints_aligned_tables_and_json() {
    let host = Host::start("h", POOLS_V4);
    let c1 = Netns::new("c").unwrap();
    let c2 = Netns::new("c").unwrap();
    host.add("container-one", &c1);
    host.add("two", &c2);
    let run = |args: &[&str]| {
        let out = Command::new(CLI)
            .arg("--socket")
            .arg(host.socket())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let t = run(&["endpoints"]);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3, "{t}");
    assert!(lines[0].starts_with("CONTAINER"), "{t}");
    // Columns line up: IFNAME starts at the same offset on every line.
    let col = lines[0].find("IFNAME").unwrap();
    assert!(lines[1..].iter().all(|l| &l[col..col + 4] == "eth0"), "{t}");
    let s = run(&["status"]);
    assert!(s.contains("ready") && s.contains("true"), "{s}");
    let i = run(&["ipam", "show"]);
    assert!(
        i.contains("BLOCK") && i.contains("10.244.") && i.contains("/26  2"),
        "{i}"
    );
    assert_eq!(run(&["ipam", "check"]).trim(), "ipam: consistent");
    let j = host.cli_json(&["ipam", "check"]);
    assert_eq!(j["ok"], true);
    host.del("container-one", &c1.path());
    host.del("two", &c2.path());
}

#[test]
fn cni_status_reflects_flatnetd() {
    let mut host = Host::start("h", POOLS_V4);
    let (v, code) = host.cni("STATUS", "", "", "", &host.conf("1.1.0"));
    assert_eq!(code, 0, "{v}");
    host.daemon
        .as_mut()
        .unwrap()
        .terminate(std::time::Duration::from_secs(5));
    let (v, code) = host.cni("STATUS", "", "", "", &host.conf("1.1.0"));
    assert_eq!((code, v["code"].as_u64()), (1, Some(50)), "{v}");
    let c = Netns::new("c").unwrap();
    let (v, _) = host.cni("ADD", "x", &c.path(), "eth0", &host.conf("1.1.0"));
    assert_eq!(v["code"], 11, "{v}");
}

#[test]
fn etcd_datastore_add_restart_del() {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("he").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("etcd");
    let _etcd = ns
        .spawn(
            ns.command("etcd")
                .args(["--name", "t", "--data-dir"])
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    "http://127.0.0.1:23790",
                    "--advertise-client-urls",
                    "http://127.0.0.1:23790",
                    "--listen-peer-urls",
                    "http://127.0.0.1:23800",
                    "--initial-advertise-peer-urls",
                    "http://127.0.0.1:23800",
                    "--initial-cluster",
                    "t=http://127.0.0.1:23800",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .unwrap();
    // flatnetd waits for a datastore that is not up yet (it retries).
    let mut host = Host::start_in(ns, dir, "he", POOLS_V4, "etcd://127.0.0.1:23790");
    let c = Netns::new("c").unwrap();
    let r = host.add("e1", &c);
    assert_eq!(
        host.cli_json(&["status"])["datastore"],
        "etcd://127.0.0.1:23790"
    );
    host.daemon
        .as_mut()
        .unwrap()
        .terminate(std::time::Duration::from_secs(5));
    host.start_daemon();
    let mut conf = host.conf("1.1.0");
    conf["prevResult"] = r.clone();
    assert_eq!(host.cni("CHECK", "e1", &c.path(), "eth0", &conf).1, 0);
    assert_eq!(host.allocations().len(), 1);
    host.del("e1", &c.path());
    host.assert_clean();
}

#[test]
fn pool_that_disagrees_with_the_datastore_stops_startup() {
    let mut host = Host::start("h", POOLS_V4);
    host.daemon
        .as_mut()
        .unwrap()
        .terminate(std::time::Duration::from_secs(5));
    let cfg = host.dir.path().join("flatnetd.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("block_size = 26", "block_size = 28")).unwrap();
    let log = host.dir.path().join("second.log");
    let mut d = host
        .ns
        .spawn(
            host.ns
                .command(FLATNETD)
                .arg("-c")
                .arg(&cfg)
                .stderr(std::fs::File::create(&log).unwrap()),
        )
        .unwrap();
    flatnet_lab::wait_for(
        "flatnetd to refuse",
        std::time::Duration::from_secs(15),
        || Ok((!d.is_running()).then_some(())),
    )
    .unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains("pool 10.244.0.0-16 exists"), "{err}");
}
