//! Real BGP message captures for the codec tests.
//!
//! [`capture`] builds a three-namespace scenario around one daemon under
//! test (FRR, BIRD or GoBGP): an eBGP and an iBGP counterpart, IPv4+IPv6
//! unicast on each session, 4-octet ASNs, graceful restart, route refresh,
//! extended next hop, communities, large communities, MED, LOCAL_PREF and AS
//! path prepends. tcpdump inside the daemon's namespace records port 179;
//! the daemon is made to send UPDATEs (announce, withdraw, End-of-RIB),
//! ROUTE-REFRESH and a NOTIFICATION. [`write_vectors`] then stores each
//! message the daemon sent as one file plus a `manifest.json`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::bird::Bird;
use crate::frr::Frr;
use crate::gobgp::Gobgp;
use crate::pcap::{self, BgpMessage, Negotiated, OpenCaps};
use crate::router::{AddPath, NeighborConfig, Route, Router, RouterConfig};
use crate::{Daemon, LabError, Netns, veth, wait_for};

/// Daemon under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Frr,
    Bird,
    Gobgp,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Frr => "frr",
            Peer::Bird => "bird",
            Peer::Gobgp => "gobgp",
        }
    }

    pub fn parse(s: &str) -> Option<Peer> {
        match s {
            "frr" => Some(Peer::Frr),
            "bird" => Some(Peer::Bird),
            "gobgp" => Some(Peer::Gobgp),
            _ => None,
        }
    }

    /// Version string of the installed daemon.
    pub fn version(self) -> String {
        let (prog, args): (&str, &[&str]) = match self {
            Peer::Frr => ("/usr/lib/frr/bgpd", &["--version"]),
            Peer::Bird => ("bird", &["--version"]),
            Peer::Gobgp => ("gobgpd", &["--version"]),
        };
        let Ok(out) = std::process::Command::new(prog).args(args).output() else {
            return "unknown".into();
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .next()
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("unknown")
            .to_string()
    }
}

/// One entry of `manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestMessage {
    pub file: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Which session: "ebgp" or "ibgp".
    pub session: String,
}

/// `manifest.json`: decoding context negotiated on the sessions (from both
/// OPENs) and the message files in wire order.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub peer: String,
    pub version: String,
    pub four_octet_as: bool,
    pub add_path_ipv4: bool,
    pub add_path_ipv6: bool,
    pub extended_message: bool,
    pub extended_next_hop_ipv4: bool,
    pub messages: Vec<ManifestMessage>,
}

