//! Kernel programming over rtnetlink, one file per kernel subsystem:
//! [`links`] (veth create / delete / list / alias), [`routes`] (host routes,
//! blackholes, dumps), [`netns`] (open a namespace, run on a thread inside
//! it), [`sysctl`], [`container`] (configure and check the container side)
//! and [`attach`] (one attachment built and checked from those). Netfilter
//! is [`crate::netfilter`]'s.
//!
//! One attachment is a veth pair whose host end lives in flatnetd's
//! namespace and whose peer is created directly in the container's
//! namespace, the /32 (/128) and routes on both sides, and the host-end
//! sysctls. Everything an ADD creates hangs off the host veth (the peer,
//! addresses, both sides' routes, neighbour entries), so a failure at any
//! step deletes that one link and nothing of the ADD remains.

mod attach;
mod container;
pub mod gone;
mod links;
mod netns;
mod routes;
mod sysctl;
mod workers;

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use rtnetlink::Handle;

use container::{check_container, configure_container};
use links::{link_mac_bytes, mac_string};
use routes::{dump_routes, route_dst, route_gw, route_oif};
use sysctl::sysctl;

pub use crate::netfilter::ANTISPOOF_CHAIN;
use crate::netfilter::{Family, Netfilter, NfError, antispoof};
pub use links::{get_link, host_ifname, is_flatnet_ifname, valid_ifname};
pub use netns::{container_netns, in_netns, open_netns};
pub use sysctl::read_sysctl;

/// Route protocol number flatnet stamps on every route it installs, so it can
/// recognise (and only ever touch) its own routes. Shown by `ip route` as
/// `proto 200`; add `200 flatnet` to /etc/iproute2/rt_protos for a name.
pub const RTPROT_FLATNET: u8 = 200;
/// The on-link gateway every container uses for IPv4.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The link-local gateway every container uses for IPv6.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// iptables chain (raw table, jumped to first from PREROUTING) holding the
/// Prefix of the alias set on every host-side veth: "flatnet <id> <ifname>".
pub const ALIAS_PREFIX: &str = "flatnet ";

/// Prefix of every flatnet host veth; the anti-spoofing rule matches
/// `-i flat+`, so the prefix is long enough not to catch other interfaces.
pub const HOST_IF_PREFIX: &str = "flat";

/// Deterministic host-side interface name for (container id, ifname):

#[derive(Debug, thiserror::Error)]
pub enum DpError {
    #[error(
        "network namespace {0} does not exist (or is not a network namespace visible to flatnetd)"
    )]
    NetnsNotFound(PathBuf),
    #[error("{0} is not a container's network namespace: {1}")]
    NotContainerNetns(PathBuf, String),
    #[error("cannot open network namespace {0}: {1}")]
    NetnsOpen(PathBuf, std::io::Error),
    #[error("interface {0:?} already exists in the container")]
    IfnameTaken(String),
    #[error("invalid interface name {0:?}: 1 to 15 characters, no '/', ':' or whitespace")]
    BadIfname(String),
    #[error("netlink: {what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("{0}")]
    Io(String),
    #[error("iptables: {0}")]
    Iptables(String),
    #[error("netfilter: {0}")]
    Netfilter(#[from] NfError),
    #[error("check failed: {0}")]
    Check(String),
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> DpError {
    let what = what.into();
    move |source| DpError::Netlink { what, source }
}

/// Positive errno of a netlink error, if it is one.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const ESRCH: i32 = 3;
const ENOENT: i32 = 2;

/// What to build for one attachment.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    pub netns: PathBuf,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Attachment {
    pub fn host_ifname(&self) -> String {
        host_ifname(&self.container_id, &self.ifname)
    }
    fn alias(&self) -> String {
        format!("{ALIAS_PREFIX}{} {}", self.container_id, self.ifname)
    }
}

/// What the kernel ended up with (for the CNI result).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Built {
    pub host_ifname: String,
    pub host_mac: String,
    pub container_mac: String,
    /// Both ends' MTU (`dataplane.mtu`), reported in CNI 1.1 results.
    pub mtu: u32,
}

/// A flatnet host veth found in the kernel.
#[derive(Debug, Clone)]
pub struct FoundLink {
    pub name: String,
    pub index: u32,
    /// (container id, ifname) from the alias, when present.
    pub owner: Option<(String, String)>,
}

