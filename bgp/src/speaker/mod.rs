//! The BGP speaker: the public [`Speaker`] handle, a thin tokio driver, and
//! the sans-IO [`core`] that holds the protocol logic.
//!
//! Tasks: the driver task owns the [`core::Core`] (RIB, Adj-RIB-Out, peer
//! protocol state) and the listeners' TCP MD5 keys; one task per peer
//! ([`crate::session`]) owns its socket and FSM; one accept task per
//! listener ([`listener`]) hands connections to the driver. The handle only
//! sends messages to the driver, so it is cheap to clone and safe to use
//! anywhere.

pub mod control;
pub mod core;
mod driver;
mod listener;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::fsm::State;
use crate::policy::Policy;
use crate::rib::PeerId;
use crate::session::PeerConfig;
use crate::wire::{Community, LargeCommunity, Notification, Prefix};

pub use self::core::AdjRib;
use driver::{CoreMsg, Driver};

/// Errors of the speaker API.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// Could not bind a listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The peer exists already.
    #[error("peer {0} already configured")]
    PeerExists(IpAddr),
    /// No such peer.
    #[error("no peer {0}")]
    NoPeer(IpAddr),
    /// TCP MD5 key could not be installed.
    #[error("TCP MD5 for {peer}: {source}")]
    Md5 {
        /// Peer.
        peer: IpAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The shutdown communication is too long.
    #[error("shutdown message: {0}")]
    ShutdownMessage(#[from] crate::wire::ShutdownMessageError),
    /// The speaker task has stopped.
    #[error("the speaker has stopped")]
    Stopped,
}

impl From<core::CoreError> for SpeakerError {
    fn from(e: core::CoreError) -> SpeakerError {
        match e {
            core::CoreError::PeerExists(ip) => SpeakerError::PeerExists(ip),
            core::CoreError::NoPeer(ip) => SpeakerError::NoPeer(ip),
        }
    }
}

/// Attributes of a prefix we originate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginAttrs {
    /// MED.
    pub med: Option<u32>,
    /// LOCAL_PREF (iBGP only).
    pub local_pref: Option<u32>,
    /// Communities.
    pub communities: Vec<Community>,
    /// Large communities.
    pub large_communities: Vec<LargeCommunity>,
}

/// Speaker configuration.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Listen addresses (e.g. `0.0.0.0:179`, `[::]:179`); empty: no passive TCP.
    pub listen: Vec<SocketAddr>,
    /// Peers at start.
    pub peers: Vec<PeerConfig>,
    /// Named import/export policies.
    pub policies: HashMap<String, Policy>,
    /// Prefixes originated at start.
    pub originate: Vec<(Prefix, OriginAttrs)>,
    /// We are restarting (graceful restart R bit in the first OPENs).
    pub restarting: bool,
    /// Largest multipath (ECMP) set.
    pub max_paths: usize,
    /// Multipath across different neighbour ASes (two ToRs in two ASes).
    pub multipath_relax: bool,
}

/// Where a path comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathSource {
    /// Originated by this speaker.
    Local,
    /// Learned from this peer.
    Peer(IpAddr),
    /// A RIB peer id the speaker has no address for (not expected).
    Unknown(PeerId),
}

impl std::fmt::Display for PathSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathSource::Local => f.write_str("local"),
            PathSource::Peer(a) => a.fmt(f),
            PathSource::Unknown(id) => id.fmt(f),
        }
    }
}

/// Serialised as `local` or the peer address, as the state files always showed it.
impl serde::Serialize for PathSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A path as shown to API users.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathInfo {
    /// Originated here or learned from a peer.
    pub source: PathSource,
    /// Next hop.
    pub next_hop: Option<IpAddr>,
    /// AS_PATH flattened.
    pub as_path: Vec<u32>,
    /// LOCAL_PREF.
    pub local_pref: u32,
    /// MED.
    pub med: u32,
    /// Stale (graceful restart).
    pub stale: bool,
    /// Best path.
    pub best: bool,
    /// In the multipath set.
    pub multipath: bool,
}

/// One prefix of the Loc-RIB.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RibEntry {
    /// Prefix.
    pub prefix: Prefix,
    /// Paths, best first.
    pub paths: Vec<PathInfo>,
}

/// Best-path changes a subscriber may fall behind by before it sees
/// `Lagged` and resyncs from the Loc-RIB (the FIB does). The ring is
/// allocated and written in full at start: 65,536 slots were 9 MiB of
/// flatnetd's resident memory whatever the table size; 4,096 are 0.6 MiB.
pub const RIB_EVENT_BUFFER: usize = 4096;

