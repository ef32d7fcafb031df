//! `flatnet-lab down`: ends every process in the lab's namespaces (by the
//! PIDs `ip netns pids` lists), deletes the namespaces (their veths go with
//! them) and the run directory. Works from names alone, so it also cleans
//! up after an `up` that was SIGKILLed before it wrote its state.

use std::process::{Command, Stdio};

use super::{LAB_NS_PREFIX, run_dir};

/// Namespaces of lab `lab` that exist now.
pub fn leftovers(lab: &str) -> Vec<String> {
    let prefix = format!("{LAB_NS_PREFIX}{lab}-");
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    v.sort();
    v
}

fn pids_in(ns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes lab `lab`; returns the namespaces it deleted.
pub fn down(lab: &str) -> Vec<String> {
    let names = leftovers(lab);
    for ns in &names {
        for pid in pids_in(ns) {
            crate::netns::kill_pid(pid);
        }
    }
    for ns in &names {
        // A killed process leaves the namespace once it is reaped; poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !pids_in(ns).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(run_dir(lab));
    names
}
