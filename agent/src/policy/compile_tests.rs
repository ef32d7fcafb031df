//! Golden-file tests of the compiler (`agent/tests/data/policy/`; rewrite
//! them with `UPDATE_GOLDEN=1` after an intended change, and review the
//! diff) and trace tests over the same IR.

use std::net::IpAddr;
use std::path::PathBuf;

use super::*;
use crate::policy::model::Policy;
use crate::policy::trace::{Flow, trace};

const SHOP: &str = r#"
name = "shop"
[[allow]]
from = "cart"
to = "orders"
proto = "tcp"
ports = [5432, "8000-8080"]
[[allow]]
from = "web"
to = "cart"
proto = "udp"
ports = [53]
[[egress]]
app = "cart"
to_cidr = "203.0.113.0/24"
proto = "tcp"
ports = [443]
[[egress]]
app = "cart"
to_cidr = "2001:db8:99::/48"
proto = "any"
[[ingress]]
app = "web"
from_cidr = "198.51.100.0/24"
proto = "tcp"
ports = [80]
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ep(app: Option<&str>, addrs: &[&str]) -> EndpointAddr {
    EndpointAddr {
        app: app.map(str::to_string),
        addrs: addrs.iter().map(|a| ip(a)).collect(),
    }
}

fn shop() -> (Vec<Policy>, Vec<EndpointAddr>, Cluster) {
    let (_, p) = Policy::parse(SHOP, "shop.toml").unwrap();
    let eps = vec![
        ep(Some("cart"), &["10.244.0.2", "fd00:244::2"]),
        ep(Some("cart"), &["10.244.1.7"]),
        ep(Some("orders"), &["10.244.1.2", "fd00:244:0:1::2"]),
        ep(Some("web"), &["10.244.0.3"]),
        ep(None, &["10.244.0.9"]),
    ];
    let cluster = Cluster {
        between_apps: DefaultAction::Deny,
        egress: DefaultAction::Deny,
        pools: vec![
            ("10.244.0.0/16".parse().unwrap(), false),
            ("10.99.0.0/16".parse().unwrap(), true),
            ("fd00:244::/56".parse().unwrap(), false),
        ],
    };
    (vec![p], eps, cluster)
}

fn golden(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/policy")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert_eq!(got, want, "golden file {} differs", path.display());
}

#[test]
fn shop_compiles_to_the_golden_payloads() {
    let (p, e, c) = shop();
    let out = compile(&p, &e, &c);
    let all_hooks = Hooks {
        forward: true,
        postrouting: true,
    };
    golden(
        "shop.iptables4",
        &out.v4.iptables_payload(all_hooks, &[], None),
    );
    golden(
        "shop.iptables6",
        &out.v6.iptables_payload(all_hooks, &[], None),
    );
    golden("shop.ipset4", &out.v4.ipset_payload());
    golden("shop.ipset6", &out.v6.ipset_payload());
}

#[test]
fn default_allow_compiles_to_the_golden_payload() {
    let (p, e, mut c) = shop();
    c.between_apps = DefaultAction::Allow;
    c.egress = DefaultAction::Allow;
    let out = compile(&p, &e, &c);
    golden(
        "allow-defaults.iptables4",
        &out.v4.iptables_payload(Hooks::default(), &[], None),
    );
}

#[test]
fn output_does_not_depend_on_input_order() {
    let (mut p, mut e, c) = shop();
    let (_, q) = Policy::parse(&SHOP.replace("name = \"shop\"", "name = \"alpha\""), "a").unwrap();
    p.push(q.clone());
    let a = compile(&p, &e, &c);
    p.reverse();
    e.reverse();
    assert_eq!(a, compile(&p, &e, &c));
}

#[test]
fn a_membership_change_changes_sets_only() {
    let (p, mut e, c) = shop();
    let before = compile(&p, &e, &c);
    e.push(ep(Some("orders"), &["10.244.2.5"]));
    e.remove(1);
    let after = compile(&p, &e, &c);
    assert!(!chains_differ(&before.v4, &after.v4));
    assert_eq!(
        membership_delta(&before.v4, &after.v4),
        "del fa4-cart 10.244.1.7\nadd fa4-orders 10.244.2.5\n\
         del fn4-all 10.244.1.7\nadd fn4-all 10.244.2.5\n"
    );
    assert_eq!(membership_delta(&before.v6, &after.v6), "");
    // The engine's shortcut gives the same sets as a compile.
    assert_eq!(before.v4.sets_for(&e).as_ref(), Some(&after.v4.sets));
    // A new app is a chain change, and no shortcut.
    e.push(ep(Some("batch"), &["10.244.3.1"]));
    assert!(chains_differ(&after.v4, &compile(&p, &e, &c).v4));
    assert_eq!(before.v4.sets_for(&e), None);
}

