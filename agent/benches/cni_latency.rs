//! CNI ADD/DEL latency: flatnet-cni + flatnetd side by side with the
//! reference `ptp` + `host-local` plugins (Debian's containernetworking-plugins),
//! in the same run, on the same kind of lab host namespace.
//!
//! Both plugins are exec'd the same way: a child that `setns`es into the lab
//! host namespace before exec (ptp works in the namespace it runs in; it must
//! never run in the machine's own). Latency is wall time from spawn to exit.
//!
//! Run (root): `cargo bench -p flatnet-agent --bench cni_latency`
//! Env: `CNI_BENCH_N` (ADDs per run at concurrency 1, default 100),
//! `CNI_BENCH_LOG` (flatnetd's log file), `CNI_BENCH_LOG_LEVEL` (default info;
//! `flatnet_agent::kernel=debug` adds each ADD's kernel steps).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flatnet_lab::{Netns, wait_for};

const FLATNETD: &str = env!("CARGO_BIN_EXE_flatnetd");
const FLATNET_CNI: &str = env!("CARGO_BIN_EXE_flatnet-cni");
const PTP: &str = "/usr/lib/cni/ptp";

struct Plugin {
    name: &'static str,
    bin: String,
    conf: String,
    extra_env: Vec<(String, String)>,
}

