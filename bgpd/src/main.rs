//! `flatnet-bgpd`: the flatnet BGP speaker on its own, configured by a TOML
//! file, for lab peering with FRR/BIRD/GoBGP and benchmarks. flatnetd embeds
//! the same [`Speaker`] later.
//!
//! `--socket PATH` answers the BGP queries of flatnetd's control protocol
//! (`flatnet --socket PATH bgp neighbors|routes`).
//! `--state-file PATH` rewrites a JSON snapshot (peers and Loc-RIB) atomically
//! every second and on change, so tests can poll it. SIGHUP reloads the
//! configuration (peers, policies, originated prefixes) without touching
//! unchanged peers; SIGTERM sends Cease to every peer and exits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use flatnet_bgp::speaker::{Speaker, SpeakerConfig};
use flatnet_bgpd::config;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(name = "flatnet-bgpd", about = "flatnet BGP speaker (standalone)")]
struct Args {
    /// TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// JSON state file rewritten atomically every second and on change.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Small JSON file (pid, Loc-RIB size, peers) rewritten like the state
    /// file but without the RIB: cheap to poll at a million routes.
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// Control socket answering `flatnet --socket PATH bgp neighbors|routes`.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Only check the configuration and exit.
    #[arg(long)]
    check: bool,
}

#[derive(serde::Serialize)]
struct Snapshot<'a> {
    pid: u32,
    router_id: String,
    asn: u32,
    peers: &'a [flatnet_bgp::speaker::PeerStatus],
    rib: &'a [flatnet_bgp::speaker::RibEntry],
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

async fn dump(speaker: &Speaker, cfg: &SpeakerConfig, path: &Path) {
    let (Ok(peers), Ok(rib)) = (speaker.peers().await, speaker.rib().await) else {
        return;
    };
    let snap = Snapshot {
        pid: std::process::id(),
        router_id: cfg.router_id.to_string(),
        asn: cfg.asn,
        peers: &peers,
        rib: &rib,
    };
    match serde_json::to_vec_pretty(&snap) {
        Ok(b) => {
            if let Err(e) = write_atomic(path, &b) {
                tracing::error!("state file {}: {e}", path.display());
            }
        }
        Err(e) => tracing::error!("state serialisation: {e}"),
    }
}

async fn dump_stats(speaker: &Speaker, path: &Path) {
    let Ok(st) = speaker.stats().await else {
        return;
    };
    #[derive(serde::Serialize)]
    struct Small<'a> {
        pid: u32,
        #[serde(flatten)]
        stats: &'a flatnet_bgp::speaker::Stats,
    }
    match serde_json::to_vec(&Small {
        pid: std::process::id(),
        stats: &st,
    }) {
        Ok(b) => {
            if let Err(e) = write_atomic(path, &b) {
                tracing::error!("stats file {}: {e}", path.display());
            }
        }
        Err(e) => tracing::error!("stats serialisation: {e}"),
    }
}

async fn reload(speaker: &Speaker, old: &mut SpeakerConfig, path: &Path) {
    let new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload rejected, keeping the running configuration: {e}");
            return;
        }
    };
    for (name, p) in &new.policies {
        if old.policies.get(name) != Some(p) {
            let _ = speaker.set_policy(name, p.clone());
        }
    }
    let old_peers: HashMap<IpAddr, _> = old.peers.iter().map(|p| (p.address, p.clone())).collect();
    let new_peers: HashMap<IpAddr, _> = new.peers.iter().map(|p| (p.address, p.clone())).collect();
    for (ip, _) in old_peers
        .iter()
        .filter(|(ip, _)| !new_peers.contains_key(ip))
    {
        tracing::info!(peer = %ip, "removing peer");
        let _ = speaker.remove_peer(*ip).await;
    }
    for (ip, p) in &new_peers {
        match old_peers.get(ip) {
            None => {
                tracing::info!(peer = %ip, "adding peer");
                if let Err(e) = speaker.add_peer(p.clone()).await {
                    tracing::error!("{e}");
                }
            }
            Some(o) if o == p => {}
            Some(o) => {
                let mut only_policy = o.clone();
                only_policy.import_policy = p.import_policy.clone();
                only_policy.export_policy = p.export_policy.clone();
                if only_policy == *p {
                    tracing::info!(peer = %ip, "policy change: soft reconfiguration via route refresh");
                    let _ = speaker
                        .set_peer_policy(*ip, p.import_policy.clone(), p.export_policy.clone())
                        .await;
                } else {
                    tracing::info!(peer = %ip, "peer configuration changed: restarting this peer");
                    let _ = speaker.change_peer(p.clone()).await;
                }
            }
        }
    }
    let old_o: HashMap<_, _> = old.originate.iter().cloned().collect();
    let new_o: HashMap<_, _> = new.originate.iter().cloned().collect();
    for p in old_o.keys().filter(|p| !new_o.contains_key(p)) {
        let _ = speaker.withdraw(*p);
    }
    for (p, a) in &new_o {
        if old_o.get(p) != Some(a) {
            let _ = speaker.originate(*p, a.clone());
        }
    }
    *old = new;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let mut cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.check {
        println!("configuration OK: {} peers", cfg.peers.len());
        return std::process::ExitCode::SUCCESS;
    }
    // A state file left by a previous run means we are restarting: announce
    // the graceful-restart Restart State bit so peers keep our routes.
    if let Some(sf) = &args.state_file
        && sf.exists()
    {
        cfg.restarting = true;
        tracing::info!("previous state file found: restarting (graceful restart R bit set)");
    }
    let speaker = match Speaker::start(cfg.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    if let Some(path) = &args.socket {
        match flatnet_bgpd::control::bind(path) {
            Ok(l) => {
                tokio::spawn(flatnet_bgpd::control::serve(speaker.clone(), l));
            }
            Err(e) => {
                eprintln!("error: control socket {}: {e}", path.display());
                return std::process::ExitCode::from(1);
            }
        }
    }
    tracing::info!(asn = cfg.asn, router_id = %cfg.router_id, peers = cfg.peers.len(), "flatnet-bgpd started");
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return std::process::ExitCode::from(1);
    };
    let mut changes = speaker.changes();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut debounce = tokio::time::interval(Duration::from_millis(100));
    let mut pending = true;
    // The stats file is O(peers) to write, so it follows changes closely
    // (10 ms) for pollers such as the feed benchmark; the state file walks
    // the whole RIB and stays on the 100 ms debounce.
    let mut stats_tick = tokio::time::interval(Duration::from_millis(10));
    stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats_pending = true;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading {}", args.config.display());
                reload(&speaker, &mut cfg, &args.config).await;
                pending = true;
                stats_pending = true;
            }
            r = changes.changed() => {
                if r.is_err() { break; }
                pending = true;
                stats_pending = true;
            }
            _ = debounce.tick() => {
                if pending {
                    if let Some(sf) = &args.state_file {
                        dump(&speaker, &cfg, sf).await;
                    }
                    pending = false;
                }
            }
            _ = stats_tick.tick(), if args.stats_file.is_some() => {
                if stats_pending && let Some(sf) = &args.stats_file {
                    dump_stats(&speaker, sf).await;
                    stats_pending = false;
                }
            }
            _ = tick.tick() => {
                pending = true;
                stats_pending = true;
            }
        }
    }
    tracing::info!("shutting down");
    let _ = speaker.shutdown().await;
    if let Some(path) = &args.socket {
        let _ = std::fs::remove_file(path);
    }
    std::process::ExitCode::SUCCESS
}
