//! One measurement: a feeder and a receiver in fresh namespaces, the time
//! until the last prefix is in the receiver's Loc-RIB and its RSS; and the
//! side-by-side table of several runs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::feeder::Feeder;
use super::generate::Feed;
use super::receivers::{BirdProbe, FlatnetProbe, FrrNoFib, GobgpProbe, Probe, router_config};
use super::{FEEDER_ADDR, FeedError, RECEIVER_ADDR};
use crate::bird::Bird;
use crate::frr::Frr;
use crate::gobgp::Gobgp;
use crate::{Netns, veth};

/// Memory figures of one process from /proc/PID/status, in KiB.
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// PID of the process named `comm` inside `ns`.
pub fn pid_in_ns(ns: &Netns, comm: &str) -> Option<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == comm)
                .unwrap_or(false)
        })
}

/// Which receiver to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flatnet,
    Bird,
    Frr,
    Gobgp,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Flatnet => "flatnet",
            Kind::Bird => "BIRD 2",
            Kind::Frr => "FRR bgpd",
            Kind::Gobgp => "GoBGP",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flatnet" => Some(Kind::Flatnet),
            "bird" => Some(Kind::Bird),
            "frr" => Some(Kind::Frr),
            "gobgp" => Some(Kind::Gobgp),
            _ => None,
        }
    }
}

/// How to start flatnet's speaker as a receiver.
#[derive(Debug, Clone)]
pub enum FlatnetCmd {
    /// A program that takes `--config TOML --stats-file JSON` (the bench
    /// binary's `flatnet-receiver` mode, or flatnet-bgpd once it has a cheap
    /// stats file). `args` go first (e.g. the subcommand name).
    Program { program: PathBuf, args: Vec<String> },
}

/// Options of one measurement.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub poll: Duration,
    pub timeout: Duration,
    pub flatnet: Option<FlatnetCmd>,
}

/// Result of one receiver run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub kind: Kind,
    /// Row label (which program ran flatnet's speaker).
    pub label: String,
    /// From the first UPDATE byte written to the last prefix seen in the Loc-RIB.
    pub seconds: f64,
    /// From the first UPDATE byte to End-of-RIB written (the receiver's TCP
    /// window lets the feeder run ahead only a little).
    pub send_seconds: Option<f64>,
    pub prefixes: u64,
    pub baseline_kib: u64,
    pub peak_kib: u64,
    pub end_kib: u64,
    /// Other processes of the receiver (FRR zebra): name, peak KiB.
    pub extra: Vec<(String, u64)>,
    /// How many polls it took (granularity = poll interval + query time).
    pub polls: u32,
    /// Times of every repetition when several runs were folded into this
    /// one (the median is reported).
    pub all_seconds: Vec<f64>,
}

impl RunResult {
    pub fn rate(&self) -> f64 {
        self.prefixes as f64 / self.seconds.max(1e-9)
    }

    /// Peak RSS growth over the established-session baseline, per route.
    pub fn bytes_per_route(&self) -> f64 {
        self.peak_kib.saturating_sub(self.baseline_kib) as f64 * 1024.0
            / (self.prefixes.max(1) as f64)
    }

    /// RSS growth once the last prefix is in, per route (transient buffers
    /// and rehash peaks excluded).
    pub fn settled_bytes_per_route(&self) -> f64 {
        self.end_kib.saturating_sub(self.baseline_kib) as f64 * 1024.0
            / (self.prefixes.max(1) as f64)
    }
}

