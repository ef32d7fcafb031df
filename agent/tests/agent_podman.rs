//! A real runtime: Debian's podman 4.3 with its CNI backend starts a busybox
//! container on a flatnet network (flatnetd in a lab host namespace); the
//! container gets its address and reaches another flatnet container.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use flatnet_lab::Netns;

#[test]
fn podman_container_gets_address_and_connectivity() {
    let host = Host::start("pod", POOLS_V4);
    let podman = common::podman::Podman::new(&host);

    // Another flatnet container (made directly through the plugin) to reach.
    let peer = Netns::new("peer").unwrap();
    let peer_ip = result_v4(&host.add("peer", &peer));

    let out = podman.run(
        &host,
        &format!("ip -4 addr show eth0; ip -4 route; ping -c 1 -W 3 {peer_ip} && echo PING-OK"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "podman failed:\n{stdout}\n{stderr}\nflatnetd log:\n{}",
        host.log()
    );
    assert!(stdout.contains("inet 10.244."), "{stdout}");
    assert!(stdout.contains("/32"), "{stdout}");
    assert!(stdout.contains("default via 169.254.1.1"), "{stdout}");
    assert!(stdout.contains("PING-OK"), "{stdout}\n{stderr}");

    // podman ran DEL on --rm: only the peer remains.
    assert_eq!(host.allocations().len(), 1, "{}", host.log());
    assert_eq!(host.flatnet_links().len(), 1);
    host.del("peer", &peer.path());
    host.assert_clean();
}