/// A best-path / multipath change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RibEvent {
    /// Prefix.
    pub prefix: Prefix,
    /// New best path (None: withdrawn).
    pub best: Option<PathInfo>,
    /// New multipath set (best first).
    pub multipath: Vec<PathInfo>,
}

/// Cheap summary for polling (O(peers), no RIB walk).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Prefixes in the Loc-RIB.
    pub loc_rib_len: usize,
    /// Every peer.
    pub peers: Vec<PeerStatus>,
}

/// One peer's status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// Address.
    pub address: IpAddr,
    /// Configured remote AS.
    pub remote_as: u32,
    /// FSM state.
    pub state: State,
    /// Seconds since Established.
    pub uptime_secs: Option<u64>,
    /// Negotiated capabilities (names).
    pub capabilities: Vec<String>,
    /// Negotiated hold time.
    pub hold_time: Option<u16>,
    /// The peer's restart time if it announced graceful restart.
    pub peer_restart_time: Option<u16>,
    /// Prefixes received (before import policy).
    pub prefixes_received: usize,
    /// Prefixes accepted into the RIB.
    pub prefixes_accepted: usize,
    /// Prefixes advertised to the peer.
    pub prefixes_advertised: usize,
    /// Stale paths kept for the peer (graceful restart helper).
    pub stale_paths: usize,
    /// Last error (NOTIFICATION or connection loss).
    pub last_error: Option<String>,
    /// While Idle: milliseconds until the next automatic attempt.
    pub next_attempt_ms: Option<u64>,
    /// Consecutive errors damping the attempts (0 after clean ends).
    pub consecutive_errors: u32,
    /// NOTIFICATION codes sent with max-prefix (Cease/1) so far.
    pub max_prefix_resets: u32,
    /// UPDATE messages received since the peer was configured.
    pub updates_in: u64,
    /// UPDATE messages sent since the peer was configured.
    pub updates_out: u64,
    /// Prefix counts per family (both unicast families, in order).
    pub families: Vec<FamilyPrefixes>,
    /// Families negotiated on the current session (`ipv4-unicast`, ...).
    pub negotiated_families: Vec<String>,
}

/// One family's prefix counts for one peer (the metrics' and the CLI's
/// per-family view).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FamilyPrefixes {
    /// `ipv4-unicast` or `ipv6-unicast`.
    pub family: String,
    /// Received (before import policy).
    pub received: usize,
    /// Accepted into the RIB.
    pub accepted: usize,
    /// Advertised to the peer.
    pub advertised: usize,
}

/// Handle to a running speaker. Cloning is cheap.
#[derive(Clone)]
pub struct Speaker {
    tx: mpsc::UnboundedSender<CoreMsg>,
    events: broadcast::Sender<RibEvent>,
    changed: watch::Receiver<u64>,
    selected: watch::Receiver<bool>,
}

impl Speaker {
    /// Binds the listeners, starts every configured peer, and returns the handle.
    pub async fn start(cfg: SpeakerConfig) -> Result<Speaker, SpeakerError> {
        Speaker::start_inner(cfg, None).await
    }

    /// Like [`Speaker::start`] for a speaker that restarts with its
    /// forwarding state kept: the OPENs carry the graceful restart R bit,
    /// and route selection (UPDATEs out, [`RibEvent`]s) is deferred until
    /// every graceful-restart peer sent End-of-RIB, or `selection_deferral`
    /// passed (RFC 4724 §4.1). [`Speaker::selection_done`] tells when.
    pub async fn start_restarting(
        mut cfg: SpeakerConfig,
        selection_deferral: Duration,
    ) -> Result<Speaker, SpeakerError> {
        cfg.restarting = true;
        Speaker::start_inner(cfg, Some(selection_deferral)).await
    }

