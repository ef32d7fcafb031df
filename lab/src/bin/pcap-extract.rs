//! Extracts the BGP messages one speaker sent from a pcap into codec test
//! vectors: `pcap-extract FILE.pcap --from IP[,IP..] --out DIR --peer NAME --version V`.
//! TCP streams are reassembled per direction; see `flatnet_lab::pcap`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use flatnet_lab::captures::write_vectors;
use flatnet_lab::pcap::{bgp_messages, type_name};

#[derive(Parser)]
struct Args {
    pcap: PathBuf,
    /// Source addresses of the speaker whose messages are wanted.
    #[arg(long, value_delimiter = ',')]
    from: Vec<IpAddr>,
    /// Output directory; without it, only list the messages.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = "unknown")]
    peer: String,
    #[arg(long, default_value = "unknown")]
    version: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bytes = match std::fs::read(&args.pcap) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", args.pcap.display());
            return ExitCode::FAILURE;
        }
    };
    let msgs = match bgp_messages(&bytes) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(out) = args.out else {
        for m in &msgs {
            println!(
                "{} {} -> {} conn {} {} {} bytes",
                m.ts_us,
                m.src,
                m.dst,
                m.connection,
                type_name(m.kind()),
                m.bytes.len()
            );
        }
        return ExitCode::SUCCESS;
    };
    match write_vectors(&msgs, &args.from, &out, &args.peer, &args.version, &|m| {
        m.src.to_string()
    }) {
        Ok(man) => {
            println!(
                "{} messages written to {}",
                man.messages.len(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
