//! FRR 8.4 (zebra + bgpd) as a lab router inside one namespace.
//!
//! Each instance has its own directory (owned by `frr`) for config, pid
//! files, the zserv socket and the vty sockets, so several instances run side
//! by side. Daemons run in the foreground as user `frr` (root is not in
//! `frrvty`), so the [`Daemon`] guard holds their real PIDs.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::router::{
    BgpState, Capabilities, Family, NeighborConfig, NeighborStatus, RibEntry, Route, Router,
    RouterConfig, RouterDaemons, WorkDir, log_stdio, parse_as_path, parse_ip, stdout_string,
};
use crate::{Daemon, Daemons, LabError, Netns, wait_for};

const ZEBRA: &str = "/usr/lib/frr/zebra";
const BGPD: &str = "/usr/lib/frr/bgpd";

/// A running FRR instance (zebra + bgpd) in a lab namespace.
pub struct Frr<'a> {
    ns: &'a Netns,
    dir: WorkDir,
    cfg: RouterConfig,
    /// zebra, then bgpd.
    daemons: Daemons,
    /// bgpd installs its best paths into the kernel (off: `bgpd -n`).
    fib: bool,
}

impl<'a> Frr<'a> {
    /// Writes the config and starts zebra and bgpd; returns once bgpd's vty
    /// answers.
    pub fn start(ns: &'a Netns, cfg: RouterConfig) -> Result<Self, LabError> {
        Self::start_with(ns, cfg, true)
    }

    /// Like [`Frr::start`], with bgpd not installing routes into the kernel
    /// (`-n`): the table stays in the control plane, as the feed benchmark
    /// compares it with BIRD, GoBGP and flatnet.
    pub fn start_without_fib(ns: &'a Netns, cfg: RouterConfig) -> Result<Self, LabError> {
        Self::start_with(ns, cfg, false)
    }

    fn start_with(ns: &'a Netns, cfg: RouterConfig, fib: bool) -> Result<Self, LabError> {
        let dir = WorkDir::new("frr")?;
        chown_frr(dir.path())?;
        let mut f = Frr {
            ns,
            dir,
            cfg,
            daemons: Daemons::default(),
            fib,
        };
        f.launch()?;
        Ok(f)
    }

