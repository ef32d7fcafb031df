//! Test harness: a "host" network namespace running flatnetd, container
//! namespaces, and the real flatnet-cni binary as the runtime would run it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub mod dns;
pub mod docker;
pub mod fabric;
pub mod podman;
pub mod policy;

use flatnet_lab::{Daemon, Netns, wait_for};
use serde_json::{Value, json};

pub const FLATNETD: &str = env!("CARGO_BIN_EXE_flatnetd");
pub const CNI: &str = env!("CARGO_BIN_EXE_flatnet-cni");
pub const CLI: &str = env!("CARGO_BIN_EXE_flatnet");

pub struct Host {
    pub ns: Netns,
    pub dir: tempfile::TempDir,
    pub daemon: Option<Daemon>,
}

impl Host {
    /// A host namespace with flatnetd running; `pools` is the TOML of the
    /// [[pool]] tables.
    pub fn start(tag: &str, pools: &str) -> Host {
        flatnet_lab::require_root().unwrap();
        let ns = Netns::new(tag).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file:{}/datastore", dir.path().display());
        Host::start_in(ns, dir, tag, pools, &url)
    }

    /// Like [`Host::start`] in a namespace the caller prepared (e.g. with
    /// etcd running in it), with the given datastore URL.
    pub fn start_in(ns: Netns, dir: tempfile::TempDir, tag: &str, pools: &str, url: &str) -> Host {
        Host::start_with(ns, dir, tag, "", pools, url)
    }

    /// Like [`Host::start_in`] with extra `[node]` keys (`node_extra`, e.g.
    /// router_id/asn) and `rest` appended (pools, `[[bgp.peer]]`s).
    pub fn start_with(
        ns: Netns,
        dir: tempfile::TempDir,
        tag: &str,
        node_extra: &str,
        rest: &str,
        url: &str,
    ) -> Host {
        let pools = rest;
        let cfg = format!(
            r#"[node]
name = "{tag}"
{node_extra}
[api]
socket = "{d}/flatnetd.sock"
[metrics]
listen = "127.0.0.1:9469"
[log]
level = "debug"
[dataplane]
mtu = 1400
state_dir = "{d}/state"
[datastore]
url = "{url}"
{pools}
"#,
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("flatnetd.toml"), cfg).unwrap();
        let mut h = Host {
            ns,
            dir,
            daemon: None,
        };
        h.start_daemon();
        h
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("flatnetd.sock")
    }

