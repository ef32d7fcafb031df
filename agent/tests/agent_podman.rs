//! A real runtime: Debian's podman 4.3 with its CNI backend starts a busybox
//! container on a flatnet network (flatnetd in a lab host namespace); the
//! container gets its address and reaches another flatnet container.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use flatnet_lab::Netns;

#[test]
fn podman_container_gets_address_and_connectivity() {
    let host = Host::start("pod", POOLS_V4);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // CNI: plugin dir with flatnet-cni, network config dir with one conflist.
    std::fs::create_dir_all(d.join("cni-bin")).unwrap();
    std::os::unix::fs::symlink(CNI, d.join("cni-bin/flatnet-cni")).unwrap();
    std::fs::create_dir_all(d.join("net.d")).unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "flatnet",
        "plugins": [{"type": "flatnet-cni", "flatnetd_socket": host.socket()}],
    });
    std::fs::write(d.join("net.d/flatnet.conflist"), conflist.to_string()).unwrap();
    std::fs::write(
        d.join("containers.conf"),
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{0}/cni-bin\"]\n\
             network_config_dir = \"{0}/net.d\"\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\nevents_logfile_path = \"{0}/events.log\"\n\
             tmp_dir = \"{0}/tmp\"\n",
            d.display()
        ),
    )
    .unwrap();
    let tar = common::docker::make_rootfs(d);

    // Another flatnet container (made directly through the plugin) to reach.
    let peer = Netns::new("peer").unwrap();
    let peer_ip = result_v4(&host.add("peer", &peer));

    let podman = format!(
        "podman --root {0}/root --runroot {0}/runroot --storage-driver vfs",
        d.display()
    );
    let script = format!(
        "set -e; mount --make-rslave /sys; mount -t cgroup2 none /sys/fs/cgroup; \
         {podman} import {tar} localhost/busybox >/dev/null; \
         {podman} run --rm --network flatnet --cgroups=disabled \
           --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
           localhost/busybox \
           sh -c 'ip -4 addr show eth0; ip -4 route; ping -c 1 -W 3 {peer_ip} && echo PING-OK'",
        tar = tar.display()
    );
    // podman joins the host namespace's network (nsenter --net) and a mount
    // namespace of its own that keeps /run/netns shared (unshare
    // --propagation unchanged): the netns file podman bind-mounts there must
    // reach flatnetd, whose mount namespace (from `ip netns exec`) is a slave
    // of the machine's. /sys is made a slave before cgroup2 is mounted on
    // /sys/fs/cgroup (crun refuses hybrid cgroups), so that mount stays in
    // podman's namespace.
    let out = Command::new("nsenter")
        .arg(format!("--net={}", host.ns.path()))
        .args(["--", "unshare", "--mount", "--propagation", "unchanged"])
        .arg("sh")
        .arg("-c")
        .arg(&script)
        .env("CONTAINERS_CONF", d.join("containers.conf"))
        .output()
        .unwrap();
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
