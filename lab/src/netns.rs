//! Network namespaces owned by one test run.
//!
//! Every namespace is named `fl-<pid>-<seq>-<tag>`: the PID of the process that
//! made it lets a later run sweep namespaces left behind by a run that was
//! killed, without touching anything another live run (or anyone else) owns.
//! Nothing here configures the machine's own namespace: links are created
//! inside a lab namespace with their peer placed directly in another.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::LabError;

/// Prefix of every namespace the lab creates.
pub const NETNS_PREFIX: &str = "fl-";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Fails unless the process runs as root: namespaces need it, and a test that
/// silently skips would pass with the feature missing.
pub fn require_root() -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    Ok(())
}

/// Runs a command and turns a non-zero exit into an error that carries stderr.
pub fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let desc = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Spawn(desc.clone(), e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: desc,
            status: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// Polls `f` until it returns `Ok(Some(v))` or the deadline passes. This is
/// how tests wait: never a fixed sleep.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>, LabError>,
) -> Result<T, LabError> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e.to_string()),
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: what.to_string(),
                after: timeout,
                last_error: last_err,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A network namespace that is deleted (with every process the lab started in
/// it) when dropped, including when a test panics.
#[derive(Debug)]
pub struct Netns {
    name: String,
    pids: std::sync::Mutex<Vec<u32>>,
    /// A lab namespace that outlives this handle (`flatnet-lab up`): not
    /// deleted on drop; `flatnet-lab down` removes it by name.
    keep: bool,
}

impl Netns {
    /// Creates `fl-<pid>-<seq>-<tag>` with loopback up.
    pub fn new(tag: &str) -> Result<Self, LabError> {
        require_root()?;
        sweep_stale();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NETNS_PREFIX}{}-{seq}-{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns {
            name,
            pids: std::sync::Mutex::new(Vec::new()),
            keep: false,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a namespace with exactly this name that is kept when the
    /// handle drops (a lab left running); loopback up.
    pub fn create_kept(name: &str) -> Result<Self, LabError> {
        require_root()?;
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns::open_kept(name);
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle on an existing namespace, kept when the handle drops.
    pub fn open_kept(name: &str) -> Self {
        Netns {
            name: name.to_string(),
            pids: std::sync::Mutex::new(Vec::new()),
            keep: true,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the namespace file, for tools that take a netns path (CNI).
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A `Command` that runs `program` inside this namespace.
    pub fn command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs a program inside the namespace and waits for it; errors on non-zero exit.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, LabError> {
        run(self.command(program).args(args))
    }

    /// Like [`Netns::exec`] but returns stdout as a string.
    pub fn exec_stdout(&self, program: &str, args: &[&str]) -> Result<String, LabError> {
        let out = self.exec(program, args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> Result<Output, LabError> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Sets a sysctl inside this namespace only.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Starts a long-running process in the namespace. It is killed (by PID)
    /// when the returned guard or this namespace is dropped.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Daemon, LabError> {
        let desc = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| LabError::Spawn(desc.clone(), e))?;
        if let Ok(mut p) = self.pids.lock() {
            p.push(child.id());
        }
        Ok(Daemon {
            child: Some(child),
            desc,
        })
    }

    /// Records a PID started in this namespace by other means (a daemon that
    /// forks and writes a pid file) so it is ended with the namespace.
    pub fn adopt_pid(&self, pid: u32) {
        if let Ok(mut p) = self.pids.lock() {
            p.push(pid);
        }
    }

    /// Adds an address to an interface.
    pub fn addr_add(&self, ifname: &str, cidr: &str) -> Result<(), LabError> {
        let fam = if cidr.contains(':') { "-6" } else { "-4" };
        self.ip(&[fam, "addr", "add", cidr, "dev", ifname, "nodad"])
            .or_else(|_| self.ip(&[fam, "addr", "add", cidr, "dev", ifname]))?;
        Ok(())
    }

    /// The IPv6 link-local address of `ifname`, once duplicate address
    /// detection is done (peering over it fails while it is tentative).
    pub fn link_local(
        &self,
        ifname: &str,
        timeout: Duration,
    ) -> Result<std::net::Ipv6Addr, LabError> {
        wait_for("link-local address", timeout, || {
            let out = self.exec_stdout(
                "ip",
                &["-6", "-o", "addr", "show", "dev", ifname, "scope", "link"],
            )?;
            if out.contains("tentative") {
                return Ok(None);
            }
            Ok(out
                .split_whitespace()
                .find(|w| w.starts_with("fe80"))
                .and_then(|w| w.split('/').next())
                .and_then(|a| a.parse().ok()))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let pids = self.pids.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in pids {
            kill_pid(pid);
        }
        // Anything else still inside (e.g. a daemon that forked) is ours too:
        // `ip netns pids` lists only processes in this namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                kill_pid(pid);
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Connects two namespaces with a veth pair: `a_if` in `a`, `b_if` in `b`,
/// both up. The pair is created inside `a` with its peer placed directly in `b`,
/// so the machine's own namespace never sees it.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<(), LabError> {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// A process started by the lab. Dropping it ends it by PID.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    desc: String,
}

impl Daemon {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL and reap: used by crash and graceful-restart tests.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace` if it has not exited.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            send_signal(c.id(), "TERM");
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn describe(&self) -> &str {
        &self.desc
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(2));
    }
}

/// The daemons of one lab router, in start order (FRR: zebra, then bgpd).
/// They are stopped newest first, so no daemon outlives one it was started
/// after (bgpd never runs without its zebra).
#[derive(Debug, Default)]
pub struct Daemons(Vec<Daemon>);

impl Daemons {
    pub fn push(&mut self, d: Daemon) {
        self.0.push(d);
    }

    /// SIGTERM each, newest first, and SIGKILL one that has not exited
    /// after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        while let Some(mut d) = self.0.pop() {
            d.terminate(grace);
        }
    }

    /// SIGKILL each, newest first, and reap it.
    pub fn kill9(&mut self) {
        while let Some(mut d) = self.0.pop() {
            d.kill9();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(2));
    }
}

fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

pub(crate) fn kill_pid(pid: u32) {
    send_signal(pid, "KILL");
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes lab namespaces whose creating process is gone (a run that was
/// SIGKILLed or lost power). Namespaces of live runs are left alone.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
            for p in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                kill_pid(p);
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
    }
}

impl Netns {
    /// Runs `f` on a fresh thread that has joined this namespace, so every
    /// socket it creates (a datastore client, a BGP session, a tokio
    /// current-thread runtime built inside `f`) lives in the lab namespace and
    /// never in the machine's own. The network namespace is a per-thread
    /// attribute, so the rest of the process is unaffected.
    pub fn run_in<T, F>(&self, f: F) -> Result<T, LabError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = self.path();
        let handle = std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || -> Result<T, LabError> {
                enter(&path)?;
                Ok(f())
            })
            .map_err(LabError::Io)?;
        handle
            .join()
            .map_err(|_| LabError::Other("thread inside namespace panicked".into()))?
    }
}

/// Moves the calling thread into the network namespace at `path`. Use only on
/// threads the caller owns (see [`Netns::run_in`]).
pub fn enter(path: &str) -> Result<(), LabError> {
    let f = std::fs::File::open(path)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| LabError::Other(format!("setns({path}): {e}")))?;
    Ok(())
}
