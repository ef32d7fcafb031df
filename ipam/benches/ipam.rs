#![allow(clippy::unwrap_used, clippy::expect_used)]
//! IPAM benchmark: allocations per second on one host and block-claim time
//! with 100 hosts contending, embedded file store and a real etcd side by
//! side in one run. Needs root (etcd runs in a lab namespace).
//!
//! `cargo bench -p flatnet-ipam --bench ipam`

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use flatnet_ipam::{
    AllocRequest, Cidr, Datastore, EtcdStore, FileStore, Handle, Ipam, Op, Pool, Txn,
};
use flatnet_lab::etcd::Etcd;
use flatnet_lab::{Netns, require_root};

const ALLOCS: usize = 2000;
const HOSTS: usize = 100;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pool() -> Pool {
    Pool::new("p", "10.0.0.0/12".parse::<Cidr>().unwrap())
}

/// Raw guarded puts per second: the store's floor for one write.
async fn raw_txns<S: Datastore>(s: &S, n: usize) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        let k = format!("/bench/raw/{i}");
        s.txn(
            Txn::new()
                .when(flatnet_ipam::Compare::absent(&k))
                .then(Op::put(&k, vec![0; 100])),
        )
        .await
        .unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

async fn allocs_per_sec<S: Datastore>(ipam: &Ipam<S>, n: usize) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        ipam.allocate(&AllocRequest::v4(
            Handle::new(format!("c{i}"), "eth0"),
            "bench-host",
        ))
        .await
        .unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

struct Claims {
    wall: Duration,
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn summarize(wall: Duration, mut lat: Vec<Duration>) -> Claims {
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    Claims {
        wall,
        mean,
        p50: lat[lat.len() / 2],
        p99: lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
    }
}

/// 100 hosts, each its own thread with its own open store (so they contend
/// through flock exactly as separate processes do), each claiming a block.
fn file_claims(dir: &std::path::Path) -> Claims {
    let barrier = Arc::new(Barrier::new(HOSTS + 1));
    let threads: Vec<_> = (0..HOSTS)
        .map(|h| {
            let dir = dir.to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let ipam = Ipam::new(FileStore::open(&dir).unwrap());
                let rt = rt();
                barrier.wait();
                let t = Instant::now();
                let a = rt
                    .block_on(
                        ipam.allocate(&AllocRequest::v4(Handle::new("c", "eth0"), format!("h{h}"))),
                    )
                    .unwrap();
                assert!(!a.addrs[0].borrowed);
                t.elapsed()
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let lat: Vec<Duration> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    summarize(t.elapsed(), lat)
}

/// 100 hosts as concurrent tasks against etcd.
async fn etcd_claims(store: &EtcdStore) -> Claims {
    let mut set = tokio::task::JoinSet::new();
    let t = Instant::now();
    for h in 0..HOSTS {
        let ipam = Ipam::with_clock(
            store.clone(),
            "/claims/",
            Arc::new(flatnet_ipam::SystemClock),
        );
        set.spawn(async move {
            let t = Instant::now();
            ipam.allocate(&AllocRequest::v4(Handle::new("c", "eth0"), format!("h{h}")))
                .await
                .unwrap();
            t.elapsed()
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.push(r.unwrap());
    }
    summarize(t.elapsed(), lat)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    require_root().expect("the IPAM benchmark runs etcd in a namespace: run as root");

    // Embedded store.
    let tmp = tempfile::tempdir().unwrap();
    let (file_raw, file_allocs) = {
        let ipam = Ipam::new(FileStore::open(tmp.path().join("a")).unwrap());
        rt().block_on(async {
            ipam.create_pool(pool()).await.unwrap();
            (
                raw_txns(ipam.store(), ALLOCS).await,
                allocs_per_sec(&ipam, ALLOCS).await,
            )
        })
    };
    let claims_dir = tmp.path().join("claims");
    {
        let ipam = Ipam::new(FileStore::open(&claims_dir).unwrap());
        rt().block_on(ipam.create_pool(pool())).unwrap();
    }
    let file_claims = file_claims(&claims_dir);

    // etcd, in a namespace; the client runs on a thread inside it.
    let ns = Netns::new("ipam-bench").unwrap();
    let etcd = Etcd::start(&ns).unwrap();
    let ep = etcd.endpoint();
    let (etcd_raw, etcd_allocs, etcd_claims) = ns
        .run_in(move || {
            rt().block_on(async {
                let store = EtcdStore::connect(&[ep], Duration::from_secs(5))
                    .await
                    .unwrap();
                let ipam = Ipam::new(store.clone());
                ipam.create_pool(pool()).await.unwrap();
                let raw = raw_txns(&store, ALLOCS).await;
                let allocs = allocs_per_sec(&ipam, ALLOCS).await;
                let claims_ipam = Ipam::with_clock(
                    store.clone(),
                    "/claims/",
                    Arc::new(flatnet_ipam::SystemClock),
                );
                claims_ipam.create_pool(pool()).await.unwrap();
                let claims = etcd_claims(&store).await;
                (raw, allocs, claims)
            })
        })
        .unwrap();
    drop(etcd);

    println!(
        "IPAM benchmark ({ALLOCS} sequential allocations on one host; {HOSTS} hosts claiming a block at once)"
    );
    println!("{:<44} {:>16} {:>16}", "", "embedded (file)", "etcd 3.4");
    println!(
        "{:<44} {:>16.0} {:>16.0}",
        "raw guarded put txns/s (store floor)", file_raw, etcd_raw
    );
    println!(
        "{:<44} {:>16.0} {:>16.0}",
        "allocations/s, single host", file_allocs, etcd_allocs
    );
    let row = |name: &str, f: Duration, e: Duration| {
        println!(
            "{:<44} {:>14.1}ms {:>14.1}ms",
            name,
            f.as_secs_f64() * 1e3,
            e.as_secs_f64() * 1e3
        )
    };
    row(
        "100-host block claims: all done (wall)",
        file_claims.wall,
        etcd_claims.wall,
    );
    row(
        "100-host block claims: mean per host",
        file_claims.mean,
        etcd_claims.mean,
    );
    row(
        "100-host block claims: p50 per host",
        file_claims.p50,
        etcd_claims.p50,
    );
    row(
        "100-host block claims: p99 per host",
        file_claims.p99,
        etcd_claims.p99,
    );
}
