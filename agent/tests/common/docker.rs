//! A real Docker engine (Debian's docker.io 20.10) inside a lab host
//! namespace: dockerd in a mount namespace of its own (cgroup2 mounted, a
//! tmpfs on /run, the test's plugin directory bound on
//! /run/docker/plugins), its own data/exec roots and socket. Dropping it
//! stops dockerd (by PID) and the containers it runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use flatnet_lab::{Daemon, Netns, wait_for};

/// The docker.io client (the newer one in /usr/local/bin speaks another API).
pub const DOCKER: &str = "/usr/bin/docker";

/// `docker network create` on flatnet's network and IPAM drivers.
pub const NET_CREATE: &[&str] = &[
    "network",
    "create",
    "-d",
    "flatnet",
    "--ipam-driver",
    "flatnet",
    "--subnet",
    "10.244.0.0/16",
];

/// Turns on `[docker]` in a host's flatnetd (restarting it); returns the
/// plugin directory.
pub fn enable_docker(h: &mut super::Host) -> PathBuf {
    let plugins = h.dir.path().join("plugins");
    h.daemon = None;
    let cfg = h.dir.path().join("flatnetd.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[docker]\nenabled = true\nplugin_dir = \"{}\"\n",
        plugins.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    h.start_daemon();
    assert!(plugins.join("flatnet.sock").exists(), "{}", h.log());
    plugins
}

pub struct Docker {
    pub dir: tempfile::TempDir,
    pub daemon: Option<Daemon>,
    /// The directory flatnetd's plugin socket is in (bound into dockerd's view).
    pub plugins: PathBuf,
    ns_name: String,
}

impl Docker {
    /// Starts dockerd in `ns` and imports `busybox:local`.
    pub fn start(ns: &Netns, plugins: &Path) -> Docker {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Docker {
            dir,
            daemon: None,
            plugins: plugins.to_path_buf(),
            ns_name: ns.name().to_string(),
        };
        d.start_daemon(ns);
        let tar = make_rootfs(d.dir.path());
        d.ok(&["import", tar.to_str().unwrap(), "busybox:local"]);
        d
    }

    pub fn start_daemon(&mut self, ns: &Netns) {
        let p = self.dir.path();
        let log = std::fs::File::create(p.join("dockerd.log")).unwrap();
        let script = format!(
            "set -e; mount --make-rprivate /; umount -l /sys/fs/cgroup 2>/dev/null || true; \
             mount -t cgroup2 none /sys/fs/cgroup; mount -t tmpfs tmpfs /run; \
             mkdir -p /run/docker/plugins; mount --bind {plugins} /run/docker/plugins; \
             exec dockerd --data-root {d}/data --exec-root {d}/exec --pidfile {d}/docker.pid \
             -H unix://{d}/docker.sock --iptables=false --ip6tables=false --bridge=none \
             --storage-driver=vfs --log-level=debug",
            plugins = self.plugins.display(),
            d = p.display()
        );
        let mut cmd = ns.command("unshare");
        cmd.args(["-m", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(log);
        self.daemon = Some(ns.spawn(&mut cmd).unwrap());
        let sock = p.join("docker.sock");
        let daemon = self.daemon.as_mut().unwrap();
        wait_for("dockerd answers", Duration::from_secs(60), || {
            if !daemon.is_running() {
                return Err(flatnet_lab::LabError::Other("dockerd exited".into()));
            }
            let up = sock.exists()
                && Command::new(DOCKER)
                    .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                    .args(["version", "--format", "{{.Server.Version}}"])
                    .output()
                    .is_ok_and(|o| o.status.success());
            Ok(up.then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e}\ndockerd log:\n{}", self.log()));
    }

    /// SIGTERM dockerd (its containers keep running under containerd-shim
    /// only until dockerd's live-restore is off: they stop with it).
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.terminate(Duration::from_secs(20));
        }
    }

    pub fn log(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let n = s.len().saturating_sub(6000);
        s[s.char_indices()
            .map(|(i, _)| i)
            .find(|i| *i >= n)
            .unwrap_or(0)..]
            .to_string()
    }

    /// `docker args`, given up (the client killed) after 120 s, so a hung
    /// call fails the test instead of hanging it.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["120", DOCKER])
            .env(
                "DOCKER_HOST",
                format!("unix://{}/docker.sock", self.dir.path().display()),
            )
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `docker args`, asserts success, returns stdout trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}{}\ndockerd log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `docker run -d` of a container that sleeps, on `net`.
    pub fn sleeper(&self, name: &str, net: &str) {
        self.ok(&[
            "run",
            "-d",
            "--network",
            net,
            "--name",
            name,
            "busybox:local",
            "sleep",
            "3600",
        ]);
    }

    /// A container's address on `net`.
    pub fn ip(&self, name: &str, net: &str) -> String {
        self.ok(&[
            "inspect",
            "-f",
            &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"),
            name,
        ])
    }

    pub fn ns_name(&self) -> &str {
        &self.ns_name
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // Containers first, so no shim outlives dockerd.
        if self.daemon.is_some() {
            let ids = self.run(&["ps", "-aq"]);
            let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let mut a = vec!["rm", "-f"];
                a.extend(ids.iter().map(String::as_str));
                let _ = self.run(&a);
            }
        }
        self.stop();
    }
}

/// A busybox rootfs tarball from /bin/busybox (busybox-static), no registry.
pub fn make_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "ip", "ping", "ping6", "sleep", "cat", "echo", "nc", "true",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    tar
}
