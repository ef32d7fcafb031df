//! podman 4.3 with its CNI backend as a real runtime on a flatnet network
//! (flatnetd in a lab host namespace): its own CNI plugin and network
//! config directories, containers.conf, storage, and a busybox image made
//! from busybox-static (no registry).

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{CNI, Host};

pub struct Podman {
    dir: tempfile::TempDir,
    tar: PathBuf,
}

impl Podman {
    /// The `flatnet` network (CNI 1.0.0) on `host`'s flatnetd.
    pub fn new(host: &Host) -> Podman {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
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
        let tar = super::docker::make_rootfs(d);
        Podman { dir, tar }
    }

    /// `podman run --rm --network flatnet localhost/busybox sh -c SH`.
    ///
    /// podman joins the host namespace's network (nsenter --net) and a mount
    /// namespace of its own that keeps /run/netns shared (unshare
    /// --propagation unchanged): the netns file podman bind-mounts there must
    /// reach flatnetd, whose mount namespace (from `ip netns exec`) is a slave
    /// of the machine's. /sys is made a slave before cgroup2 is mounted on
    /// /sys/fs/cgroup (crun refuses hybrid cgroups), so that mount stays in
    /// podman's namespace.
    pub fn run(&self, host: &Host, sh: &str) -> Output {
        let d = self.dir.path();
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
               sh -c '{sh}'",
            tar = self.tar.display()
        );
        Command::new("nsenter")
            .arg(format!("--net={}", host.ns.path()))
            .args(["--", "unshare", "--mount", "--propagation", "unchanged"])
            .arg("sh")
            .arg("-c")
            .arg(&script)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .output()
            .unwrap()
    }
}