    /// Starts one FRR daemon (`name` is its config, pid and log stem)
    /// talking to zebra over `zserv`.
    fn spawn_daemon(
        &self,
        bin: &str,
        name: &str,
        extra: &[&str],
        zserv: &str,
    ) -> Result<Daemon, LabError> {
        let d = self.dir.file("");
        let d = d.trim_end_matches('/');
        let log = format!("{name}.out");
        self.ns.spawn(
            self.ns
                .command(bin)
                .args(extra)
                .args(["-u", "frr", "-g", "frr", "-f"])
                .arg(format!("{d}/{name}.conf"))
                .arg("-i")
                .arg(format!("{d}/{name}.pid"))
                .args(["--vty_socket", d, "-z", zserv])
                .stdout(log_stdio(&self.dir, &log)?)
                .stderr(log_stdio(&self.dir, &log)?),
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn with_logs(&self, e: LabError) -> LabError {
        LabError::Other(format!(
            "{e}\nzebra: {}\nbgpd: {}",
            self.dir.read("zebra.out"),
            self.dir.read("bgpd.out")
        ))
    }

    /// Runs vtysh commands (each one a `-c`) against this instance.
    pub fn vtysh(&self, cmds: &[&str]) -> Result<String, LabError> {
        let d = self.dir.file("");
        let d = d.trim_end_matches('/');
        let mut c = self.ns.command("vtysh");
        c.args(["--vty_socket", d, "--config_dir", d]);
        for cmd in cmds {
            c.arg("-c").arg(cmd);
        }
        let out = crate::run(&mut c)?;
        let s = stdout_string(&out);
        // vtysh exits 0 on some command errors; catch the usual markers.
        if s.contains("% Unknown command") || s.contains("% Invalid input") {
            return Err(LabError::Other(format!("vtysh {cmds:?}: {s}")));
        }
        Ok(s)
    }

    /// Runs a vtysh `show ... json` command and parses its output.
    pub fn vtysh_json(&self, cmd: &str) -> Result<Value, LabError> {
        let s = self.vtysh(&[cmd])?;
        serde_json::from_str(&s).map_err(|e| LabError::Other(format!("{cmd}: bad JSON ({e}): {s}")))
    }

    /// Applies configuration lines inside `router bgp`.
    pub fn configure_bgp(&self, lines: &[&str]) -> Result<String, LabError> {
        let head = format!("router bgp {}", self.cfg.local_as);
        let mut cmds = vec!["configure terminal", head.as_str()];
        cmds.extend_from_slice(lines);
        self.vtysh(&cmds)
    }

    /// Administratively shuts a neighbor down with a message: FRR sends a
    /// NOTIFICATION Cease/Administrative Shutdown carrying it (RFC 8203).
    pub fn shutdown_neighbor(&self, peer: &str, message: &str) -> Result<(), LabError> {
        self.configure_bgp(&[&format!("neighbor {peer} shutdown message {message}")])?;
        Ok(())
    }

    /// Undoes [`Frr::shutdown_neighbor`].
    pub fn no_shutdown_neighbor(&self, peer: &str) -> Result<(), LabError> {
        self.configure_bgp(&[&format!("no neighbor {peer} shutdown")])?;
        Ok(())
    }

    /// `clear bgp <peer> soft in`: sends ROUTE-REFRESH to the peer.
    pub fn soft_in(&self, peer: &str) -> Result<(), LabError> {
        self.vtysh(&[&format!("clear bgp {peer} soft in")])?;
        Ok(())
    }
}

impl RouterDaemons for Frr<'_> {
    fn daemons(&mut self) -> &mut Daemons {
        &mut self.daemons
    }

    fn launch(&mut self) -> Result<(), LabError> {
        let d = self.dir.file("");
        let d = d.trim_end_matches('/').to_string();
        std::fs::write(
            self.dir.join("zebra.conf"),
            format!("hostname zebra\nlog file {d}/zebra.log\n"),
        )?;
        std::fs::write(self.dir.join("bgpd.conf"), render_bgpd(&self.cfg, &d))?;
        std::fs::write(self.dir.join("vtysh.conf"), "")?;
        for name in ["zebra.conf", "bgpd.conf", "vtysh.conf"] {
            chown_frr(&self.dir.join(name))?;
        }
        for stale in ["zserv.api", "zebra.vty", "bgpd.vty"] {
            let _ = std::fs::remove_file(self.dir.join(stale));
        }
        let zserv = format!("{d}/zserv.api");
        let zebra = self.spawn_daemon(ZEBRA, "zebra", &[], &zserv)?;
        self.daemons.push(zebra);
        let zpath = self.dir.join("zserv.api");
        wait_for("zebra zserv socket", Duration::from_secs(10), || {
            Ok(zpath.exists().then_some(()))
        })
        .map_err(|e| self.with_logs(e))?;
        let no_fib: &[&str] = if self.fib { &[] } else { &["-n"] };
        let bgpd = self.spawn_daemon(BGPD, "bgpd", no_fib, &zserv)?;
        self.daemons.push(bgpd);
        wait_for("bgpd vty", Duration::from_secs(10), || {
            Ok(self.vtysh(&["show bgp summary json"]).ok().map(|_| ()))
        })
        .map_err(|e| self.with_logs(e))?;
        Ok(())
    }
}

impl Router for Frr<'_> {
    fn kind(&self) -> &'static str {
        "frr"
    }

    fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    fn neighbors(&self) -> Result<Vec<NeighborStatus>, LabError> {
        let v = self.vtysh_json("show bgp neighbors json")?;
        Ok(parse_neighbors(&v))
    }

    fn rib(&self, family: Family) -> Result<Vec<RibEntry>, LabError> {
        let cmd = match family {
            Family::Ipv4Unicast => "show bgp ipv4 unicast json",
            Family::Ipv6Unicast => "show bgp ipv6 unicast json",
        };
        let v = self.vtysh_json(cmd)?;
        Ok(parse_rib(&v))
    }

    fn announce(&mut self, route: Route) -> Result<(), LabError> {
        let idx = self.cfg.routes.len();
        let af = af_name(route.family());
        let mut lines: Vec<String> = Vec::new();
        let mut net = format!("network {}", route.prefix);
        if route.has_attrs() {
            let rm = format!("RM_ORIG_{idx}");
            let mut cmds = vec![
                "configure terminal".to_string(),
                format!("route-map {rm} permit 10"),
            ];
            cmds.extend(route_map_sets(&route, self.cfg.local_as));
            let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
            self.vtysh(&refs)?;
            net = format!("{net} route-map {rm}");
        }
        lines.push(format!("address-family {af}"));
        lines.push(net);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.configure_bgp(&refs)?;
        self.cfg.routes.push(route);
        Ok(())
    }

    fn announce_many(&mut self, routes: Vec<Route>) -> Result<(), LabError> {
        // Plain routes in one vtysh call per family; routes with attributes
        // need their own route-map first.
        let (plain, attrs): (Vec<Route>, Vec<Route>) =
            routes.into_iter().partition(|r| !r.has_attrs());
        for fam in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let lines: Vec<String> = std::iter::once(format!("address-family {}", af_name(fam)))
                .chain(
                    plain
                        .iter()
                        .filter(|r| r.family() == fam)
                        .map(|r| format!("network {}", r.prefix)),
                )
                .collect();
            if lines.len() > 1 {
                let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                self.configure_bgp(&refs)?;
            }
        }
        self.cfg.routes.extend(plain);
        for r in attrs {
            self.announce(r)?;
        }
        Ok(())
    }

    fn withdraw_many(&mut self, prefixes: &[String]) -> Result<(), LabError> {
        for fam in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let lines: Vec<String> = std::iter::once(format!("address-family {}", af_name(fam)))
                .chain(
                    prefixes
                        .iter()
                        .filter(|p| Family::of_prefix(p) == fam)
                        .map(|p| format!("no network {p}")),
                )
                .collect();
            if lines.len() > 1 {
                let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                self.configure_bgp(&refs)?;
            }
        }
        self.cfg.routes.retain(|r| !prefixes.contains(&r.prefix));
        Ok(())
    }

    fn withdraw(&mut self, prefix: &str) -> Result<(), LabError> {
        let af = af_name(Family::of_prefix(prefix));
        self.configure_bgp(&[
            &format!("address-family {af}"),
            &format!("no network {prefix}"),
        ])?;
        self.cfg.routes.retain(|r| r.prefix != prefix);
        Ok(())
    }
}

