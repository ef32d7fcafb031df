//! Endpoint records live in the shared datastore under `/flatnet/endpoints/`:
//! written by ADD before it answers, removed by DEL and GC, none after a
//! failed ADD, kept across a restart. Read back through the store API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use flatnet_lab::Netns;
use serde_json::json;

fn add_with_app(host: &Host, id: &str, c: &Netns, app: &str) -> serde_json::Value {
    let args = format!("IgnoreUnknown=1;FLATNET_APP={app}");
    let (v, code) = cni_raw(
        "ADD",
        &[
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &c.path()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/nonexistent"),
            ("CNI_ARGS", &args),
        ],
        host.conf("1.1.0").to_string().as_bytes(),
    );
    assert_eq!(code, 0, "ADD failed: {v}\nlog:\n{}", host.log());
    v
}

#[test]
fn add_writes_the_endpoint_record_to_the_datastore_and_del_removes_it() {
    let host = Host::start("rec-node", POOLS_DUAL);
    let c = Netns::new("c").unwrap();
    // An id that could forge a key separator is refused (CNI 1.1 ids are
    // letters, digits, '_', '.', '-'), and leaves nothing.
    let (v, code) = host.cni("ADD", "ns/cid:1", &c.path(), "eth0", &host.conf("1.1.0"));
    assert_eq!((code, v["code"].as_u64()), (1, Some(4)), "{v}");
    assert_eq!(host.ds_endpoints(), vec![]);
    let r = add_with_app(&host, "ns.cid_1-a", &c, "web");
    let recs = host.ds_endpoints();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let (key, ep) = &recs[0];
    assert_eq!(key, "/flatnet/endpoints/rec-node/ns.cid_1-a/eth0");
    assert_eq!(
        flatnet_agent::store::endpoint_key("rec-node", "ns.cid_1-a", "eth0"),
        *key
    );
    assert_eq!(ep["node"], "rec-node");
    assert_eq!(ep["container_id"], "ns.cid_1-a");
    assert_eq!(ep["ifname"], "eth0");
    assert_eq!(ep["app"], "web");
    assert_eq!(ep["v4"], result_v4(&r).as_str());
    assert_eq!(ep["v6"], result_v6(&r).unwrap().as_str());
    assert_eq!(ep["host_ifname"], r["interfaces"][0]["name"]);
    assert_eq!(ep["netns"], c.path().as_str());
    // `flatnet endpoints` shows what the datastore holds.
    let eps = host.cli_json(&["endpoints"]);
    assert_eq!(eps, json!([ep]));
    let cli = std::process::Command::new(CLI)
        .arg("--socket")
        .arg(host.socket())
        .arg("endpoints")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&cli.stdout);
    assert!(
        table.contains("web") && table.contains(&result_v4(&r)),
        "{table}"
    );

    // DEL: the record is gone from the datastore.
    let (v, code) = host.cni("DEL", "ns.cid_1-a", &c.path(), "eth0", &host.conf("1.1.0"));
    assert_eq!(code, 0, "{v}");
    assert_eq!(host.ds_endpoints(), vec![]);
    host.assert_clean();
}

#[test]
fn failed_add_leaves_no_record() {
    let host = Host::start("h", POOLS_V4);
    let c = Netns::new("c").unwrap();
    // The interface name is taken in the container: ADD fails after the
    // address was allocated.
    c.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"])
        .unwrap();
    let (v, code) = host.cni("ADD", "x", &c.path(), "eth0", &host.conf("1.1.0"));
    assert_eq!((code, v["code"].as_u64()), (1, Some(110)), "{v}");
    assert_eq!(host.ds_endpoints(), vec![]);
    host.assert_clean();
}

#[test]
fn gc_removes_stale_records_and_restart_keeps_live_ones() {
    let mut host = Host::start("h", POOLS_V4);
    let cs: Vec<Netns> = (0..3).map(|_| Netns::new("c").unwrap()).collect();
    for (i, c) in cs.iter().enumerate() {
        host.add(&format!("g{i}"), c);
    }
    assert_eq!(host.ds_endpoints().len(), 3);
    let mut conf = host.conf("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([
        {"containerID": "g0", "ifname": "eth0"},
        {"containerID": "g1", "ifname": "eth0"},
    ]);
    let (out, code) = host.cni("GC", "", "", "", &conf);
    assert_eq!(code, 0, "{out}");
    let ids: Vec<String> = host
        .ds_endpoints()
        .iter()
        .map(|(_, e)| e["container_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["g0", "g1"]);

    // A restart adopts the records it finds (and the containers keep them).
    host.daemon
        .as_mut()
        .unwrap()
        .terminate(std::time::Duration::from_secs(5));
    let before = host.ds_endpoints();
    host.start_daemon();
    assert_eq!(host.ds_endpoints(), before);
    assert_eq!(host.cli_json(&["endpoints"]).as_array().unwrap().len(), 2);
    for (i, c) in cs.iter().enumerate().take(2) {
        host.del(&format!("g{i}"), &c.path());
    }
    host.assert_clean();
}
