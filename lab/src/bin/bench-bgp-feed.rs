//! `bench-bgp-feed`: issue 3's full-table benchmark. Feeds N IPv4 prefixes
//! (default 1,000,000: 70% /24, 30% /32, ~3,000 attribute sets) from one eBGP
//! peer to flatnet's speaker, BIRD 2, FRR and GoBGP in turn (fresh namespaces
//! each, same pre-encoded feed), and prints time-to-Loc-RIB and peak RSS side
//! by side. Run as root: `scripts/bench-bgp.sh`.
//!
//! `bench-bgp-feed flatnet-receiver --config F --stats-file S` is the receiver
//! process for flatnet's row (spawned by the benchmark inside the receiver
//! namespace).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use flatnet_lab::feed::{self, FeedSpec, FlatnetCmd, Kind, RunOptions};

#[derive(Debug, Parser)]
#[command(
    name = "bench-bgp-feed",
    about = "BGP full-table feed benchmark (issue 3)"
)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Prefixes to feed.
    #[arg(long, default_value_t = 1_000_000)]
    prefixes: usize,
    /// Distinct attribute sets.
    #[arg(long, default_value_t = 3_000)]
    attr_sets: usize,
    /// Share of /24 prefixes in percent (the rest are /32).
    #[arg(long, default_value_t = 70)]
    percent_24: u8,
    /// Send each attribute set's prefixes in runs of 1..=N per UPDATE
    /// instead of fully packed UPDATEs (default: fully packed).
    #[arg(long)]
    max_per_update: Option<usize>,
    /// Comma-separated receivers, in order: flatnet, bird, frr, gobgp.
    #[arg(long, default_value = "flatnet,bird,frr,gobgp")]
    receivers: String,
    /// Poll interval of the receiver's RIB, in milliseconds (BIRD and
    /// flatnet finish 1M prefixes in well under a second, so 100 ms would
    /// be too coarse to compare them).
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Give up on a receiver after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Repetitions per receiver; the run with the median time is reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Program for flatnet's row taking `--config TOML --stats-file JSON`.
    /// Default: `flatnet-bgpd` next to this binary (same target dir) if it
    /// exists, else this binary's `flatnet-receiver` mode.
    #[arg(long)]
    flatnet_program: Option<PathBuf>,
    /// Run flatnet's row with this binary's `flatnet-receiver` mode (the
    /// same Speaker, stats every 10 ms) even if flatnet-bgpd is there.
    #[arg(long)]
    flatnet_embedded: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run flatnet's speaker as a receiver (used by the benchmark itself).
    FlatnetReceiver {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        stats_file: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Cmd::FlatnetReceiver { config, stats_file }) = &args.cmd {
        return match feed::run_flatnet_receiver(config, stats_file) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flatnet-receiver: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match bench(&args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    flatnet_lab::require_root()?;
    let mut kinds = Vec::new();
    for r in args.receivers.split(',').filter(|s| !s.trim().is_empty()) {
        kinds.push(Kind::parse(r).ok_or_else(|| format!("unknown receiver `{r}`"))?);
    }
    let spec = FeedSpec {
        prefixes: args.prefixes,
        attr_sets: args.attr_sets,
        percent_24: args.percent_24,
        max_per_update: args.max_per_update,
        ..FeedSpec::default()
    };
    let t = Instant::now();
    let feed = Arc::new(feed::build_feed(&spec, feed::FEEDER_ADDR)?);
    eprintln!(
        "feed: {} prefixes ({} /24, {} /32), {} attribute sets, {} UPDATEs, {:.1} MiB on the wire, built in {:.2} s",
        feed.prefixes,
        feed.v24,
        feed.v32,
        feed.attr_sets_used,
        feed.updates,
        feed.wire.len() as f64 / (1024.0 * 1024.0),
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let bgpd = exe.with_file_name("flatnet-bgpd");
    let flatnet = match &args.flatnet_program {
        Some(p) => FlatnetCmd::Program {
            program: p.clone(),
            args: Vec::new(),
        },
        None if bgpd.exists() && !args.flatnet_embedded => FlatnetCmd::Program {
            program: bgpd,
            args: Vec::new(),
        },
        None => FlatnetCmd::Program {
            program: exe,
            args: vec!["flatnet-receiver".into()],
        },
    };
    let opts = RunOptions {
        poll: Duration::from_millis(args.poll_ms),
        timeout: Duration::from_secs(args.timeout_secs),
        flatnet: Some(flatnet),
    };
    let mut results = Vec::new();
    let mut ok = true;
    for k in kinds {
        let mut runs = Vec::new();
        for i in 0..args.runs.max(1) {
            eprintln!("running {} ({}/{}) ...", k.label(), i + 1, args.runs.max(1));
            match feed::run_one(k, &feed, &opts) {
                Ok(r) => {
                    eprintln!(
                        "  {}: {} prefixes in {:.2} s, peak RSS {:.1} MiB, end RSS {:.1} MiB ({} polls)",
                        k.label(),
                        r.prefixes,
                        r.seconds,
                        r.peak_kib as f64 / 1024.0,
                        r.end_kib as f64 / 1024.0,
                        r.polls
                    );
                    runs.push(r);
                }
                Err(e) => {
                    ok = false;
                    eprintln!("  {} FAILED: {e}", k.label());
                }
            }
        }
        results.extend(feed::median(runs));
    }
    println!(
        "\n{} prefixes ({} /24 + {} /32), {} attribute sets, {} UPDATEs ({:.1} MiB), one eBGP peer; poll every {} ms\n",
        feed.prefixes,
        feed.v24,
        feed.v32,
        feed.attr_sets_used,
        feed.updates,
        feed.wire.len() as f64 / (1024.0 * 1024.0),
        args.poll_ms
    );
    print!("{}", feed::table(&results));
    report(&feed, &results).emit();
    Ok(ok)
}

/// The run as a [`flatnet_lab::report::Report`]: the table, and each
/// receiver's time and memory per route against BIRD's.
fn report(feed: &feed::Feed, results: &[feed::RunResult]) -> flatnet_lab::report::Report {
    let mut r = flatnet_lab::report::Report::new(
        "bgp",
        format!(
            "BGP ingest: {} prefixes ({} /24 + {} /32), {} attribute sets, one eBGP peer, to Loc-RIB",
            feed.prefixes, feed.v24, feed.v32, feed.attr_sets_used
        ),
        &[
            "receiver",
            "seconds",
            "prefixes/s",
            "peak RSS MiB",
            "bytes/route (peak)",
            "bytes/route (end)",
        ],
    );
    for x in results {
        r.row(vec![
            x.label.clone(),
            format!("{:.2}", x.seconds),
            format!("{:.0}", x.rate()),
            format!("{:.1}", x.peak_kib as f64 / 1024.0),
            format!("{:.0}", x.bytes_per_route()),
            format!("{:.0}", x.settled_bytes_per_route()),
        ]);
    }
    if let Some(b) = results.iter().find(|x| x.kind == Kind::Bird) {
        for x in results.iter().filter(|x| x.kind != Kind::Bird) {
            let t = x.seconds / b.seconds.max(1e-9);
            let m = x.bytes_per_route() / b.bytes_per_route().max(1e-9);
            let flatnet = x.kind == Kind::Flatnet;
            r.ratio(
                format!("{}: time to Loc-RIB / BIRD's", x.label),
                t,
                flatnet.then_some(("< 1 (faster than BIRD)", t < 1.0)),
            );
            r.ratio(
                format!("{}: bytes per route (peak) / BIRD's", x.label),
                m,
                flatnet.then_some(("<= 1 (within BIRD's memory)", m <= 1.0)),
            );
        }
    }
    r
}