#[test]
fn long_app_names_stay_within_kernel_limits() {
    let long = "a-very-long-application-name-for-testing-limits";
    assert!(app_set(Family::V6, long).len() <= 29);
    assert!(tmp_set(&app_set(Family::V6, long)).len() <= 31);
    assert!(in_chain(long).len() <= 28 && out_chain(long).len() <= 28);
    assert_ne!(in_chain(long), in_chain(&format!("{long}2")));
    assert_eq!(in_chain("web"), "FLATNET-IN-web");
    assert!(is_flatnet_set(&app_set(Family::V4, long)) && !is_flatnet_set("docker-x"));
}

fn decide(flow: (&str, &str, Proto, Option<u16>)) -> (bool, Option<Origin>) {
    let (p, e, c) = shop();
    let v = trace(
        &compile(&p, &e, &c),
        &Flow {
            from: ip(flow.0),
            to: ip(flow.1),
            proto: flow.2,
            port: flow.3,
        },
    )
    .unwrap();
    (v.allow, v.decided_by)
}

fn edge(e: &str) -> Option<Origin> {
    Some(Origin::Edge {
        policy: "shop".into(),
        edge: e.into(),
    })
}

#[test]
fn trace_names_the_edge_or_default_that_decides() {
    use Proto::*;
    // cart → orders on an allowed port, across hosts, both families.
    assert_eq!(
        decide(("10.244.0.2", "10.244.1.2", Tcp, Some(5432))),
        (true, edge("allow[0]"))
    );
    assert_eq!(
        decide(("10.244.1.7", "10.244.1.2", Tcp, Some(8080))),
        (true, edge("allow[0]"))
    );
    assert_eq!(
        decide(("fd00:244::2", "fd00:244:0:1::2", Tcp, Some(8000))),
        (true, edge("allow[0]"))
    );
    // Wrong port or protocol, or the reverse direction: the default.
    let deny = (false, Some(Origin::DefaultBetweenApps));
    assert_eq!(decide(("10.244.0.2", "10.244.1.2", Tcp, Some(22))), deny);
    assert_eq!(decide(("10.244.0.2", "10.244.1.2", Udp, Some(5432))), deny);
    assert_eq!(decide(("10.244.1.2", "10.244.0.2", Tcp, Some(5432))), deny);
    assert_eq!(
        decide(("10.244.0.3", "10.244.0.2", Udp, Some(53))),
        (true, edge("allow[1]"))
    );
    // Same app.
    assert_eq!(
        decide(("10.244.0.2", "10.244.1.7", Icmp, None)),
        (true, Some(Origin::SameApp))
    );
    // Egress: the allowed CIDR and port, then the default.
    assert_eq!(
        decide(("10.244.0.2", "203.0.113.5", Tcp, Some(443))),
        (true, edge("egress[0]"))
    );
    assert_eq!(
        decide(("10.244.0.2", "203.0.113.5", Tcp, Some(80))),
        (false, Some(Origin::DefaultEgress))
    );
    assert_eq!(
        decide(("fd00:244::2", "2001:db8:99::1", Udp, Some(9))),
        (true, edge("egress[1]"))
    );
    // Ingress from outside.
    assert_eq!(
        decide(("198.51.100.9", "10.244.0.3", Tcp, Some(80))),
        (true, edge("ingress[0]"))
    );
    assert_eq!(decide(("192.0.2.1", "10.244.0.3", Tcp, Some(80))), deny);
    // Unprogrammed addresses: dropped both ways.
    let unprog = (false, Some(Origin::Unprogrammed));
    assert_eq!(decide(("10.244.0.2", "10.244.0.77", Tcp, Some(80))), unprog);
    // An endpoint without an app: only the default.
    assert_eq!(decide(("10.244.0.2", "10.244.0.9", Tcp, Some(80))), deny);
    // Neither end is flatnet's: not flatnet's decision.
    assert_eq!(
        decide(("192.0.2.1", "192.0.2.2", Tcp, Some(80))),
        (true, None)
    );
}

