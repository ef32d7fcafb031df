//! flatnet-bgpd's control socket against FRR: the same `bgp_neighbors` /
//! `bgp_routes` queries flatnetd answers (so `flatnet --socket` reads
//! either), with no state file needed to observe the speaker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod interop_support;

use std::time::Duration;

use flatnet_lab::frr::Frr;
use flatnet_lab::{Router, wait_for};
use interop_support::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn data(v: &Value, kind: &str) -> Value {
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["ok"]["kind"], kind, "{v}");
    v["ok"]["data"].clone()
}

fn prefixes(routes: &Value) -> Vec<String> {
    routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn control_socket_answers_neighbors_and_routes() {
    let p = pair("ctl");
    let frr = Frr::start(&p.tor, tor_cfg(&["10.1.0.0/24"])).unwrap();
    let ours = Ours::start(&p.host, &our_cfg("", &originate(&["10.9.0.0/24"])));
    frr.wait_established(HOST_V4, T).unwrap();
    frr.wait_route("10.9.0.0/24", T).unwrap();

    let n = wait_for("neighbor with FRR's prefix", T, || {
        let n = data(
            &ours.control(r#"{"version":1,"op":"bgp_neighbors"}"#),
            "bgp_neighbors",
        );
        Ok((n[0]["state"] == "Established" && n[0]["prefixes_accepted"] == 1).then_some(n))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", ours.logs()));
    assert_eq!(n[0]["address"], TOR_V4, "{n}");
    assert_eq!(n[0]["remote_as"], TOR_AS, "{n}");
    assert!(n[0]["uptime_secs"].is_u64(), "{n}");
    let caps = n[0]["capabilities"].as_array().unwrap();
    assert!(caps.iter().any(|c| c == "route-refresh"), "{n}");
    assert!(caps.iter().any(|c| c == "mp:ipv4-unicast"), "{n}");
    assert_eq!(n[0]["families"][0], "ipv4-unicast", "{n}");
    assert_eq!(n[0]["prefixes_advertised"], 1, "{n}");
    assert!(n[0]["updates_in"].as_u64().unwrap() >= 1, "{n}");
    assert_eq!(n[0]["per_family"][0]["family"], "ipv4-unicast", "{n}");

    let rib = data(
        &ours.control(r#"{"version":1,"op":"bgp_routes"}"#),
        "bgp_routes",
    );
    assert_eq!(prefixes(&rib), ["10.1.0.0/24", "10.9.0.0/24"], "{rib}");
    let best = &rib[0]["paths"][0];
    assert_eq!(best["best"], true, "{rib}");
    assert_eq!(best["next_hop"], TOR_V4, "{rib}");
    assert_eq!(best["source"], TOR_V4, "{rib}");
    assert_eq!(rib[1]["paths"][0]["source"], "local", "{rib}");

    let got = data(
        &ours.control(&format!(
            r#"{{"version":1,"op":"bgp_routes","received_from":"{TOR_V4}"}}"#
        )),
        "bgp_routes",
    );
    assert_eq!(prefixes(&got), ["10.1.0.0/24"], "{got}");
    assert_eq!(got[0]["paths"][0]["best"], true, "{got}");
    let sent = data(
        &ours.control(&format!(
            r#"{{"version":1,"op":"bgp_routes","advertised_to":"{TOR_V4}"}}"#
        )),
        "bgp_routes",
    );
    assert_eq!(prefixes(&sent), ["10.9.0.0/24"], "{sent}");
    assert_eq!(
        sent[0]["paths"][0]["as_path"],
        serde_json::json!([HOST_AS]),
        "{sent}"
    );

    // Errors in flatnetd's kinds.
    let e = ours.control(r#"{"version":1,"op":"bgp_routes","received_from":"192.0.2.9"}"#);
    assert_eq!(e["error"]["kind"], "not_found", "{e}");
    let e = ours.control(r#"{"version":2,"op":"bgp_neighbors"}"#);
    assert_eq!(e["error"]["kind"], "unsupported_version", "{e}");
    let e = ours.control(r#"{"version":1,"op":"add"}"#);
    assert_eq!(e["error"]["kind"], "invalid_request", "{e}");
    let e = ours.control("garbage");
    assert_eq!(e["error"]["kind"], "invalid_request", "{e}");
    // The state file keeps working for the older tests.
    assert_eq!(ours.peer(TOR_V4).unwrap()["state"], "Established");
}
