//! Kernel programming for one container attachment: a veth pair whose host
//! end lives in flatnetd's namespace and whose peer is created directly in
//! the container's namespace, the /32 (/128) and routes on both sides, the
//! host-end sysctls and source-address anti-spoofing.
//!
//! Everything an ADD creates hangs off the host veth (the peer, addresses,
//! both sides' routes, neighbour entries), so a failure at any step deletes
//! that one link and nothing of the ADD remains.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// Route protocol number flatnet stamps on every route it installs, so it can
/// recognise (and only ever touch) its own routes. Shown by `ip route` as
/// `proto 200`; add `200 flatnet` to /etc/iproute2/rt_protos for a name.
pub const RTPROT_FLATNET: u8 = 200;
/// The on-link gateway every container uses for IPv4.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The link-local gateway every container uses for IPv6.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// iptables chain (raw table, jumped to first from PREROUTING) holding the
/// anti-spoofing rules for every flatnet host veth.
pub const ANTISPOOF_CHAIN: &str = "FLATNET-ANTISPOOF";
/// Prefix of the alias set on every host-side veth: "flatnet <id> <ifname>".
pub const ALIAS_PREFIX: &str = "flatnet ";

/// Prefix of every flatnet host veth; the anti-spoofing rule matches
/// `-i flat+`, so the prefix is long enough not to catch other interfaces.
pub const HOST_IF_PREFIX: &str = "flat";

/// Deterministic host-side interface name for (container id, ifname):
/// `flat` and 9 hex digits of a 64-bit FNV-1a hash. 13 chars fits IFNAMSIZ.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id
        .as_bytes()
        .iter()
        .chain(b"/")
        .chain(ifname.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{HOST_IF_PREFIX}{:09x}", h >> 28)
}

/// Whether `name` has the shape of a flatnet host veth.
pub fn is_flatnet_ifname(name: &str) -> bool {
    name.len() == 13
        && name.starts_with(HOST_IF_PREFIX)
        && name[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug, thiserror::Error)]
pub enum DpError {
    #[error(
        "network namespace {0} does not exist (or is not a network namespace visible to flatnetd)"
    )]
    NetnsNotFound(PathBuf),
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

/// Validates a container interface name as the kernel would.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

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
    ipt_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn mac_string(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn link_mac(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(mac_string(b)),
            _ => None,
        })
        .unwrap_or_default()
}

fn link_mac_bytes(m: &LinkMessage) -> Vec<u8> {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(b.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn link_alias(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(s) => Some(s.clone()),
        _ => None,
    })
}

fn link_is_veth(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))),
        _ => false,
    })
}

fn link_name(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(s) => Some(s.clone()),
        _ => None,
    })
}

/// Looks a link up by name; `Ok(None)` when it does not exist.
pub async fn get_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, DpError> {
    let mut s = handle.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(e) if matches!(errno(&e), Some(ENODEV)) => Ok(None),
        Err(e) => Err(DpError::Netlink {
            what: format!("get link {name}"),
            source: e,
        }),
    }
}

/// Runs `f` with a netlink handle opened inside the namespace at `path`, on a
/// dedicated thread that has joined it (the namespace is per thread; the
/// rest of flatnetd stays in the host namespace).
pub async fn in_netns<T, F, Fut>(path: &Path, f: F) -> Result<T, DpError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, DpError>>,
{
    let ns = open_netns(path)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("flatnet-netns".into())
        .spawn(move || {
            let r = (|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| DpError::Io(format!("setns: {e}")))?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| DpError::Io(format!("runtime: {e}")))?;
                rt.block_on(async move {
                    let (conn, handle, _) = rtnetlink::new_connection()
                        .map_err(|e| DpError::Io(format!("netlink socket: {e}")))?;
                    let task = tokio::spawn(conn);
                    let r = f(handle).await;
                    task.abort();
                    r
                })
            })();
            let _ = tx.send(r);
        })
        .map_err(|e| DpError::Io(format!("spawn thread: {e}")))?;
    rx.await
        .map_err(|_| DpError::Io("namespace worker thread died".into()))?
}