#[test]
fn trace_refuses_mixed_families_and_missing_ports() {
    let (p, e, c) = shop();
    let out = compile(&p, &e, &c);
    let f = |from: &str, to: &str, proto, port| {
        trace(
            &out,
            &Flow {
                from: ip(from),
                to: ip(to),
                proto,
                port,
            },
        )
    };
    assert!(f("10.244.0.2", "fd00:244::2", Proto::Tcp, Some(1)).is_err());
    assert!(f("10.244.0.2", "10.244.1.2", Proto::Tcp, None).is_err());
    assert!(f("10.244.0.2", "10.244.1.2", Proto::Icmp, Some(1)).is_err());
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
proto = "udp"
ports = [53]
[[allow]]
from = "web"
to = "orders"
proto = "tcp"
ports = [5432]
[[allow]]
from = "cart"
to = "orders"
proto = "tcp"
ports = [5432]
"#;

fn grouped() -> (Vec<Policy>, Vec<EndpointAddr>, Cluster) {
    let (_, p) = Policy::parse(GROUPED, "db.toml").unwrap();
    let eps = vec![
        ep(Some("cart"), &["10.244.0.2"]),
        ep(Some("web"), &["10.244.0.3"]),
        ep(Some("orders"), &["10.244.1.2"]),
        ep(Some("other"), &["10.244.0.4"]),
    ];
    let cluster = Cluster {
        pools: vec![("10.244.0.0/16".parse().unwrap(), false)],
        ..Cluster::default()
    };
    (vec![p], eps, cluster)
}

/// Edges to one app on one service become one rule over a `list:set` of
/// the source apps (in edge order, each once); an edge alone on its
/// service keeps its rule; trace and counters name each member's edge.
#[test]
fn edges_sharing_a_service_become_one_rule_over_a_list() {
    let (ps, eps, cluster) = grouped();
    let c = compile(&ps, &eps, &cluster);
    let ir = &c.v4;
    assert_eq!(ir.lists.len(), 1, "{:?}", ir.lists);
    let (name, members) = ir.lists.iter().next().unwrap();
    assert!(
        name.starts_with("fl4-orders-") && name.len() <= 29,
        "{name}"
    );
    assert!(is_flatnet_set(name));
    let sets: Vec<&str> = members.iter().map(|m| m.set.as_str()).collect();
    assert_eq!(sets, ["fa4-cart", "fa4-web"]);
    assert_eq!(
        members[1].origin,
        Origin::Edge {
            policy: "db".into(),
            edge: "allow[2]".into()
        }
    );
    let rules = &ir.rendered()[&("filter".to_string(), "FLATNET-IN-orders".to_string())];
    assert_eq!(
        rules[1..3],
        [
            format!("-p tcp -m set --match-set {name} src -m tcp --dport 5432 -j ACCEPT"),
            "-p udp -m set --match-set fa4-web src -m udp --dport 53 -j ACCEPT".to_string(),
        ],
        "{rules:?}"
    );
    let ipset = ir.ipset_payload();
    assert!(
        ipset.ends_with(&format!(
            "create {name} list:set size 2 counters\nadd {name} fa4-cart\nadd {name} fa4-web\n"
        )),
        "{ipset}"
    );
    // The list is named after its content: another member, another list.
    let mut more = eps.clone();
    more.push(ep(Some("extra"), &["10.244.0.5"]));
    let (_, mut p2) = Policy::parse(
        &format!("{GROUPED}[[allow]]\nfrom = \"extra\"\nto = \"orders\"\nproto = \"tcp\"\nports = [5432]\n"),
        "db.toml",
    )
    .unwrap();
    p2.name = "db".into();
    let c2 = compile(&[p2], &more, &cluster);
    assert!(!c2.v4.lists.contains_key(name));
    assert!(chains_differ(&c.v4, &c2.v4));

    let t = |from: &str, proto: Proto, port: Option<u16>| {
        let v = trace(
            &c,
            &Flow {
                from: ip(from),
                to: ip("10.244.1.2"),
                proto,
                port,
            },
        )
        .unwrap();
        (v.allow, v.decided_by)
    };
    let edge_n = |n: usize| {
        Some(Origin::Edge {
            policy: "db".into(),
            edge: format!("allow[{n}]"),
        })
    };
    assert_eq!(t("10.244.0.2", Proto::Tcp, Some(5432)), (true, edge_n(0)));
    assert_eq!(t("10.244.0.3", Proto::Tcp, Some(5432)), (true, edge_n(2)));
    assert_eq!(t("10.244.0.3", Proto::Udp, Some(53)), (true, edge_n(1)));
    assert_eq!(
        t("10.244.0.4", Proto::Tcp, Some(5432)),
        (false, Some(Origin::DefaultBetweenApps))
    );
    assert_eq!(
        t("10.244.0.2", Proto::Tcp, Some(5433)),
        (false, Some(Origin::DefaultBetweenApps))
    );

    let save = format!(
        "add {name} fa4-cart packets 3 bytes 180\nadd {name} fa4-web packets 0 bytes 0\nadd other fa4-cart packets 9 bytes 9\n"
    );
    let counts = crate::policy::enforce::list_counters(&save, name, members);
    assert_eq!(counts.get("flatnet:db:allow[0]"), Some(&(3, 180)));
    assert_eq!(counts.get("flatnet:db:allow[2]"), Some(&(0, 0)));
    assert_eq!(counts.len(), 2, "{counts:?}");
}