    async fn start_inner(
        cfg: SpeakerConfig,
        deferral: Option<Duration>,
    ) -> Result<Speaker, SpeakerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(RIB_EVENT_BUFFER);
        let (gen_tx, gen_rx) = watch::channel(0u64);
        let (sel_tx, sel_rx) = watch::channel(false);
        let listeners = listener::bind(&cfg.listen, &tx)?;
        let driver = Driver::new(cfg, listeners, events.clone(), gen_tx, sel_tx, deferral);
        tokio::spawn(driver.run(rx));
        Ok(Speaker {
            tx,
            events,
            changed: gen_rx,
            selected: sel_rx,
        })
    }

    /// Becomes true once route selection ran: at once, or after the
    /// deferral of [`Speaker::start_restarting`].
    pub fn selection_done(&self) -> watch::Receiver<bool> {
        self.selected.clone()
    }

    async fn ask<T>(
        &self,
        f: impl FnOnce(oneshot::Sender<T>) -> CoreMsg,
    ) -> Result<T, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(f(tx)).map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Adds a peer and starts it.
    pub async fn add_peer(&self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        self.ask(|r| CoreMsg::AddPeer(Box::new(cfg), r)).await?
    }

    /// Removes a peer (Cease/Peer De-configured) and its routes.
    pub async fn remove_peer(&self, peer: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| CoreMsg::RemovePeer(peer, r)).await?
    }

    /// Changes a peer: policies are applied in place (with a route refresh);
    /// anything else restarts only that peer.
    pub async fn change_peer(&self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        let addr = cfg.address;
        let current = self.peers().await?;
        if !current.iter().any(|p| p.address == addr) {
            return Err(SpeakerError::NoPeer(addr));
        }
        self.remove_peer(addr).await?;
        self.add_peer(cfg).await
    }

    /// Administrative shutdown with an RFC 8203 shutdown communication.
    pub async fn shutdown_peer(
        &self,
        peer: IpAddr,
        message: Option<&str>,
    ) -> Result<(), SpeakerError> {
        let n = match message {
            Some(m) => Some(Notification::shutdown(
                crate::wire::subcode::cease::ADMINISTRATIVE_SHUTDOWN,
                m,
            )?),
            None => None,
        };
        self.ask(|r| CoreMsg::PeerStop(peer, n, r)).await?
    }

    /// Starts a peer that was shut down.
    pub async fn start_peer(&self, peer: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| CoreMsg::PeerStart(peer, r)).await?
    }

    /// Soft reset inbound: ask the peer to resend its routes (route refresh).
    pub async fn soft_reset_in(&self, peer: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| CoreMsg::SoftResetIn(peer, r)).await?
    }

    /// Defines or replaces a named policy.
    pub fn set_policy(&self, name: &str, policy: Policy) -> Result<(), SpeakerError> {
        self.tx
            .send(CoreMsg::SetPolicy(name.to_string(), policy))
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Changes a peer's import/export policy names; the import side is
    /// applied with a route refresh, without resetting the session.
    pub async fn set_peer_policy(
        &self,
        peer: IpAddr,
        import: Option<String>,
        export: Option<String>,
    ) -> Result<(), SpeakerError> {
        self.ask(|reply| CoreMsg::SetPeerPolicy {
            peer,
            import,
            export,
            reply,
        })
        .await?
    }

    /// Originates (or updates) a prefix.
    pub fn originate(&self, prefix: Prefix, attrs: OriginAttrs) -> Result<(), SpeakerError> {
        self.tx
            .send(CoreMsg::Originate(prefix, attrs))
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Withdraws an originated prefix.
    pub fn withdraw(&self, prefix: Prefix) -> Result<(), SpeakerError> {
        self.tx
            .send(CoreMsg::Withdraw(prefix))
            .map_err(|_| SpeakerError::Stopped)
    }

    /// Best-path and multipath changes.
    pub fn subscribe(&self) -> broadcast::Receiver<RibEvent> {
        self.events.subscribe()
    }

    /// A counter bumped on every peer state or RIB change (for state dumps).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// All peers.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, SpeakerError> {
        self.ask(CoreMsg::Peers).await
    }

    /// Loc-RIB size and peers, without walking the RIB.
    pub async fn stats(&self) -> Result<Stats, SpeakerError> {
        self.ask(CoreMsg::Stats).await
    }

    /// The Loc-RIB.
    pub async fn rib(&self) -> Result<Vec<RibEntry>, SpeakerError> {
        self.ask(CoreMsg::Rib).await
    }

    /// One peer's Adj-RIB-In (pre-policy) or Adj-RIB-Out, for
    /// `bgp routes --received-from / --advertised-to`.
    pub async fn adj_rib(&self, peer: IpAddr, dir: AdjRib) -> Result<Vec<RibEntry>, SpeakerError> {
        self.ask(|r| CoreMsg::AdjRib(peer, dir, r)).await?
    }

    /// Stops every peer (Cease/Administrative Shutdown) and the core.
    pub async fn shutdown(&self) -> Result<(), SpeakerError> {
        self.ask(CoreMsg::Shutdown).await
    }
}