/// The kernel side of flatnetd, bound to its (host) namespace.
#[derive(Clone)]
pub struct Dataplane {
    handle: Handle,
    mtu: u32,
    /// The netfilter batch writer (anti-spoofing now, policy next).
    nf: std::sync::Arc<Netfilter>,
    workers: workers::Workers,
    /// RTM_DELLINK announcements of this namespace (fast DEL answers).
    gone: gone::LinkGone,
}

impl Dataplane {
    /// Opens flatnetd's netlink connection (in its own namespace) and applies
    /// the host-wide settings: forwarding and the anti-spoofing chain.
    pub async fn new(mtu: u32, ipv6: bool) -> Result<Dataplane, DpError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| DpError::Io(format!("netlink socket: {e}")))?;
        tokio::spawn(conn);
        let nf = Netfilter::detect().await?;
        let dp = Dataplane {
            handle,
            mtu,
            nf: std::sync::Arc::new(nf),
            workers: workers::Workers::new(),
            gone: gone::LinkGone::start(),
        };
        sysctl::sysctl("net.ipv4.ip_forward", "1")?;
        // Dual-homed hosts: a learned next hop whose fabric link lost
        // carrier is skipped by the kernel at once, not after the BGP hold
        // time (or a graceful-restart stale time) withdraws it.
        sysctl::sysctl("net.ipv4.conf.all.ignore_routes_with_linkdown", "1")?;
        if ipv6 {
            sysctl::sysctl("net.ipv6.conf.all.forwarding", "1")?;
            sysctl::sysctl("net.ipv6.conf.all.ignore_routes_with_linkdown", "1")?;
        }
        // Once at start, one batch per family: an ADD spawns no process.
        antispoof::install(&dp.nf, Family::V4).await?;
        if ipv6 {
            antispoof::install(&dp.nf, Family::V6).await?;
        }
        Ok(dp)
    }

    /// Whether the anti-spoofing rule of the family is installed.
    pub async fn antispoof_present(&self, v6: bool) -> Result<bool, DpError> {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        Ok(antispoof::present(&self.nf, fam).await?)
    }

    /// The netfilter batch writer, for the next users (policy).
    pub fn netfilter(&self) -> &std::sync::Arc<Netfilter> {
        &self.nf
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Builds the attachment; on any failure removes what it created.
    pub async fn add(&self, a: &Attachment) -> Result<Built, DpError> {
        let a = a.clone();
        self.on_own_socket(move |dp| async move { dp.add_here(&a, None).await })
            .await
    }

    /// Builds the host side of an attachment whose veth peer stays in the
    /// host namespace as `peer` for the runtime to move (Docker's model);
    /// on any failure removes what it created.
    pub async fn add_host_pair(&self, a: &Attachment, peer: &str) -> Result<Built, DpError> {
        let (a, peer) = (a.clone(), peer.to_string());
        self.on_own_socket(move |dp| async move { dp.add_here(&a, Some(&peer)).await })
            .await
    }

    /// Runs `f` with a copy of this dataplane bound to a worker's own
    /// netlink socket ([`workers`]): concurrent requests overlap in the
    /// kernel instead of queueing on one socket.
    async fn on_own_socket<T, F, Fut>(&self, f: F) -> Result<T, DpError>
    where
        T: Send + 'static,
        F: FnOnce(Dataplane) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DpError>> + 'static,
    {
        let base = self.clone();
        self.workers
            .run(move |handle| f(Dataplane { handle, ..base }))
            .await
    }

    /// Removes everything of one attachment; succeeds when nothing is left,
    /// including when the container (and so the veth) is already gone.
    /// Deleting the host end deletes the peer and both sides' routes.
    pub async fn del(&self, host_if: &str) -> Result<(), DpError> {
        let host_if = host_if.to_string();
        self.on_own_socket(move |dp| async move { dp.del_here(&host_if).await })
            .await
    }

    /// Whether the container's namespace has an interface named `ifname`
    /// (a second ADD for it must fail: CNI 1.1).
    pub async fn container_has_link(
        &self,
        netns: &std::path::Path,
        ifname: &str,
    ) -> Result<bool, DpError> {
        let ifname = ifname.to_string();
        netns::in_netns(netns, move |h| async move {
            Ok(links::get_link(&h, &ifname).await?.is_some())
        })
        .await
    }

    /// Verifies the attachment against the kernel; the error says what is
    /// missing.
    pub async fn check(&self, a: &Attachment) -> Result<(), DpError> {
        let a = a.clone();
        self.on_own_socket(move |dp| async move { dp.check_here(&a).await })
            .await
    }
}
