//! The shipped topologies come up under `flatnet-lab up` and go down again,
//! with their summaries checked; `down` after a SIGKILLed `up` leaves no
//! namespace or process behind; a bad topology file is rejected with file
//! and line before anything is created. Each test works on its own copy of
//! a topology under its own lab name, so they run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use flatnet_tests::lab::deploy::{leftovers, run_dir};
use flatnet_tests::lab::topology::{Topology, policy};
use serde_json::Value;

/// `target/<profile>` of this test binary (`target/<profile>/deps/…`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf()
}

fn lab_bin() -> PathBuf {
    let dir = bin_dir();
    for b in ["flatnet-lab", "flatnetd", "flatnet", "flatnet-cni"] {
        assert!(
            dir.join(b).exists(),
            "{} missing: build the workspace binaries first (`cargo build --workspace --bins`)",
            dir.join(b).display()
        );
    }
    dir.join("flatnet-lab")
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lab/topologies")
        .join(name)
}

/// Copies a shipped topology's folder into `dir`, renaming the lab.
fn copy_as(name: &str, lab: &str, dir: &Path) -> PathBuf {
    let src = shipped(name);
    let out = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", src.display()))
        .arg(dir)
        .status()
        .unwrap();
    assert!(out.success());
    let f = dir.join(format!("{name}.clab.yml"));
    let text = std::fs::read_to_string(&f).unwrap();
    let text = text.replacen(&format!("name: {name}\n"), &format!("name: {lab}\n"), 1);
    std::fs::write(&f, text).unwrap();
    f
}

fn flatnet_lab(args: &[&str]) -> Output {
    Command::new(lab_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Takes a lab down when the test ends, also when it fails.
struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = flatnet_lab(&["down", &self.0]);
    }
}

