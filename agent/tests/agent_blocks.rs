//! One owner of the blocks this host owns: a block that empties and stays
//! empty past its pool's grace goes back to the pool, and its kernel
//! blackhole route and its BGP advertisement (to a real FRR ToR) go with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Host;
use flatnet_lab::frr::Frr;
use flatnet_lab::{Netns, Router, wait_for};

/// Blackhole routes flatnet installed (protocol 200) in the host namespace.
fn blackholes(host: &Host) -> Vec<String> {
    host.ip_json(&["-4", "route", "show", "proto", "200", "type", "blackhole"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["dst"].as_str().map(String::from))
        .collect()
}

fn learned(frr: &Frr) -> Vec<String> {
    frr.rib(flatnet_lab::Family::Ipv4Unicast)
        .unwrap()
        .into_iter()
        .filter(|e| e.learned)
        .map(|e| e.prefix)
        .collect()
}

#[test]
fn released_block_loses_blackhole_and_advertisement_together() {
    let pools = "[[pool]]\ncidr = \"10.244.0.0/16\"\nblock_size = 26\nempty_block_grace = 1\n";
    let (tor, host) = common::tor_and_bgp_host("hr", pools);
    let frr = common::start_tor(&tor, &host);

    // ADD claims a block: blackhole and advertisement appear.
    let c = Netns::new("c").unwrap();
    host.add("r1", &c);
    let blocks = host.cli_json(&["ipam", "show"])["blocks"].clone();
    let block = blocks[0]["cidr"].as_str().unwrap().to_string();
    assert!(block.ends_with("/26"), "{blocks}");
    assert_eq!(blackholes(&host), vec![block.clone()]);
    frr.wait_route(&block, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));

    // DEL empties it; after the grace IPAM releases it, and both go.
    host.del("r1", &c.path());
    wait_for(
        "block released, blackhole and route gone",
        Duration::from_secs(30),
        || {
            let owned = host.cli_json(&["ipam", "show"])["blocks"]
                .as_array()
                .unwrap()
                .len();
            Ok(
                (owned == 0 && blackholes(&host).is_empty() && learned(&frr).is_empty())
                    .then_some(()),
            )
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: blackholes {:?}, ToR learned {:?}\nlog:\n{}",
            blackholes(&host),
            learned(&frr),
            host.log()
        )
    });
    // The session stayed up: the withdrawal was an UPDATE, not a reset.
    let s = host.cli_json(&["status"]);
    assert_eq!(s["peers"][0]["state"], "Established", "{s}");

    // A new ADD claims a block again: both come back.
    host.add("r2", &c);
    let block2 = host.cli_json(&["ipam", "show"])["blocks"][0]["cidr"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(blackholes(&host), vec![block2.clone()]);
    frr.wait_route(&block2, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
}
