//! A real Docker engine (Debian's docker.io 20.10, dockerd in host A's
//! namespace) uses flatnetd as its libnetwork remote network and IPAM
//! driver: a Docker container gets a /32 from host A's block and reaches a
//! CNI container on host B through the ToRs; removal leaves nothing; 16
//! concurrent runs get distinct addresses; bad plugin calls get `{"Err"}`
//! and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::docker::{Docker, NET_CREATE, enable_docker};
use common::fabric::*;
use common::{Host, POOLS_DUAL, POOLS_V4, result_v4, result_v6};
use flatnet_lab::{Netns, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
/// One plugin call over the unix socket: (HTTP status, JSON body).
fn plugin_call(plugins: &Path, method: &str, body: &str) -> (u16, Value) {
    let mut s = std::os::unix::net::UnixStream::connect(plugins.join("flatnet.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /{method} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status: u16 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/vnd.docker.plugins.v1.2+json"),
        "{head}"
    );
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// flatnet's view of a host: records and allocations.
fn snapshot(h: &Host) -> (Value, Vec<Value>) {
    (h.cli_json(&["endpoints"]), h.allocations())
}

fn docker_allocations(h: &Host) -> Vec<String> {
    h.allocations()
        .iter()
        .filter(|a| a["handle"].as_str().unwrap().starts_with("docker-"))
        .map(|a| a["addr"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docker_container_on_flatnet_reaches_cni_container_across_tors() {
    let mut f = fabric(2, POOLS_V4, "");
    let plugins = enable_docker(&mut f.hosts[0]);
    let _t1 = start_tor(Tor::Frr, &f.tors, &f.hosts, 0);
    let _t2 = start_tor(Tor::Frr, &f.tors, &f.hosts, 1);
    let (a, b) = (&f.hosts[0], &f.hosts[1]);
    let cb = Netns::new("cb").unwrap();
    let ipb = result_v4(&b.add("cb", &cb));
    let docker = Docker::start(&a.ns, &plugins);

    docker.ok(&[NET_CREATE, &["-o", "flatnet.app=web", "net1"]].concat());
    let inspect: Value = serde_json::from_str(&docker.ok(&["network", "inspect", "net1"])).unwrap();
    assert_eq!(
        inspect[0]["IPAM"]["Config"][0]["Subnet"], "10.244.0.0/16",
        "{inspect}"
    );
    assert_eq!(inspect[0]["Driver"], "flatnet", "{inspect}");
    assert_eq!(inspect[0]["Options"]["flatnet.app"], "web", "{inspect}");
    docker.sleeper("c1", "net1");
    let ip = docker.ip("c1", "net1");
    assert_eq!(docker_allocations(a), vec![ip.clone()], "{}", a.log());
    let block = blocks(a);
    assert_eq!(block.len(), 1);
    let net: ipnetwork::Ipv4Network = block[0].parse().unwrap();
    assert!(
        net.contains(ip.parse().unwrap()),
        "{ip} outside host A's block {block:?}"
    );
    let addr = docker.ok(&["exec", "c1", "ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {ip}/32")), "{addr}");
    let routes = docker.ok(&["exec", "c1", "ip", "-4", "route"]);
    assert!(routes.contains("default via 169.254.1.1"), "{routes}");

    // The record, like CNI's: app from the network option.
    let eps = a.cli_json(&["endpoints"]);
    let eps = eps.as_array().unwrap();
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0]["v4"], ip.as_str());
    assert_eq!(eps[0]["app"], "web");
    let host_if = eps[0]["host_ifname"].as_str().unwrap().to_string();
    assert_eq!(a.flatnet_links(), vec![host_if.clone()]);
    let r = a.flatnet_routes("-4");
    assert!(
        r.iter()
            .any(|r| r["dst"] == ip.as_str() && r["dev"] == host_if.as_str()),
        "{r:?}"
    );
    assert_eq!(
        common::sysctl(&a.ns, &format!("net.ipv4.conf.{host_if}.proxy_arp")),
        "1"
    );
    assert_eq!(
        common::sysctl(&a.ns, &format!("net.ipv4.conf.{host_if}.rp_filter")),
        "1"
    );

    // Both ways through the ToRs (host B learns A's block over BGP).
    wait_for(
        "CNI container on B reaches the Docker container",
        WAIT,
        || Ok(ping(&cb, &ip).then_some(())),
    )
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", learned_routes(b), a.log()));
    let o = docker.run(&["exec", "c1", "ping", "-c", "1", "-W", "2", &ipb]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    docker.ok(&["rm", "-f", "c1"]);
    assert_no_endpoints(a);
    docker.ok(&["network", "rm", "net1"]);
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(a.dir.path().join("state/docker.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state, json!({"networks": {}, "endpoints": {}}));
    b.del("cb", &cb.path());
    assert_no_endpoints(b);
}

/// Like [`Host::assert_clean`] on a fabric host (its learned routes stay):
/// no veth, no route to a veth, no allocation, no record.
fn assert_no_endpoints(h: &Host) {
    wait_for("veths gone", Duration::from_secs(10), || {
        Ok(h.flatnet_links().is_empty().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", h.flatnet_links()));
    let to_veths: Vec<Value> = h
        .flatnet_routes("-4")
        .into_iter()
        .filter(|r| r["dev"].as_str().is_some_and(|d| d.starts_with("flat")))
        .collect();
    assert_eq!(to_veths, Vec::<Value>::new(), "routes to veths left");
    assert_eq!(h.allocations(), Vec::<Value>::new(), "allocations leaked");
    assert_eq!(h.cli_json(&["endpoints"]), json!([]), "records left");
    assert_eq!(h.ds_endpoints(), vec![], "records left in the datastore");
}

/// A single host with `[docker]` on.
fn docker_host(tag: &str) -> (Host, PathBuf) {
    let mut h = Host::start(tag, POOLS_V4);
    let p = enable_docker(&mut h);
    (h, p)
}

/// `docker network create --ipv6` on a dual-stack flatnet: the container
/// gets a /128 from this host's IPv6 block besides its /32, routes via
/// fe80::1, is reached over IPv6 like a CNI container, and removal
/// releases both addresses.
#[test]
fn docker_ipv6_network_gets_a_128_from_the_hosts_block() {
    let mut h = Host::start("dk6", POOLS_DUAL);
    let plugins = enable_docker(&mut h);
    let docker = Docker::start(&h.ns, &plugins);
    let peer = Netns::new("dk6peer").unwrap();
    let r = h.add("peer", &peer);
    let (peer4, peer6) = (result_v4(&r), result_v6(&r).unwrap());
    let v6_subnet = "fd00:244::/56";
    docker.ok(&[NET_CREATE, &["--ipv6", "--subnet", v6_subnet, "net6"]].concat());
    let inspect: Value = serde_json::from_str(&docker.ok(&["network", "inspect", "net6"])).unwrap();
    let subnets: Vec<&str> = inspect[0]["IPAM"]["Config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Subnet"].as_str().unwrap())
        .collect();
    assert_eq!(subnets, vec!["10.244.0.0/16", v6_subnet], "{inspect}");
    assert_eq!(inspect[0]["EnableIPv6"], true, "{inspect}");
    docker.sleeper("c6", "net6");
    let ip4 = docker.ip("c6", "net6");
    let ip6 = docker.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.net6.GlobalIPv6Address}}",
        "c6",
    ]);
    let v6: std::net::Ipv6Addr = ip6.parse().unwrap_or_else(|e| panic!("{ip6:?}: {e}"));
    // From this host's IPv6 block (the peer's /128 came from the same one).
    let block6 = blocks(&h)
        .iter()
        .filter_map(|b| b.parse::<ipnetwork::Ipv6Network>().ok())
        .find(|n| n.contains(peer6.parse().unwrap()))
        .unwrap_or_else(|| panic!("no IPv6 block holds {peer6}"));
    assert!(block6.contains(v6), "{v6} outside {block6}");
    let mut held = docker_allocations(&h);
    held.sort();
    let mut want = vec![ip4.clone(), ip6.clone()];
    want.sort();
    assert_eq!(held, want, "one address per family, no more");

    let addr = docker.ok(&["exec", "c6", "ip", "-6", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet6 {ip6}/128")), "{addr}");
    let routes = docker.ok(&["exec", "c6", "ip", "-6", "route"]);
    assert!(routes.contains("default via fe80::1"), "{routes}");
    let eps = h.cli_json(&["endpoints"]);
    let ep = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["v4"] == ip4.as_str())
        .unwrap_or_else(|| panic!("no record for {ip4}: {eps}"))
        .clone();
    assert_eq!(ep["v6"], ip6.as_str(), "{ep}");
    let host_if = ep["host_ifname"].as_str().unwrap().to_string();
    let r6 = h.flatnet_routes("-6");
    assert!(
        r6.iter()
            .any(|r| r["dst"] == ip6.as_str() && r["dev"] == host_if.as_str()),
        "{r6:?}"
    );
    assert_eq!(
        common::sysctl(&h.ns, &format!("net.ipv6.conf.{host_if}.proxy_ndp")),
        "1"
    );
    // Both families, both ways, with the CNI container.
    wait_for(
        "CNI container reaches the Docker container over IPv6",
        WAIT,
        || Ok(ping(&peer, &ip6).then_some(())),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}
{}",
            h.log()
        )
    });
    assert!(ping(&peer, &ip4));
    for to in [&peer6, &peer4] {
        let o = docker.run(&["exec", "c6", "ping", "-c", "1", "-W", "2", to]);
        assert!(
            o.status.success(),
            "{to}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    docker.ok(&["rm", "-f", "c6"]);
    docker.ok(&["network", "rm", "net6"]);
    h.del("peer", &peer.path());
    h.assert_clean();
}

#[test]
fn sixteen_concurrent_docker_runs_get_distinct_reachable_addresses() {
    let (h, plugins) = docker_host("dk16");
    let docker = Docker::start(&h.ns, &plugins);
    let peer = Netns::new("dkpeer").unwrap();
    result_v4(&h.add("peer", &peer));
    let o = docker.run(&[NET_CREATE, &["net1"]].concat());
    assert!(o.status.success(), "{o:?}\n{}", h.log());
    let names: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    std::thread::scope(|s| {
        for n in &names {
            let docker = &docker;
            s.spawn(move || {
                docker.sleeper(n, "net1");
            });
        }
    });
    let mut ips: Vec<String> = names.iter().map(|n| docker.ip(n, "net1")).collect();
    for ip in &ips {
        assert!(ping(&peer, ip), "{ip} unreachable\n{}", h.log());
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 16, "duplicate addresses: {ips:?}");
    let mut held = docker_allocations(&h);
    held.sort();
    assert_eq!(held, ips);
    assert_eq!(h.flatnet_links().len(), 17);
    std::thread::scope(|s| {
        for n in &names {
            let docker = &docker;
            s.spawn(move || docker.ok(&["rm", "-f", n]));
        }
    });
    docker.ok(&["network", "rm", "net1"]);
    h.del("peer", &peer.path());
    h.assert_clean();
}

#[test]
fn bad_plugin_calls_get_err_and_change_nothing() {
    let (h, plugins) = docker_host("dkbad");
    let (st, act) = plugin_call(&plugins, "Plugin.Activate", "{}");
    assert_eq!(
        (st, act),
        (200, json!({"Implements": ["NetworkDriver", "IpamDriver"]}))
    );
    // A real network and endpoint, so "unknown" is about the names.
    let (st, pool) = plugin_call(
        &plugins,
        "IpamDriver.RequestPool",
        r#"{"AddressSpace":"flatnet","Pool":"10.244.0.0/16","SubPool":"","Options":{},"V6":false}"#,
    );
    assert_eq!(st, 200, "{pool}");
    assert_eq!(pool["PoolID"], "10.244.0.0-16");
    let (st, addr) = plugin_call(
        &plugins,
        "IpamDriver.RequestAddress",
        r#"{"PoolID":"10.244.0.0-16","Address":"","Options":{}}"#,
    );
    assert_eq!(st, 200, "{addr}");
    let address = addr["Address"].as_str().unwrap().to_string();
    assert!(address.ends_with("/32"), "{address}");
    let (st, e) = plugin_call(
        &plugins,
        "NetworkDriver.CreateNetwork",
        r#"{"NetworkID":"n1","Options":{},"IPv4Data":[{"AddressSpace":"flatnet","Pool":"10.244.0.0/16","Gateway":"169.254.1.1/32"}],"IPv6Data":[]}"#,
    );
    assert_eq!(st, 200, "{e}");
    let ce = format!(
        r#"{{"NetworkID":"n1","EndpointID":"e1","Interface":{{"Address":"{address}","AddressIPv6":"","MacAddress":""}},"Options":{{}}}}"#
    );
    let (st, e) = plugin_call(&plugins, "NetworkDriver.CreateEndpoint", &ce);
    assert_eq!(st, 200, "{e}\n{}", h.log());
    let before = snapshot(&h);
    assert_eq!(before.0.as_array().unwrap().len(), 1);

    let bad: &[(&str, String, &str)] = &[
        (
            "NetworkDriver.CreateEndpoint",
            ce.replace("\"n1\"", "\"nope\""),
            "unknown network \"nope\"",
        ),
        (
            "NetworkDriver.Join",
            r#"{"NetworkID":"n1","EndpointID":"e9","SandboxKey":"/x","Options":{}}"#.into(),
            "unknown endpoint \"e9\"",
        ),
        (
            "NetworkDriver.DeleteEndpoint",
            r#"{"NetworkID":"n1","EndpointID":"e9"}"#.into(),
            "unknown endpoint \"e9\"",
        ),
        (
            "NetworkDriver.DeleteNetwork",
            r#"{"NetworkID":"nope"}"#.into(),
            "unknown network \"nope\"",
        ),
        (
            "NetworkDriver.DeleteNetwork",
            r#"{"NetworkID":"n1"}"#.into(),
            "still has endpoint e1",
        ),
        (
            "IpamDriver.RequestPool",
            r#"{"AddressSpace":"LocalDefault","Pool":"","V6":false}"#.into(),
            "address space \"LocalDefault\" is not flatnet's",
        ),
        (
            "IpamDriver.RequestPool",
            r#"{"AddressSpace":"flatnet","Pool":"172.18.0.0/16","V6":false}"#.into(),
            "pool 172.18.0.0/16 is not a flatnet pool",
        ),
        (
            "IpamDriver.RequestPool",
            r#"{"AddressSpace":"flatnet","Pool":"","V6":false}"#.into(),
            "with --subnet",
        ),
        (
            "IpamDriver.RequestAddress",
            r#"{"PoolID":"other","Address":"","Options":{}}"#.into(),
            "unknown pool \"other\"",
        ),
        (
            "NetworkDriver.CreateNetwork",
            r#"{"NetworkID":"n2","IPv4Data":[{"Pool":"172.17.0.0/16"}]}"#.into(),
            "--ipam-driver flatnet",
        ),
        (
            "NetworkDriver.CreateEndpoint",
            "{\"NetworkID\": \"n1\",".into(),
            "malformed request",
        ),
        (
            "IpamDriver.RequestAddress",
            "not json".into(),
            "malformed request",
        ),
    ];
    for (method, body, want) in bad {
        let (st, e) = plugin_call(&plugins, method, body);
        assert_eq!(st, 500, "{method} {body}: {e}");
        let msg = e["Err"]
            .as_str()
            .unwrap_or_else(|| panic!("{method}: no Err in {e}"));
        assert!(msg.contains(want), "{method}: {msg:?} should say {want:?}");
        assert_eq!(snapshot(&h), before, "{method} {body} changed flatnet");
    }

    // Cleaned up through the API as Docker would.
    for (m, b) in [
        (
            "NetworkDriver.DeleteEndpoint",
            r#"{"NetworkID":"n1","EndpointID":"e1"}"#.to_string(),
        ),
        (
            "IpamDriver.ReleaseAddress",
            format!(r#"{{"PoolID":"10.244.0.0-16","Address":"{address}"}}"#),
        ),
        (
            "NetworkDriver.DeleteNetwork",
            r#"{"NetworkID":"n1"}"#.to_string(),
        ),
        (
            "IpamDriver.ReleasePool",
            r#"{"PoolID":"10.244.0.0-16"}"#.to_string(),
        ),
    ] {
        let (st, e) = plugin_call(&plugins, m, &b);
        assert_eq!((st, e), (200, json!({})), "{m}");
        if m == "NetworkDriver.DeleteEndpoint" {
            // The address is Docker's until its ReleaseAddress.
            assert_eq!(h.cli_json(&["endpoints"]), json!([]));
            let held = docker_allocations(&h);
            assert_eq!(held.len(), 1, "{held:?}");
            assert!(address.starts_with(&format!("{}/", held[0])), "{held:?}");
        }
    }
    h.assert_clean();
}

/// flatnetd restarted under a running Docker container adopts its
/// endpoint (same record, address, reachability); dockerd restarted
/// (its container restarting with it) leaves flatnet holding exactly what
/// Docker shows.
#[test]
fn restarts_of_flatnetd_and_dockerd_keep_both_in_agreement() {
    let (mut h, plugins) = docker_host("dkrs");
    let mut docker = Docker::start(&h.ns, &plugins);
    let peer = Netns::new("rspeer").unwrap();
    result_v4(&h.add("peer", &peer));
    docker.ok(&[NET_CREATE, &["net1"]].concat());
    docker.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--network",
        "net1",
        "--name",
        "c1",
        "busybox:local",
        "sleep",
        "3600",
    ]);
    let ip = docker.ip("c1", "net1");
    assert!(ping(&peer, &ip), "{}", h.log());
    let before = h.cli_json(&["endpoints"]);

    h.daemon = None;
    h.start_daemon();
    assert_eq!(h.cli_json(&["endpoints"]), before, "{}", h.log());
    assert_eq!(docker_allocations(&h), vec![ip.clone()]);
    assert!(
        ping(&peer, &ip),
        "network lost across the flatnetd restart\n{}",
        h.log()
    );
    assert_eq!(h.flatnet_links().len(), 2);

    docker.stop();
    docker.start_daemon(&h.ns);
    wait_for("c1 running again", WAIT, || {
        let o = docker.run(&["inspect", "-f", "{{.State.Running}}", "c1"]);
        Ok((String::from_utf8_lossy(&o.stdout).trim() == "true").then_some(()))
    })
    .unwrap();
    let ip2 = docker.ip("c1", "net1");
    assert_eq!(docker_allocations(&h), vec![ip2.clone()], "{}", h.log());
    let docker_eps: Vec<Value> = h
        .cli_json(&["endpoints"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["container_id"].as_str().unwrap().starts_with("docker-"))
        .cloned()
        .collect();
    assert_eq!(docker_eps.len(), 1, "{docker_eps:?}");
    assert_eq!(docker_eps[0]["v4"], ip2.as_str());
    assert_eq!(h.flatnet_links().len(), 2);
    wait_for("c1 reachable after the dockerd restart", WAIT, || {
        Ok(ping(&peer, &ip2).then_some(()))
    })
    .unwrap();

    docker.ok(&["rm", "-f", "c1"]);
    docker.ok(&["network", "rm", "net1"]);
    h.del("peer", &peer.path());
    h.assert_clean();
}
