//! Service discovery in namespaces: two hosts sharing one file datastore,
//! flatnetd's DNS on 169.254.1.1:53 in each. A container on host A
//! resolves `<app>.apps.internal` to the app's containers on both hosts
//! and connects to them by name (the C library resolving through the CNI
//! result's `dns`); a DEL on host B leaves the answers within one TTL plus
//! a second; names outside the zone go through a test resolver (dnsmasq
//! in its own namespace) on host A and are REFUSED on host B; unknown
//! names are NXDOMAIN; garbage does not stop the server. With policy
//! enabled (default deny) and the host's INPUT dropping everything, DNS
//! still answers while the apps stay unreachable. With etcd as the
//! datastore, another host's records enter and leave the zone within a
//! second. A Docker container run with `--dns 169.254.1.1` resolves apps;
//! a podman container (CNI backend) does with nothing but the CNI result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::dns::*;
use common::policy::*;
use common::*;
use flatnet_lab::Netns;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::json;

/// The test resolver's answer for a name outside the zone.
const EXT_NAME: &str = "www.ext.test.";
const EXT_ADDR: &str = "198.51.100.7";

/// Connects from `ns` to `name:port` through the C library's resolver
/// (`ip netns exec` with the namespace's resolv.conf); what the server
/// echoed (the client's address), or `None`.
fn tcp_by_name(ns: &Netns, name: &str, port: u16) -> Option<String> {
    let script = format!("exec 3<>/dev/tcp/{name}/{port} && cat <&3");
    let out = ns
        .command("timeout")
        .args(["5", "bash", "-c", &script])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `getent ahostsv4 NAME` in `ns`: the addresses, sorted.
fn getent(ns: &Netns, name: &str) -> Vec<String> {
    let out = ns
        .command("getent")
        .args(["ahostsv4", name])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// flatnetd in `ns` with `[dns]` on and forwarding off (an empty
/// resolv.conf), `before` (pools, `[policy]`) and `dns_extra` (more `[dns]`
/// keys) in its config; `url`: the datastore (default a file store of its
/// own).
fn dns_host(ns: Netns, tag: &str, before: &str, dns_extra: &str, url: Option<&str>) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "").unwrap();
    let url = url
        .map(String::from)
        .unwrap_or_else(|| format!("file:{}/datastore", dir.path().display()));
    let rest = format!("{before}{}{dns_extra}", dns_section(false, &resolv));
    Host::start_in(ns, dir, tag, &rest, &url)
}