impl Drop for Frr<'_> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn chown_frr(p: &Path) -> Result<(), LabError> {
    let user = nix::unistd::User::from_name("frr")
        .map_err(|e| LabError::Other(format!("looking up user frr: {e}")))?
        .ok_or_else(|| LabError::Other("user frr does not exist (is FRR installed?)".into()))?;
    nix::unistd::chown(p, Some(user.uid), Some(user.gid))
        .map_err(|e| LabError::Other(format!("chown {}: {e}", p.display())))?;
    Ok(())
}

fn af_name(f: Family) -> &'static str {
    match f {
        Family::Ipv4Unicast => "ipv4 unicast",
        Family::Ipv6Unicast => "ipv6 unicast",
    }
}

/// The key FRR uses for a neighbor: the interface name for an unnumbered
/// peer (address `::` with an interface), else the address.
fn peer_key(n: &NeighborConfig) -> String {
    match (&n.interface, n.address) {
        (Some(ifname), IpAddr::V6(a)) if a.is_unspecified() => ifname.clone(),
        _ => n.address.to_string(),
    }
}

fn route_map_sets(r: &Route, local_as: u32) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(m) = r.med {
        v.push(format!("set metric {m}"));
    }
    if let Some(lp) = r.local_pref {
        v.push(format!("set local-preference {lp}"));
    }
    if !r.communities.is_empty() {
        let c: Vec<String> = r
            .communities
            .iter()
            .map(|(a, b)| format!("{a}:{b}"))
            .collect();
        v.push(format!("set community {}", c.join(" ")));
    }
    if !r.large_communities.is_empty() {
        let c: Vec<String> = r
            .large_communities
            .iter()
            .map(|(a, b, c)| format!("{a}:{b}:{c}"))
            .collect();
        v.push(format!("set large-community {}", c.join(" ")));
    }
    if r.prepend > 0 {
        let p: Vec<String> = (0..r.prepend).map(|_| local_as.to_string()).collect();
        v.push(format!("set as-path prepend {}", p.join(" ")));
    }
    v
}

