//! The FIB by kernel nexthop objects, in a namespace of its own (real
//! netlink): ECMP over two gateways is one group object shared by every
//! prefix, routes reference it by `nhid`, a restart adopts objects and
//! routes and changes nothing, objects no route uses are deleted, an
//! RFC 8950 route is `via inet6` by object, and another daemon's object is
//! never touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use flatnet_agent::fib::Fib;
use flatnet_agent::fib::nh::{NH_ID_BASE, NH_ID_END};
use flatnet_agent::fib::plan::{FibPlan, Installed, NextHop, NextHops, plan};
use flatnet_lab::Netns;
use ipnetwork::IpNetwork;
use serde_json::Value;

/// Two on-link fabric links (veth pairs inside the namespace): 10.1.0.1 on
/// eth0, 10.2.0.1 on eth1; eth2 has IPv6 link-local only.
fn fabric_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag).unwrap();
    for (i, addr) in [
        (0, Some("10.1.0.2/24")),
        (1, Some("10.2.0.2/24")),
        (2, None),
    ] {
        ns.ip(&[
            "link",
            "add",
            &format!("eth{i}"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("eth{i}p"),
        ])
        .unwrap();
        ns.ip(&["link", "set", &format!("eth{i}"), "up"]).unwrap();
        ns.ip(&["link", "set", &format!("eth{i}p"), "up"]).unwrap();
        if let Some(a) = addr {
            ns.addr_add(&format!("eth{i}"), a).unwrap();
        }
    }
    ns
}

fn ip_json(ns: &Netns, args: &[&str]) -> Value {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    let out = ns.exec_stdout("ip", &a).unwrap();
    if out.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&out).unwrap()
}

/// flatnet's nexthop objects: id → the object as `ip -j nexthop` shows it.
fn objects(ns: &Netns) -> BTreeMap<u64, Value> {
    ip_json(ns, &["nexthop", "show", "protocol", "200"])
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_u64().unwrap(), o.clone()))
        .collect()
}

fn ifindex(ns: &Netns, dev: &str) -> u32 {
    ip_json(ns, &["link", "show", "dev", dev])[0]["ifindex"]
        .as_u64()
        .unwrap() as u32
}

fn prefixes(n: u32) -> Vec<IpNetwork> {
    (0..n)
        .map(|i| {
            let a = std::net::Ipv4Addr::from((10u32 << 24) + (100 << 16) + (i << 8));
            IpNetwork::new(a.into(), 24).unwrap()
        })
        .collect()
}

fn hops(gws: &[&str]) -> NextHops {
    gws.iter()
        .map(|g| NextHop::via(g.parse().unwrap()))
        .collect()
}

/// Runs `f` with a fresh `Fib` (a flatnetd start) inside `ns`.
fn with_fib<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce(Fib) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    ns.run_in(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let fib = Fib::open().await.unwrap();
            f(fib).await
        })
    })
    .unwrap()
}