/// Opens a namespace file, telling "gone" apart from other failures.
pub fn open_netns(path: &Path) -> Result<std::fs::File, DpError> {
    let f = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DpError::NetnsNotFound(path.to_path_buf())
        } else {
            DpError::NetnsOpen(path.to_path_buf(), e)
        }
    })?;
    // A path left behind by a deleted namespace (or one whose bind mount
    // lives in another mount namespace) is a plain file: say so.
    match nix::sys::statfs::fstatfs(&f) {
        Ok(st) if st.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => Ok(f),
        Ok(_) => Err(DpError::NetnsNotFound(path.to_path_buf())),
        Err(e) => Err(DpError::NetnsOpen(path.to_path_buf(), e.into())),
    }
}

/// Writes a sysctl through /proc/sys in flatnetd's own (host) namespace.
fn sysctl(key: &str, value: &str) -> Result<(), DpError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| DpError::Io(format!("sysctl {path}={value}: {e}")))
}

/// Reads a sysctl in flatnetd's own namespace.
pub fn read_sysctl(key: &str) -> Result<String, DpError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| DpError::Io(format!("read {path}: {e}")))
}

/// Runs an iptables-family binary and returns (success, stderr).
async fn ipt(bin: &str, args: &[&str]) -> Result<(bool, String), DpError> {
    let out = tokio::process::Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| DpError::Iptables(format!("cannot run {bin}: {e}")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string()
            + &String::from_utf8_lossy(&out.stdout),
    ))
}

fn ipt_bin(v6: bool) -> &'static str {
    if v6 { "ip6tables" } else { "iptables" }
}

/// The anti-spoofing rule, identical for every veth: a packet arriving on a
/// flatnet veth must have a source whose route points back out of that same
/// veth. The only such routes are the container's own /32 and /128, so any
/// other source (another container's address, an unallocated address of the
/// block — blackholed —, anything outside) is dropped before routing.
const RPF_RULE: [&str; 7] = ["-i", "flat+", "-m", "rpfilter", "--invert", "-j", "DROP"];

fn rpf_rule() -> Vec<&'static str> {
    RPF_RULE.to_vec()
}

