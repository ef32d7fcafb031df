//! Config reload against three FRR ToRs, and again against three BIRD 2
//! ToRs: SIGHUP adds one peer and removes another while the third session's
//! uptime, as the ToR itself counts it, is unbroken; `flatnet reload` resets
//! only a changed peer. Also the routing
//! CLI: `flatnet bgp neighbors`, `bgp routes --advertised-to`, `fib`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Host, POOLS_V4};
use flatnet_lab::bird::Bird;
use flatnet_lab::frr::Frr;
use flatnet_lab::{NeighborConfig, Netns, Router, RouterConfig, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn peer(i: u8) -> String {
    format!("[[bgp.peer]]\naddress = \"10.0.{i}.1\"\nasn = 6500{i}\n")
}

/// FRR's own view of the host on ToR `i`.
fn frr_neighbor(frr: &Frr, i: u8) -> Value {
    let v = frr.vtysh_json("show bgp neighbors json").unwrap();
    v[format!("10.0.{i}.2")].clone()
}

fn established(n: &Value) -> bool {
    n["bgpState"] == "Established"
}

fn wait_frr(frr: &Frr, i: u8, what: &str, f: impl Fn(&Value) -> bool, host: &Host) -> Value {
    wait_for(what, T, || {
        let n = frr_neighbor(frr, i);
        Ok(f(&n).then_some(n))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\nlog:\n{}", frr_neighbor(frr, i), host.log()))
}

/// `flatnet bgp neighbors`: exactly `addrs`, all Established.
fn all_established(host: &Host, addrs: &[&str]) -> Value {
    let n = host.cli_json(&["bgp", "neighbors"]);
    let list = n.as_array().unwrap();
    let got: Vec<&str> = list
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    assert_eq!(got, addrs, "{n}");
    assert!(list.iter().all(|p| p["state"] == "Established"), "{n}");
    n
}

fn rewrite_peers(host: &Host, peers: &str) {
    let path = host.dir.path().join("flatnetd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let head = text.split("[[bgp.peer]]").next().unwrap().to_string();
    std::fs::write(&path, format!("{head}{peers}")).unwrap();
}

/// Three ToR namespaces (ToR i is 10.0.i.1/30 on its eth0, the host
/// 10.0.i.2/30 on eth<i>) and flatnetd peering with ToRs 1 and 2.
fn three_tors(tag: &str) -> (Vec<Netns>, Host) {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new(tag).unwrap();
    let tors: Vec<Netns> = (1..=3)
        .map(|i| Netns::new(&format!("{tag}t{i}")).unwrap())
        .collect();
    for (i, tor) in (1u8..).zip(&tors) {
        let hif = format!("eth{i}");
        flatnet_lab::veth(tor, "eth0", &ns, &hif).unwrap();
        tor.addr_add("eth0", &format!("10.0.{i}.1/30")).unwrap();
        ns.addr_add(&hif, &format!("10.0.{i}.2/30")).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dir.path().display());
    let rest = format!("{POOLS_V4}{}{}", peer(1), peer(2));
    let host = Host::start_with(
        ns,
        dir,
        tag,
        "router_id = \"10.0.0.2\"\nasn = 65000",
        &rest,
        &url,
    );
    (tors, host)
}

/// ToR i's config: AS 6500i, one neighbor, the host.
fn tor_config(i: u8) -> RouterConfig {
    RouterConfig::new(format!("1.1.1.{i}").parse().unwrap(), 65000 + u32::from(i)).neighbor(
        NeighborConfig::new(format!("10.0.{i}.2").parse().unwrap(), 65000),
    )
}

fn sighup(host: &Host) {
    let pid = host.daemon.as_ref().unwrap().pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

#[test]
fn sighup_adds_and_removes_peers_and_the_third_never_notices() {
    let (tors, host) = three_tors("hrl");
    let frrs: Vec<Frr> = (1u8..)
        .zip(&tors)
        .map(|(i, tor)| Frr::start(tor, tor_config(i)).unwrap())
        .collect();
    for i in [1, 2] {
        wait_frr(&frrs[i - 1], i as u8, "session up", established, &host);
    }
    // A container claims a block; both peers learn it.
    let c = Netns::new("c").unwrap();
    host.add("r1", &c);
    let block = host.cli_json(&["ipam", "show"])["blocks"][0]["cidr"]
        .as_str()
        .unwrap()
        .to_string();
    frrs[0].wait_route(&block, T).unwrap();
    let before = frr_neighbor(&frrs[0], 1);
    assert_eq!(before["connectionsEstablished"], 1, "{before}");
    assert!(before["bgpTimerUpEstablishedEpoch"].is_u64(), "{before}");

    // The CLI shows both sessions and what is advertised.
    let n = all_established(&host, &["10.0.1.1", "10.0.2.1"]);
    assert!(
        n[0]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "route-refresh"),
        "{n}"
    );
    assert_eq!(n[0]["families"][0], "ipv4-unicast", "{n}");
    assert!(n[0]["updates_out"].as_u64().unwrap() >= 1, "{n}");
    assert_eq!(n[0]["prefixes_advertised"], 1, "{n}");
    let adv = host.cli_json(&["bgp", "routes", "--advertised-to", "10.0.1.1"]);
    assert_eq!(adv[0]["prefix"], block.as_str(), "{adv}");
    let fib = host.cli_json(&["fib"]);
    assert!(
        fib.as_array()
            .unwrap()
            .iter()
            .any(|r| r["prefix"] == block.as_str() && r["kind"] == "blackhole"),
        "{fib}"
    );

    // Prometheus: session state, prefixes and UPDATEs per peer.
    let m = common::http_get(&host.ns, "/metrics");
    assert!(
        m.contains("flatnet_bgp_session_state{peer=\"10.0.1.1\"} 6"),
        "{m}"
    );
    assert!(
        m.contains(
            "flatnet_bgp_prefixes{peer=\"10.0.1.1\",family=\"ipv4-unicast\",kind=\"advertised\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("flatnet_bgp_updates_sent_total{peer=\"10.0.2.1\"}"),
        "{m}"
    );
    assert!(
        m.contains("flatnet_kernel_route_install_errors_total 0"),
        "{m}"
    );

    // SIGHUP with peer 2 removed and peer 3 added.
    rewrite_peers(&host, &format!("{}{}", peer(1), peer(3)));
    sighup(&host);
    wait_frr(&frrs[2], 3, "added peer up", established, &host);
    frrs[2].wait_route(&block, T).unwrap();
    let gone = wait_frr(&frrs[1], 2, "removed peer down", |n| !established(n), &host);
    let why = format!(
        "{} {}",
        gone["lastNotificationReason"], gone["lastResetDueTo"]
    );
    assert!(why.contains("Cease"), "{gone}");
    eprintln!("removed peer, as FRR saw it: {why}");
    // Peer 1 never noticed: one connection, not dropped, the same
    // Established epoch (FRR derives it as now minus uptime, so it can
    // move by a second on its own).
    let after = frr_neighbor(&frrs[0], 1);
    assert!(established(&after), "{after}");
    assert_eq!(after["connectionsEstablished"], 1, "{after}");
    assert_eq!(after["connectionsDropped"], 0, "{after}");
    let epoch = |v: &Value| v["bgpTimerUpEstablishedEpoch"].as_u64().unwrap();
    assert!(epoch(&after).abs_diff(epoch(&before)) <= 1, "{after}");
    all_established(&host, &["10.0.1.1", "10.0.3.1"]);

    // `flatnet reload` with peer 3 changed (hold time): only peer 3 resets.
    rewrite_peers(&host, &format!("{}{}hold_time = 30\n", peer(1), peer(3)));
    let r = host.cli_json(&["reload"]);
    assert_eq!(r["changed"], serde_json::json!(["10.0.3.1"]), "{r}");
    assert_eq!(r["unchanged"], 1, "{r}");
    wait_frr(
        &frrs[2],
        3,
        "changed peer re-established",
        |n| established(n) && n["connectionsEstablished"] == 2,
        &host,
    );
    let still = frr_neighbor(&frrs[0], 1);
    assert_eq!(still["connectionsEstablished"], 1, "{still}");
    assert_eq!(still["connectionsDropped"], 0, "{still}");

    // A bad file is refused with its position and changes nothing.
    rewrite_peers(&host, &format!("{}{}hold_tme = 30\n", peer(1), peer(3)));
    let out = std::process::Command::new(common::CLI)
        .arg("--socket")
        .arg(host.socket())
        .arg("reload")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flatnetd.toml:") && err.contains("hold_tme"),
        "{err}"
    );
    assert!(established(&frr_neighbor(&frrs[0], 1)));
    assert!(established(&frr_neighbor(&frrs[2], 3)));
}

/// BIRD's header line for the neighbor at 10.0.i.2: (state, since). The
/// "since" column (milliseconds) changes on every state change, and BIRD
/// keeps no connection counters: an unchanged one is an unbroken session.
fn bird_proto(b: &Bird<'_>, i: u8) -> (String, String) {
    let name = b.protocol_name(&format!("10.0.{i}.2")).unwrap();
    let out = b.birdc(&["show", "protocols", &name]).unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    (cols[3].to_string(), cols[4].to_string())
}

fn bird_info(b: &Bird<'_>, i: u8) -> String {
    let name = b.protocol_name(&format!("10.0.{i}.2")).unwrap();
    b.birdc(&["show", "protocols", "all", &name]).unwrap()
}

/// The reload scenario with BIRD 2 as the ToRs: SIGHUP adds peer 3 and
/// removes peer 2 (BIRD sees a Cease), `flatnet reload` resets only the
/// changed peer 3, and peer 1's session, as BIRD tells it, never changes
/// state.
#[test]
fn bird_sighup_adds_and_removes_peers_and_the_third_never_notices() {
    let (tors, host) = three_tors("hrb");
    let birds: Vec<Bird<'_>> = (1u8..)
        .zip(&tors)
        .map(|(i, tor)| Bird::start(tor, tor_config(i)).unwrap())
        .collect();
    for (i, b) in (1u8..).zip(&birds).take(2) {
        b.wait_established(&format!("10.0.{i}.2"), T)
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    }
    let c = Netns::new("hrbc").unwrap();
    host.add("rb1", &c);
    let block = host.cli_json(&["ipam", "show"])["blocks"][0]["cidr"]
        .as_str()
        .unwrap()
        .to_string();
    birds[0].wait_route(&block, T).unwrap();
    let before = bird_proto(&birds[0], 1);
    assert_eq!(before.0, "up", "{before:?}");
    rewrite_peers(&host, &format!("{}{}", peer(1), peer(3)));
    sighup(&host);
    birds[2].wait_established("10.0.3.2", T).unwrap();
    birds[2].wait_route(&block, T).unwrap();
    let gone = wait_for("removed peer down, told why", T, || {
        let info = bird_info(&birds[1], 2);
        Ok((!info.contains("Established") && info.contains("Peer de-configured")).then_some(info))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", bird_info(&birds[1], 2)));
    eprintln!("removed peer, as BIRD saw it:\n{gone}");
    assert_eq!(bird_proto(&birds[0], 1), before, "peer 1 never noticed");
    all_established(&host, &["10.0.1.1", "10.0.3.1"]);

    // `flatnet reload` with peer 3 changed: it alone resets.
    let p3 = bird_proto(&birds[2], 3);
    rewrite_peers(&host, &format!("{}{}hold_time = 30\n", peer(1), peer(3)));
    let r = host.cli_json(&["reload"]);
    assert_eq!(r["changed"], serde_json::json!(["10.0.3.1"]), "{r}");
    wait_for("changed peer re-established", T, || {
        let now = bird_proto(&birds[2], 3);
        let info = bird_info(&birds[2], 3);
        Ok((now.0 == "up" && now.1 != p3.1 && info.contains("Hold timer:")).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", bird_info(&birds[2], 3)));
    assert_eq!(bird_proto(&birds[0], 1), before, "peer 1 never noticed");
    all_established(&host, &["10.0.1.1", "10.0.3.1"]);
}
