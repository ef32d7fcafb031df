//! ADD/CHECK/DEL through the real flatnet-cni binary against flatnetd running
//! in a host namespace; containers are namespaces made by the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use flatnet_lab::Netns;
use serde_json::{Value, json};

#[test]
fn add_gives_addresses_routes_sysctls_then_del_leaves_nothing() {
    let host = Host::start("h", POOLS_DUAL);
    let c = Netns::new("c1").unwrap();
    let r = host.add("cid-1", &c);
    let v4 = result_v4(&r);
    let v6 = result_v6(&r).expect("an IPv6 address from the v6 pool");
    assert!(v4.starts_with("10.244."), "{r}");
    assert!(v6.starts_with("fd00:244:"), "{r}");
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"], c.path().as_str());
    let host_if = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert!(host_if.starts_with("flat") && host_if.len() == 13);

    // Container side.
    let addrs = ns_ip_json(&c, &["addr", "show", "eth0"]);
    let infos = addrs[0]["addr_info"].as_array().unwrap();
    assert!(
        infos
            .iter()
            .any(|a| a["local"] == v4.as_str() && a["prefixlen"] == 32),
        "{addrs}"
    );
    assert!(
        infos
            .iter()
            .any(|a| a["local"] == v6.as_str() && a["prefixlen"] == 128),
        "{addrs}"
    );
    assert_eq!(addrs[0]["mtu"], 1400);
    assert_eq!(addrs[0]["operstate"], "UP");
    // The result names the container end's real MAC and (CNI 1.1) the MTU.
    assert_eq!(r["interfaces"][1]["mac"], addrs[0]["address"], "{r}");
    assert_eq!(r["interfaces"][1]["mtu"], 1400, "{r}");
    assert_eq!(r["interfaces"][0]["mtu"], 1400, "{r}");
    let lo = ns_ip_json(&c, &["link", "show", "lo"]);
    assert!(lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let routes = ns_ip_json(&c, &["-4", "route", "show"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1" && r["dev"] == "eth0"),
        "{routes}"
    );
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "169.254.1.1" && r["scope"] == "link"),
        "{routes}"
    );
    let routes6 = ns_ip_json(&c, &["-6", "route", "show"]);
    assert!(
        routes6
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "fe80::1"),
        "{routes6}"
    );

    // Host side.
    let hr = host.flatnet_routes("-4");
    assert!(
        hr.iter().any(|r| r["dst"] == v4.as_str()
            && r["dev"] == host_if.as_str()
            && r["scope"] == "link"),
        "{hr:?}"
    );
    let hr6 = host.flatnet_routes("-6");
    assert!(
        hr6.iter()
            .any(|r| r["dst"] == v6.as_str() && r["dev"] == host_if.as_str()),
        "{hr6:?}"
    );
    let bh = host.ip_json(&["-4", "route", "show", "type", "blackhole"]);
    assert!(
        bh.as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"].as_str().unwrap().ends_with("/26")),
        "{bh}"
    );
    assert_eq!(
        sysctl(&host.ns, &format!("net.ipv4.conf.{host_if}.proxy_arp")),
        "1"
    );
    assert_eq!(
        sysctl(&host.ns, &format!("net.ipv4.neigh.{host_if}.proxy_delay")),
        "0"
    );
    assert_eq!(
        sysctl(&host.ns, &format!("net.ipv6.conf.{host_if}.proxy_ndp")),
        "1"
    );
    assert_eq!(sysctl(&host.ns, "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl(&host.ns, "net.ipv6.conf.all.forwarding"), "1");
    // A next hop whose link lost carrier is skipped at once (ToR failure).
    for fam in ["ipv4", "ipv6"] {
        let key = format!("net.{fam}.conf.all.ignore_routes_with_linkdown");
        assert_eq!(sysctl(&host.ns, &key), "1", "{key}");
    }
    let rules = host.spoof_rules("iptables");
    assert_eq!(
        rules,
        vec!["-A FLATNET-ANTISPOOF -i flat+ -m rpfilter --invert -j DROP".to_string()]
    );
    assert_eq!(host.spoof_rules("ip6tables").len(), 1);

    // The record and the CLI.
    let eps = host.cli_json(&["endpoints"]);
    assert_eq!(eps[0]["container_id"], "cid-1");
    assert_eq!(eps[0]["v4"], v4.as_str());
    let st = host.cli_json(&["status"]);
    assert_eq!(st["ready"], true);
    assert_eq!(st["endpoints"], 1);

    // CHECK with prevResult passes.
    let mut conf = host.conf("1.1.0");
    conf["prevResult"] = r.clone();
    let (out, code) = host.cni("CHECK", "cid-1", &c.path(), "eth0", &conf);
    assert_eq!(code, 0, "{out}");

    // A second ADD of the same attachment is an error (CNI 1.1: the
    // interface exists) and changes nothing.
    let (e, code) = host.cni("ADD", "cid-1", &c.path(), "eth0", &host.conf("1.1.0"));
    assert_eq!((code, e["code"].as_u64()), (1, Some(110)), "{e}");
    assert_eq!(host.flatnet_links().len(), 1);
    assert_eq!(host.allocations().len(), 2);
    assert_eq!(host.cni("CHECK", "cid-1", &c.path(), "eth0", &conf).1, 0);

    // DEL removes everything; a second DEL succeeds too. When DEL answers,
    // all of it is gone: host routes, allocation, record and both ends of
    // the veth pair (no background deletion after the answer).
    host.del("cid-1", &c.path());
    assert_eq!(host.flatnet_links(), Vec::<String>::new());
    assert_eq!(host.flatnet_routes("-4"), Vec::<Value>::new());
    assert_eq!(host.flatnet_routes("-6"), Vec::<Value>::new());
    assert_eq!(host.allocations(), Vec::<Value>::new());
    assert_eq!(host.ds_endpoints(), vec![]);
    host.assert_clean();
    let links = ns_ip_json(&c, &["link", "show"]);
    assert!(
        !links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifname"] == "eth0"),
        "{links}"
    );
    host.del("cid-1", &c.path());
    host.assert_clean();
}

#[test]
fn add_chained_after_another_plugin_keeps_its_prev_result() {
    let host = Host::start("h", POOLS_V4);
    let c = Netns::new("c").unwrap();
    let mut conf = host.conf("1.1.0");
    conf["prevResult"] = json!({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "lo", "sandbox": c.path()}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}],
        "dns": {"nameservers": ["10.0.0.53"]},
    });
    let (r, code) = host.cni("ADD", "chain", &c.path(), "eth0", &conf);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["interfaces"][0]["name"], "lo");
    assert_eq!(r["interfaces"][2]["name"], "eth0");
    assert_eq!(r["ips"][0]["address"], "127.0.0.1/8");
    assert_eq!(r["ips"][1]["interface"], 2, "{r}");
    assert_eq!(r["dns"]["nameservers"][0], "10.0.0.53");
    // CHECK with the chain's result checks flatnet's interface only.
    let mut check = host.conf("1.1.0");
    check["prevResult"] = r.clone();
    let (out, code) = host.cni("CHECK", "chain", &c.path(), "eth0", &check);
    assert_eq!(code, 0, "{out}");
    host.del("chain", &c.path());
    host.assert_clean();
}