/// Brings a copy of topology `name` up as `lab` (after `edit` on its
/// text; `hosts` for `scale`), checks the summary, takes it down and checks
/// that nothing is left.
fn up_down_checked(
    name: &str,
    lab: &str,
    hosts: Option<usize>,
    sessions: usize,
    edit: impl Fn(String) -> String,
    check: impl Fn(&Value, &str),
) {
    flatnet_tests::lab::require_root().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = copy_as(name, lab, dir.path());
    std::fs::write(&file, edit(std::fs::read_to_string(&file).unwrap())).unwrap();
    let topo = Topology::load_scaled(&file, hosts).unwrap();
    let guard = Down(lab.to_string());
    let n = hosts.map(|n| n.to_string());
    let mut args = vec!["up", file.to_str().unwrap(), "--json"];
    if let Some(n) = &n {
        args.extend(["--hosts", n.as_str()]);
    }
    let out = flatnet_lab(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "up failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("BGP sessions Established: done in"),
        "progress lines: {stderr}"
    );
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["lab"], lab);
    assert_eq!(s["nodes"].as_array().unwrap().len(), topo.nodes.len());

    // Every session at every ToR is Established.
    let sess = s["sessions"].as_array().unwrap();
    assert_eq!(sess.len(), sessions, "{stdout}");
    assert!(sess.iter().all(|r| r["state"] == "Established"), "{stdout}");
    assert_eq!(s["all_established"], true);

    // Each ToR learned every container's address block, v4 and v6.
    let containers = s["containers"].as_array().unwrap();
    let n_ctr: usize = topo.hosts().map(|(_, h)| h.containers.len()).sum();
    assert_eq!(containers.len(), n_ctr);
    for (tor, _, _) in topo.tors() {
        let routes: Vec<&str> = s["tor_routes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["node"] == tor.name.as_str())
            .map(|r| r["prefix"].as_str().unwrap())
            .collect();
        let hosts = topo.hosts().count();
        assert_eq!(routes.len(), 2 * hosts, "{} routes: {routes:?}", tor.name);
    }
    let host_routes = s["host_routes"].as_array().unwrap();
    if topo.flatnet.static_default {
        // Each host's kernel has its ECMP default.
        for (h, _) in topo.hosts() {
            assert!(
                host_routes
                    .iter()
                    .any(|r| r["node"] == h.name.as_str() && r["prefix"] == "default"),
                "{stdout}"
            );
        }
    } else {
        // No static default anywhere: each host reaches every other host's
        // containers by a learned route over each of its peers (ECMP).
        for (h, hd) in topo.hosts() {
            assert!(
                !host_routes
                    .iter()
                    .any(|r| r["node"] == h.name.as_str() && r["prefix"] == "default"),
                "{} has a default route: {stdout}",
                h.name
            );
            for c in containers.iter().filter(|c| c["host"] != h.name.as_str()) {
                for a in c["addrs"].as_array().unwrap() {
                    let addr: std::net::IpAddr = a.as_str().unwrap().parse().unwrap();
                    let r = host_routes
                        .iter()
                        .filter(|r| r["node"] == h.name.as_str())
                        .find(|r| {
                            r["prefix"]
                                .as_str()
                                .and_then(|p| p.parse::<ipnetwork::IpNetwork>().ok())
                                .is_some_and(|n| n.contains(addr) && n.prefix() > 0)
                        })
                        .unwrap_or_else(|| panic!("{}: no route to {addr}: {stdout}", h.name));
                    assert_eq!(
                        r["via"].as_str().unwrap().split(',').count(),
                        hd.peers.len(),
                        "{}: route to {addr} over every peer: {r}",
                        h.name
                    );
                }
            }
        }
    }

    // Full reachability: every ordered pair, every address, by ping and TCP
    // where the policy allows it; where it denies, nothing gets through.
    let reach = s["reach"].as_array().unwrap();
    assert_eq!(reach.len(), n_ctr * (n_ctr - 1) * 2, "v4 and v6 per pair");
    assert_eq!(s["full_reachability"], true);
    let declared = !topo.flatnet.policies.is_empty();
    assert_eq!(s["policy_declared"], declared);
    assert_eq!(s["policy_applied"], declared, "applied iff declared");
    assert_eq!(s["policy_as_declared"], true, "{stdout}");
    let app = |n: &str| -> Option<String> {
        containers
            .iter()
            .find(|c| c["name"] == n)
            .and_then(|c| c["app"].as_str().map(String::from))
    };
    for r in reach {
        let (from, to) = (r["from"].as_str().unwrap(), r["to"].as_str().unwrap());
        let port = containers.iter().find(|c| c["name"] == to).unwrap()["port"]
            .as_u64()
            .unwrap() as u16;
        let want = policy::allowed(
            &topo.flatnet.policies,
            app(from).as_deref(),
            app(to).as_deref(),
            port,
        );
        assert_eq!(r["expected_tcp"], want, "{from} -> {to}");
        assert_eq!(r["tcp"], want, "{from} -> {to} {}: TCP", r["addr"]);
        let ping = policy::ping_allowed(
            &topo.flatnet.policies,
            app(from).as_deref(),
            app(to).as_deref(),
        );
        assert_eq!(r["expected_ping"], ping, "{from} -> {to}");
        assert_eq!(r["ping"], ping, "{from} -> {to} {}: ping", r["addr"]);
    }

    // status sees the same lab; down removes all of it.
    let st = flatnet_lab(&["status", lab, "--json"]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    check(&s, lab);
    let pids = lab_pids(lab);
    assert!(!pids.is_empty());
    drop(guard);
    assert_gone(lab, &pids);
}

/// PIDs of processes inside the lab's namespaces.
fn lab_pids(lab: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for ns in leftovers(lab) {
        let out = Command::new("ip")
            .args(["netns", "pids", &ns])
            .output()
            .unwrap();
        v.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    v
}

/// Running (not zombie) processes among `pids`.
fn alive(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .map(|r| r.trim_start().starts_with('Z'))
                        .map(|z| !z)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn assert_gone(lab: &str, pids: &[u32]) {
    assert_eq!(leftovers(lab), Vec::<String>::new(), "namespaces left");
    assert!(!run_dir(lab).exists(), "run dir left");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !alive(pids).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(alive(pids), Vec::<u32>::new(), "processes left");
}

#[test]
fn single_tor_up_summary_down() {
    up_down_checked("single-tor", "t-single", None, 1, |t| t, |_, _| {});
}

/// two-tier's policy is enforced, not only declared: web reaches api on
/// 8080 (an edge), db does not reach web (no edge), and the TCP matrix in
/// the summary says so for both pairs on both families.
fn two_tier_policy(s: &Value, lab: &str) {
    let rows = |from: &str, to: &str| -> Vec<Value> {
        s["reach"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["from"] == from && r["to"] == to)
            .cloned()
            .collect()
    };
    let allowed = rows("web1", "api2");
    let denied = rows("db2", "web1");
    assert_eq!(allowed.len(), 2, "v4 and v6");
    assert_eq!(denied.len(), 2, "v4 and v6");
    for r in &allowed {
        assert_eq!(
            (&r["expected_tcp"], &r["tcp"]),
            (&Value::Bool(true), &Value::Bool(true)),
            "{r}"
        );
    }
    for r in &denied {
        assert_eq!(
            (&r["expected_tcp"], &r["tcp"]),
            (&Value::Bool(false), &Value::Bool(false)),
            "{r}"
        );
        assert_eq!(r["ping"], false, "{r}");
    }
    // Same app on different hosts: allowed, ping too.
    for r in rows("db2", "db3") {
        assert_eq!(
            (&r["tcp"], &r["ping"]),
            (&Value::Bool(true), &Value::Bool(true)),
            "{r}"
        );
    }
    // The matrix is measured, not copied from the declaration: with the
    // document gone from flatnet, `status` fails and names a pair whose
    // edge no longer lets it through.
    let del = flatnet_lab(&[
        "exec", "host1", "--lab", lab, "--", "flatnet", "policy", "delete", lab,
    ]);
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = flatnet_lab(&["status", lab, "--json"]);
        let err = String::from_utf8_lossy(&st.stderr);
        if !st.status.success() {
            assert!(
                err.contains("not as the policy declares: web1 -> api2 10.244.")
                    && err.contains("policy allows TCP to port 8080, the connect did not"),
                "{err}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "status still succeeds: {err}");
    }
}

#[test]
fn two_tier_up_summary_down() {
    up_down_checked("two-tier", "t-twotier", None, 6, |t| t, two_tier_policy);
}

/// Fabric links with IPv6 link-local addresses only: sessions over
/// link-local, IPv4 with extended next hop.
#[test]
fn unnumbered_up_summary_down() {
    up_down_checked("unnumbered", "t-unnum", None, 4, |t| t, |_, _| {});
}

#[test]
fn scale_at_small_n_up_summary_down() {
    up_down_checked("scale", "t-scale", Some(3), 6, |t| t, |_, _| {});
}

/// The ToR's daemon is chosen per node: BIRD 2 with its config next to the
/// topology.
#[test]
fn single_tor_with_a_bird_tor() {
    up_down_checked(
        "single-tor",
        "t-bird",
        None,
        1,
        |t| {
            t.replace("flatnet.router: frr", "flatnet.router: bird")
                .replace(
                    "tor1/frr.conf:/etc/frr/frr.conf",
                    "tor1/bird.conf:/etc/bird/bird.conf",
                )
        },
        |_, _| {},
    );
}

/// ... and GoBGP.
#[test]
fn single_tor_with_a_gobgp_tor() {
    up_down_checked(
        "single-tor",
        "t-gobgp",
        None,
        1,
        |t| {
            t.replace("flatnet.router: frr", "flatnet.router: gobgp")
                .replace(
                    "tor1/frr.conf:/etc/frr/frr.conf",
                    "tor1/gobgp.toml:/etc/gobgp/gobgp.toml",
                )
        },
        |_, _| {},
    );
}

#[test]
fn down_after_sigkilled_up_leaves_nothing() {
    flatnet_tests::lab::require_root().unwrap();
    let lab = "t-killed";
    let dir = tempfile::tempdir().unwrap();
    let file = copy_as("two-tier", lab, dir.path());
    let _guard = Down(lab.to_string());
    let mut child = Command::new(lab_bin())
        .args(["up", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it mid-way: once some host's flatnetd is up.
    let sock = run_dir(lab).join("host1/flatnetd.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "up never started flatnetd");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let pids = lab_pids(lab);
    assert!(!pids.is_empty(), "the killed up left daemons to clean");
    assert!(!leftovers(lab).is_empty());
    let out = flatnet_lab(&["down", lab]);
    assert!(out.status.success());
    assert_gone(lab, &pids);
}

#[test]
fn bad_topology_is_rejected_before_anything_is_created() {
    flatnet_tests::lab::require_root().unwrap();
    let lab = "t-bad";
    let dir = tempfile::tempdir().unwrap();
    let file = copy_as("single-tor", lab, dir.path());
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("\"host1:eth0\""))
        .unwrap()
        + 1;
    std::fs::write(&file, text.replace("\"host1:eth0\"", "\"host7:eth0\"")).unwrap();
    let out = flatnet_lab(&["up", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "{}:{line}: link endpoint \"host7:eth0\": unknown node \"host7\"",
            file.display()
        )),
        "{stderr}"
    );
    assert_eq!(leftovers(lab), Vec::<String>::new());
    assert!(!run_dir(lab).exists());
}

#[test]
fn missing_packages_are_named_before_anything_is_created() {
    flatnet_tests::lab::require_root().unwrap();
    let lab = "t-nodeps";
    let dir = tempfile::tempdir().unwrap();
    let file = copy_as("single-tor", lab, dir.path());
    // An empty PATH: ping and setsid are not found (ip is, in /usr/sbin).
    let out = Command::new(lab_bin())
        .args(["up", file.to_str().unwrap()])
        .env("PATH", dir.path().join("nowhere"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("missing packages: ")
            && stderr.contains("iputils-ping (for ping)")
            && stderr.contains("util-linux (for setsid)")
            && stderr.contains("--install-deps"),
        "{stderr}"
    );
    assert_eq!(leftovers(lab), Vec::<String>::new());
    assert!(!run_dir(lab).exists());
}

/// A session that never comes up: `up` fails naming the ToR, the session's
/// state and what both daemons logged last, and leaves the lab for a look.
#[test]
fn failed_up_names_the_node_and_what_it_last_saw() {
    flatnet_tests::lab::require_root().unwrap();
    let lab = "t-badas";
    let dir = tempfile::tempdir().unwrap();
    let file = copy_as("single-tor", lab, dir.path());
    let frr = dir.path().join("tor1/frr.conf");
    let conf = std::fs::read_to_string(&frr).unwrap();
    std::fs::write(&frr, conf.replace("remote-as 64601", "remote-as 64699")).unwrap();
    let _guard = Down(lab.to_string());
    let out = flatnet_lab(&["up", file.to_str().unwrap(), "--timeout", "8"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("waiting for BGP sessions Established: 1 missing"),
        "progress while waiting: {stderr}"
    );
    assert!(
        stderr.contains("flatnet-lab: tor1: tor1 session to 10.255.1.1 is "),
        "{stderr}"
    );
    assert!(stderr.contains("--- last lines of bgpd.out:"), "{stderr}");
    assert!(
        stderr.contains("Bad Peer AS"),
        "the daemons' view: {stderr}"
    );
    assert!(!leftovers(lab).is_empty(), "left up for a look");
}