/// Selects the messages sent from `from` addresses, keeps the first
/// KEEPALIVE of each connection (the rest are identical 19-byte messages),
/// writes `NNN-<type>.bin` files and `manifest.json` into `out` (old `.bin`
/// files there are removed first). Fails if the sessions negotiated
/// different decoding contexts or an OPEN is missing.
pub fn write_vectors(
    msgs: &[BgpMessage],
    from: &[IpAddr],
    out: &Path,
    peer: &str,
    version: &str,
    session_name: &dyn Fn(&BgpMessage) -> String,
) -> Result<Manifest, LabError> {
    std::fs::create_dir_all(out)?;
    for e in std::fs::read_dir(out)?.flatten() {
        if e.path().extension().is_some_and(|x| x == "bin") {
            std::fs::remove_file(e.path())?;
        }
    }
    // Negotiated context per connection, from both OPENs.
    let mut ctx: Option<Negotiated> = None;
    let sent: Vec<&BgpMessage> = msgs.iter().filter(|m| from.contains(&m.src.ip())).collect();
    for open in sent.iter().filter(|m| m.kind() == pcap::OPEN) {
        let Some(mine) = OpenCaps::parse(&open.bytes) else {
            continue;
        };
        let theirs = msgs
            .iter()
            .find(|m| {
                m.kind() == pcap::OPEN
                    && m.src == open.dst
                    && m.dst == open.src
                    && m.connection == open.connection
            })
            .and_then(|m| OpenCaps::parse(&m.bytes))
            .ok_or_else(|| {
                LabError::Other(format!("no OPEN from {} on this connection", open.dst))
            })?;
        let n = Negotiated::from_opens(&mine, &theirs);
        match ctx {
            None => ctx = Some(n),
            Some(c) if c == n => {}
            Some(c) => {
                return Err(LabError::Other(format!(
                    "sessions negotiated different contexts: {c:?} vs {n:?}"
                )));
            }
        }
    }
    let ctx = ctx.ok_or_else(|| LabError::Other(format!("no OPEN sent by {peer}")))?;
    let mut seen_keepalive: Vec<(std::net::SocketAddr, u32)> = Vec::new();
    let mut messages = Vec::new();
    for m in sent {
        if m.kind() == pcap::KEEPALIVE {
            let k = (m.dst, m.connection);
            if seen_keepalive.contains(&k) {
                continue;
            }
            seen_keepalive.push(k);
        }
        let kind = pcap::type_name(m.kind());
        let file = format!(
            "{:03}-{}.bin",
            messages.len() + 1,
            kind.to_ascii_lowercase()
        );
        std::fs::write(out.join(&file), &m.bytes)?;
        messages.push(ManifestMessage {
            file,
            kind: kind.to_string(),
            session: session_name(m),
        });
    }
    let manifest = Manifest {
        peer: peer.to_string(),
        version: version.to_string(),
        four_octet_as: ctx.four_octet_as,
        add_path_ipv4: ctx.add_path_ipv4,
        add_path_ipv6: ctx.add_path_ipv6,
        extended_message: ctx.extended_message,
        extended_next_hop_ipv4: ctx.extended_next_hop_ipv4,
        messages,
    };
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| LabError::Other(format!("manifest: {e}")))?;
    std::fs::write(out.join("manifest.json"), json + "\n")?;
    Ok(manifest)
}

/// Local AS of the daemon under test and its iBGP counterpart: a 4-octet
/// ASN so OPENs carry AS_TRANS and paths need 4-octet encoding.
pub const AS_X: u32 = 4_200_000_001;
/// AS of the eBGP counterpart.
pub const AS_E: u32 = 4_200_000_002;

/// Session addresses: DUT towards eBGP peer, eBGP peer, DUT towards iBGP
/// peer, iBGP peer; `link_local` sessions run over fe80:: with extended
/// next hop (RFC 8950) carrying IPv4.
struct Addrs {
    x_e: &'static str,
    e_x: &'static str,
    x_i: &'static str,
    i_x: &'static str,
    link_local: bool,
}

const V4_SESSIONS: Addrs = Addrs {
    x_e: "10.0.1.1",
    e_x: "10.0.1.2",
    x_i: "10.0.2.1",
    i_x: "10.0.2.2",
    link_local: false,
};

const LL_SESSIONS: Addrs = Addrs {
    x_e: "fe80::1",
    e_x: "fe80::2",
    x_i: "fe80::11",
    i_x: "fe80::12",
    link_local: true,
};

/// What the scenario managed to make the daemon send.
#[derive(Debug, Default)]
pub struct CaptureReport {
    pub pcap: PathBuf,
    pub manifest: Option<Manifest>,
    /// Message kinds the daemon could not be made to send, with why.
    pub missing: Vec<String>,
}

