//! flatnet-ipam-worker: a separate OS process that allocates against the
//! embedded store, for the multi-process and crash-safety tests and the
//! benchmark. Not part of the product.
//!
//! `flatnet-ipam-worker pool DIR CIDR` creates pool `p` with default blocks.
//!
//! `flatnet-ipam-worker stress DIR HOST WORKER COUNT` allocates COUNT
//! handles, releasing about half of them along the way and most at the end;
//! prints `KEEP <container-id> <ip>` for the ones it keeps, then `DONE`.
//!
//! `flatnet-ipam-worker crash DIR HOST PREFIX [POINT:NTH]` allocates
//! forever, printing `ACK <container-id> <ip>` after each acknowledged
//! allocation, `RELEASING <container-id>` before and `REL <container-id>`
//! after each acknowledged release,
//! until it is killed (or kills itself at POINT during its NTH write).

use std::io::Write;
use std::process::ExitCode;

use flatnet_ipam::store::CrashPoint;
use flatnet_ipam::{AllocRequest, FileStore, FileStoreOptions, Handle, Ipam};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flatnet-ipam-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `FLATNET_IPAM_COMPACT_BYTES` sets the compaction threshold (tests use a
/// small one so compactions happen while processes race and crash).
fn open_store(dir: &str) -> Result<FileStore, Box<dyn std::error::Error>> {
    let mut opts = FileStoreOptions::default();
    if let Ok(v) = std::env::var("FLATNET_IPAM_COMPACT_BYTES") {
        opts.compact_after_bytes = v.parse()?;
    }
    Ok(FileStore::open_with(dir, opts)?)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("stress") if args.len() == 5 => {
            let count: u64 = args[4].parse()?;
            rt.block_on(stress(&args[1], &args[2], &args[3], count))
        }
        Some("pool") if args.len() == 3 => {
            let ipam = Ipam::new(FileStore::open(&args[1])?);
            let cidr: flatnet_ipam::Cidr = args[2].parse()?;
            rt.block_on(ipam.create_pool(flatnet_ipam::Pool::new("p", cidr)))?;
            Ok(())
        }
        Some("crash") if args.len() == 4 || args.len() == 5 => {
            let mut store = open_store(&args[1])?;
            if let Some(spec) = args.get(4) {
                let (p, n) = spec.split_once(':').ok_or("POINT:NTH expected")?;
                store = store.with_crash_point(p.parse::<CrashPoint>()?, n.parse()?);
            }
            rt.block_on(crash(store, &args[2], &args[3]))
        }
        _ => Err("usage: flatnet-ipam-worker pool DIR CIDR | stress DIR HOST WORKER COUNT | crash DIR HOST PREFIX [POINT:NTH]".into()),
    }
}

/// xorshift: deterministic per worker, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn stress(
    dir: &str,
    host: &str,
    worker: &str,
    count: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let ipam = Ipam::new(open_store(dir)?);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ worker.len() as u64 ^ count);
    for b in worker.bytes() {
        rng.0 = rng.0.wrapping_mul(31).wrapping_add(b as u64) | 1;
    }
    let mut held: Vec<(Handle, std::net::IpAddr)> = Vec::new();
    for k in 0..count {
        let h = Handle::new(format!("{worker}-{k}"), "eth0");
        let a = ipam.allocate(&AllocRequest::v4(h.clone(), host)).await?;
        let again = ipam.allocate(&AllocRequest::v4(h.clone(), host)).await?;
        if again.addrs != a.addrs {
            return Err(format!("ADD of {h} was not idempotent").into());
        }
        held.push((h, a.addrs[0].ip));
        if rng.next().is_multiple_of(2) && !held.is_empty() {
            let i = (rng.next() % held.len() as u64) as usize;
            let (h, _) = held.swap_remove(i);
            if ipam.release(host, &h).await?.is_none() {
                return Err(format!("release of {h} found nothing").into());
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (i, (h, ip)) in held.into_iter().enumerate() {
        if i.is_multiple_of(5) {
            writeln!(out, "KEEP {} {ip}", h.container_id)?;
        } else {
            ipam.release(host, &h).await?;
            // Idempotent release: a second one is a no-op.
            if ipam.release(host, &h).await?.is_some() {
                return Err(format!("second release of {h} released something").into());
            }
        }
    }
    writeln!(out, "DONE")?;
    out.flush()?;
    Ok(())
}

async fn crash(
    store: FileStore,
    host: &str,
    prefix: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let ipam = Ipam::new(store);
    let mut out = std::io::stdout().lock();
    let mut acked: Vec<Handle> = Vec::new();
    for k in 0u64.. {
        let h = Handle::new(format!("{prefix}-{k}"), "eth0");
        let a = ipam.allocate(&AllocRequest::v4(h.clone(), host)).await?;
        writeln!(out, "ACK {} {}", h.container_id, a.addrs[0].ip)?;
        out.flush()?;
        acked.push(h);
        if k % 3 == 2 {
            let h = acked.remove(0);
            // Announced first: if killed before REL, either outcome is fine.
            writeln!(out, "RELEASING {}", h.container_id)?;
            out.flush()?;
            ipam.release(host, &h).await?;
            writeln!(out, "REL {}", h.container_id)?;
            out.flush()?;
        }
    }
    Ok(())
}