/// Renders `bgpd.conf`.
pub fn render_bgpd(cfg: &RouterConfig, dir: &str) -> String {
    let mut s = String::new();
    let t = cfg.timers;
    let _ = writeln!(s, "hostname bgpd\nlog file {dir}/bgpd.log\n!");
    let _ = writeln!(s, "router bgp {}", cfg.local_as);
    let _ = writeln!(s, " bgp router-id {}", cfg.router_id);
    let _ = writeln!(s, " no bgp ebgp-requires-policy");
    let _ = writeln!(s, " no bgp network import-check");
    let _ = writeln!(s, " no bgp default ipv4-unicast");
    // Apply route-map changes after 1 s (default 5 s; 0 would disable).
    let _ = writeln!(s, " bgp route-map delay-timer 1");
    let _ = writeln!(s, " timers bgp {} {}", t.keepalive, t.hold);
    if cfg.neighbors.iter().any(|n| n.graceful_restart) {
        let rt = cfg
            .neighbors
            .iter()
            .map(|n| n.restart_time)
            .max()
            .unwrap_or(120);
        let _ = writeln!(s, " bgp graceful-restart restart-time {rt}");
    }
    for n in &cfg.neighbors {
        let k = peer_key(n);
        if k != n.address.to_string() {
            let _ = writeln!(s, " neighbor {k} interface remote-as {}", n.remote_as);
        } else {
            let _ = writeln!(s, " neighbor {k} remote-as {}", n.remote_as);
            if let Some(ifname) = &n.interface {
                let _ = writeln!(s, " neighbor {k} interface {ifname}");
            }
        }
        let _ = writeln!(s, " neighbor {k} timers connect {}", t.connect_retry);
        let _ = writeln!(s, " neighbor {k} timers {} {}", t.keepalive, t.hold);
        if let Some(p) = &n.password {
            let _ = writeln!(s, " neighbor {k} password {p}");
        }
        if let Some(h) = n.ttl_security {
            let _ = writeln!(s, " neighbor {k} ttl-security hops {h}");
        }
        if n.graceful_restart {
            let _ = writeln!(s, " neighbor {k} graceful-restart");
        }
        if n.extended_nexthop {
            let _ = writeln!(s, " neighbor {k} capability extended-nexthop");
        }
        if n.passive {
            let _ = writeln!(s, " neighbor {k} passive");
        }
    }
    for fam in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
        let _ = writeln!(s, " address-family {}", af_name(fam));
        let _ = writeln!(s, "  maximum-paths 16");
        for (i, r) in cfg.routes.iter().enumerate() {
            if r.family() != fam {
                continue;
            }
            if r.has_attrs() {
                let _ = writeln!(s, "  network {} route-map RM_ORIG_{i}", r.prefix);
            } else {
                let _ = writeln!(s, "  network {}", r.prefix);
            }
        }
        for n in &cfg.neighbors {
            let on = match fam {
                Family::Ipv4Unicast => n.ipv4_unicast,
                Family::Ipv6Unicast => n.ipv6_unicast,
            };
            if !on {
                continue;
            }
            let k = peer_key(n);
            let _ = writeln!(s, "  neighbor {k} activate");
            if n.add_path.send {
                let _ = writeln!(s, "  neighbor {k} addpath-tx-all-paths");
            }
        }
        let _ = writeln!(s, " exit-address-family");
    }
    let _ = writeln!(s, "!");
    for (i, r) in cfg.routes.iter().enumerate() {
        if r.has_attrs() {
            let _ = writeln!(s, "route-map RM_ORIG_{i} permit 10");
            for l in route_map_sets(r, cfg.local_as) {
                let _ = writeln!(s, " {l}");
            }
            let _ = writeln!(s, "!");
        }
    }
    s
}

