//! The two channels between a peer task and the speaker: commands in, events out.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::fsm::{DownReason, Negotiated, State};
use crate::wire::{Family, Notification, Update};

/// What the speaker core asks of a peer task (plain data: the core is sans-IO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCommand {
    /// Send these UPDATEs (already packed) on the Established session.
    Send(Vec<Update>),
    /// ManualStart.
    Start,
    /// ManualStop with an optional NOTIFICATION (RFC 8203 shutdown communication).
    Stop(Option<Notification>),
    /// Local limit exceeded: send the NOTIFICATION and restart later.
    LocalError {
        /// What to send.
        notification: Notification,
        /// When to come back (`None`: stay down).
        restart_after: Option<Duration>,
    },
    /// Ask the peer to re-send its routes (RFC 2918).
    RouteRefresh(Family),
    /// Send a ROUTE-REFRESH demarcation (RFC 7313 BoRR/EoRR) around a re-advertisement.
    Demarcation(Family, u8),
}

/// Messages from the speaker's driver to a peer task.
#[derive(Debug)]
pub enum PeerCmd {
    /// An inbound TCP connection from this peer's address.
    Inbound(TcpStream),
    /// A command of the speaker core.
    Core(PeerCommand),
    /// Stop (Cease/Peer De-configured) and end the task.
    Remove,
}

/// Events from a peer task to the speaker core.
#[derive(Debug)]
pub enum PeerEvent {
    /// While Idle: when the next automatic attempt is due (`None`: not
    /// scheduled, e.g. stopped) and the consecutive errors damping it.
    Retry {
        /// Peer.
        peer: IpAddr,
        /// Next attempt.
        at: Option<std::time::Instant>,
        /// Consecutive errors counted for damping.
        errors: u32,
    },
    /// The FSM state changed.
    State(IpAddr, State),
    /// Established.
    Up {
        /// Peer.
        peer: IpAddr,
        /// Capabilities.
        negotiated: Box<Negotiated>,
        /// Our end of the TCP connection.
        local: SocketAddr,
        /// The subnets of the interface holding `local` (RFC 4271 6.3 b).
        connected: Vec<crate::rib::Subnet>,
    },
    /// Down (or an attempt failed past TCP).
    Down {
        /// Peer.
        peer: IpAddr,
        /// Why.
        reason: DownReason,
        /// Whether routes were exchanged on it.
        was_established: bool,
    },
    /// A well-formed UPDATE. The permit bounds how many UPDATEs a peer has
    /// in flight to the core: the peer task stops reading its socket while
    /// none is free, so a fast peer meets TCP backpressure instead of
    /// filling memory. Drop it once the UPDATE is applied.
    Update(
        IpAddr,
        Box<Update>,
        Option<tokio::sync::OwnedSemaphorePermit>,
    ),
    /// RFC 7606 treat-as-withdraw: these prefixes must go.
    Withdraw(IpAddr, Box<crate::wire::TreatAsWithdraw>),
    /// The peer asked for a refresh of `family`.
    RouteRefresh(IpAddr, Family),
    /// The peer starts (BoRR) or ends (EoRR) a re-advertisement of `family` (RFC 7313).
    Demarcation(IpAddr, Family, u8),
    /// The peer task ended (removed).
    Gone(IpAddr),
}