/// Runs the feed against one receiver in fresh namespaces and measures it.
pub fn run_one(kind: Kind, feed: &Arc<Feed>, opts: &RunOptions) -> Result<RunResult, FeedError> {
    let fns = Netns::new("feed")?;
    let rns = Netns::new("rx")?;
    veth(&fns, "eth0", &rns, "eth0")?;
    fns.addr_add("eth0", &format!("{FEEDER_ADDR}/30"))?;
    rns.addr_add("eth0", &format!("{RECEIVER_ADDR}/30"))?;
    let probe: Box<dyn Probe + '_> = match kind {
        Kind::Bird => Box::new(BirdProbe(Bird::start(&rns, router_config())?, &rns)),
        Kind::Gobgp => Box::new(GobgpProbe(Gobgp::start(&rns, router_config())?, &rns)),
        Kind::Frr => Box::new(FrrNoFib(
            Frr::start_without_fib(&rns, router_config())?,
            &rns,
        )),
        Kind::Flatnet => {
            let cmd = opts.flatnet.as_ref().ok_or_else(|| {
                FeedError::Receiver("no program given to run flatnet's speaker".into())
            })?;
            Box::new(FlatnetProbe::start(&rns, cmd)?)
        }
    };
    let with_logs = |e: FeedError, p: &dyn Probe| {
        FeedError::Receiver(format!(
            "{}: {e}\n--- receiver log ---\n{}",
            kind.label(),
            p.logs()
        ))
    };
    let feeder = Feeder::start(&fns, feed.clone()).map_err(|e| with_logs(e, probe.as_ref()))?;
    let pid = probe.pid()?;
    let baseline_kib = proc_kib(pid, "VmRSS").unwrap_or(0);
    let t0 = feeder.go()?;
    let want = feed.prefixes as u64;
    let deadline = t0 + opts.timeout;
    let mut sent = None;
    let mut polls = 0u32;
    let mut last_seen = false;
    let mut count = 0;
    let done = loop {
        let now = Instant::now();
        if now > deadline {
            return Err(with_logs(
                FeedError::Receiver(format!(
                    "timed out after {:?} with {count}/{want} prefixes{}",
                    opts.timeout,
                    feeder
                        .notification_text()
                        .map(|n| format!("; receiver sent NOTIFICATION {n}"))
                        .unwrap_or_default()
                )),
                probe.as_ref(),
            ));
        }
        if sent.is_none()
            && let Some(s) = feeder.sent()
        {
            sent = Some(s?);
        }
        polls += 1;
        // Cheap per-prefix lookup first: GoBGP's count walks the table.
        if !last_seen {
            last_seen = probe.has_best(&feed.last_prefix).unwrap_or(false);
        }
        if last_seen {
            count = probe.count().unwrap_or(count);
            if count >= want {
                break Instant::now();
            }
        }
        let next = now + opts.poll;
        let wait = next.saturating_duration_since(Instant::now());
        std::thread::sleep(wait);
    };
    // The feeder may still be writing the End-of-RIB when the count is reached.
    if sent.is_none() {
        let until = Instant::now() + Duration::from_secs(5);
        while sent.is_none() && Instant::now() < until {
            if let Some(s) = feeder.sent() {
                sent = Some(s?);
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let peak_kib = proc_kib(pid, "VmHWM").unwrap_or(0);
    let end_kib = proc_kib(pid, "VmRSS").unwrap_or(0);
    let extra = probe
        .extra_pids()
        .into_iter()
        .map(|(n, p)| (n, proc_kib(p, "VmHWM").unwrap_or(0)))
        .collect();
    drop(feeder);
    let label = match (kind, &opts.flatnet) {
        (Kind::Flatnet, Some(FlatnetCmd::Program { program, args })) => format!(
            "flatnet ({}{})",
            program
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            args.first().map(|a| format!(" {a}")).unwrap_or_default()
        ),
        _ => kind.label().to_string(),
    };
    Ok(RunResult {
        kind,
        label,
        seconds: done.duration_since(t0).as_secs_f64(),
        send_seconds: sent.map(|s| s.duration_since(t0).as_secs_f64()),
        prefixes: count,
        baseline_kib,
        peak_kib,
        end_kib,
        extra,
        polls,
        all_seconds: Vec::new(),
    })
}

/// Folds repetitions of one receiver into the run with the median time
/// (its RSS figures too), remembering every time.
pub fn median(mut runs: Vec<RunResult>) -> Option<RunResult> {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let all: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let mid = runs.len().checked_sub(1)? / 2;
    let mut r = runs.swap_remove(mid);
    if all.len() > 1 {
        r.all_seconds = all;
    }
    Some(r)
}

/// The side-by-side table (Markdown), with ratios against BIRD.
pub fn table(results: &[RunResult]) -> String {
    let bird = results.iter().find(|r| r.kind == Kind::Bird);
    let mut s = String::from(
        "| receiver | seconds to Loc-RIB | prefixes/s | baseline RSS MiB | peak RSS MiB | RSS at end MiB | bytes/route (peak - baseline) | bytes/route (end - baseline) | time vs BIRD | bytes/route vs BIRD (peak) | notes |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in results {
        let (tr, br) = match bird {
            Some(b) => (
                format!("{:.2}x", r.seconds / b.seconds.max(1e-9)),
                format!(
                    "{:.2}x",
                    r.bytes_per_route() / b.bytes_per_route().max(1e-9)
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        let mut notes = Vec::new();
        if !r.all_seconds.is_empty() {
            let v: Vec<String> = r.all_seconds.iter().map(|x| format!("{x:.2}")).collect();
            notes.push(format!("median of {} runs: {} s", v.len(), v.join(" / ")));
        }
        if let Some(ss) = r.send_seconds {
            notes.push(format!("feed written in {ss:.2} s"));
        }
        for (n, k) in &r.extra {
            notes.push(format!("{n} peak {:.1} MiB", *k as f64 / 1024.0));
        }
        s.push_str(&format!(
            "| {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {} | {} |\n",
            r.label,
            r.seconds,
            r.rate(),
            r.baseline_kib as f64 / 1024.0,
            r.peak_kib as f64 / 1024.0,
            r.end_kib as f64 / 1024.0,
            r.bytes_per_route(),
            r.settled_bytes_per_route(),
            tr,
            br,
            notes.join("; ")
        ));
    }
    s
}