/// Runs one plugin invocation inside `host_ns` (by fd) and returns its latency.
fn invoke(p: &Plugin, host_ns: &std::fs::File, cmd: &str, id: &str, netns: &str) -> Duration {
    let fd = host_ns.as_raw_fd();
    let mut c = Command::new(&p.bin);
    c.env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in &p.extra_env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the child only calls setns(2), which is
    // async-signal-safe; `fd` stays open in the parent for the whole call.
    unsafe {
        c.pre_exec(move || {
            if libc_setns(fd) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(p.conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let dt = t.elapsed();
    assert!(
        out.status.success(),
        "{} {cmd} {id}: {}{}",
        p.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dt
}

fn libc_setns(fd: i32) -> i32 {
    // SAFETY: borrowing a raw fd that the parent keeps open for the call.
    let f = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

/// ADDs `n` containers with `conc` workers, then DELs them; returns
/// (add latencies, del latencies).
fn run(
    p: &Plugin,
    host_ns: &std::fs::File,
    cs: &[Netns],
    conc: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let phase = |cmd: &'static str| -> Vec<Duration> {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..conc)
                .map(|w| {
                    s.spawn(move || {
                        cs.iter()
                            .enumerate()
                            .filter(|(i, _)| i % conc == w)
                            .map(|(i, c)| invoke(p, host_ns, cmd, &format!("bench-{i}"), &c.path()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    };
    let adds = phase("ADD");
    let dels = phase("DEL");
    (adds, dels)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and
    // must not spend a minute here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("cni_latency: run with `cargo bench -p flatnet-agent --bench cni_latency`");
        return;
    }
    flatnet_lab::require_root().unwrap();
    let n: usize = std::env::var("CNI_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();

    // flatnet host.
    let fl_host = Netns::new("bh").unwrap();
    let cfg = format!(
        "[node]\nname = \"bench\"\n[api]\nsocket = \"{d}/fl.sock\"\n[metrics]\nlisten = \"\"\n\
         [log]\nlevel = \"{level}\"\n[dataplane]\nstate_dir = \"{d}/state\"\n\
         [datastore]\nurl = \"file:{d}/ds\"\n[[pool]]\ncidr = \"10.244.0.0/16\"\n",
        level = std::env::var("CNI_BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
    );
    std::fs::write(dir.path().join("fl.toml"), cfg).unwrap();
    let _daemon = fl_host
        .spawn(
            fl_host
                .command(FLATNETD)
                .arg("-c")
                .arg(dir.path().join("fl.toml"))
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(
                        std::env::var("CNI_BENCH_LOG").unwrap_or_else(|_| "/dev/null".into()),
                    )
                    .unwrap(),
                ),
        )
        .unwrap();
    let sock = dir.path().join("fl.sock");
    wait_for("flatnetd", Duration::from_secs(20), || {
        Ok(std::os::unix::net::UnixStream::connect(&sock)
            .ok()
            .map(|_| ()))
    })
    .unwrap();
    let flatnet = Plugin {
        name: "flatnet-cni",
        bin: FLATNET_CNI.into(),
        conf: format!(
            r#"{{"cniVersion":"1.0.0","name":"flatnet","type":"flatnet-cni","flatnetd_socket":"{d}/fl.sock"}}"#
        ),
        extra_env: vec![],
    };

    // Reference host: ptp + host-local, same /32-per-container shape.
    let ref_host = Netns::new("br").unwrap();
    let ptp = Plugin {
        name: "ptp+host-local",
        bin: PTP.into(),
        conf: format!(
            r#"{{"cniVersion":"1.0.0","name":"ref","type":"ptp","mtu":1500,
                "ipam":{{"type":"host-local","subnet":"10.245.0.0/16","dataDir":"{d}/hl",
                         "routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#
        ),
        extra_env: vec![],
    };

    println!(
        "{:<16} {:>4} {:>5} {:>10} {:>10} {:>10} {:>10}",
        "plugin", "conc", "n", "ADD p50", "ADD p99", "DEL p50", "DEL p99"
    );
    let mut report = flatnet_lab::report::Report::new(
        "cni",
        "CNI ADD/DEL latency from the runtime's side (spawn to exit), flatnet vs ptp + host-local (ms)",
        &[
            "plugin",
            "concurrency",
            "n",
            "ADD p50",
            "ADD p99",
            "DEL p50",
            "DEL p99",
        ],
    );
    // Per concurrency: [flatnet, reference] x [ADD p50, ADD p99, DEL p50].
    let mut figures: Vec<(usize, Vec<[f64; 3]>)> = Vec::new();
    for conc in [1usize, 16] {
        let count = if conc == 1 { n } else { n.max(16 * 10) };
        let mut per_plugin = Vec::new();
        for (p, host) in [(&flatnet, &fl_host), (&ptp, &ref_host)] {
            let host_ns = std::fs::File::open(host.path()).unwrap();
            let cs: Vec<Netns> = (0..count).map(|_| Netns::new("bc").unwrap()).collect();
            // One warm-up pair outside the figures.
            invoke(p, &host_ns, "ADD", "warm", &cs[0].path());
            invoke(p, &host_ns, "DEL", "warm", &cs[0].path());
            let (mut adds, mut dels) = run(p, &host_ns, &cs, conc);
            let f = [
                pct(&mut adds, 0.5),
                pct(&mut adds, 0.99),
                pct(&mut dels, 0.5),
                pct(&mut dels, 0.99),
            ];
            println!(
                "{:<16} {:>4} {:>5} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms",
                p.name, conc, count, f[0], f[1], f[2], f[3]
            );
            let mut cells = vec![p.name.to_string(), conc.to_string(), count.to_string()];
            cells.extend(f.iter().map(|x| format!("{x:.2}")));
            report.row(cells);
            per_plugin.push([f[0], f[1], f[2]]);
        }
        figures.push((conc, per_plugin));
    }
    for (conc, pp) in &figures {
        let [fl, rf] = pp.as_slice() else { continue };
        for (i, what) in ["ADD p50", "ADD p99", "DEL p50"].iter().enumerate() {
            report.ratio(
                format!("{what} at c={conc}, flatnet / ptp+host-local"),
                fl[i] / rf[i],
                None,
            );
        }
        if *conc == 16 {
            report.ratio(
                "ADD p99 at c=16, flatnet, in ms",
                fl[1],
                Some(("< 50 ms", fl[1] < 50.0)),
            );
        }
    }
    report.emit();
}