fn jbool(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// Parses `show bgp neighbors json`.
pub fn parse_neighbors(v: &Value) -> Vec<NeighborStatus> {
    let Some(obj) = v.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, n) in obj {
        let state = BgpState::parse(n.get("bgpState").and_then(Value::as_str).unwrap_or("?"));
        let remote_as = n
            .get("remoteAs")
            .and_then(Value::as_u64)
            .and_then(|x| u32::try_from(x).ok());
        let mut caps = Capabilities::default();
        if let Some(c) = n.get("neighborCapabilities") {
            let both = |name: &str| {
                c.get(name)
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.starts_with("advertisedAndReceived"))
            };
            caps.four_octet_as = both("4byteAs");
            caps.route_refresh = both("routeRefresh");
            caps.graceful_restart = both("gracefulRestart") || both("gracefulRestartCapability");
            caps.extended_message = both("extendedMessage");
            caps.extended_nexthop = both("extendedNexthop");
            if let Some(mp) = c.get("multiprotocolExtensions") {
                caps.mp_ipv4_unicast = mp
                    .get("ipv4Unicast")
                    .is_some_and(|x| jbool(&x["advertisedAndReceived"]));
                caps.mp_ipv6_unicast = mp
                    .get("ipv6Unicast")
                    .is_some_and(|x| jbool(&x["advertisedAndReceived"]));
            }
            if let Some(ap) = c.get("addPath") {
                // FRR reports from its own point of view: "tx" = we send.
                let dir = |afi: &str, d: &str| {
                    ap.get(afi)
                        .is_some_and(|x| jbool(&x[format!("{d}AdvertisedAndReceived")]))
                };
                caps.add_path_ipv4_send = dir("ipv4Unicast", "tx");
                caps.add_path_ipv4_receive = dir("ipv4Unicast", "rx");
                caps.add_path_ipv6_send = dir("ipv6Unicast", "tx");
                caps.add_path_ipv6_receive = dir("ipv6Unicast", "rx");
            }
        }
        out.push(NeighborStatus {
            address: key.clone(),
            remote_as,
            state,
            caps,
        });
    }
    out
}

/// Parses `show bgp ipv4|ipv6 unicast json`.
pub fn parse_rib(v: &Value) -> Vec<RibEntry> {
    let mut out = Vec::new();
    let Some(routes) = v.get("routes").and_then(Value::as_object) else {
        return out;
    };
    for (prefix, paths) in routes {
        for p in paths.as_array().into_iter().flatten() {
            let next_hops = p
                .get("nexthops")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|nh| nh.get("ip").and_then(Value::as_str).and_then(parse_ip))
                .collect();
            let as_path = p
                .get("path")
                .and_then(Value::as_str)
                .map(parse_as_path)
                .unwrap_or_default();
            let peer = p.get("peerId").and_then(Value::as_str).unwrap_or("");
            out.push(RibEntry {
                prefix: prefix.clone(),
                next_hops,
                as_path,
                best: jbool(&p["bestpath"]),
                stale: jbool(&p["stale"]),
                learned: !(peer.is_empty() || peer == "(unspec)" || peer == "0.0.0.0"),
            });
        }
    }
    out
}
