//! What goes into the speaker core and what comes out of it.
//!
//! Plain data only (no channels, sockets or permits), so tests can build
//! every input by hand and read every output.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::fsm::{DownReason, Negotiated, State};
use crate::policy::Policy;
pub use crate::session::PeerCommand;
use crate::session::PeerConfig;
use crate::wire::{Family, Notification, Prefix, TreatAsWithdraw, Update};

use crate::speaker::{OriginAttrs, RibEvent};

/// An input to [`super::Core::handle`].
#[derive(Debug)]
pub enum Event {
    /// A peer's FSM changed state.
    PeerState(IpAddr, State),
    /// A peer's next automatic attempt (while Idle) and its damping.
    PeerRetry {
        /// Peer.
        peer: IpAddr,
        /// Next attempt (`None`: none scheduled).
        at: Option<Instant>,
        /// Consecutive errors counted for damping.
        errors: u32,
    },
    /// A peer reached Established.
    PeerUp {
        /// Peer.
        peer: IpAddr,
        /// What both sides agreed on.
        negotiated: Box<Negotiated>,
        /// Our end of the TCP connection (next-hop-self).
        local: SocketAddr,
        /// The subnets of our interface on the session (empty: unknown);
        /// see [`crate::rib::PeerInfo::connected`].
        connected: Vec<crate::rib::Subnet>,
    },
    /// A peer went down (or an attempt failed past TCP).
    PeerDown {
        /// Peer.
        peer: IpAddr,
        /// Why.
        reason: DownReason,
        /// Whether routes were exchanged on the session.
        was_established: bool,
    },
    /// A well-formed UPDATE from a peer.
    Update(IpAddr, Box<Update>),
    /// RFC 7606 treat-as-withdraw from a peer.
    TreatAsWithdraw(IpAddr, Box<TreatAsWithdraw>),
    /// The peer asked us to re-send `family` (RFC 2918).
    RouteRefresh(IpAddr, Family),
    /// The peer sent BoRR or EoRR for `family` (RFC 7313).
    Demarcation(IpAddr, Family, u8),
    /// Configure a peer.
    AddPeer(Box<PeerConfig>),
    /// Remove a peer and its routes.
    RemovePeer(IpAddr),
    /// Originate (or update) a prefix.
    Originate(Prefix, OriginAttrs),
    /// Withdraw an originated prefix.
    WithdrawOrigin(Prefix),
    /// Define or replace a named policy.
    SetPolicy(String, Policy),
    /// Change a peer's policy names.
    SetPeerPolicy {
        /// Peer.
        peer: IpAddr,
        /// Import policy name.
        import: Option<String>,
        /// Export policy name.
        export: Option<String>,
    },
    /// ManualStop, optionally with a NOTIFICATION.
    StopPeer(IpAddr, Option<Notification>),
    /// ManualStart.
    StartPeer(IpAddr),
    /// Ask the peer to resend every negotiated family.
    SoftResetIn(IpAddr),
    /// The time from [`super::Core::poll_timeout`] has come.
    Timeout,
}

/// An output of [`super::Core::poll_action`], for the driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a session task for this peer.
    StartPeer(Box<PeerConfig>),
    /// End the peer's task (Cease/Peer De-configured) and drop its TCP MD5 key.
    RemovePeer(Box<PeerConfig>),
    /// Give a command to a peer's task.
    Peer(IpAddr, PeerCommand),
    /// A best-path / multipath change for subscribers.
    Rib(RibEvent),
    /// Peer state or RIB changed (coalesced: at most one per drain).
    Changed,
    /// Route selection deferred at a restart (RFC 4724 §4.1) has run: what
    /// subscribers saw so far is the full selection; forwarding state the
    /// previous run left and nobody re-selected is stale now.
    SelectionDone,
}

/// Why the core refused an API event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The peer exists already.
    #[error("peer {0} already configured")]
    PeerExists(IpAddr),
    /// No such peer.
    #[error("no peer {0}")]
    NoPeer(IpAddr),
}
