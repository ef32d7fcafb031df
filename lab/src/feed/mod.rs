//! The full-table feed benchmark of issue 3: one eBGP peer sends N IPv4
//! prefixes (mixed /24 and /32, a few thousand attribute sets) to a receiver
//! (flatnet's speaker, BIRD 2, FRR, GoBGP), and we measure the wall time until
//! the last prefix is in the receiver's Loc-RIB and its peak RSS.
//!
//! The feed is built once and pre-encoded with flatnet's codec, so every
//! receiver gets byte-identical UPDATEs. The feeder is a minimal BGP speaker on
//! a thread inside its own namespace; receivers are separate processes, so
//! their RSS is their own (the feed buffer lives in the benchmark process).
//!
//! One module per job: `generate` builds and encodes the feed, `feeder` sends it
//! as a scripted peer ([`crate::scripted`]), `receivers` starts and probes
//! each receiver, `measure` runs one receiver and tabulates the figures.

mod feeder;
mod generate;
mod measure;
mod receivers;

use std::net::Ipv4Addr;

use crate::LabError;
use crate::scripted::PeerError;

pub use feeder::Feeder;
pub use generate::{Feed, FeedSpec, build_feed, session_ctx};
pub use measure::{
    FlatnetCmd, Kind, RunOptions, RunResult, median, pid_in_ns, proc_kib, run_one, table,
};
pub use receivers::{ReceiverStats, flatnet_config, run_flatnet_receiver};

/// Errors of the feed benchmark.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("encoding the feed: {0}")]
    Encode(String),
    #[error("feed spec: {0}")]
    Spec(String),
    #[error("BGP session with the receiver: {0}")]
    Session(String),
    #[error("BGP session with the receiver: {0}")]
    Peer(#[from] PeerError),
    #[error("{0}")]
    Receiver(String),
}

/// AS of the feeding peer.
pub const FEEDER_AS: u32 = 65001;
/// AS of every receiver.
pub const RECEIVER_AS: u32 = 65002;
/// Feeder address on the veth link.
pub const FEEDER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Receiver address on the veth link.
pub const RECEIVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Hold time on both sides: long, so a receiver busy with the table never
/// drops the session for timer reasons.
pub const HOLD_TIME: u16 = 180;
