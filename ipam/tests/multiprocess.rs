#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Eight OS processes allocating and releasing against one embedded store.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Instant;

use flatnet_ipam::{FileStore, Ipam};

mod common;
use common::{assert_history_has_no_duplicates, create_pool, rt};

const WORKER: &str = env!("CARGO_BIN_EXE_flatnet-ipam-worker");

#[test]
fn eight_processes_allocate_and_release_20000_addresses() {
    let started = Instant::now();
    // This test is about concurrency (flock, CAS, replay by 8 processes), not
    // durability: on a shared CI disk 40,000 serialised fsyncs take minutes.
    // Its store lives in /dev/shm when there is one; the crash test and all
    // others use the disk.
    let tmp = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    create_pool(tmp.path());
    let per_worker = 2500;
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(WORKER)
                .args(["stress"])
                .arg(tmp.path())
                .args([
                    format!("h{}", i % 4),
                    format!("w{i}"),
                    per_worker.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut kept: BTreeMap<String, IpAddr> = BTreeMap::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.ends_with("DONE\n"),
            "worker failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in stdout.lines().filter(|l| l.starts_with("KEEP ")) {
            let mut f = line.split(' ').skip(1);
            let cid = f.next().unwrap().to_string();
            let ip: IpAddr = f.next().unwrap().parse().unwrap();
            assert!(kept.insert(cid, ip).is_none());
        }
    }
    let ips: BTreeSet<IpAddr> = kept.values().copied().collect();
    assert_eq!(ips.len(), kept.len(), "an address is held twice");

    // The store holds exactly what the workers kept, and is consistent.
    let ipam = Ipam::new(FileStore::open(tmp.path()).unwrap());
    rt().block_on(async {
        let all = ipam.all_allocations().await.unwrap();
        let stored: BTreeMap<String, IpAddr> = all
            .iter()
            .map(|a| (a.handle.container_id.clone(), a.addrs[0].ip))
            .collect();
        assert_eq!(stored, kept);
        let hosts: BTreeSet<String> = (0..4).map(|i| format!("h{i}")).collect();
        let issues = ipam.check(&hosts).await.unwrap();
        assert!(issues.is_empty(), "{issues:?}");
        let u = ipam.utilisation().await.unwrap();
        assert_eq!(u.pools[0].allocated, kept.len() as u64);
    });
    let puts = assert_history_has_no_duplicates(tmp.path());
    assert_eq!(
        puts,
        8 * per_worker,
        "every allocation appears once in the history"
    );
    eprintln!(
        "8 processes, {} allocations, {} kept: {:?}",
        8 * per_worker,
        kept.len(),
        started.elapsed()
    );
}

/// Four processes with a tiny compaction threshold: they keep replacing the
/// log under each other, and nothing is lost or doubled.
#[test]
fn processes_racing_through_compactions_stay_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    create_pool(tmp.path());
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(WORKER)
                .env("FLATNET_IPAM_COMPACT_BYTES", "8192")
                .args(["stress"])
                .arg(tmp.path())
                .args([format!("h{}", i % 2), format!("k{i}"), "400".to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut kept: BTreeMap<String, IpAddr> = BTreeMap::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.ends_with("DONE\n"),
            "worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in stdout.lines().filter(|l| l.starts_with("KEEP ")) {
            let f: Vec<&str> = line.split(' ').collect();
            kept.insert(f[1].to_string(), f[2].parse().unwrap());
        }
    }
    let log_len = std::fs::metadata(tmp.path().join("flatnet.log"))
        .unwrap()
        .len();
    assert!(log_len < 200_000, "log not compacted: {log_len} bytes");
    let ipam = Ipam::new(FileStore::open(tmp.path()).unwrap());
    rt().block_on(async {
        let stored: BTreeMap<String, IpAddr> = ipam
            .all_allocations()
            .await
            .unwrap()
            .iter()
            .map(|a| (a.handle.container_id.clone(), a.addrs[0].ip))
            .collect();
        assert_eq!(stored, kept);
        let hosts: BTreeSet<String> = ["h0".to_string(), "h1".to_string()].into();
        let issues = ipam.check(&hosts).await.unwrap();
        assert!(issues.is_empty(), "{issues:?}");
    });
}
