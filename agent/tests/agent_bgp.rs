//! flatnetd's embedded BGP speaker against an FRR top-of-rack router: STATUS
//! readiness follows the session, and the host's block reaches the ToR.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::POOLS_V4;
use flatnet_lab::{Netns, Router, wait_for};

#[test]
fn bgp_status_ready_after_established_and_block_advertised() {
    let (tor, host) = common::tor_and_bgp_host("hb", POOLS_V4);

    // No ToR yet: flatnetd and the datastore are up, but not ready.
    let (v, code) = host.cni("STATUS", "", "", "", &host.conf("1.1.0"));
    assert_eq!((code, v["code"].as_u64()), (1, Some(50)), "{v}");
    let details = v["details"].as_str().unwrap();
    assert!(
        details.contains("no BGP peer established") && details.contains("10.0.0.1"),
        "{v}"
    );
    let s = host.cli_json(&["status"]);
    assert_eq!(s["ready"], false, "{s}");
    assert_eq!(s["peers"][0]["address"], "10.0.0.1", "{s}");
    assert_ne!(s["peers"][0]["state"], "Established", "{s}");

    let frr = common::start_tor(&tor, &host);
    wait_for("CNI STATUS ready", Duration::from_secs(30), || {
        let (_, code) = host.cni("STATUS", "", "", "", &host.conf("1.1.0"));
        Ok((code == 0).then_some(()))
    })
    .unwrap();
    let s = host.cli_json(&["status"]);
    assert_eq!(s["ready"], true, "{s}");
    assert_eq!(s["peers"][0]["state"], "Established", "{s}");

    // The first ADD claims a block; the ToR learns it from this host.
    let c = Netns::new("c").unwrap();
    host.add("b1", &c);
    let blocks = host.cli_json(&["ipam", "show"])["blocks"].clone();
    let block = blocks[0]["cidr"].as_str().unwrap().to_string();
    assert!(
        block.starts_with("10.244.") && block.ends_with("/26"),
        "{blocks}"
    );
    let r = frr
        .wait_route(&block, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", host.log()));
    assert_eq!(r.as_path, vec![65002], "{r:?}");
    // Nothing but this host's block is exported.
    let learned = common::learned_prefixes(&frr);
    assert_eq!(learned, vec![block], "{learned:?}");
}
