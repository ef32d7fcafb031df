//! Application policy in namespaces: flatnetd with `[policy] enabled`,
//! containers of three apps, real TCP/UDP connections (each with a
//! deadline), `policy trace` compared with what the kernel does, a policy
//! change, a container added after the policy, bad input, egress to
//! outside CIDRs, SNAT only where configured, and someone else's rules
//! byte-identical after every flatnet operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::policy::*;
use common::*;
use flatnet_lab::Netns;
use serde_json::json;

/// Someone else's rules in the host namespace: a chain of their own in
/// filter and nat, jumps from the built-ins, a rule in FORWARD.
fn add_foreign_rules(ns: &Netns) {
    for args in [
        &["-N", "THEIRS"][..],
        &["-A", "THEIRS", "-s", "192.0.2.77", "-j", "DROP"],
        &["-A", "FORWARD", "-j", "THEIRS"],
        &["-A", "FORWARD", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"],
        &["-t", "nat", "-N", "THEIRS-NAT"],
        &[
            "-t",
            "nat",
            "-A",
            "THEIRS-NAT",
            "-d",
            "192.0.2.78",
            "-j",
            "RETURN",
        ],
        &["-t", "nat", "-A", "POSTROUTING", "-j", "THEIRS-NAT"],
    ] {
        ns.exec("iptables", args).unwrap();
    }
}

/// Every line of `iptables-save` (all tables) that is not flatnet's:
/// comments (timestamps) and counters aside, byte for byte.
fn foreign(ns: &Netns) -> String {
    let out = ns.exec_stdout("iptables-save", &[]).unwrap();
    out.lines()
        .filter(|l| !l.starts_with('#') && !l.contains("FLATNET-"))
        .map(|l| match l.strip_prefix(':') {
            Some(d) => format!(":{}", d.split(" [").next().unwrap_or(d)),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// flatnet's own chains as saved (what a restart must leave alone).
fn ours(ns: &Netns) -> String {
    let out = ns.exec_stdout("iptables-save", &[]).unwrap();
    out.lines()
        .filter(|l| l.contains("FLATNET-") && !l.contains("ANTISPOOF"))
        .map(|l| l.split(" [").next().unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

const SHOP: &str = r#"
name = "shop"
[[allow]]
from = "cart"
to = "orders"
proto = "tcp"
ports = [5432]
[[allow]]
from = "web"
to = "cart"
proto = "udp"
ports = ["5300-5400"]
[[egress]]
app = "cart"
to_cidr = "192.0.2.0/24"
proto = "tcp"
ports = [8443]
"#;

/// A host with policy enabled, someone else's rules, and an "outside"
/// namespace at 192.0.2.1 (and 198.51.100.1) routed through the host.
fn setup(tag: &str, nat: bool) -> (Host, Netns) {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new(tag).unwrap();
    add_foreign_rules(&ns);
    let ext = Netns::new("ext").unwrap();
    flatnet_lab::veth(&ns, "up0", &ext, "eth0").unwrap();
    ns.addr_add("up0", "192.0.2.254/24").unwrap();
    ext.addr_add("eth0", "192.0.2.1/24").unwrap();
    ext.addr_add("lo", "198.51.100.1/32").unwrap();
    ext.ip(&["route", "add", "10.244.0.0/16", "via", "192.0.2.254"])
        .unwrap();
    ns.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.1"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dir.path().display());
    let pools = format!(
        "[[pool]]\ncidr = \"10.244.0.0/16\"\nblock_size = 26\nnat_outgoing = {nat}\n\
         [policy]\nenabled = true\n"
    );
    let host = Host::start_in(ns, dir, tag, &pools, &url);
    serve(&ext, 8443);
    serve(&ext, 80);
    (host, ext)
}

#[test]
fn policy_allows_denies_traces_and_leaves_others_rules_alone() {
    let (host, ext) = setup("h", false);
    let before = foreign(&host.ns);
    let (cart, orders, web) = (
        Netns::new("cart").unwrap(),
        Netns::new("orders").unwrap(),
        Netns::new("web").unwrap(),
    );
    let a_cart = add_app(&host, "cart1", &cart, "cart");
    let a_orders = add_app(&host, "orders1", &orders, "orders");
    let a_web = add_app(&host, "web1", &web, "web");
    for (c, port) in [
        (&orders, 5432),
        (&orders, 22),
        (&cart, 5353),
        (&cart, 9999),
        (&web, 80),
    ] {
        serve(c, port);
    }
    assert_eq!(
        foreign(&host.ns),
        before,
        "someone else's rules changed by ADD"
    );

    // Default deny between apps before any policy.
    assert_eq!(tcp(&cart, &a_orders, 5432), None);
    let (code, out, err) = apply(&host, "shop.toml", SHOP);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        foreign(&host.ns),
        before,
        "someone else's rules changed by apply"
    );
    // The engine follows the datastore: poll the trace until it has it.
    flatnet_lab::wait_for("policy applied", Duration::from_secs(10), || {
        Ok((trace(&host, &a_cart, &a_orders, "tcp", 5432)["allow"] == true).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", host.log()));

    // Real connections, and the trace agrees with each.
    let flows: Vec<(&Netns, &str, &str, u16, bool)> = vec![
        (&cart, &a_orders, "tcp", 5432, true),
        (&cart, &a_orders, "tcp", 22, false),
        (&orders, &a_cart, "udp", 5353, false),
        (&web, &a_cart, "udp", 5353, true),
        (&web, &a_cart, "udp", 9999, false),
        (&cart, &a_web, "tcp", 80, false),
        (&cart, "192.0.2.1", "tcp", 8443, true),
        (&cart, "192.0.2.1", "tcp", 80, false),
        (&cart, "198.51.100.1", "tcp", 8443, false),
        (&web, "192.0.2.1", "tcp", 8443, false),
    ];
    let src_of = |n: &Netns| {
        if std::ptr::eq(n, &cart) {
            a_cart.clone()
        } else if std::ptr::eq(n, &orders) {
            a_orders.clone()
        } else {
            a_web.clone()
        }
    };
    for (from, to, proto, port, want) in &flows {
        let got = if *proto == "tcp" {
            tcp(from, to, *port).is_some()
        } else {
            udp(from, to, *port)
        };
        assert_eq!(got, *want, "{} -> {to} {proto}/{port}", src_of(from));
        let t = trace(&host, &src_of(from), to, proto, *port);
        assert_eq!(
            t["allow"],
            *want,
            "trace {} -> {to} {proto}/{port}: {t}",
            src_of(from)
        );
    }
    let t = trace(&host, &a_cart, &a_orders, "tcp", 5432);
    assert_eq!(t["decided_by"]["Edge"]["policy"], "shop", "{t}");
    // Without nat_outgoing the outside sees the container's own address.
    assert_eq!(
        tcp(&cart, "192.0.2.1", 8443).as_deref(),
        Some(a_cart.as_str())
    );

    // A container of cart started after the policy is covered when its
    // ADD returns: no waiting.
    let cart2 = Netns::new("cart2").unwrap();
    let a_cart2 = add_app(&host, "cart2", &cart2, "cart");
    assert!(
        tcp(&cart2, &a_orders, 5432).is_some(),
        "new cart container not covered at ADD"
    );
    serve(&cart2, 7000);
    assert!(tcp(&cart, &a_cart2, 7000).is_some(), "same app");

    // A container forging another app's source address is dropped.
    web.addr_add("eth0", &format!("{a_cart}/32")).unwrap();
    let forged = in_ns(&web, {
        let to: SocketAddr = format!("{a_orders}:5432").parse().unwrap();
        let from: SocketAddr = format!("{a_cart}:0").parse().unwrap();
        move || {
            let s = socket2_connect(from, to);
            s.is_some()
        }
    })
    .join()
    .unwrap();
    assert!(!forged, "forged cart source from web reached orders");

    // Bad input: field named, nothing stored, rules unchanged.
    let rules = ours(&host.ns);
    for (bad, field) in [
        (
            SHOP.replace("proto = \"udp\"", "proto = \"sctp\""),
            "allow[1].proto",
        ),
        (
            SHOP.replace("192.0.2.0/24", "192.0.2.0/40"),
            "egress[0].to_cidr",
        ),
        (SHOP.replace("[5432]", "[65536]"), "allow[0].ports[0]"),
        (
            SHOP.replace("ports = [8443]", "ports = [8443]\ncolour = 1"),
            "colour",
        ),
    ] {
        let (code, out, err) = apply(&host, "bad.toml", &bad);
        assert_ne!(code, 0, "{out}");
        assert!(err.contains(field), "{field}: {err}");
    }
    let shown = host.cli_json(&["policy", "show", "shop"]);
    assert_eq!(shown["raw"]["allow"][1]["proto"], "udp");
    assert_eq!(ours(&host.ns), rules);

    // A policy change takes effect.
    let (code, _, err) = apply(&host, "shop2.toml", &SHOP.replace("[5432]", "[5432, 22]"));
    assert_eq!(code, 0, "{err}");
    flatnet_lab::wait_for("policy change", Duration::from_secs(10), || {
        Ok(tcp(&cart, &a_orders, 22).map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", host.log()));
    assert_eq!(trace(&host, &a_cart, &a_orders, "tcp", 22)["allow"], true);

    // Counters per edge (the first packet of each connection hits the
    // edge, the rest the established rule; a rewritten chain restarts
    // its counters, and the change above rewrote this one).
    let stats = host.cli_json(&["policy", "stats"]);
    let edge = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "flatnet:shop:allow[0]")
        .cloned()
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(edge["packets"].as_u64().unwrap() >= 1, "{stats}");
    let metrics = in_ns(&host.ns, || {
        let mut s = TcpStream::connect("127.0.0.1:9469").unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("flatnet_policy_rule_packets{rule=\"flatnet:shop:allow[0]\"}")),
        "{metrics}"
    );

    // A restart changes no rule that was right: same rules, and the
    // edge's counter keeps counting (a rewritten chain would restart it).
    let rules = ours(&host.ns);
    let edge_packets = |host: &Host| {
        host.cli_json(&["policy", "stats"])
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["rule"] == "flatnet:shop:allow[0]")
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or(0)
    };
    let counted = edge_packets(&host);
    let mut host = host;
    host.daemon
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(5));
    // flatnetd down: the rules stay (no fail-open).
    assert_eq!(ours(&host.ns), rules);
    assert_eq!(tcp(&cart, &a_web, 80), None);
    host.start_daemon();
    assert_eq!(ours(&host.ns), rules);
    assert!(
        edge_packets(&host) >= counted,
        "counters restarted: chain rewritten"
    );
    assert!(tcp(&cart, &a_orders, 5432).is_some());

    // Delete: back to the default.
    let (code, _, err) = cli(&host, &["policy", "delete", "shop"]);
    assert_eq!(code, 0, "{err}");
    flatnet_lab::wait_for("policy deleted", Duration::from_secs(10), || {
        Ok((trace(&host, &a_cart, &a_orders, "tcp", 5432)["allow"] == false).then_some(()))
    })
    .unwrap();
    assert_eq!(tcp(&cart, &a_orders, 5432), None);
    assert_eq!(foreign(&host.ns), before, "someone else's rules changed");
    drop(ext);
}

/// A TCP connect from a given source address (bound first).
fn socket2_connect(from: SocketAddr, to: SocketAddr) -> Option<()> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, connect, socket,
    };
    use std::os::fd::AsRawFd;
    let af = if from.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(af, SockType::Stream, SockFlag::empty(), None).ok()?;
    // A blocking connect: a dropped SYN fails it after the kernel's
    // retries, bounded here by the socket's send timeout.
    let tv = nix::sys::time::TimeVal::new(1, 500_000);
    nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SendTimeout, &tv).ok()?;
    match (from, to) {
        (SocketAddr::V4(f), SocketAddr::V4(t)) => {
            bind(fd.as_raw_fd(), &SockaddrIn::from(f)).ok()?;
            connect(fd.as_raw_fd(), &SockaddrIn::from(t)).ok()?;
        }
        (SocketAddr::V6(f), SocketAddr::V6(t)) => {
            bind(fd.as_raw_fd(), &SockaddrIn6::from(f)).ok()?;
            connect(fd.as_raw_fd(), &SockaddrIn6::from(t)).ok()?;
        }
        _ => return None,
    }
    Some(())
}

#[test]
fn snat_applies_only_where_configured() {
    let (host, _ext) = setup("hn", true);
    let c = Netns::new("c").unwrap();
    let a = add_app(&host, "c1", &c, "cart");
    let (code, _, err) = apply(&host, "shop.toml", SHOP);
    assert_eq!(code, 0, "{err}");
    flatnet_lab::wait_for("policy applied", Duration::from_secs(10), || {
        Ok((trace(&host, &a, "192.0.2.1", "tcp", 8443)["allow"] == true).then_some(()))
    })
    .unwrap();
    // The outside sees the host's address, not the container's.
    assert_eq!(tcp(&c, "192.0.2.1", 8443).as_deref(), Some("192.0.2.254"));
}

/// Two hosts behind an FRR ToR sharing one datastore: edges are enforced
/// at the destination host, for containers that run elsewhere.
#[test]
fn policy_across_two_hosts_behind_a_tor() {
    use flatnet_lab::{NeighborConfig, Router, RouterConfig};
    flatnet_lab::require_root().unwrap();
    let tor = Netns::new("tor").unwrap();
    tor.sysctl("net.ipv4.ip_forward", "1").unwrap();
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", shared.path().display());
    let mut hosts = Vec::new();
    for (i, (tag, asn)) in [("ha", 65002), ("hb", 65003)].into_iter().enumerate() {
        let ns = Netns::new(tag).unwrap();
        flatnet_lab::veth(&tor, &format!("eth{i}"), &ns, "eth0").unwrap();
        tor.addr_add(&format!("eth{i}"), &format!("10.0.{i}.1/30"))
            .unwrap();
        ns.addr_add("eth0", &format!("10.0.{i}.2/30")).unwrap();
        // The hosts do not program learned routes yet: the ToR does.
        ns.ip(&["route", "add", "default", "via", &format!("10.0.{i}.1")])
            .unwrap();
        let rest = format!(
            "{POOLS_V4}[[bgp.peer]]\naddress = \"10.0.{i}.1\"\nasn = 65001\n[policy]\nenabled = true\n"
        );
        let node = format!("router_id = \"10.0.{i}.2\"\nasn = {asn}");
        hosts.push(Host::start_with(
            ns,
            tempfile::tempdir().unwrap(),
            tag,
            &node,
            &rest,
            &url,
        ));
    }
    let frr = flatnet_lab::frr::Frr::start(
        &tor,
        RouterConfig::new("1.1.1.1".parse().unwrap(), 65001)
            .neighbor(NeighborConfig::new("10.0.0.2".parse().unwrap(), 65002))
            .neighbor(NeighborConfig::new("10.0.1.2".parse().unwrap(), 65003)),
    )
    .unwrap();
    for peer in ["10.0.0.2", "10.0.1.2"] {
        frr.wait_established(peer, Duration::from_secs(30)).unwrap();
    }
    let (ha, hb) = (&hosts[0], &hosts[1]);
    let (cart, web, orders) = (
        Netns::new("cart").unwrap(),
        Netns::new("web").unwrap(),
        Netns::new("orders").unwrap(),
    );
    let a_cart = add_app(ha, "cart1", &cart, "cart");
    let a_web = add_app(ha, "web1", &web, "web");
    let a_orders = add_app(hb, "orders1", &orders, "orders");
    serve(&orders, 5432);
    serve(&orders, 22);
    // The ToR has both hosts' blocks.
    for b in [&a_cart, &a_orders] {
        flatnet_lab::wait_for("block at the ToR", Duration::from_secs(30), || {
            let rib = frr.rib(flatnet_lab::Family::Ipv4Unicast)?;
            let ip: std::net::Ipv4Addr = b.parse().unwrap();
            Ok(rib
                .iter()
                .any(|e| {
                    e.prefix
                        .parse::<ipnetwork::Ipv4Network>()
                        .is_ok_and(|n| n.contains(ip))
                })
                .then_some(()))
        })
        .unwrap();
    }
    let (code, _, err) = apply(ha, "shop.toml", SHOP);
    assert_eq!(code, 0, "{err}");
    // Host b (where orders runs) learns the policy and host a's
    // containers from the datastore.
    flatnet_lab::wait_for("policy at host b", Duration::from_secs(15), || {
        Ok((trace(hb, &a_cart, &a_orders, "tcp", 5432)["allow"] == true).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hb.log()));
    assert!(
        tcp(&cart, &a_orders, 5432).is_some(),
        "cart -> orders across hosts"
    );
    assert_eq!(tcp(&cart, &a_orders, 22), None, "port not opened");
    assert_eq!(
        tcp(&web, &a_orders, 5432),
        None,
        "web has no edge to orders"
    );
    for (from, want) in [(&a_cart, true), (&a_web, false)] {
        assert_eq!(trace(ha, from, &a_orders, "tcp", 5432)["allow"], want);
    }
}

/// A TCP server in `ns` on `[::]:port` answering every
/// connection with the peer address it saw.
fn serve6(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    in_ns(ns, move || {
        let t = TcpListener::bind(("::", port)).unwrap();
        tx.send(()).unwrap();
        for s in t.incoming().flatten() {
            let peer = s
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let mut s = s;
            let _ = s.write_all(peer.as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

/// Connects from `ns` to `[to]:port` over TCP/IPv6; the address the
/// server saw.
fn tcp6(ns: &Netns, to: &str, port: u16) -> Option<String> {
    tcp(ns, &format!("[{to}]"), port)
}

/// A dual-stack pool: containers' IPv6 addresses are allowed and denied
/// exactly like their IPv4 ones, by ip6tables rules over v6 sets, and
/// the trace answers for IPv6 flows.
#[test]
fn policy_enforces_ipv6_like_ipv4() {
    let pools = format!("{POOLS_DUAL}[policy]\nenabled = true\n");
    let host = Host::start("h6", &pools);
    let (cart, orders, web) = (
        Netns::new("cart").unwrap(),
        Netns::new("orders").unwrap(),
        Netns::new("web").unwrap(),
    );
    let mut addrs = Vec::new();
    for (id, c, app) in [
        ("cart1", &cart, "cart"),
        ("orders1", &orders, "orders"),
        ("web1", &web, "web"),
    ] {
        let mut conf = host.conf("1.1.0");
        conf["args"] = json!({"flatnet": {"app": app}});
        let (v, code) = host.cni("ADD", id, &c.path(), "eth0", &conf);
        assert_eq!(code, 0, "ADD failed: {v}\nlog:\n{}", host.log());
        addrs.push((result_v4(&v), result_v6(&v).expect("no IPv6 address")));
    }
    let [(c4, c6), (o4, o6), (w4, w6)] = <[_; 3]>::try_from(addrs).unwrap();
    for port in [5432, 22] {
        serve(&orders, port);
        serve6(&orders, port + 10000);
    }
    // The same port numbers over IPv6 (IPv4 servers hold the v4 ports).
    let shop6 = SHOP.replace("[5432]", "[5432, 15432]");
    // Before any policy: denied between apps over both families.
    assert_eq!(tcp6(&cart, &o6, 15432), None, "v6 open before any policy");
    let (code, out, err) = apply(&host, "shop.toml", &shop6);
    assert_eq!(code, 0, "{out}{err}");
    flatnet_lab::wait_for("policy applied (v6)", Duration::from_secs(10), || {
        Ok((trace(&host, &c6, &o6, "tcp", 15432)["allow"] == true).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", host.log()));

    // Real IPv6 connections: the allowed edge, a port not opened, an app
    // without an edge; the trace agrees with each; IPv4 alike.
    for (from, src, to, port, want) in [
        (&cart, &c6, &o6, 15432, true),
        (&cart, &c6, &o6, 10022, false),
        (&web, &w6, &o6, 15432, false),
        (&cart, &c4, &o4, 5432, true),
        (&cart, &c4, &o4, 22, false),
        (&web, &w4, &o4, 5432, false),
    ] {
        let got = if to.contains(':') {
            tcp6(from, to, port)
        } else {
            tcp(from, to, port)
        };
        assert_eq!(got.is_some(), want, "{src} -> {to} tcp/{port}");
        if want {
            // The server saw the container's own address.
            assert_eq!(got.as_deref(), Some(src.as_str()));
        }
        let t = trace(&host, src, to, "tcp", port);
        assert_eq!(t["allow"], want, "trace {src} -> {to} tcp/{port}: {t}");
    }
    let t = trace(&host, &c6, &o6, "tcp", 15432);
    assert_eq!(t["decided_by"]["Edge"]["policy"], "shop", "{t}");

    // The v6 rules are ip6tables rules over the v6 sets.
    let saved6 = host
        .ns
        .exec_stdout("ip6tables-save", &["-t", "filter"])
        .unwrap();
    assert!(
        saved6.lines().any(|l| l.starts_with("-A FLATNET-IN-orders")
            && l.contains("--match-set fa6-cart src")
            && l.contains("--dports 5432,15432")
            && l.contains("ACCEPT")),
        "{saved6}"
    );
    assert!(saved6.contains("-A FORWARD -j FLATNET-FORWARD"), "{saved6}");
    for (set, member) in [("fa6-cart", &c6), ("fa6-orders", &o6), ("fn6-all", &w6)] {
        let list = host.ns.exec_stdout("ipset", &["list", set]).unwrap();
        assert!(list.contains("family inet6"), "{set}: {list}");
        assert!(
            list.lines().any(|l| l.trim() == member.as_str()),
            "{member} not in {set}: {list}"
        );
    }
    let list = host.ns.exec_stdout("ipset", &["list", "fa6-cart"]).unwrap();
    assert!(
        !list.contains(o6.as_str()),
        "orders in cart's v6 set: {list}"
    );

    // A container forging another app's IPv6 source is dropped: web
    // borrows cart's address.
    web.exec(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            &format!("{c6}/128"),
            "dev",
            "eth0",
            "nodad",
        ],
    )
    .unwrap();
    let forged = in_ns(&web, {
        let to: SocketAddr = format!("[{o6}]:15432").parse().unwrap();
        let from: SocketAddr = format!("[{c6}]:0").parse().unwrap();
        move || socket2_connect(from, to).is_some()
    })
    .join()
    .unwrap();
    assert!(!forged, "forged cart v6 source from web reached orders");

    // Deleting the policy closes the v6 edge again.
    let (code, _, err) = cli(&host, &["policy", "delete", "shop"]);
    assert_eq!(code, 0, "{err}");
    flatnet_lab::wait_for("policy deleted (v6)", Duration::from_secs(10), || {
        Ok((trace(&host, &c6, &o6, "tcp", 15432)["allow"] == false).then_some(()))
    })
    .unwrap();
    assert_eq!(tcp6(&cart, &o6, 15432), None);
}

/// The ipsets of a namespace whose name starts with `prefix`.
fn sets_named(ns: &Netns, prefix: &str) -> Vec<String> {
    ns.exec_stdout("ipset", &["list", "-n"])
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(String::from)
        .collect()
}

const GROUPED: &str = r#"
name = "db"
[[allow]]
from = "cart"
to = "orders"
proto = "tcp"
ports = [5432]
[[allow]]
from = "web"
to = "orders"
proto = "tcp"
ports = [5432]
"#;

/// Two edges to one app and port are one kernel rule over a `list:set` of
/// the source apps; each edge still allows, is traced and is counted on
/// its own; a third app is still refused; another member makes another
/// list and the old one goes.
#[test]
fn edges_to_one_port_share_a_rule_and_keep_their_counters() {
    let (host, _ext) = setup("hg", false);
    let (cart, web, other, orders) = (
        Netns::new("gcart").unwrap(),
        Netns::new("gweb").unwrap(),
        Netns::new("gother").unwrap(),
        Netns::new("gorders").unwrap(),
    );
    let a_cart = add_app(&host, "cart1", &cart, "cart");
    let a_web = add_app(&host, "web1", &web, "web");
    let a_other = add_app(&host, "other1", &other, "other");
    let a_orders = add_app(&host, "orders1", &orders, "orders");
    serve(&orders, 5432);
    let (code, out, err) = apply(&host, "db.toml", GROUPED);
    assert_eq!(code, 0, "{out}{err}");
    flatnet_lab::wait_for("policy applied", Duration::from_secs(10), || {
        Ok((trace(&host, &a_web, &a_orders, "tcp", 5432)["allow"] == true).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", host.log()));

    let lists = sets_named(&host.ns, "fl4-");
    assert_eq!(lists.len(), 1, "{lists:?}");
    let list = &lists[0];
    let members = host.ns.exec_stdout("ipset", &["save", list]).unwrap();
    assert!(
        members.contains(&format!("create {list} list:set"))
            && members.contains(&format!("add {list} fa4-cart"))
            && members.contains(&format!("add {list} fa4-web")),
        "{members}"
    );
    let rules = ours(&host.ns);
    let edge_rules: Vec<&str> = rules
        .lines()
        .filter(|l| l.starts_with("-A FLATNET-IN-orders") && l.contains("5432"))
        .collect();
    assert_eq!(
        edge_rules,
        vec![format!(
            "-A FLATNET-IN-orders -p tcp -m set --match-set {list} src -m tcp --dport 5432 -j ACCEPT"
        )],
        "{rules}"
    );

    assert!(tcp(&cart, &a_orders, 5432).is_some(), "cart -> orders");
    assert!(tcp(&web, &a_orders, 5432).is_some(), "web -> orders");
    assert_eq!(tcp(&other, &a_orders, 5432), None, "other -> orders");
    for (from, n) in [(&a_cart, 0), (&a_web, 1)] {
        let t = trace(&host, from, &a_orders, "tcp", 5432);
        assert_eq!(
            t["decided_by"]["Edge"]["edge"],
            format!("allow[{n}]"),
            "{t}"
        );
    }
    let t = trace(&host, &a_other, &a_orders, "tcp", 5432);
    assert_eq!(t["allow"], false, "{t}");
    let stats = host.cli_json(&["policy", "stats"]);
    for e in ["flatnet:db:allow[0]", "flatnet:db:allow[1]"] {
        let c = stats
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["rule"] == e)
            .unwrap_or_else(|| panic!("{e}: {stats}"));
        assert!(c["packets"].as_u64().unwrap() >= 1, "{e}: {stats}");
    }

    // A third source app: another list; the old one is destroyed.
    let third = format!(
        "{GROUPED}[[allow]]\nfrom = \"other\"\nto = \"orders\"\nproto = \"tcp\"\nports = [5432]\n"
    );
    let (code, _, err) = apply(&host, "db.toml", &third);
    assert_eq!(code, 0, "{err}");
    flatnet_lab::wait_for("third edge", Duration::from_secs(10), || {
        Ok(tcp(&other, &a_orders, 5432).map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", host.log()));
    let now = sets_named(&host.ns, "fl4-");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(&now[0], list);
    assert!(tcp(&cart, &a_orders, 5432).is_some());

    let (code, _, err) = cli(&host, &["policy", "delete", "db"]);
    assert_eq!(code, 0, "{err}");
    flatnet_lab::wait_for("lists gone", Duration::from_secs(10), || {
        Ok(sets_named(&host.ns, "fl4-").is_empty().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", host.log()));
    assert_eq!(tcp(&web, &a_orders, 5432), None);
}
