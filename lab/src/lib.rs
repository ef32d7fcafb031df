//! flatnet-lab: topologies of network namespaces on one machine.
//!
//! Tests, the lab command and benchmarks build everything here: namespaces
//! with a per-run prefix that are removed afterwards (also on panic), veth
//! links created inside lab namespaces only, and real routing daemons (FRR,
//! BIRD, GoBGP) as ToRs. This crate drives binaries and public APIs only.

pub mod bird;
pub mod captures;
pub mod deploy;
pub mod etcd;
pub mod feed;
pub mod frr;
pub mod gobgp;
pub mod netns;
pub mod pcap;
pub mod report;
pub mod router;
pub mod scripted;
pub mod topology;

pub use netns::{Daemon, Daemons, Netns, require_root, run, veth, wait_for};
pub use router::{
    AddPath, BgpState, Capabilities, Family, NeighborConfig, NeighborStatus, RibEntry, Route,
    Router, RouterConfig, RouterDaemons, Timers,
};

use std::time::Duration;

/// Errors from building or driving a lab topology.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "the lab needs root (network namespaces); run the test command as root, e.g. `sudo scripts/test.sh`"
    )]
    NotRoot,
    #[error("could not start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("{cmd} exited with status {status}: {stderr}")]
    Command {
        cmd: String,
        status: i32,
        stderr: String,
    },
    #[error("timed out after {after:?} waiting for {what}{}", last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Timeout {
        what: String,
        after: Duration,
        last_error: Option<String>,
    },
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