impl Dataplane {
    /// Opens flatnetd's netlink connection (in its own namespace) and applies
    /// the host-wide settings: forwarding and the anti-spoofing chain.
    pub async fn new(mtu: u32, ipv6: bool) -> Result<Dataplane, DpError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| DpError::Io(format!("netlink socket: {e}")))?;
        tokio::spawn(conn);
        let dp = Dataplane {
            handle,
            mtu,
            ipt_lock: Default::default(),
        };
        sysctl("net.ipv4.ip_forward", "1")?;
        if ipv6 {
            sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        dp.ensure_chain(false).await?;
        if ipv6 {
            dp.ensure_chain(true).await?;
        }
        Ok(dp)
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Appends `rule` to `chain` unless an identical rule is there.
    async fn ensure_rule(&self, bin: &str, chain: &str, rule: &[&str]) -> Result<(), DpError> {
        let mut check = vec!["-w", "-t", "raw", "-C", chain];
        check.extend_from_slice(rule);
        if ipt(bin, &check).await?.0 {
            return Ok(());
        }
        let mut add = vec!["-w", "-t", "raw", "-A", chain];
        add.extend_from_slice(rule);
        let (ok, err) = ipt(bin, &add).await?;
        if !ok {
            return Err(DpError::Iptables(format!("{bin} {}: {err}", add.join(" "))));
        }
        Ok(())
    }

    /// Creates the raw-table chain, its jump from PREROUTING and the
    /// anti-spoofing rule (idempotent; done once at start, so an ADD spawns
    /// no iptables process at all).
    async fn ensure_chain(&self, v6: bool) -> Result<(), DpError> {
        let _g = self.ipt_lock.lock().await;
        let bin = ipt_bin(v6);
        let (ok, err) = ipt(bin, &["-w", "-t", "raw", "-N", ANTISPOOF_CHAIN]).await?;
        if !ok && !err.contains("exists") {
            return Err(DpError::Iptables(format!(
                "{bin} -N {ANTISPOOF_CHAIN}: {err}"
            )));
        }
        let jump = ["-w", "-t", "raw", "-C", "PREROUTING", "-j", ANTISPOOF_CHAIN];
        if !ipt(bin, &jump).await?.0 {
            let ins = [
                "-w",
                "-t",
                "raw",
                "-I",
                "PREROUTING",
                "1",
                "-j",
                ANTISPOOF_CHAIN,
            ];
            let (ok, err) = ipt(bin, &ins).await?;
            if !ok {
                return Err(DpError::Iptables(format!("{bin} -I PREROUTING: {err}")));
            }
        }
        if v6 {
            // NDP and DAD from the container's link-local or unspecified
            // source pass before the reverse-path check.
            for src in ["fe80::/10", "::/128"] {
                self.ensure_rule(
                    bin,
                    ANTISPOOF_CHAIN,
                    &["-i", "flat+", "-s", src, "-j", "RETURN"],
                )
                .await?;
            }
        }
        self.ensure_rule(bin, ANTISPOOF_CHAIN, &rpf_rule()).await
    }

    /// Whether the anti-spoofing rule of the family is installed.
    pub async fn antispoof_present(&self, v6: bool) -> Result<bool, DpError> {
        let _g = self.ipt_lock.lock().await;
        let mut check = vec!["-w", "-t", "raw", "-C", ANTISPOOF_CHAIN];
        check.extend(rpf_rule());
        Ok(ipt(ipt_bin(v6), &check).await?.0)
    }

    /// Builds the attachment; on any failure removes what it created.
    pub async fn add(&self, a: &Attachment) -> Result<Built, DpError> {
        let a = a.clone();
        self.on_own_socket(move |dp| async move { dp.add_here(&a).await })
            .await
    }

    /// Runs `f` with a copy of this dataplane bound to a fresh netlink socket
    /// on a thread of its own (still in flatnetd's namespace). The kernel
    /// does a request's work inside sendmsg, so one shared socket would
    /// serialise every concurrent ADD/DEL (a veth deletion alone waits for
    /// RCU); separate sockets let the kernel overlap what it can.
    async fn on_own_socket<T, F, Fut>(&self, f: F) -> Result<T, DpError>
    where
        T: Send + 'static,
        F: FnOnce(Dataplane) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DpError>>,
    {
        let base = self.clone();
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| DpError::Io(format!("runtime: {e}")))?;
            rt.block_on(async move {
                let (conn, handle, _) = rtnetlink::new_connection()
                    .map_err(|e| DpError::Io(format!("netlink socket: {e}")))?;
                let task = tokio::spawn(conn);
                let dp = Dataplane { handle, ..base };
                let r = f(dp).await;
                task.abort();
                r
            })
        })
        .await
        .map_err(|e| DpError::Io(format!("dataplane worker: {e}")))?
    }

    async fn add_here(&self, a: &Attachment) -> Result<Built, DpError> {
        if !valid_ifname(&a.ifname) {
            return Err(DpError::BadIfname(a.ifname.clone()));
        }
        let mut created = None;
        match self.add_inner(a, &mut created).await {
            Ok(b) => Ok(b),
            Err(e) => {
                // Deleting the host end takes the peer, addresses and both
                // sides' routes with it: nothing of this ADD remains.
                if let Some(name) = created
                    && let Err(err) = self.del_link(&name).await
                {
                    tracing::warn!(%name, %err, "rollback: delete veth failed");
                }
                Err(e)
            }
        }
    }

    async fn add_inner(
        &self,
        a: &Attachment,
        created: &mut Option<String>,
    ) -> Result<Built, DpError> {
        let host_if = a.host_ifname();
        let ns = open_netns(&a.netns)?;
        let peer = LinkUnspec::new_with_name(&a.ifname)
            .mtu(self.mtu)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(&host_if, &a.ifname)
            .mtu(self.mtu)
            .alias(a.alias())
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        // EEXIST does not say which side collided. A host end of ours (a DEL's
        // veth still waiting for the reaper, or a crash leftover) is dead
        // weight: delete it and try once more. Only a clash inside the
        // container is "interface name taken".
        let mut retried = false;
        loop {
            match self.handle.link().add(msg.clone()).execute().await {
                Ok(()) => break,
                Err(e) if errno(&e) == Some(EEXIST) => {
                    if !retried && self.remove_stale_host_end(a, &host_if).await? {
                        retried = true;
                        continue;
                    }
                    return Err(self.diagnose_eexist(a, &host_if).await);
                }
                Err(e) => return Err(nl(format!("create veth {host_if}"))(e)),
            }
        }
        drop(ns);
        *created = Some(host_if.clone());
        let host = get_link(&self.handle, &host_if)
            .await?
            .ok_or_else(|| DpError::Io(format!("veth {host_if} vanished after creation")))?;
        let host_index = host.header.index;
        let host_mac = link_mac_bytes(&host);

        // Host-end sysctls before the route, so the first packet finds them.
        sysctl(&format!("net.ipv4.conf.{host_if}.proxy_arp"), "1")?;
        sysctl(&format!("net.ipv4.neigh.{host_if}.proxy_delay"), "0")?;
        sysctl(&format!("net.ipv4.conf.{host_if}.rp_filter"), "1")?;
        if a.v6.is_some() {
            sysctl(&format!("net.ipv6.conf.{host_if}.proxy_ndp"), "1")?;
            sysctl(&format!("net.ipv6.conf.{host_if}.forwarding"), "1")?;
        }

        // The container side, on a thread inside its namespace.
        let (ifname, v4, v6, mac) = (a.ifname.clone(), a.v4, a.v6, host_mac.clone());
        let container_mac = in_netns(&a.netns, move |h| async move {
            configure_container(&h, &ifname, v4, v6, &mac).await
        })
        .await?;

        if a.v6.is_some() {
            // The container's gateway fe80::1 answers NDP from the host end.
            let mut req = self
                .handle
                .address()
                .add(host_index, IpAddr::V6(GATEWAY_V6), 64)
                .replace();
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            req.execute()
                .await
                .map_err(nl("add fe80::1 to host veth"))?;
        }
        // Routes go away with the link, so the link undo covers them.
        if let Some(v4) = a.v4 {
            let r = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .output_interface(host_index)
                .scope(RouteScope::Link)
                .protocol(RouteProtocol::Other(RTPROT_FLATNET))
                .build();
            self.handle
                .route()
                .add(r)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("route {v4}/32 dev {host_if}")))?;
        }
        if let Some(v6) = a.v6 {
            let r = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .output_interface(host_index)
                .protocol(RouteProtocol::Other(RTPROT_FLATNET))
                .build();
            self.handle
                .route()
                .add(r)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("route {v6}/128 dev {host_if}")))?;
        }
        Ok(Built {
            host_ifname: host_if,
            host_mac: mac_string(&host_mac),
            container_mac,
        })
    }

    /// Deletes the host-side link named `host_if` when it is a dead veth of
    /// this very attachment; `Ok(false)` when there is none (or it is not
    /// ours to delete). No live record can own it: the alias names this
    /// attachment, whose record the daemon has checked or removed under the
    /// attachment's lock before building, so it is a veth a DEL detached
    /// (queued for the reaper, which deletes by index and tolerates it being
    /// gone) or an interrupted ADD / crash left behind.
    async fn remove_stale_host_end(&self, a: &Attachment, host_if: &str) -> Result<bool, DpError> {
        let Some(old) = get_link(&self.handle, host_if).await? else {
            return Ok(false);
        };
        if !link_is_veth(&old) || link_alias(&old).is_some_and(|al| al != a.alias()) {
            return Ok(false);
        }
        tracing::debug!(%host_if, index = old.header.index, "deleting stale host veth before re-creating it");
        match self.handle.link().del(old.header.index).execute().await {
            Ok(()) => Ok(true),
            // The reaper got there first: the name is free now.
            Err(e) if errno(&e) == Some(ENODEV) => Ok(true),
            Err(e) => Err(nl(format!("delete stale veth {host_if}"))(e)),
        }
    }

    /// Names the side an EEXIST came from (after any stale host end of ours
    /// was removed): the container's ifname, or a host link we must not touch.
    async fn diagnose_eexist(&self, a: &Attachment, host_if: &str) -> DpError {
        let ifname = a.ifname.clone();
        let in_container = in_netns(&a.netns, move |h| async move {
            Ok(get_link(&h, &ifname).await?.is_some())
        })
        .await;
        match in_container {
            Ok(true) => return DpError::IfnameTaken(a.ifname.clone()),
            Ok(false) => {}
            Err(e) => return e,
        }
        match get_link(&self.handle, host_if).await {
            Ok(Some(l)) => DpError::Io(format!(
                "host interface name {host_if} is already used by {} (alias {:?})",
                if link_is_veth(&l) {
                    "a veth"
                } else {
                    "a non-veth link"
                },
                link_alias(&l)
            )),
            Ok(None) => DpError::Io(format!(
                "creating veth {host_if} / {} failed with EEXIST, but neither name exists now",
                a.ifname
            )),
            Err(e) => e,
        }
    }

    async fn del_link(&self, name: &str) -> Result<bool, DpError> {
        let Some(l) = get_link(&self.handle, name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(l.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(e) => Err(nl(format!("delete link {name}"))(e)),
        }
    }

    /// Removes everything of one attachment; succeeds when nothing is left,
    /// including when the container (and so the veth) is already gone.
    /// Deleting the host end deletes the peer and both sides' routes.
    pub async fn del(&self, host_if: &str) -> Result<(), DpError> {
        let host_if = host_if.to_string();
        self.on_own_socket(move |dp| async move { dp.del_here(&host_if).await })
            .await
    }

    async fn del_here(&self, host_if: &str) -> Result<(), DpError> {
        self.del_link(host_if).await.map(|_| ())
    }

    /// Makes an attachment inert without waiting for the veth deletion's
    /// RCU grace periods: removes the host routes to its addresses (the
    /// kernel answers at once), so nothing reaches the container any more
    /// and, by the reverse-path anti-spoofing rule, nothing it sends is
    /// accepted. Returns the host end's index for [`Dataplane::del_index`]
    /// (`None` when the veth is already gone, e.g. with its namespace).
    pub async fn detach(
        &self,
        host_if: &str,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Result<Option<u32>, DpError> {
        let Some(l) = get_link(&self.handle, host_if).await? else {
            return Ok(None);
        };
        let index = l.header.index;
        let mut msgs = Vec::new();
        if let Some(v4) = v4 {
            msgs.push(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(v4, 32)
                    .output_interface(index)
                    .protocol(RouteProtocol::Other(RTPROT_FLATNET))
                    .build(),
            );
        }
        if let Some(v6) = v6 {
            msgs.push(
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(v6, 128)
                    .output_interface(index)
                    .protocol(RouteProtocol::Other(RTPROT_FLATNET))
                    .build(),
            );
        }
        for m in msgs {
            match self.handle.route().del(m).execute().await {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(ESRCH) | Some(ENOENT) | Some(ENODEV)) => {}
                Err(e) => return Err(nl(format!("delete host route via {host_if}"))(e)),
            }
        }
        Ok(Some(index))
    }

    /// Deletes links by index (each veth pair goes with its host end);
    /// links already gone are fine. By index, not name: a new ADD of the
    /// same attachment may have re-created the name meanwhile. Several links
    /// are deleted in one kernel batch (tagged with a fresh device group,
    /// then one group delete): the RCU waits of a deletion are paid once per
    /// batch and the rtnl lock is taken once, not once per veth.
    pub async fn del_indexes(&self, indexes: Vec<u32>) -> Result<(), DpError> {
        static NEXT_GROUP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        self.on_own_socket(move |dp| async move {
            let h = &dp.handle;
            let gone = |e: &rtnetlink::Error| errno(e) == Some(ENODEV);
            if let [index] = indexes[..] {
                return match h.link().del(index).execute().await {
                    Err(e) if !gone(&e) => Err(nl(format!("delete link #{index}"))(e)),
                    _ => Ok(()),
                };
            }
            // Groups 0x464c0000.. ("FL"): only flatnet's detached veths carry them.
            let group = 0x464c_0000
                | (NEXT_GROUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff);
            let mut tagged = 0;
            for &index in &indexes {
                let msg = LinkUnspec::new_with_index(index).link_group(group).build();
                match h.link().set(msg).execute().await {
                    Ok(()) => tagged += 1,
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(nl(format!("tag link #{index}"))(e)),
                }
            }
            if tagged == 0 {
                return Ok(());
            }
            let mut req = h.link().del(0);
            req.message_mut()
                .attributes
                .push(LinkAttribute::Group(group));
            match req.execute().await {
                Err(e) if !gone(&e) => Err(nl(format!("delete link group {group:#x}"))(e)),
                _ => Ok(()),
            }
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

    async fn check_here(&self, a: &Attachment) -> Result<(), DpError> {
        let host_if = a.host_ifname();
        let host = get_link(&self.handle, &host_if)
            .await?
            .ok_or_else(|| DpError::Check(format!("host veth {host_if} is missing")))?;
        if !host.header.flags.contains(LinkFlags::Up) {
            return Err(DpError::Check(format!("host veth {host_if} is down")));
        }
        if read_sysctl(&format!("net.ipv4.conf.{host_if}.proxy_arp"))? != "1" {
            return Err(DpError::Check(format!("proxy_arp is off on {host_if}")));
        }
        let idx = host.header.index;
        for addr in [a.v4.map(IpAddr::V4), a.v6.map(IpAddr::V6)]
            .into_iter()
            .flatten()
        {
            if !self.host_route_present(addr, idx).await? {
                return Err(DpError::Check(format!(
                    "host route {addr} dev {host_if} is missing"
                )));
            }
            if !self.antispoof_present(addr.is_ipv6()).await? {
                return Err(DpError::Check(format!(
                    "anti-spoofing rule ({} raw {ANTISPOOF_CHAIN}) is missing",
                    ipt_bin(addr.is_ipv6())
                )));
            }
        }
        let (ifname, v4, v6) = (a.ifname.clone(), a.v4, a.v6);
        in_netns(&a.netns, move |h| async move {
            check_container(&h, &ifname, v4, v6).await
        })
        .await
    }

    async fn host_route_present(&self, addr: IpAddr, oif: u32) -> Result<bool, DpError> {
        let routes = dump_routes(&self.handle, addr.is_ipv6()).await?;
        let plen = if addr.is_ipv4() { 32 } else { 128 };
        Ok(routes.iter().any(|r| {
            r.header.destination_prefix_length == plen
                && route_dst(r) == Some(addr)
                && route_oif(r) == Some(oif)
        }))
    }

    /// Installs (idempotently) the blackhole route for a block this host owns.
    pub async fn ensure_blackhole(&self, block: ipnetwork::IpNetwork) -> Result<(), DpError> {
        self.handle
            .route()
            .add(blackhole_msg(block))
            .replace()
            .execute()
            .await
            .map_err(nl(format!("blackhole {block}")))
    }

    /// Removes a block's blackhole route (when the block is released).
    pub async fn remove_blackhole(&self, block: ipnetwork::IpNetwork) -> Result<(), DpError> {
        match self
            .handle
            .route()
            .del(blackhole_msg(block))
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(ESRCH) | Some(ENOENT)) => Ok(()),
            Err(e) => Err(nl(format!("delete blackhole {block}"))(e)),
        }
    }

    /// The blackhole routes flatnet installed (its protocol number), both
    /// families: what a previous run left for its blocks.
    pub async fn list_blackholes(&self) -> Result<Vec<ipnetwork::IpNetwork>, DpError> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            for r in dump_routes(&self.handle, v6).await? {
                if r.header.kind != RouteType::BlackHole
                    || r.header.protocol != RouteProtocol::Other(RTPROT_FLATNET)
                {
                    continue;
                }
                let dst = route_dst(&r).unwrap_or(if v6 {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                });
                if let Ok(n) = ipnetwork::IpNetwork::new(dst, r.header.destination_prefix_length) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// Every flatnet host veth in this namespace.
    pub async fn list_links(&self) -> Result<Vec<FoundLink>, DpError> {
        let mut s = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("dump links"))? {
            let Some(name) = link_name(&m) else { continue };
            if !is_flatnet_ifname(&name) {
                continue;
            }
            let owner = link_alias(&m).and_then(|a| {
                let rest = a.strip_prefix(ALIAS_PREFIX)?;
                let (id, ifn) = rest.split_once(' ')?;
                Some((id.to_string(), ifn.to_string()))
            });
            out.push(FoundLink {
                name,
                index: m.header.index,
                owner,
            });
        }
        Ok(out)
    }

    /// MACs of an existing attachment (for answering a repeated ADD).
    pub async fn macs(&self, a: &Attachment) -> Result<Built, DpError> {
        let host_if = a.host_ifname();
        let host = get_link(&self.handle, &host_if)
            .await?
            .ok_or_else(|| DpError::Check(format!("host veth {host_if} is missing")))?;
        let ifname = a.ifname.clone();
        let container_mac = in_netns(&a.netns, move |h| async move {
            let l = get_link(&h, &ifname)
                .await?
                .ok_or_else(|| DpError::Check(format!("{ifname} missing in container")))?;
            Ok(link_mac(&l))
        })
        .await?;
        Ok(Built {
            host_ifname: host_if,
            host_mac: link_mac(&host),
            container_mac,
        })
    }
}

/// The blackhole route of a block, either family.
fn blackhole_msg(block: ipnetwork::IpNetwork) -> RouteMessage {
    match block {
        ipnetwork::IpNetwork::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.network(), n.prefix())
            .kind(RouteType::BlackHole)
            .protocol(RouteProtocol::Other(RTPROT_FLATNET))
            .build(),
        ipnetwork::IpNetwork::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(n.network(), n.prefix())
            .kind(RouteType::BlackHole)
            .protocol(RouteProtocol::Other(RTPROT_FLATNET))
            .build(),
    }
}

