//! Regenerates the real BGP message captures used by the codec tests:
//! `capture-vectors [--out bgp/tests/data/captures] [frr] [bird] [gobgp] [frr-ll]`.
//! Needs root (network namespaces), FRR 8.4, BIRD 2, GoBGP 3 and tcpdump.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use flatnet_lab::captures::{Peer, capture, capture_frr_link_local};

#[derive(Parser)]
struct Args {
    /// Directory holding one sub-directory per daemon.
    #[arg(long, default_value = "bgp/tests/data/captures")]
    out: PathBuf,
    /// Captures to make (default: frr, bird, gobgp and frr-ll, FRR over
    /// IPv6 link-local sessions).
    peers: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let names = if args.peers.is_empty() {
        vec![
            "frr".to_string(),
            "bird".into(),
            "gobgp".into(),
            "frr-ll".into(),
        ]
    } else {
        args.peers
    };
    let mut ok = true;
    for n in names {
        let result = if n == "frr-ll" {
            capture_frr_link_local(&args.out)
        } else if let Some(p) = Peer::parse(&n) {
            capture(p, &args.out)
        } else {
            eprintln!("unknown capture {n} (frr, bird, gobgp, frr-ll)");
            return ExitCode::FAILURE;
        };
        match result {
            Ok(r) => {
                let m = r.manifest.as_ref();
                println!(
                    "{n}: {} messages -> {}",
                    m.map(|m| m.messages.len()).unwrap_or(0),
                    r.pcap.display()
                );
                for miss in &r.missing {
                    println!("{n}: missing {miss}");
                }
            }
            Err(e) => {
                eprintln!("{n}: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