#[test]
fn two_hosts_resolve_connect_by_name_follow_del_forward_and_refuse() {
    flatnet_lab::require_root().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", shared.path().display());
    let (na, nb) = (Netns::new("da").unwrap(), Netns::new("db").unwrap());
    flatnet_lab::veth(&na, "eth0", &nb, "eth0").unwrap();
    na.addr_add("eth0", "10.0.9.1/30").unwrap();
    nb.addr_add("eth0", "10.0.9.2/30").unwrap();
    // The test resolver, in a namespace of its own behind host A.
    let rs = Netns::new("rslv").unwrap();
    flatnet_lab::veth(&na, "r0", &rs, "eth0").unwrap();
    na.addr_add("r0", "10.0.8.1/30").unwrap();
    rs.addr_add("eth0", "10.0.8.2/30").unwrap();
    let rdir = tempfile::tempdir().unwrap();
    let _dnsmasq = dnsmasq(
        &rs,
        "10.0.8.2",
        rdir.path(),
        &[format!("--address=/ext.test/{EXT_ADDR}")],
    );
    for ns in [&na, &nb] {
        ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    }
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // flatnetd's own listener first: it must be skipped, not looped to.
    let resolv_a = da.path().join("resolv.conf");
    std::fs::write(&resolv_a, "nameserver 169.254.1.1\nnameserver 10.0.8.2\n").unwrap();
    let resolv_b = db.path().join("resolv.conf");
    std::fs::write(&resolv_b, "nameserver 10.0.8.2\n").unwrap();
    let ha = Host::start_in(
        na,
        da,
        "da",
        &format!("{POOLS_V4}{}", dns_section(true, &resolv_a)),
        &url,
    );
    let hb = Host::start_in(
        nb,
        db,
        "db",
        &format!("{POOLS_V4}{}", dns_section(false, &resolv_b)),
        &url,
    );

    let (web1, cart1, cart2) = (
        Netns::new("web1").unwrap(),
        Netns::new("cart1").unwrap(),
        Netns::new("cart2").unwrap(),
    );
    let mut conf = ha.conf("1.1.0");
    conf["args"] = json!({"flatnet": {"app": "web"}});
    let (r_web, code) = ha.cni("ADD", "web1", &web1.path(), "eth0", &conf);
    assert_eq!(code, 0, "{r_web}\n{}", ha.log());
    // The CNI result tells the runtime to use flatnetd's resolver.
    assert_eq!(
        r_web["dns"],
        json!({"nameservers": ["169.254.1.1"], "search": ["apps.internal"]}),
        "{r_web}"
    );
    let a_web = result_v4(&r_web);
    let a_c1 = add_app(&ha, "cart1", &cart1, "cart");
    let a_c2 = add_app(&hb, "cart2", &cart2, "cart");
    // Between the hosts: each other's containers by /32.
    ha.ns
        .ip(&["route", "add", &format!("{a_c2}/32"), "via", "10.0.9.2"])
        .unwrap();
    hb.ns
        .ip(&["route", "add", &format!("{a_web}/32"), "via", "10.0.9.1"])
        .unwrap();
    serve(&cart1, 8080);
    serve(&cart2, 8080);

    // The app's name: both hosts' containers.
    let both = sorted(vec![a_c1.clone(), a_c2.clone()]);
    flatnet_lab::wait_for("cart on both hosts", Duration::from_secs(5), || {
        Ok(
            (resolve(&web1, "cart.apps.internal.") == (ResponseCode::NoError, both.clone()))
                .then_some(()),
        )
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\n{}",
            resolve(&web1, "cart.apps.internal."),
            ha.log()
        )
    });
    // Over TCP too, and case does not matter.
    let m = query(&web1, LISTEN, "CART.Apps.Internal.", RecordType::A, true).unwrap();
    assert_eq!(addrs(&m), both);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers[0].ttl, 5);
    // One instance by its container id.
    assert_eq!(
        resolve(&web1, "cart2.cart.apps.internal."),
        (ResponseCode::NoError, vec![a_c2.clone()])
    );
    // Host B answers the same from the same records.
    expect_a(
        &cart2,
        "cart.apps.internal.",
        ResponseCode::NoError,
        &[&both[0], &both[1]],
    );
    // NXDOMAIN for unknown names; NOERROR without answers for the other family.
    assert_eq!(
        resolve(&web1, "nope.apps.internal."),
        (ResponseCode::NXDomain, vec![])
    );
    assert_eq!(
        resolve(&web1, "x.cart.apps.internal."),
        (ResponseCode::NXDomain, vec![])
    );
    let m = query(
        &web1,
        LISTEN,
        "cart.apps.internal.",
        RecordType::AAAA,
        false,
    )
    .unwrap();
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );

    // Outside the zone: forwarded by host A (through the test resolver),
    // refused by host B (forward = false).
    let m = query(&web1, LISTEN, EXT_NAME, RecordType::A, false).unwrap();
    assert_eq!(
        (m.metadata.response_code, addrs(&m)),
        (ResponseCode::NoError, vec![EXT_ADDR.to_string()]),
        "{}",
        ha.log()
    );
    let m = query(&web1, LISTEN, EXT_NAME, RecordType::A, true).unwrap();
    assert_eq!(addrs(&m), vec![EXT_ADDR.to_string()]);
    let m = query(&cart2, LISTEN, EXT_NAME, RecordType::A, false).unwrap();
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::Refused, 0)
    );

    // By name, through the C library, as the runtime would set it up
    // from the CNI result: the search domain makes `cart` the app.
    let _rc = NetnsResolvConf::from_cni(&web1, &r_web["dns"]);
    assert_eq!(getent(&web1, "cart"), both);
    assert_eq!(getent(&web1, "www.ext.test"), vec![EXT_ADDR.to_string()]);
    for name in [
        "cart1.cart.apps.internal",
        "cart2.cart.apps.internal",
        "cart",
    ] {
        assert_eq!(
            tcp_by_name(&web1, name, 8080).as_deref(),
            Some(a_web.as_str()),
            "TCP to {name} by name\n{}",
            ha.log()
        );
    }

    // Garbage at the server: dropped and counted; it keeps answering.
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(i % 40)).map(|j| (i * 31 + j * 7) as u8).collect();
        let _ = udp_raw_nowait(&web1, junk);
    }
    let m = query(&web1, LISTEN, "cart.apps.internal.", RecordType::A, false).unwrap();
    assert_eq!(addrs(&m), both);
    // (Both receive loops have drained their share of the garbage.)
    flatnet_lab::wait_for("garbage counted", Duration::from_secs(5), || {
        let t = http_get(&ha.ns, "/metrics");
        Ok((metric(&t, "flatnet_dns_dropped_total{reason=\"malformed\"}") >= 100.0).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {}", http_get(&ha.ns, "/metrics")));
    let text = http_get(&ha.ns, "/metrics");
    assert!(
        metric(&text, "flatnet_dns_answers_total{rcode=\"NXDOMAIN\"}") >= 2.0,
        "{text}"
    );
    assert!(
        metric(&text, "flatnet_dns_queries_total{proto=\"tcp\"}") >= 2.0,
        "{text}"
    );
    assert!(
        metric(&text, "flatnet_dns_forwarded_total") >= 2.0,
        "{text}"
    );
    assert!(
        metric(&text, "flatnet_dns_query_duration_seconds_count") >= 8.0,
        "{text}"
    );
    assert_eq!(metric(&text, "flatnet_dns_zone_apps"), 2.0, "{text}");
    let text_b = http_get(&hb.ns, "/metrics");
    assert!(
        metric(&text_b, "flatnet_dns_answers_total{rcode=\"REFUSED\"}") >= 1.0,
        "{text_b}"
    );

    // DEL on host B: within one TTL plus a second the name no longer
    // returns that container (polled, with a deadline).
    hb.del("cart2", &cart2.path());
    let t = Instant::now();
    flatnet_lab::wait_for("cart2 gone from cart", Duration::from_secs(6), || {
        Ok(
            (resolve(&web1, "cart.apps.internal.") == (ResponseCode::NoError, vec![a_c1.clone()]))
                .then_some(()),
        )
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", resolve(&web1, "cart.apps.internal.")));
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(
        resolve(&web1, "cart2.cart.apps.internal."),
        (ResponseCode::NXDomain, vec![])
    );
    // The last one gone: the app's name is NXDOMAIN.
    ha.del("cart1", &cart1.path());
    flatnet_lab::wait_for("cart gone", Duration::from_secs(6), || {
        Ok((resolve(&web1, "cart.apps.internal.").0 == ResponseCode::NXDomain).then_some(()))
    })
    .unwrap();
    ha.del("web1", &web1.path());
}

/// Sends one datagram from `ns` to the listener without waiting for an answer.
fn udp_raw_nowait(ns: &Netns, bytes: Vec<u8>) -> bool {
    let to: std::net::SocketAddr = LISTEN.parse().unwrap();
    in_ns(ns, move || {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.send_to(&bytes, to))
            .is_ok()
    })
    .join()
    .unwrap()
}

#[test]
fn dns_is_answered_under_default_deny_and_opens_nothing_else() {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("dp").unwrap();
    // The host drops all input but loopback; the fabric side is a
    // neighbour namespace on eth0.
    let fab = Netns::new("fab").unwrap();
    flatnet_lab::veth(&ns, "eth0", &fab, "eth0").unwrap();
    ns.addr_add("eth0", "10.0.7.1/30").unwrap();
    fab.addr_add("eth0", "10.0.7.2/30").unwrap();
    fab.ip(&["route", "add", "169.254.1.1/32", "via", "10.0.7.1"])
        .unwrap();
    ns.exec("iptables", &["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"])
        .unwrap();
    ns.exec("iptables", &["-P", "INPUT", "DROP"]).unwrap();
    let policy = "[policy]\nenabled = true\nbetween_apps = \"deny\"\negress = \"deny\"\n";
    let host = dns_host(ns, "dp", &format!("{POOLS_V4}{policy}"), "", None);
    let (web, cart) = (Netns::new("web").unwrap(), Netns::new("cart").unwrap());
    let _a_web = add_app(&host, "web1", &web, "web");
    let a_cart = add_app(&host, "cart1", &cart, "cart");
    serve(&cart, 8080);
    // A host service on another port of the same address.
    serve(&host.ns, 2222);

    // Resolved over UDP and TCP despite default deny and INPUT DROP.
    expect_a(
        &web,
        "cart.apps.internal.",
        ResponseCode::NoError,
        &[&a_cart],
    );
    let m = query(&web, LISTEN, "cart.apps.internal.", RecordType::A, true).unwrap();
    assert_eq!(addrs(&m), vec![a_cart.clone()]);
    // Discovery opens no reachability: the app stays denied, and the
    // listener's address opens no other port of the host.
    assert_eq!(
        tcp(&web, &a_cart, 8080),
        None,
        "web -> cart denied by policy"
    );
    assert_eq!(
        tcp(&web, "169.254.1.1", 2222),
        None,
        "only port 53 is opened"
    );
    // Not on the host's own addresses, and not from the fabric.
    assert!(
        query(
            &fab,
            "10.0.7.1:53",
            "cart.apps.internal.",
            RecordType::A,
            false
        )
        .is_none()
    );
    assert!(query(&fab, LISTEN, "cart.apps.internal.", RecordType::A, false).is_none());
    assert!(query(&fab, LISTEN, "cart.apps.internal.", RecordType::A, true).is_none());
    // The rule that let it through is flatnet's DNS chain, first in INPUT.
    let save = host
        .ns
        .exec_stdout("iptables-save", &["-t", "filter"])
        .unwrap();
    let input: Vec<&str> = save.lines().filter(|l| l.starts_with("-A INPUT")).collect();
    assert_eq!(input.first(), Some(&"-A INPUT -j FLATNET-DNS"), "{save}");
    // A policy apply (full rewrite of policy's chains) leaves it alone.
    let (code, _, err) = apply(
        &host,
        "p.toml",
        "name = \"p\"\n[[allow]]\nfrom = \"web\"\nto = \"cart\"\nproto = \"tcp\"\nports = [8080]\n",
    );
    assert_eq!(code, 0, "{err}");
    flatnet_lab::wait_for("web -> cart allowed", Duration::from_secs(10), || {
        Ok(tcp(&web, &a_cart, 8080).is_some().then_some(()))
    })
    .unwrap();
    assert!(
        host.ns
            .exec_stdout("iptables-save", &["-t", "filter"])
            .unwrap()
            .contains(
                "-A FLATNET-DNS -d 169.254.1.1/32 -i flat+ -p udp -m udp --dport 53 -j ACCEPT"
            )
    );
    assert_eq!(
        resolve(&web, "cart.apps.internal."),
        (ResponseCode::NoError, vec![a_cart.clone()])
    );
    host.del("web1", &web.path());
    host.del("cart1", &cart.path());
}

/// With etcd as the datastore, another host's records (written straight
/// into etcd, as that host's flatnetd would) appear in and leave the zone
/// within a second: the follower rides etcd's watch. The local container
/// is dual-stack: AAAA gives its IPv6 address.
#[test]
fn records_of_another_host_follow_through_etcd() {
    use flatnet_ipam::{Op, Txn};
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("de").unwrap();
    let _etcd = flatnet_lab::etcd::Etcd::start(&ns).unwrap();
    let url = format!("etcd://127.0.0.1:{}", flatnet_lab::etcd::CLIENT_PORT);
    let host = dns_host(ns, "de", POOLS_DUAL, "", Some(&url));
    let c = Netns::new("c").unwrap();
    let mut conf = host.conf("1.1.0");
    conf["args"] = json!({"flatnet": {"app": "web"}});
    let (r, code) = host.cni("ADD", "web1", &c.path(), "eth0", &conf);
    assert_eq!(code, 0, "{r}");
    expect_a(
        &c,
        "web.apps.internal.",
        ResponseCode::NoError,
        &[&result_v4(&r)],
    );
    // A dual-stack container: its IPv6 address for AAAA.
    let m = query(
        &c,
        LISTEN,
        "web1.web.apps.internal.",
        RecordType::AAAA,
        false,
    )
    .unwrap();
    assert_eq!(addrs(&m), vec![result_v6(&r).unwrap()]);
    let key = flatnet_agent::store::endpoint_key("other", "api1", "eth0");
    let record = serde_json::to_vec(&json!({
        "node": "other", "container_id": "api1", "ifname": "eth0", "netns": "",
        "host_ifname": "", "host_mac": "", "container_mac": "",
        "v4": "10.244.200.9", "v6": null, "app": "api",
    }))
    .unwrap();
    etcd_txn(&host.ns, &url, Txn::new().then(Op::put(&key, record)));
    let t = Instant::now();
    flatnet_lab::wait_for("api from etcd", Duration::from_secs(1), || {
        Ok((resolve(&c, "api.apps.internal.").1 == vec!["10.244.200.9".to_string()]).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e} after {:?}", t.elapsed()));
    etcd_txn(&host.ns, &url, Txn::new().then(Op::delete(&key)));
    flatnet_lab::wait_for("api gone from etcd", Duration::from_secs(1), || {
        Ok((resolve(&c, "api.apps.internal.").0 == ResponseCode::NXDomain).then_some(()))
    })
    .unwrap();
    host.del("web1", &c.path());
}

/// One transaction on the datastore at `url`, from inside `ns`.
fn etcd_txn(ns: &Netns, url: &str, txn: flatnet_ipam::Txn) {
    use flatnet_ipam::Datastore;
    let url: flatnet_agent::config::DatastoreUrl = url.parse().unwrap();
    ns.run_in(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = flatnet_agent::ipam::open_store(&url).await.unwrap();
            assert!(s.txn(txn).await.unwrap().succeeded);
        })
    })
    .unwrap();
}

/// A Docker container on a flatnet network, run with `--dns 169.254.1.1`
/// (what docs/operations.md says to do), resolves apps by name (Docker's
/// embedded resolver, 127.0.0.11 in the container, forwards to flatnetd),
/// and is itself found under its network's app.
#[test]
fn docker_container_resolves_through_flatnetd_with_dns_flag() {
    use common::docker::{Docker, NET_CREATE, enable_docker};
    let mut h = Host::start("dkd", POOLS_V4);
    let resolv = h.dir.path().join("resolv.conf");
    std::fs::write(&resolv, "").unwrap();
    let cfg = h.dir.path().join("flatnetd.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&dns_section(false, &resolv));
    std::fs::write(&cfg, text).unwrap();
    let plugins = enable_docker(&mut h);
    let cart = Netns::new("cart").unwrap();
    let a_cart = add_app(&h, "cart1", &cart, "cart");
    expect_a(
        &cart,
        "cart.apps.internal.",
        ResponseCode::NoError,
        &[&a_cart],
    );
    let docker = Docker::start(&h.ns, &plugins);
    docker.ok(&[NET_CREATE, &["-o", "flatnet.app=web", "net1"]].concat());
    let run = |args: &[&str]| {
        let mut a = vec![
            "run",
            "--rm",
            "--network",
            "net1",
            "--dns",
            "169.254.1.1",
            "--dns-search",
            "apps.internal",
            "busybox:local",
        ];
        a.extend_from_slice(args);
        docker.ok(&a)
    };
    let conf = run(&["cat", "/etc/resolv.conf"]);
    let out = run(&["busybox", "nslookup", "cart.apps.internal"]);
    assert!(
        out.contains(&a_cart),
        "{out}\nresolv.conf:\n{conf}\n{}",
        h.log()
    );
    // The Docker container is an endpoint of app web like any other.
    docker.sleeper("w1", "net1");
    let ip = docker.ip("w1", "net1");
    expect_a(&cart, "web.apps.internal.", ResponseCode::NoError, &[&ip]);
    docker.ok(&["rm", "-f", "w1"]);
    docker.ok(&["network", "rm", "net1"]);
    drop(docker);
    h.del("cart1", &cart.path());
}

/// `dns.listen` on an IPv6 address: put on `lo`, answered over IPv6 from a
/// dual-stack container (UDP and TCP), filtered by the ip6tables chain.
#[test]
fn an_ipv6_listener_answers_dual_stack_containers() {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("d6").unwrap();
    let host = dns_host(
        ns,
        "d6",
        POOLS_DUAL,
        "listen = \"[fd00:53::53]:53\"\n",
        None,
    );
    let c = Netns::new("c6").unwrap();
    let mut conf = host.conf("1.1.0");
    conf["args"] = json!({"flatnet": {"app": "db"}});
    let (r, code) = host.cni("ADD", "db1", &c.path(), "eth0", &conf);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["dns"]["nameservers"], json!(["fd00:53::53"]), "{r}");
    let v6 = result_v6(&r).unwrap();
    // Polled: the record reaches the zone through the watch, and the
    // first IPv6 packets right after an ADD can go unanswered while the
    // host end's link-local address finishes DAD (neighbour discovery
    // towards the container needs it), as a stub resolver would retry.
    for tcp in [false, true] {
        expect_answer(
            &c,
            "[fd00:53::53]:53",
            "db.apps.internal.",
            RecordType::AAAA,
            tcp,
            (ResponseCode::NoError, vec![v6.clone()]),
        );
    }
    let save = host
        .ns
        .exec_stdout("ip6tables-save", &["-t", "filter"])
        .unwrap();
    assert!(
        save.contains(
            "-A FLATNET-DNS -d fd00:53::53/128 -i flat+ -p udp -m udp --dport 53 -j ACCEPT"
        ),
        "{save}"
    );
    host.del("db1", &c.path());
}

/// A real runtime: podman 4.3's CNI backend writes the CNI result's `dns`
/// into the container's resolv.conf, so a podman container resolves apps
/// by name with no DNS flag at all.
#[test]
fn podman_writes_the_cni_dns_and_its_container_resolves_apps() {
    let host = dns_host(Netns::new("dpod").unwrap(), "dpod", POOLS_V4, "", None);
    let podman = common::podman::Podman::new(&host);
    let cart = Netns::new("cart").unwrap();
    let a_cart = add_app(&host, "cart1", &cart, "cart");
    expect_a(
        &cart,
        "cart.apps.internal.",
        ResponseCode::NoError,
        &[&a_cart],
    );
    let out = podman.run(
        &host,
        "cat /etc/resolv.conf; busybox nslookup cart.apps.internal",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "podman failed:\n{stdout}\n{stderr}\nflatnetd log:\n{}",
        host.log()
    );
    assert!(stdout.contains("nameserver 169.254.1.1"), "{stdout}");
    assert!(stdout.contains("apps.internal"), "{stdout}");
    assert!(stdout.contains(&a_cart), "{stdout}\n{stderr}");
    host.del("cart1", &cart.path());
}