async fn dump_routes(h: &Handle, v6: bool) -> Result<Vec<RouteMessage>, DpError> {
    let msg = if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    };
    h.route()
        .get(msg)
        .execute()
        .try_collect()
        .await
        .map_err(nl("dump routes"))
}

fn route_dst(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v)) => Some(IpAddr::V4(*v)),
        RouteAttribute::Destination(RouteAddress::Inet6(v)) => Some(IpAddr::V6(*v)),
        _ => None,
    })
}

fn route_gw(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(v)) => Some(IpAddr::V4(*v)),
        RouteAttribute::Gateway(RouteAddress::Inet6(v)) => Some(IpAddr::V6(*v)),
        _ => None,
    })
}

fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// Inside the container: lo and the interface up, the addresses, the
/// on-link gateway (with a permanent neighbour entry for it, so the first
/// packet does not wait for ARP/NDP) and the default routes.
async fn configure_container(
    h: &Handle,
    ifname: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    host_mac: &[u8],
) -> Result<String, DpError> {
    let lo = get_link(h, "lo")
        .await?
        .ok_or_else(|| DpError::Io("no lo in container".into()))?;
    if !lo.header.flags.contains(LinkFlags::Up) {
        h.link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(nl("set lo up"))?;
    }
    let l = get_link(h, ifname)
        .await?
        .ok_or_else(|| DpError::Io(format!("{ifname} missing in container after creation")))?;
    let idx = l.header.index;
    if let Some(v6) = v6 {
        let mut req = h.address().add(idx, IpAddr::V6(v6), 128);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.execute().await.map_err(nl(format!("add {v6}/128")))?;
    }
    if let Some(v4) = v4 {
        h.address()
            .add(idx, IpAddr::V4(v4), 32)
            .execute()
            .await
            .map_err(nl(format!("add {v4}/32")))?;
    }
    if !l.header.flags.contains(LinkFlags::Up) {
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(nl(format!("set {ifname} up")))?;
    }
    if v4.is_some() {
        h.neighbours()
            .add(idx, IpAddr::V4(GATEWAY_V4))
            .link_layer_address(host_mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl("neighbour 169.254.1.1"))?;
        let gw = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(GATEWAY_V4, 32)
            .output_interface(idx)
            .scope(RouteScope::Link)
            .build();
        h.route()
            .add(gw)
            .replace()
            .execute()
            .await
            .map_err(nl("route 169.254.1.1 scope link"))?;
        let def = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(GATEWAY_V4)
            .output_interface(idx)
            .onlink()
            .build();
        h.route()
            .add(def)
            .replace()
            .execute()
            .await
            .map_err(nl("default route via 169.254.1.1"))?;
    }
    if v6.is_some() {
        h.neighbours()
            .add(idx, IpAddr::V6(GATEWAY_V6))
            .link_layer_address(host_mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl("neighbour fe80::1"))?;
        let def = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(GATEWAY_V6)
            .output_interface(idx)
            .build();
        h.route()
            .add(def)
            .replace()
            .execute()
            .await
            .map_err(nl("default route via fe80::1"))?;
    }
    Ok(link_mac(&l))
}

