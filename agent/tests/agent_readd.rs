//! DEL immediately followed by ADD of the same attachment (podman restart,
//! kubelet retries): the DEL's veth may still be waiting for the reaper, or
//! be a crash leftover; the new ADD must succeed, and only a real clash in
//! the container namespace is "interface name taken".
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use flatnet_agent::kernel::host_ifname;
use flatnet_lab::Netns;

fn ping(from: &Netns, to: &str) -> bool {
    from.exec("ping", &["-c", "1", "-W", "2", to]).is_ok()
}

#[test]
fn del_then_immediate_readd_of_same_attachment_succeeds_repeatedly() {
    let host = Host::start("h", POOLS_DUAL);
    let c = Netns::new("c").unwrap();
    let peer = Netns::new("p").unwrap();
    let rp = host.add("peer", &peer);
    let peer_v4 = result_v4(&rp);
    let conf = host.conf("1.1.0");
    let (r, code) = host.cni("ADD", "restart", &c.path(), "eth0", &conf);
    assert_eq!(code, 0, "first ADD: {r}\n{}", host.log());
    for i in 0..20 {
        let (v, code) = host.cni("DEL", "restart", &c.path(), "eth0", &conf);
        assert_eq!(code, 0, "DEL #{i}: {v}");
        let (r, code) = host.cni("ADD", "restart", &c.path(), "eth0", &conf);
        assert_eq!(code, 0, "ADD #{i} after DEL: {r}\nlog:\n{}", host.log());
        let me = result_v4(&r);
        assert!(ping(&c, &peer_v4), "iteration {i}: container -> peer");
        assert!(ping(&peer, &me), "iteration {i}: peer -> container {me}");
    }
    host.del("restart", &c.path());
    host.del("peer", &peer.path());
    host.assert_clean();
    // The reaper finds most of its queued veths already deleted by the next
    // ADD: that is normal, not worth a warning.
    let log = host.log();
    assert!(
        !log.contains("deleting detached veths failed"),
        "reaper warned about veths an ADD had already deleted:\n{log}"
    );
}

#[test]
fn crash_leftover_host_veth_is_replaced_and_real_clash_is_ifname_taken() {
    let host = Host::start("h", POOLS_V4);
    let conf = host.conf("1.1.0");

    // A leftover host veth with our deterministic name and no record (a
    // crash between creating it and writing the record), its peer already
    // somewhere else: the ADD replaces it.
    let c = Netns::new("c").unwrap();
    let hif = host_ifname("leftover", "eth0");
    host.ns
        .ip(&["link", "add", &hif, "type", "veth", "peer", "name", "junk0"])
        .unwrap();
    host.ns
        .ip(&["link", "set", &hif, "alias", "flatnet leftover eth0"])
        .unwrap();
    let (r, code) = host.cni("ADD", "leftover", &c.path(), "eth0", &conf);
    assert_eq!(code, 0, "ADD over a leftover: {r}\n{}", host.log());
    host.del("leftover", &c.path());

    // The container already has an eth0 of its own: interface name taken
    // (CNI code 110), and our side is left as it was (nothing).
    let c2 = Netns::new("c2").unwrap();
    c2.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"])
        .unwrap();
    let (r, code) = host.cni("ADD", "taken", &c2.path(), "eth0", &conf);
    assert_ne!(code, 0, "ADD into a taken ifname succeeded: {r}");
    assert_eq!(r["code"], 110, "wrong error for a taken ifname: {r}");
    host.assert_clean();

    // Both at once: a detached leftover of ours on the host side AND a foreign
    // eth0 in the container: still interface name taken.
    let hif2 = host_ifname("taken", "eth0");
    host.ns
        .ip(&[
            "link", "add", &hif2, "type", "veth", "peer", "name", "junk1",
        ])
        .unwrap();
    let (r, code) = host.cni("ADD", "taken", &c2.path(), "eth0", &conf);
    assert_eq!(r["code"], 110, "wrong error (exit {code}): {r}");
}