    pub fn start_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("flatnetd.log"))
            .unwrap();
        let mut cmd = self.ns.command(FLATNETD);
        cmd.arg("-c")
            .arg(self.dir.path().join("flatnetd.toml"))
            .stdout(Stdio::null())
            .stderr(log);
        self.daemon = Some(self.ns.spawn(&mut cmd).unwrap());
        let sock = self.socket();
        let d = self.daemon.as_mut().unwrap();
        wait_for("flatnetd socket", Duration::from_secs(20), || {
            if !d.is_running() {
                return Err(flatnet_lab::LabError::Other("flatnetd exited".into()));
            }
            Ok(std::os::unix::net::UnixStream::connect(&sock)
                .ok()
                .map(|_| ()))
        })
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.log()));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("flatnetd.log")).unwrap_or_default()
    }

    pub fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "flatnet",
            "type": "flatnet-cni",
            "flatnetd_socket": self.socket(),
        })
    }

    /// Runs the plugin like a runtime: env vars + config on stdin.
    pub fn cni(
        &self,
        command: &str,
        id: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> (Value, i32) {
        cni_raw(
            command,
            &[
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", ifname),
                ("CNI_PATH", "/nonexistent"),
            ],
            conf.to_string().as_bytes(),
        )
    }

    pub fn add(&self, id: &str, c: &Netns) -> Value {
        let (v, code) = self.cni("ADD", id, &c.path(), "eth0", &self.conf("1.1.0"));
        assert_eq!(code, 0, "ADD failed: {v}\nlog:\n{}", self.log());
        v
    }

    pub fn del(&self, id: &str, netns: &str) {
        let (v, code) = self.cni("DEL", id, netns, "eth0", &self.conf("1.1.0"));
        assert_eq!(code, 0, "DEL failed: {v}");
    }

    /// `flatnet <args> --json`
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = Command::new(CLI)
            .arg("--socket")
            .arg(self.socket())
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "flatnet {args:?}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    pub fn ip_json(&self, args: &[&str]) -> Value {
        ns_ip_json(&self.ns, args)
    }

    /// flatnet host veths present in the host namespace.
    pub fn flatnet_links(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("flat") && n.len() == 13)
            .map(String::from)
            .collect()
    }

    /// Routes with flatnet's protocol number (200), excluding blackholes.
    pub fn flatnet_routes(&self, fam: &str) -> Vec<Value> {
        self.ip_json(&[fam, "route", "show", "proto", "200"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"].as_str() != Some("blackhole"))
            .cloned()
            .collect()
    }

    pub fn spoof_rules(&self, bin: &str) -> Vec<String> {
        let out = self
            .ns
            .exec_stdout(bin, &["-w", "-t", "raw", "-S", "FLATNET-ANTISPOOF"])
            .unwrap_or_default();
        out.lines()
            .filter(|l| l.contains("-j DROP"))
            .map(String::from)
            .collect()
    }

    pub fn allocations(&self) -> Vec<Value> {
        self.cli_json(&["ipam", "show"])["allocations"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Endpoint records (key, JSON) under `/flatnet/endpoints/`, read
    /// straight from the host's file datastore through the store API.
    pub fn ds_endpoints(&self) -> Vec<(String, Value)> {
        use flatnet_ipam::Datastore;
        let store = flatnet_ipam::FileStore::open(self.dir.path().join("datastore")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let l = rt
            .block_on(store.list(flatnet_agent::store::ENDPOINTS_PREFIX))
            .unwrap();
        l.kvs
            .iter()
            .map(|kv| (kv.key.clone(), serde_json::from_slice(&kv.value).unwrap()))
            .collect()
    }

    /// Asserts the host carries nothing for any container.
    pub fn assert_clean(&self) {
        // DEL answers once the attachment is inert (routes, address, record
        // gone); the veth pair is reaped right after, off the DEL's path.
        let gone = wait_for("veths reaped", Duration::from_secs(10), || {
            Ok(self.flatnet_links().is_empty().then_some(()))
        });
        assert!(
            gone.is_ok(),
            "veths left behind: {:?}",
            self.flatnet_links()
        );
        assert_eq!(
            self.flatnet_routes("-4"),
            Vec::<Value>::new(),
            "v4 routes left"
        );
        assert_eq!(
            self.flatnet_routes("-6"),
            Vec::<Value>::new(),
            "v6 routes left"
        );
        // The anti-spoofing rule is static (one per family, for all veths).
        assert!(
            self.spoof_rules("iptables").len() <= 1,
            "per-endpoint rules appeared"
        );
        assert_eq!(
            self.allocations(),
            Vec::<Value>::new(),
            "allocations leaked"
        );
        assert_eq!(
            self.cli_json(&["endpoints"]),
            json!([]),
            "endpoint records left"
        );
        assert_eq!(
            self.ds_endpoints(),
            vec![],
            "endpoint records left in the datastore"
        );
    }
}

pub fn ns_ip_json(ns: &Netns, args: &[&str]) -> Value {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    let out = ns.ip(&a).unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    if s.trim().is_empty() {
        return json!([]);
    }
    serde_json::from_str(&s).unwrap()
}

pub fn cni_raw(command: &str, env: &[(&str, &str)], stdin: &[u8]) -> (Value, i32) {
    let mut cmd = Command::new(CNI);
    cmd.env_clear().env("CNI_COMMAND", command);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "plugin printed non-JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    (v, out.status.code().unwrap_or(-1))
}

/// The IPv4 address (without prefix) of a CNI result.
pub fn result_v4(r: &Value) -> String {
    r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["address"].as_str())
        .find(|a| !a.contains(':'))
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

pub fn result_v6(r: &Value) -> Option<String> {
    r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["address"].as_str())
        .find(|a| a.contains(':'))
        .map(|a| a.split('/').next().unwrap().to_string())
}

pub fn sysctl(ns: &Netns, key: &str) -> String {
    ns.exec_stdout("sysctl", &["-n", key])
        .unwrap()
        .trim()
        .to_string()
}

pub fn path_exists(p: &str) -> bool {
    Path::new(p).exists()
}

pub const POOLS_V4: &str = "[[pool]]\ncidr = \"10.244.0.0/16\"\nblock_size = 26\n";
pub const POOLS_DUAL: &str = "[[pool]]\ncidr = \"10.244.0.0/16\"\nblock_size = 26\n[[pool]]\ncidr = \"fd00:244::/56\"\nblock_size = 122\n";

/// A ToR namespace linked to a host namespace running flatnetd with one
/// `[[bgp.peer]]` (the ToR, 10.0.0.1, AS 65001; the host is 10.0.0.2, AS
/// 65002). `pools` is the TOML of the [[pool]] tables. No router runs in
/// the ToR yet.
pub fn tor_and_bgp_host(tag: &str, pools: &str) -> (Netns, Host) {
    flatnet_lab::require_root().unwrap();
    let tor = Netns::new("tor").unwrap();
    let ns = Netns::new(tag).unwrap();
    flatnet_lab::veth(&tor, "eth0", &ns, "eth0").unwrap();
    tor.addr_add("eth0", "10.0.0.1/30").unwrap();
    ns.addr_add("eth0", "10.0.0.2/30").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dir.path().display());
    let rest = format!("{pools}[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 65001\n");
    let host = Host::start_with(
        ns,
        dir,
        tag,
        "router_id = \"10.0.0.2\"\nasn = 65002",
        &rest,
        &url,
    );
    (tor, host)
}

/// FRR in the ToR of [`tor_and_bgp_host`], peered with the host; returns
/// once the session is Established.
pub fn start_tor<'a>(tor: &'a Netns, host: &Host) -> flatnet_lab::frr::Frr<'a> {
    use flatnet_lab::{NeighborConfig, Router, RouterConfig};
    let frr = flatnet_lab::frr::Frr::start(
        tor,
        RouterConfig::new("1.1.1.1".parse().unwrap(), 65001)
            .neighbor(NeighborConfig::new("10.0.0.2".parse().unwrap(), 65002)),
    )
    .unwrap();
    frr.wait_established("10.0.0.2", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    frr
}

/// `GET path` on flatnetd's metrics listener (127.0.0.1:9469) inside `ns`.
pub fn http_get(ns: &Netns, path: &'static str) -> String {
    use std::io::Read;
    ns.run_in(move || {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9469").unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .unwrap()
}

/// The IPv4 prefixes a router learned from its peers (not its own), in its order.
pub fn learned_prefixes(r: &(impl flatnet_lab::Router + ?Sized)) -> Vec<String> {
    r.rib(flatnet_lab::Family::Ipv4Unicast)
        .unwrap()
        .into_iter()
        .filter(|e| e.learned)
        .map(|e| e.prefix)
        .collect()
}