async fn check_container(
    h: &Handle,
    ifname: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
) -> Result<(), DpError> {
    let l = get_link(h, ifname)
        .await?
        .ok_or_else(|| DpError::Check(format!("interface {ifname} is missing in the container")))?;
    if !l.header.flags.contains(LinkFlags::Up) {
        return Err(DpError::Check(format!("interface {ifname} is down")));
    }
    let idx = l.header.index;
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(idx)
        .execute()
        .try_collect()
        .await
        .map_err(nl("dump addresses"))?;
    let has = |ip: IpAddr, plen: u8| {
        addrs.iter().any(|m| {
            m.header.prefix_len == plen
                && m.attributes.iter().any(|a| {
                    matches!(a, AddressAttribute::Address(x) | AddressAttribute::Local(x) if *x == ip)
                })
        })
    };
    if let Some(v4) = v4 {
        if !has(IpAddr::V4(v4), 32) {
            return Err(DpError::Check(format!(
                "address {v4}/32 missing on {ifname}"
            )));
        }
        let routes = dump_routes(h, false).await?;
        let gw = routes.iter().any(|r| {
            r.header.destination_prefix_length == 32
                && route_dst(r) == Some(IpAddr::V4(GATEWAY_V4))
                && route_oif(r) == Some(idx)
        });
        if !gw {
            return Err(DpError::Check(format!(
                "route {GATEWAY_V4} dev {ifname} is missing in the container"
            )));
        }
        let def = routes.iter().any(|r| {
            r.header.destination_prefix_length == 0
                && route_gw(r) == Some(IpAddr::V4(GATEWAY_V4))
                && route_oif(r) == Some(idx)
        });
        if !def {
            return Err(DpError::Check(format!(
                "default route via {GATEWAY_V4} dev {ifname} is missing in the container"
            )));
        }
    }
    if let Some(v6) = v6 {
        if !has(IpAddr::V6(v6), 128) {
            return Err(DpError::Check(format!(
                "address {v6}/128 missing on {ifname}"
            )));
        }
        let routes = dump_routes(h, true).await?;
        let def = routes.iter().any(|r| {
            r.header.destination_prefix_length == 0
                && route_gw(r) == Some(IpAddr::V6(GATEWAY_V6))
                && route_oif(r) == Some(idx)
        });
        if !def {
            return Err(DpError::Check(format!(
                "default route via {GATEWAY_V6} dev {ifname} is missing in the container"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_deterministic_and_short() {
        let a = host_ifname("abc123", "eth0");
        assert_eq!(a, host_ifname("abc123", "eth0"));
        assert_ne!(a, host_ifname("abc123", "eth1"));
        assert_ne!(a, host_ifname("abc124", "eth0"));
        assert_eq!(a.len(), 13);
        assert!(is_flatnet_ifname(&a));
        assert!(!is_flatnet_ifname("eth0"));
        assert!(!is_flatnet_ifname("flzzzzzzzzzzz"));
    }

    #[test]
    fn ifname_validation() {
        assert!(valid_ifname("eth0"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("0123456789abcdef"));
        assert!(!valid_ifname(".."));
    }
}
