//! What flatnetd advertises, seen from the ToR (a real FRR): a container in
//! a block the host already owns sends no UPDATE (counted by FRR, with the
//! next block's UPDATE as the barrier); pool and peer communities and large
//! communities arrive on the block; a pool with `export = false` is never
//! advertised.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Host, result_v4};
use flatnet_lab::frr::Frr;
use flatnet_lab::{Family, Netns, Router};

const T: Duration = Duration::from_secs(30);

/// UPDATEs FRR received from the host (`show bgp neighbors json`).
fn updates_received(frr: &Frr) -> u64 {
    let v = frr.vtysh_json("show bgp neighbors 10.0.0.2 json").unwrap();
    v["10.0.0.2"]["messageStats"]["updatesRecv"]
        .as_u64()
        .unwrap_or_else(|| panic!("no updatesRecv in {v}"))
}

fn learned(frr: &Frr, fam: Family) -> Vec<String> {
    let mut v: Vec<String> = frr
        .rib(fam)
        .unwrap()
        .into_iter()
        .filter(|e| e.learned)
        .map(|e| e.prefix)
        .collect();
    v.sort();
    v
}

fn blocks(host: &Host) -> Vec<String> {
    let mut b: Vec<String> = host.cli_json(&["ipam", "show"])["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["cidr"].as_str().map(String::from))
        .collect();
    b.sort();
    b
}

fn inside(block: &str, addr: &str) -> bool {
    let net: ipnetwork::IpNetwork = block.parse().unwrap();
    net.contains(addr.parse().unwrap())
}

#[test]
fn a_container_in_an_owned_block_sends_no_update() {
    // /30 blocks: four addresses each, so the fifth container needs a new block.
    let pools = "[[pool]]\ncidr = \"10.244.0.0/16\"\nblock_size = 30\n";
    let (tor, host) = common::tor_and_bgp_host("hu", pools);
    let frr = common::start_tor(&tor, &host);

    let mut cs = Vec::new();
    let c = Netns::new("c0").unwrap();
    let first = result_v4(&host.add("u0", &c));
    cs.push(c);
    let a = blocks(&host);
    assert_eq!(a.len(), 1, "{a:?}");
    frr.wait_route(&a[0], T)
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    assert!(inside(&a[0], &first), "{first} in {a:?}");
    let before = updates_received(&frr);

    // Fill the block, then one more: exactly one new block, one UPDATE.
    let mut i = 1;
    loop {
        let c = Netns::new(&format!("c{i}")).unwrap();
        let ip = result_v4(&host.add(&format!("u{i}"), &c));
        cs.push(c);
        i += 1;
        if !inside(&a[0], &ip) {
            break;
        }
        assert!(i <= 4, "a /30 holds at most four containers: {ip}");
    }
    let now = blocks(&host);
    assert_eq!(now.len(), 2, "{now:?}");
    let b = now.iter().find(|b| **b != a[0]).unwrap().clone();
    frr.wait_route(&b, T)
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    let after = updates_received(&frr);
    assert_eq!(
        after - before,
        1,
        "{} containers in the owned block {} and one new block {b}: FRR counted {} UPDATEs",
        i - 1,
        a[0],
        after - before
    );
    // The ToR holds the two aggregates and nothing per container.
    assert_eq!(learned(&frr, Family::Ipv4Unicast), now);
}

#[test]
fn pool_and_peer_communities_reach_the_tor_and_unexported_pools_stay_home() {
    let pools = "[[pool]]\ncidr = \"10.244.0.0/16\"\nblock_size = 26\n\
                 communities = [\"65002:100\"]\nlarge_communities = [\"65002:1:2\"]\n\
                 [[pool]]\ncidr = \"fd00:244::/56\"\nblock_size = 122\nexport = false\n";
    flatnet_lab::require_root().unwrap();
    let tor = Netns::new("tor").unwrap();
    let ns = Netns::new("hc").unwrap();
    flatnet_lab::veth(&tor, "eth0", &ns, "eth0").unwrap();
    tor.addr_add("eth0", "10.0.0.1/30").unwrap();
    ns.addr_add("eth0", "10.0.0.2/30").unwrap();
    tor.addr_add("eth0", "fd00:f::1/64").unwrap();
    ns.addr_add("eth0", "fd00:f::2/64").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", dir.path().display());
    let rest = format!(
        "{pools}[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 65001\n\
         communities = [\"65002:200\"]\nlarge_communities = [\"65002:3:4\"]\n"
    );
    let host = Host::start_with(
        ns,
        dir,
        "hc",
        "router_id = \"10.0.0.2\"\nasn = 65002",
        &rest,
        &url,
    );
    let frr = common::start_tor(&tor, &host);
    let c = Netns::new("c").unwrap();
    host.add("k1", &c);
    let owned = blocks(&host);
    let v4 = owned.iter().find(|b| b.contains('.')).unwrap().clone();
    let v6 = owned.iter().find(|b| b.contains(':')).unwrap().clone();
    frr.wait_route(&v4, T)
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));

    let r = frr
        .vtysh_json(&format!("show bgp ipv4 unicast {v4} json"))
        .unwrap();
    let path = &r["paths"][0];
    let mut comms: Vec<&str> = path["community"]["string"]
        .as_str()
        .unwrap_or_else(|| panic!("no communities on {v4}: {r}"))
        .split(' ')
        .collect();
    comms.sort();
    assert_eq!(comms, ["65002:100", "65002:200"], "{r}");
    let mut large: Vec<&str> = path["largeCommunity"]["string"]
        .as_str()
        .unwrap_or_else(|| panic!("no large communities on {v4}: {r}"))
        .split(' ')
        .collect();
    large.sort();
    assert_eq!(large, ["65002:1:2", "65002:3:4"], "{r}");

    // The IPv6 block exists on the host (blackholed, owned) but was never
    // advertised: flatnet's own Adj-RIB-Out has only the IPv4 block, and
    // FRR (IPv6 unicast negotiated) learned nothing.
    let nb = host.cli_json(&["bgp", "neighbors"]);
    assert!(
        nb[0]["families"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap_or_default().contains("ipv6")),
        "IPv6 unicast negotiated: {nb}"
    );
    let out = host.cli_json(&["bgp", "routes", "--advertised-to", "10.0.0.1"]);
    let prefixes: Vec<&str> = out
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["prefix"].as_str())
        .collect();
    assert_eq!(prefixes, [v4.as_str()], "advertised: {out}");
    assert!(learned(&frr, Family::Ipv6Unicast).is_empty(), "{v6} leaked");
}