#[test]
fn ecmp_is_one_shared_group_object_kept_across_a_restart() {
    flatnet_lab::require_root().unwrap();
    let ns = fabric_ns("fnh");
    // Another daemon's object: never touched, its id never reused.
    ns.ip(&[
        "nexthop", "add", "id", "7", "via", "10.1.0.1", "dev", "eth0",
    ])
    .unwrap();
    let nets = prefixes(50);
    let both = hops(&["10.1.0.1", "10.2.0.1"]);
    let desired: BTreeMap<IpNetwork, NextHops> = nets.iter().map(|n| (*n, both.clone())).collect();

    let d = desired.clone();
    let st = with_fib(&ns, move |fib| {
        Box::pin(async move {
            assert!(fib.uses_nexthop_objects());
            let p = plan(&d, &BTreeMap::new(), true);
            fib.apply(p).await
        })
    });
    assert_eq!((st.installed, st.failed), (50, 0), "{st:?}");
    let objs = objects(&ns);
    assert_eq!(objs.len(), 3, "two gateways and one group: {objs:?}");
    let groups: Vec<u64> = objs
        .iter()
        .filter(|(_, o)| o["group"].is_array())
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(groups.len(), 1, "{objs:?}");
    let g = groups[0];
    assert!(
        objs.keys()
            .all(|i| (u64::from(NH_ID_BASE)..u64::from(NH_ID_END)).contains(i))
    );
    let routes = ip_json(&ns, &["-4", "route", "show", "proto", "200"]);
    let routes = routes.as_array().unwrap();
    assert_eq!(routes.len(), 50);
    for r in routes {
        assert_eq!(
            r["nhid"].as_u64(),
            Some(g),
            "every prefix by the group: {r}"
        );
        assert_eq!(r["metric"], 20, "{r}");
    }
    let foreign = ip_json(&ns, &["nexthop", "show", "id", "7"]);
    assert_eq!(foreign[0]["gateway"], "10.1.0.1", "{foreign}");

    // Restart: objects and routes adopted; the same selection changes nothing.
    let d = desired.clone();
    let (adopted, installed, replan, st) = with_fib(&ns, move |fib| {
        Box::pin(async move {
            let adopted = fib.adopted();
            let installed = fib.installed();
            let inst: BTreeMap<IpNetwork, Installed> = installed
                .iter()
                .map(|(n, h)| {
                    (
                        *n,
                        Installed {
                            hops: h.clone(),
                            adopted: true,
                            nhid: None,
                        },
                    )
                })
                .collect();
            let replan = plan(&d, &inst, true);
            let st = fib.apply(replan.clone()).await;
            (adopted, installed, replan, st)
        })
    });
    assert_eq!(adopted, 50);
    assert_eq!(installed, desired);
    assert!(replan.is_empty(), "{replan:?}");
    assert_eq!(st.installed + st.removed + st.failed, 0);
    assert_eq!(objects(&ns), objs, "objects kept as they were");
    assert_eq!(
        ip_json(&ns, &["-4", "route", "show", "proto", "200"])
            .as_array()
            .unwrap(),
        routes
    );

    // One ToR gone: every route moves to the lone gateway's object, the
    // group and the other gateway's object are deleted.
    let d = desired.clone();
    let st = with_fib(&ns, move |fib| {
        Box::pin(async move {
            let one = hops(&["10.1.0.1"]);
            let p = FibPlan {
                replace: d.keys().map(|n| (*n, one.clone())).collect(),
                ..FibPlan::default()
            };
            fib.apply(p).await
        })
    });
    assert_eq!((st.installed, st.failed), (50, 0), "{st:?}");
    let after = objects(&ns);
    assert_eq!(
        after.len(),
        1,
        "only the lone gateway's object left: {after:?}"
    );
    let (id, o) = after.iter().next().unwrap();
    assert_eq!(o["gateway"], "10.1.0.1", "{o}");
    assert!(objs.contains_key(id), "the adopted object, not a new one");
    for r in ip_json(&ns, &["-4", "route", "show", "proto", "200"])
        .as_array()
        .unwrap()
    {
        assert_eq!(r["nhid"].as_u64(), Some(*id), "{r}");
    }
    assert_eq!(
        ip_json(&ns, &["nexthop", "show", "id", "7"])[0]["gateway"],
        "10.1.0.1"
    );
}

#[test]
fn rfc8950_routes_go_via_inet6_objects_on_their_interface() {
    flatnet_lab::require_root().unwrap();
    let ns = fabric_ns("fnh6");
    let eth2 = ifindex(&ns, "eth2");
    let ll = |i: u32| NextHop {
        gateway: "fe80::1".parse().unwrap(),
        ifindex: Some(i),
    };
    let eth0 = ifindex(&ns, "eth0");
    let net: IpNetwork = "10.9.0.0/24".parse().unwrap();
    let ecmp: IpNetwork = "10.9.1.0/24".parse().unwrap();
    let v6: IpNetwork = "fd00:9::/64".parse().unwrap();
    let p = FibPlan {
        add: vec![
            (net, [ll(eth2)].into()),
            (ecmp, [ll(eth0), ll(eth2)].into()),
            (v6, [ll(eth2)].into()),
        ],
        ..FibPlan::default()
    };
    let st = with_fib(&ns, move |fib| Box::pin(async move { fib.apply(p).await }));
    assert_eq!((st.installed, st.failed), (3, 0), "{st:?}");
    let r = ip_json(&ns, &["-4", "route", "show", "10.9.0.0/24"]);
    let id = r[0]["nhid"]
        .as_u64()
        .unwrap_or_else(|| panic!("by nhid: {r}"));
    let o = &objects(&ns)[&id];
    assert_eq!(o["gateway"], "fe80::1", "{o}");
    assert_eq!(o["dev"], "eth2", "{o}");
    // The IPv6 prefix shares the IPv4 prefix's object (same gateway, same link).
    let r6 = ip_json(&ns, &["-6", "route", "show", "fd00:9::/64"]);
    assert_eq!(r6[0]["nhid"].as_u64(), Some(id), "{r6}");
    // ECMP over two unnumbered links: a group of two link-local objects.
    let re = ip_json(&ns, &["-4", "route", "show", "10.9.1.0/24"]);
    let g = re[0]["nhid"].as_u64().unwrap();
    let members: BTreeSet<u64> = objects(&ns)[&g]["group"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(members.len(), 2);
    assert!(members.contains(&id));
    // The kernel's view of the route: via inet6 on eth2.
    let text = ns
        .exec_stdout("ip", &["-4", "route", "show", "10.9.0.0/24"])
        .unwrap();
    assert!(text.contains("via inet6 fe80::1 dev eth2"), "{text}");
}
