//! Coming back after a session ends, against a real FRR ToR: a ToR that
//! clears the session (Cease/Administrative Reset) ten times in a row finds
//! flatnetd Established again within seconds each time, never damped; a
//! ToR that refuses us with an error (Bad Peer AS) is damped as configured,
//! bounded by `damping_max`, and `flatnet bgp neighbors` says when and why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Host, POOLS_V4};
use flatnet_lab::frr::Frr;
use flatnet_lab::{NeighborConfig, Netns, Router, RouterConfig, wait_for};
use serde_json::Value;

fn host(tag: &str, peer_extra: &str) -> (Netns, Host) {
    flatnet_lab::require_root().unwrap();
    let tor = Netns::new("tor").unwrap();
    let ns = Netns::new(tag).unwrap();
    flatnet_lab::veth(&tor, "eth0", &ns, "eth0").unwrap();
    tor.addr_add("eth0", "10.0.0.1/30").unwrap();
    ns.addr_add("eth0", "10.0.0.2/30").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dir.path().display());
    let rest = format!("{POOLS_V4}[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 65001\n{peer_extra}");
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

fn frr_neighbor(frr: &Frr) -> Value {
    let v = frr.vtysh_json("show bgp neighbors 10.0.0.2 json").unwrap();
    v["10.0.0.2"].clone()
}

fn our_view(h: &Host) -> Value {
    h.cli_json(&["bgp", "neighbors"])[0].clone()
}

#[test]
fn a_tor_clearing_the_session_ten_times_is_back_within_seconds_each_time() {
    let (tor, host) = host("rc", "");
    let frr = Frr::start(
        &tor,
        RouterConfig::new("1.1.1.1".parse().unwrap(), 65001)
            .neighbor(NeighborConfig::new("10.0.0.2".parse().unwrap(), 65002)),
    )
    .unwrap();
    frr.wait_established("10.0.0.2", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    let mut took = Vec::new();
    for round in 0..10 {
        let before = frr_neighbor(&frr)["connectionsEstablished"]
            .as_u64()
            .unwrap();
        let t0 = Instant::now();
        // Cease/Administrative Reset from the ToR, which then reconnects.
        frr.vtysh(&["clear bgp 10.0.0.2"]).unwrap();
        wait_for(
            &format!("round {round}: Established again"),
            Duration::from_secs(10),
            || {
                let n = frr_neighbor(&frr);
                Ok((n["bgpState"] == "Established"
                    && n["connectionsEstablished"].as_u64() > Some(before))
                .then_some(()))
            },
        )
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nFRR: {}\nours: {}",
                frr_neighbor(&frr),
                our_view(&host)
            )
        });
        took.push(t0.elapsed());
        let ours = our_view(&host);
        assert_eq!(ours["state"], "Established", "{ours}");
        assert_eq!(
            ours["consecutive_errors"], 0,
            "a Cease is not an error: {ours}"
        );
    }
    let ms: Vec<u128> = took.iter().map(|d| d.as_millis()).collect();
    eprintln!("re-established after each of 10 clears (ms): {ms:?}");
    let worst = took.iter().max().unwrap();
    assert!(
        *worst < Duration::from_secs(5),
        "slowest re-establishment {worst:?}: {ms:?}"
    );
    // The last rounds are no slower than the first: no growing wait.
    assert!(
        took[9] < took[0] + Duration::from_secs(2),
        "the wait grew: {ms:?}"
    );
}

#[test]
fn a_tor_refusing_us_with_an_error_is_damped_as_configured() {
    let (tor, host) = host("rd", "damping_initial = 1\ndamping_max = 4\n");
    // FRR expects another AS from us: each OPEN of ours gets Bad Peer AS.
    let _frr = Frr::start(
        &tor,
        RouterConfig::new("1.1.1.1".parse().unwrap(), 65001)
            .neighbor(NeighborConfig::new("10.0.0.2".parse().unwrap(), 65099)),
    )
    .unwrap();
    // Watch our own neighbour line: the wait after each error, by count.
    let mut longest: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut text = String::new();
    wait_for("damped to its maximum", Duration::from_secs(40), || {
        let n = our_view(&host);
        if let (Some(e), Some(ms)) = (
            n["consecutive_errors"].as_u64(),
            n["next_attempt_ms"].as_u64(),
        ) {
            let m = longest.entry(e).or_default();
            *m = (*m).max(ms);
            if e >= 4 {
                text = host_text(&host);
                return Ok(Some(()));
            }
        }
        Ok(None)
    })
    .unwrap_or_else(|e| panic!("{e}\nseen: {longest:?}\n{}", host.log()));
    eprintln!("longest wait seen per consecutive error count (ms): {longest:?}");
    for (e, ms) in &longest {
        let bound = 1000u64 << (e.saturating_sub(1)).min(2);
        assert!(
            *ms <= bound.min(4000) + 50,
            "after {e} errors waited {ms} ms (bound {bound})"
        );
    }
    let grown = longest
        .iter()
        .filter(|(e, _)| **e >= 3)
        .map(|(_, ms)| *ms)
        .max()
        .unwrap_or(0);
    assert!(
        grown > 1500,
        "the wait grew beyond the initial: {longest:?}"
    );
    assert!(
        text.contains("next attempt: in") && text.contains("damped:"),
        "{text}"
    );
    assert!(
        text.contains("Bad Peer AS") || text.contains("OPEN"),
        "{text}"
    );
}

/// `flatnet bgp neighbors` as an operator reads it.
fn host_text(h: &Host) -> String {
    let out = std::process::Command::new(common::CLI)
        .arg("--socket")
        .arg(h.socket())
        .args(["bgp", "neighbors"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