#[test]
fn cni_versions_0_4_and_1_0_are_accepted() {
    let host = Host::start("h", POOLS_V4);
    for (i, ver) in ["0.4.0", "1.0.0"].iter().enumerate() {
        let c = Netns::new("c").unwrap();
        let id = format!("v{i}");
        let (r, code) = host.cni("ADD", &id, &c.path(), "eth0", &host.conf(ver));
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["cniVersion"], *ver);
        if *ver == "0.4.0" {
            assert_eq!(r["ips"][0]["version"], "4");
        }
        let mut conf = host.conf(ver);
        conf["prevResult"] = r.clone();
        let (out, code) = host.cni("CHECK", &id, &c.path(), "eth0", &conf);
        assert_eq!(code, 0, "{out}");
        let (out, code) = host.cni("DEL", &id, &c.path(), "eth0", &host.conf(ver));
        assert_eq!(code, 0, "{out}");
    }
    host.assert_clean();
}

#[test]
fn check_detects_a_deleted_route() {
    let host = Host::start("h", POOLS_V4);
    let c = Netns::new("c").unwrap();
    let r = host.add("cid", &c);
    let v4 = result_v4(&r);
    let mut conf = host.conf("1.1.0");
    conf["prevResult"] = r.clone();
    assert_eq!(host.cni("CHECK", "cid", &c.path(), "eth0", &conf).1, 0);

    // Host route gone.
    host.ns.ip(&["route", "del", &format!("{v4}/32")]).unwrap();
    let (e, code) = host.cni("CHECK", "cid", &c.path(), "eth0", &conf);
    assert_eq!(code, 1);
    assert_eq!(e["code"], 112, "{e}");
    assert!(e["details"].as_str().unwrap().contains("host route"), "{e}");

    // A second ADD while the interface exists is an error (CNI 1.1 MUST)
    // and changes nothing: CHECK still finds the same fault.
    let (e, code) = host.cni("ADD", "cid", &c.path(), "eth0", &host.conf("1.1.0"));
    assert_eq!((code, e["code"].as_u64()), (1, Some(110)), "{e}");
    assert!(
        e["details"].as_str().unwrap().contains("DEL it first"),
        "{e}"
    );
    let (e, _) = host.cni("CHECK", "cid", &c.path(), "eth0", &conf);
    assert!(e["details"].as_str().unwrap().contains("host route"), "{e}");
    // What a runtime does to repair: DEL, then ADD.
    host.del("cid", &c.path());
    let r2 = host.add("cid", &c);
    conf["prevResult"] = r2.clone();
    assert_eq!(host.cni("CHECK", "cid", &c.path(), "eth0", &conf).1, 0);

    // Container default route gone.
    c.ip(&["route", "del", "default"]).unwrap();
    let (e, _) = host.cni("CHECK", "cid", &c.path(), "eth0", &conf);
    assert_eq!(e["code"], 112, "{e}");
    assert!(
        e["details"].as_str().unwrap().contains("default route"),
        "{e}"
    );

    // prevResult that does not match.
    let mut wrong = r.clone();
    wrong["ips"][0]["address"] = Value::from("10.9.9.9/32");
    conf["prevResult"] = wrong;
    let (e, _) = host.cni("CHECK", "cid", &c.path(), "eth0", &conf);
    assert_eq!(e["code"], 112, "{e}");

    // An attachment that was never added: "container unknown".
    let (e, code) = host.cni("CHECK", "never", &c.path(), "eth0", &conf);
    assert_eq!((code, e["code"].as_u64()), (1, Some(3)), "{e}");

    host.del("cid", &c.path());
    host.assert_clean();
}

#[test]
fn del_succeeds_when_the_netns_is_gone() {
    let host = Host::start("h", POOLS_V4);
    let c = Netns::new("c").unwrap();
    host.add("cid", &c);
    let path = c.path();
    drop(c);
    assert!(!path_exists(&path));
    host.del("cid", &path);
    let removed = |log: &str| log.matches("endpoint removed").count();
    assert_eq!(removed(&host.log()), 1, "{}", host.log());
    host.del("cid", "");
    // A DEL of what is gone says so, and does not claim a removal.
    assert_eq!(removed(&host.log()), 1, "{}", host.log());
    assert!(host.log().contains("nothing to remove"), "{}", host.log());
    host.assert_clean();
}
