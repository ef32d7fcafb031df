#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SIGKILL an allocating process at random points, hundreds of times.

mod common;
use common::{create_pool, rt};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flatnet_ipam::{FileStore, Handle, Ipam, IpamError};

const WORKER: &str = env!("CARGO_BIN_EXE_flatnet-ipam-worker");

/// Kills an allocating process with SIGKILL at random moments (and, every
/// third round, at exact points inside a write: before it, half-way through
/// the record, before fsync, after fsync, around the compaction rename) and checks after every kill that
/// every acknowledged allocation and release survived and no address is
/// held twice.
#[test]
fn sigkill_at_random_points_loses_no_acknowledged_allocation() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    create_pool(tmp.path());
    let rounds = 300;
    let points = [
        "before-write",
        "torn-write",
        "before-sync",
        "after-sync",
        "compact-before-rename",
        "compact-after-rename",
    ];
    // A new seed each run explores new kill points; a failure prints it,
    // and FLATNET_CRASH_SEED=<n> replays it.
    let mut seed: u64 = std::env::var("FLATNET_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: FLATNET_CRASH_SEED={seed}");
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked: BTreeMap<String, (String, IpAddr)> = BTreeMap::new();
    let mut released: BTreeSet<String> = BTreeSet::new();
    // Releases started but not acknowledged when the process died.
    let mut releasing: BTreeSet<String> = BTreeSet::new();
    let mut self_kills = 0;
    for round in 0..rounds {
        let host = format!("h{}", round % 2);
        let prefix = format!("r{round}");
        let mut cmd = Command::new(WORKER);
        // Compact every ~16 KiB so kills also land in and around compactions.
        cmd.env("FLATNET_IPAM_COMPACT_BYTES", "16384");
        cmd.arg("crash").arg(tmp.path()).args([&host, &prefix]);
        let planned = round % 3 == 0;
        if planned {
            let p = points[(round / 3) % points.len()];
            let nth = if p.starts_with("compact") {
                1
            } else {
                1 + rnd() % 5
            };
            cmd.arg(format!("{p}:{nth}"));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        if planned {
            // It kills itself at the planned point.
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                assert!(
                    Instant::now() < deadline,
                    "worker did not reach its crash point"
                );
                if let Ok(l) = rx.recv_timeout(Duration::from_millis(5)) {
                    lines.push(l);
                }
            }
        } else {
            let want = (rnd() % 6) as usize;
            let deadline = Instant::now() + Duration::from_secs(20);
            while lines
                .iter()
                .filter(|l: &&String| l.starts_with("ACK"))
                .count()
                < want
            {
                let l = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                lines.push(l.expect("worker produced no acknowledgements"));
            }
            // Land the kill at a random moment of the next operations.
            std::thread::sleep(Duration::from_micros(rnd() % 1500));
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        use std::os::unix::process::ExitStatusExt;
        if status.signal() != Some(9) {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("round {round}: worker ended with {status} instead of SIGKILL: {err}");
        }
        if planned {
            self_kills += 1;
        }
        for l in &lines {
            let f: Vec<&str> = l.split(' ').collect();
            match f[0] {
                "ACK" => {
                    acked.insert(f[1].to_string(), (host.clone(), f[2].parse().unwrap()));
                }
                "RELEASING" => {
                    releasing.insert(f[1].to_string());
                }
                "REL" => {
                    releasing.remove(f[1]);
                    released.insert(f[1].to_string());
                }
                _ => panic!("bad line {l}"),
            }
        }
        // After each kill: nothing acknowledged lost, nothing doubled.
        let ipam = Ipam::new(FileStore::open(tmp.path()).unwrap());
        rt().block_on(async {
            for (cid, (host, ip)) in &acked {
                let got = ipam.get(host, &Handle::new(cid.clone(), "eth0")).await;
                if releasing.contains(cid) {
                    // Killed mid-release: either state is correct, but if
                    // present it keeps its address.
                    if let Ok(a) = got {
                        assert_eq!(a.addrs[0].ip, *ip);
                    }
                } else if released.contains(cid) {
                    assert!(
                        matches!(got, Err(IpamError::UnknownHandle { .. })),
                        "round {round}: released {cid} is back"
                    );
                } else {
                    let a = got
                        .unwrap_or_else(|e| panic!("round {round}: acknowledged {cid} lost: {e}"));
                    assert_eq!(a.addrs[0].ip, *ip, "round {round}: {cid} changed address");
                }
            }
            let all = ipam.all_allocations().await.unwrap();
            let ips: BTreeSet<IpAddr> = all.iter().map(|a| a.addrs[0].ip).collect();
            assert_eq!(
                ips.len(),
                all.len(),
                "round {round}: an address is held twice"
            );
            let hosts: BTreeSet<String> = ["h0".to_string(), "h1".to_string()].into();
            let issues = ipam.check(&hosts).await.unwrap();
            assert!(issues.is_empty(), "round {round}: {issues:?}");
        });
    }
    assert_eq!(self_kills, rounds / 3);
    assert!(
        acked.len() > rounds,
        "too few acknowledged allocations: {}",
        acked.len()
    );
    eprintln!(
        "{rounds} SIGKILLs, {} acknowledged allocations, {} releases: {:?}",
        acked.len(),
        released.len(),
        started.elapsed()
    );
}