/// The daemon under test, as its concrete type (triggers differ).
enum Dut<'a> {
    Frr(Frr<'a>),
    Bird(Bird<'a>),
    Gobgp(Gobgp<'a>),
}

impl Dut<'_> {
    fn router(&mut self) -> &mut dyn Router {
        match self {
            Dut::Frr(r) => r,
            Dut::Bird(r) => r,
            Dut::Gobgp(r) => r,
        }
    }

    fn route_refresh(&mut self, peer: &str) -> Result<(), LabError> {
        match self {
            Dut::Frr(r) => r.soft_in(peer),
            Dut::Bird(r) => r.reload_in(peer),
            Dut::Gobgp(r) => r.soft_reset_in(peer),
        }
    }

    fn shutdown(&mut self, peer: &str, msg: &str) -> Result<(), LabError> {
        match self {
            Dut::Frr(r) => r.shutdown_neighbor(peer, msg),
            Dut::Bird(r) => r.disable_neighbor(peer, msg),
            Dut::Gobgp(r) => r.disable_neighbor(peer, msg),
        }
    }
}

fn ip(s: &str) -> Result<IpAddr, LabError> {
    s.parse()
        .map_err(|e| LabError::Other(format!("bad address {s}: {e}")))
}

fn v4(s: &str) -> Result<std::net::Ipv4Addr, LabError> {
    s.parse()
        .map_err(|e| LabError::Other(format!("bad address {s}: {e}")))
}

fn neighbor(
    addr: &str,
    asn: u32,
    add_path: bool,
    ifname: Option<&str>,
) -> Result<NeighborConfig, LabError> {
    let mut n = NeighborConfig::new(ip(addr)?, asn);
    n.interface = ifname.map(String::from);
    n.graceful_restart = true;
    n.extended_nexthop = true;
    n.extended_message = true;
    n.add_path = AddPath {
        send: add_path,
        receive: add_path,
    };
    Ok(n)
}

/// Routes the daemon under test originates at start.
fn dut_routes() -> Vec<Route> {
    vec![
        Route {
            prefix: "198.51.100.0/24".into(),
            med: Some(50),
            local_pref: Some(200),
            communities: vec![(65000, 100), (65000, 200)],
            large_communities: vec![(AS_X, 1, 2)],
            prepend: 2,
        },
        Route::new("203.0.113.0/25"),
        Route::new("203.0.113.128/25"),
        Route {
            prefix: "2001:db8:100::/48".into(),
            med: Some(10),
            local_pref: Some(150),
            communities: vec![(65000, 600)],
            large_communities: vec![(AS_X, 6, 6), (AS_X, 6, 7)],
            prepend: 0,
        },
        Route {
            prefix: "2001:db8:200::/56".into(),
            prepend: 1,
            ..Route::default()
        },
        Route::new("2001:db8:201::/64"),
    ]
}

fn start<'a>(kind: Peer, ns: &'a Netns, cfg: RouterConfig) -> Result<Dut<'a>, LabError> {
    Ok(match kind {
        Peer::Frr => Dut::Frr(Frr::start(ns, cfg)?),
        Peer::Bird => Dut::Bird(Bird::start(ns, cfg)?),
        Peer::Gobgp => Dut::Gobgp(Gobgp::start(ns, cfg)?),
    })
}

/// Reads the capture so far (tcpdump writes it packet by packet with -U).
fn read_msgs(pcap_path: &Path) -> Result<Vec<BgpMessage>, LabError> {
    let bytes = std::fs::read(pcap_path)?;
    pcap::bgp_messages(&bytes).map_err(|e| LabError::Other(e.to_string()))
}

fn count_from(pcap_path: &Path, from: &[IpAddr], kind: u8) -> Result<usize, LabError> {
    Ok(read_msgs(pcap_path)?
        .iter()
        .filter(|m| from.contains(&m.src.ip()) && m.kind() == kind)
        .count())
}

/// Runs the scenario for `kind` and writes vectors into `out/<peer>/`.
pub fn capture(kind: Peer, out: &Path) -> Result<CaptureReport, LabError> {
    capture_with(kind, out, kind.name(), &V4_SESSIONS)
}

/// FRR over IPv6 link-local sessions (IPv4 routes with IPv6 next hops,
/// RFC 8950), written to `out/frr-ll/`.
pub fn capture_frr_link_local(out: &Path) -> Result<CaptureReport, LabError> {
    capture_with(Peer::Frr, out, "frr-ll", &LL_SESSIONS)
}

fn capture_with(kind: Peer, out: &Path, name: &str, a: &Addrs) -> Result<CaptureReport, LabError> {
    const T: Duration = Duration::from_secs(30);
    let (x_e, e_x, x_i, i_x) = (a.x_e, a.e_x, a.x_i, a.i_x);
    let dir = out.join(name);
    std::fs::create_dir_all(&dir)?;
    let x = Netns::new("capx")?;
    let e = Netns::new("cape")?;
    let i = Netns::new("capi")?;
    veth(&x, "eth0", &e, "eth0")?;
    veth(&x, "eth1", &i, "eth0")?;
    let plen = if a.link_local { 64 } else { 30 };
    x.addr_add("eth0", &format!("{x_e}/{plen}"))?;
    x.addr_add("eth0", "2001:db8:1::1/64")?;
    e.addr_add("eth0", &format!("{e_x}/{plen}"))?;
    e.addr_add("eth0", "2001:db8:1::2/64")?;
    x.addr_add("eth1", &format!("{x_i}/{plen}"))?;
    x.addr_add("eth1", "2001:db8:2::1/64")?;
    i.addr_add("eth0", &format!("{i_x}/{plen}"))?;
    i.addr_add("eth0", "2001:db8:2::2/64")?;
    let ifs = |n: &'static str| a.link_local.then_some(n);
    let from = vec![ip(x_e)?, ip(x_i)?];

    // tcpdump in the daemon's namespace, on both veths, packet-buffered.
    let work = crate::router::WorkDir::new("capture")?;
    let pcap_path = work.join("session.pcap");
    let mut tcpdump: Daemon = x.spawn(
        x.command("tcpdump")
            .args(["-i", "any", "-U", "-s", "0", "-w"])
            .arg(&pcap_path)
            .args(["tcp", "port", "179"])
            .stdout(std::process::Stdio::null())
            .stderr(crate::router::log_stdio(&work, "tcpdump.err")?),
    )?;
    wait_for("tcpdump listening", Duration::from_secs(10), || {
        Ok(work
            .read("tcpdump.err")
            .contains("listening on")
            .then_some(()))
    })?;

    // Counterparts (eBGP, iBGP). Both sessions of one capture must
    // negotiate the same decoding context, so each daemon under test gets
    // two counterparts of one kind: FRR does not advertise extended next
    // hop on IPv4 sessions while BIRD does.
    let (e_kind, i_kind) = match kind {
        Peer::Frr => (Peer::Bird, Peer::Bird),
        Peer::Bird => (Peer::Frr, Peer::Frr),
        Peer::Gobgp => (Peer::Bird, Peer::Bird),
    };
    // ADD-PATH (both directions, both families) on the GoBGP sessions only,
    // so one capture carries path identifiers and two do not.
    let ap = kind == Peer::Gobgp;
    let e_cfg = RouterConfig::new(v4("192.0.2.2")?, AS_E)
        .neighbor(neighbor(x_e, AS_X, ap, ifs("eth0"))?)
        .originate("100.64.2.0/24")
        .originate("2001:db8:e::/48");
    let i_cfg = RouterConfig::new(v4("192.0.2.3")?, AS_X)
        .neighbor(neighbor(x_i, AS_X, ap, ifs("eth0"))?)
        .originate("100.64.3.0/24")
        .originate("2001:db8:f::/48");
    let mut ec = start(e_kind, &e, e_cfg)?;
    let mut ic = start(i_kind, &i, i_cfg)?;
    let mut x_cfg = RouterConfig::new(v4("192.0.2.1")?, AS_X)
        .neighbor(neighbor(e_x, AS_E, ap, ifs("eth0"))?)
        .neighbor(neighbor(i_x, AS_X, ap, ifs("eth1"))?);
    x_cfg.routes = dut_routes();
    let mut dut = start(kind, &x, x_cfg)?;

    let mut report = CaptureReport::default();
    {
        let r = dut.router();
        r.wait_established(e_x, T)?;
        r.wait_established(i_x, T)?;
        r.wait_route("100.64.2.0/24", T)?;
        r.wait_route("2001:db8:f::/48", T)?;
    }
    // Routes prepended with the shared AS are loops for the iBGP
    // counterpart: only the eBGP one gets them.
    ec.router().wait_route("198.51.100.0/24", T)?;
    ec.router().wait_route("2001:db8:200::/56", T)?;
    for c in [ec.router(), ic.router()] {
        c.wait_route("2001:db8:100::/48", T)?;
        c.wait_route("203.0.113.128/25", T)?;
        c.wait_route("2001:db8:201::/64", T)?;
    }
    // Runtime announcements, then withdrawals (IPv4 withdrawn routes field,
    // IPv6 MP_UNREACH_NLRI).
    dut.router().announce(Route {
        prefix: "192.0.2.128/26".into(),
        communities: vec![(65000, 300)],
        ..Route::default()
    })?;
    dut.router().announce(Route {
        prefix: "2001:db8:300::/48".into(),
        large_communities: vec![(AS_X, 3, 3)],
        med: Some(7),
        ..Route::default()
    })?;
    ec.router().wait_route("192.0.2.128/26", T)?;
    ec.router().wait_route("2001:db8:300::/48", T)?;
    dut.router().withdraw("203.0.113.0/25")?;
    dut.router().withdraw("2001:db8:200::/56")?;
    ec.router().wait_no_route("203.0.113.0/25", T)?;
    ec.router().wait_no_route("2001:db8:200::/56", T)?;
    ic.router().wait_no_route("2001:db8:200::/56", T)?;

    // ROUTE-REFRESH sent by the daemon.
    let rr_before = count_from(&pcap_path, &from, pcap::ROUTE_REFRESH)?;
    dut.route_refresh(e_x)?;
    dut.route_refresh(i_x)?;
    if wait_for(
        "ROUTE-REFRESH from the daemon",
        Duration::from_secs(5),
        || Ok((count_from(&pcap_path, &from, pcap::ROUTE_REFRESH)? > rr_before).then_some(())),
    )
    .is_err()
    {
        report.missing.push(format!(
            "ROUTE-REFRESH: {} sent none after its soft-reset-in command",
            kind.name()
        ));
    }
    // ROUTE-REFRESH towards the daemon: it re-sends its UPDATEs (with
    // BoRR/EoRR if enhanced route refresh was negotiated).
    let up_before = count_from(&pcap_path, &from, pcap::UPDATE)?;
    let _ = ec.route_refresh(x_e);
    let _ = wait_for("UPDATEs after refresh", Duration::from_secs(5), || {
        Ok((count_from(&pcap_path, &from, pcap::UPDATE)? > up_before).then_some(()))
    });

    // NOTIFICATION: administrative shutdown with a message on the eBGP session.
    dut.shutdown(e_x, "flatnet capture: maintenance")?;
    if wait_for(
        "NOTIFICATION from the daemon",
        Duration::from_secs(10),
        || Ok((count_from(&pcap_path, &from, pcap::NOTIFICATION)? > 0).then_some(())),
    )
    .is_err()
    {
        report.missing.push(format!(
            "NOTIFICATION: {} sent none on administrative shutdown",
            kind.name()
        ));
    }
    tcpdump.terminate(Duration::from_secs(5));
    drop(dut);
    drop(ec);
    drop(ic);

    let msgs = read_msgs(&pcap_path)?;
    let xe = ip(x_e)?;
    let session = |m: &BgpMessage| {
        if m.src.ip() == xe {
            "ebgp".to_string()
        } else {
            "ibgp".to_string()
        }
    };
    let manifest = write_vectors(&msgs, &from, &dir, name, &kind.version(), &session)?;
    let dest = dir.join("session.pcap");
    std::fs::copy(&pcap_path, &dest)?;
    for k in [
        "OPEN",
        "KEEPALIVE",
        "UPDATE",
        "ROUTE-REFRESH",
        "NOTIFICATION",
    ] {
        if !manifest.messages.iter().any(|m| m.kind == k)
            && !report.missing.iter().any(|s| s.starts_with(k))
        {
            report.missing.push(format!("{k}: none captured"));
        }
    }
    report.pcap = dest;
    report.manifest = Some(manifest);
    Ok(report)
}
