//! BIRD 2 as a lab router inside one namespace.
//!
//! BIRD has no JSON output, so `birdc` text is parsed. Routes are originated
//! by static protocols (blackhole routes); their path attributes are set in
//! each BGP export filter. Runtime changes rewrite the config and run
//! `birdc configure`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::router::{
    BgpState, Capabilities, Family, NeighborStatus, RibEntry, Route, Router, RouterConfig,
    RouterDaemons, State, WorkDir, log_stdio, parse_as_path, parse_ip, stdout_string,
};
use crate::{Daemons, LabError, Netns, wait_for};

/// A running BIRD in a lab namespace.
pub struct Bird<'a> {
    ns: &'a Netns,
    dir: WorkDir,
    cfg: RouterConfig,
    daemons: Daemons,
    /// Export BGP routes into the namespace's kernel (a forwarding ToR).
    kernel: bool,
}

impl<'a> Bird<'a> {
    /// Writes `bird.conf`, starts `bird -f` and waits for its control socket.
    pub fn start(ns: &'a Netns, cfg: RouterConfig) -> Result<Self, LabError> {
        Self::start_with(ns, cfg, false)
    }

    /// Like [`Bird::start`], with a kernel protocol exporting the BGP routes
    /// (ECMP merged) into the namespace's FIB, so the namespace forwards as
    /// a ToR does. Originated (static blackhole) routes stay out of the FIB.
    pub fn start_with_kernel(ns: &'a Netns, cfg: RouterConfig) -> Result<Self, LabError> {
        Self::start_with(ns, cfg, true)
    }

    fn start_with(ns: &'a Netns, cfg: RouterConfig, kernel: bool) -> Result<Self, LabError> {
        let dir = WorkDir::new("bird")?;
        let mut b = Bird {
            ns,
            dir,
            cfg,
            daemons: Daemons::default(),
            kernel,
        };
        b.launch()?;
        Ok(b)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn ctl(&self) -> String {
        self.dir.file("bird.ctl")
    }

    fn write_config(&self) -> Result<(), LabError> {
        let log = self.dir.file("bird.log");
        let mut conf = render(&self.cfg, &log);
        if self.kernel {
            conf.push_str(KERNEL_EXPORT);
        }
        std::fs::write(self.dir.join("bird.conf"), conf)?;
        Ok(())
    }

    /// Runs `birdc -s CTL ARGS` and returns its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String, LabError> {
        let out = crate::run(
            self.ns
                .command("birdc")
                .arg("-s")
                .arg(self.ctl())
                .args(args),
        )?;
        let s = stdout_string(&out);
        if s.contains("Unable to connect") {
            return Err(LabError::Other(s));
        }
        Ok(s)
    }

    /// Rewrites the config and makes BIRD reload it.
    pub fn reconfigure(&self) -> Result<(), LabError> {
        self.write_config()?;
        let s = self.birdc(&["configure"])?;
        if !(s.contains("Reconfigured") || s.contains("Reconfiguration in progress")) {
            return Err(LabError::Other(format!("birdc configure: {s}")));
        }
        Ok(())
    }

    /// BIRD's protocol name for the neighbor at `addr`.
    pub fn protocol_name(&self, addr: &str) -> Option<String> {
        self.cfg
            .neighbors
            .iter()
            .find(|n| n.address.to_string() == addr)
            .map(|n| n.ident())
    }

    /// `birdc reload in NAME`: sends ROUTE-REFRESH to the peer.
    pub fn reload_in(&self, peer: &str) -> Result<(), LabError> {
        let name = self.protocol_name(peer).unwrap_or_else(|| peer.to_string());
        self.birdc(&["reload", "in", &name])?;
        Ok(())
    }

    /// `birdc disable NAME "message"`: administrative shutdown with a
    /// shutdown communication (RFC 8203).
    pub fn disable_neighbor(&self, peer: &str, message: &str) -> Result<(), LabError> {
        let name = self.protocol_name(peer).unwrap_or_else(|| peer.to_string());
        self.birdc(&["disable", &name, &format!("\"{message}\"")])?;
        Ok(())
    }

    pub fn enable_neighbor(&self, peer: &str) -> Result<(), LabError> {
        let name = self.protocol_name(peer).unwrap_or_else(|| peer.to_string());
        self.birdc(&["enable", &name])?;
        Ok(())
    }
}

impl RouterDaemons for Bird<'_> {
    fn daemons(&mut self) -> &mut Daemons {
        &mut self.daemons
    }

    fn launch(&mut self) -> Result<(), LabError> {
        self.write_config()?;
        let _ = std::fs::remove_file(self.ctl());
        let d = self.ns.spawn(
            self.ns
                .command("bird")
                .arg("-f")
                .arg("-c")
                .arg(self.dir.file("bird.conf"))
                .arg("-s")
                .arg(self.ctl())
                .arg("-P")
                .arg(self.dir.file("bird.pid"))
                .stdout(log_stdio(&self.dir, "bird.out")?)
                .stderr(log_stdio(&self.dir, "bird.out")?),
        )?;
        self.daemons.push(d);
        wait_for("bird control socket", Duration::from_secs(10), || {
            Ok(self.birdc(&["show", "status"]).ok().map(|_| ()))
        })
        .map_err(|e| LabError::Other(format!("{e}\nbird: {}", self.dir.read("bird.out"))))?;
        Ok(())
    }
}

impl Router for Bird<'_> {
    fn kind(&self) -> &'static str {
        "bird"
    }

    fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    fn neighbors(&self) -> Result<Vec<NeighborStatus>, LabError> {
        Ok(parse_protocols(&self.birdc(&[
            "show",
            "protocols",
            "all",
        ])?))
    }

    fn rib(&self, family: Family) -> Result<Vec<RibEntry>, LabError> {
        let table = match family {
            Family::Ipv4Unicast => "master4",
            Family::Ipv6Unicast => "master6",
        };
        Ok(parse_routes(
            &self.birdc(&["show", "route", "table", table, "all"])?,
        ))
    }

    fn announce(&mut self, route: Route) -> Result<(), LabError> {
        self.cfg.routes.push(route);
        self.reconfigure()
    }

    fn withdraw(&mut self, prefix: &str) -> Result<(), LabError> {
        self.cfg.routes.retain(|r| r.prefix != prefix);
        self.reconfigure()
    }

    fn announce_many(&mut self, routes: Vec<Route>) -> Result<(), LabError> {
        self.cfg.routes.extend(routes);
        self.reconfigure()
    }

    fn withdraw_many(&mut self, prefixes: &[String]) -> Result<(), LabError> {
        self.cfg.routes.retain(|r| !prefixes.contains(&r.prefix));
        self.reconfigure()
    }
}

impl Drop for Bird<'_> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Kernel protocols for a forwarding BIRD: learned BGP routes into the FIB,
/// equal paths merged into one multipath route; nothing read back.
const KERNEL_EXPORT: &str = "protocol kernel {\n  ipv4 { import none; export where source = RTS_BGP; };\n  merge paths on;\n}\nprotocol kernel {\n  ipv6 { import none; export where source = RTS_BGP; };\n  merge paths on;\n}\n";

/// The export filter body: attributes for originated routes, then accept.
fn export_filter(cfg: &RouterConfig, fam: Family) -> String {
    let mut s = String::from("filter {\n");
    for r in cfg
        .routes
        .iter()
        .filter(|r| r.family() == fam && r.has_attrs())
    {
        let _ = writeln!(s, "      if net = {} then {{", r.prefix);
        if let Some(m) = r.med {
            let _ = writeln!(s, "        bgp_med = {m};");
        }
        if let Some(lp) = r.local_pref {
            let _ = writeln!(s, "        bgp_local_pref = {lp};");
        }
        for (a, b) in &r.communities {
            let _ = writeln!(s, "        bgp_community.add(({a},{b}));");
        }
        for (a, b, c) in &r.large_communities {
            let _ = writeln!(s, "        bgp_large_community.add(({a},{b},{c}));");
        }
        for _ in 0..r.prepend {
            let _ = writeln!(s, "        bgp_path.prepend({});", cfg.local_as);
        }
        let _ = writeln!(s, "      }}");
    }
    s.push_str("      accept;\n    }");
    s
}

/// Renders `bird.conf`.
pub fn render(cfg: &RouterConfig, log: &str) -> String {
    let mut s = String::new();
    let t = cfg.timers;
    let _ = writeln!(s, "router id {};", cfg.router_id);
    let _ = writeln!(s, "log \"{log}\" all;");
    let _ = writeln!(s, "protocol device {{ scan time 10; }}");
    for (fam, name, ch) in [
        (Family::Ipv4Unicast, "orig4", "ipv4"),
        (Family::Ipv6Unicast, "orig6", "ipv6"),
    ] {
        let _ = writeln!(s, "protocol static {name} {{\n  {ch};");
        for r in cfg.routes.iter().filter(|r| r.family() == fam) {
            let _ = writeln!(s, "  route {} blackhole;", r.prefix);
        }
        let _ = writeln!(s, "}}");
    }
    for n in &cfg.neighbors {
        let _ = writeln!(s, "protocol bgp {} {{", n.ident());
        let _ = writeln!(s, "  local as {};", cfg.local_as);
        let _ = writeln!(s, "  neighbor {} as {};", n.address, n.remote_as);
        if let Some(ifname) = &n.interface {
            // iBGP defaults to multihop, which link-local peers cannot use.
            let _ = writeln!(s, "  interface \"{ifname}\";\n  direct;");
        }
        let _ = writeln!(
            s,
            "  hold time {}; keepalive time {}; connect retry time {}; connect delay time 1; error wait time 1,10;",
            t.hold, t.keepalive, t.connect_retry
        );
        if let Some(p) = &n.password {
            let _ = writeln!(s, "  password \"{p}\";");
        }
        if n.ttl_security.is_some() {
            let _ = writeln!(s, "  ttl security on;");
        }
        if n.graceful_restart {
            let _ = writeln!(
                s,
                "  graceful restart on;\n  graceful restart time {};",
                n.restart_time
            );
        }
        if n.passive {
            let _ = writeln!(s, "  passive on;");
        }
        if n.extended_message {
            let _ = writeln!(s, "  enable extended messages on;");
        }
        let add_paths = match (n.add_path.send, n.add_path.receive) {
            (true, true) => Some("on"),
            (true, false) => Some("tx"),
            (false, true) => Some("rx"),
            (false, false) => None,
        };
        for (fam, on, ch) in [
            (Family::Ipv4Unicast, n.ipv4_unicast, "ipv4"),
            (Family::Ipv6Unicast, n.ipv6_unicast, "ipv6"),
        ] {
            if !on {
                continue;
            }
            let _ = writeln!(s, "  {ch} {{\n    import all;");
            let _ = writeln!(s, "    export {};", export_filter(cfg, fam));
            if let Some(ap) = add_paths {
                let _ = writeln!(s, "    add paths {ap};");
            }
            if fam == Family::Ipv4Unicast && n.extended_nexthop {
                let _ = writeln!(s, "    extended next hop on;");
            }
            if fam == Family::Ipv6Unicast
                && let Some(nh) = n.ipv6_next_hop
            {
                let _ = writeln!(s, "    next hop address {nh};");
            }
            let _ = writeln!(s, "  }};");
        }
        let _ = writeln!(s, "}}");
    }
    s
}

/// Capabilities one side lists in `show protocols all`.
#[derive(Default, Debug)]
struct BirdCaps {
    names: Vec<String>,
    af_announced: Vec<String>,
    add_path_rx: Vec<String>,
    add_path_tx: Vec<String>,
}

/// Parses `birdc show protocols all`: BGP protocols only.
pub fn parse_protocols(text: &str) -> Vec<NeighborStatus> {
    let mut out = Vec::new();
    // Split into blocks, each starting at an unindented protocol line.
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("BIRD ") || line.starts_with("Name ") || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('\t') {
            blocks.push(vec![line]);
        } else if let Some(b) = blocks.last_mut() {
            b.push(line);
        }
    }
    for b in blocks {
        let mut head = b[0].split_whitespace();
        let _name = head.next();
        if head.next() != Some("BGP") {
            continue;
        }
        let mut state = None;
        let mut address = String::new();
        let mut remote_as = None;
        let mut local = BirdCaps::default();
        let mut remote = BirdCaps::default();
        let mut section = 0; // 1 local caps, 2 neighbor caps
        let mut last_cap = String::new();
        for line in &b[1..] {
            let t = line.trim();
            let indent = line.len() - line.trim_start().len();
            if let Some(v) = t.strip_prefix("BGP state:") {
                state = Some(BgpState::parse(v));
            } else if let Some(v) = t.strip_prefix("Neighbor address:") {
                // Link-local peers print as `fe80::1%eth0`: key by address.
                address = v.trim().split('%').next().unwrap_or("").to_string();
            } else if let Some(v) = t.strip_prefix("Neighbor AS:") {
                remote_as = v.trim().parse().ok();
            } else if t == "Local capabilities" {
                section = 1;
            } else if t == "Neighbor capabilities" {
                section = 2;
            } else if indent <= 4 {
                section = 0;
            } else if section != 0 {
                let caps = if section == 1 {
                    &mut local
                } else {
                    &mut remote
                };
                if indent == 6 {
                    last_cap = t.to_string();
                    caps.names.push(last_cap.clone());
                } else if let Some(v) = t.strip_prefix("AF announced:") {
                    if last_cap == "Multiprotocol" {
                        caps.af_announced = v.split_whitespace().map(String::from).collect();
                    }
                } else if let Some(v) = t.strip_prefix("RX:") {
                    caps.add_path_rx = v.split_whitespace().map(String::from).collect();
                } else if let Some(v) = t.strip_prefix("TX:") {
                    caps.add_path_tx = v.split_whitespace().map(String::from).collect();
                }
            }
        }
        // Before the session is up BIRD prints no "BGP state" line; use the
        // Info column of the header (e.g. "Active", "Connect", "Idle").
        let state = state.unwrap_or_else(|| {
            let cols: Vec<&str> = b[0].split_whitespace().collect();
            cols.get(5)
                .map(|s| BgpState::parse(s))
                .unwrap_or(BgpState::Fsm(State::Idle))
        });
        let both =
            |n: &str| local.names.iter().any(|x| x == n) && remote.names.iter().any(|x| x == n);
        let mp = |af: &str| {
            local.af_announced.iter().any(|x| x == af)
                && remote.af_announced.iter().any(|x| x == af)
        };
        let has = |v: &Vec<String>, af: &str| v.iter().any(|x| x == af);
        let caps = Capabilities {
            four_octet_as: both("4-octet AS numbers"),
            route_refresh: both("Route refresh"),
            graceful_restart: both("Graceful restart"),
            mp_ipv4_unicast: mp("ipv4"),
            mp_ipv6_unicast: mp("ipv6"),
            extended_nexthop: both("Extended next hop"),
            extended_message: both("Extended message"),
            add_path_ipv4_send: has(&local.add_path_tx, "ipv4") && has(&remote.add_path_rx, "ipv4"),
            add_path_ipv4_receive: has(&local.add_path_rx, "ipv4")
                && has(&remote.add_path_tx, "ipv4"),
            add_path_ipv6_send: has(&local.add_path_tx, "ipv6") && has(&remote.add_path_rx, "ipv6"),
            add_path_ipv6_receive: has(&local.add_path_rx, "ipv6")
                && has(&remote.add_path_tx, "ipv6"),
        };
        out.push(NeighborStatus {
            address,
            remote_as,
            state,
            caps,
        });
    }
    out
}

/// Parses `birdc show route table T all`.
pub fn parse_routes(text: &str) -> Vec<RibEntry> {
    let mut out: Vec<RibEntry> = Vec::new();
    let mut prefix = String::new();
    for line in text.lines() {
        if line.starts_with("BIRD ") || line.starts_with("Table ") || line.trim().is_empty() {
            continue;
        }
        if line.starts_with('\t') {
            let t = line.trim();
            let Some(e) = out.last_mut() else { continue };
            if let Some(rest) = t.strip_prefix("via ") {
                if let Some(ip) = rest.split_whitespace().next().and_then(parse_ip) {
                    e.next_hops.push(ip);
                }
            } else if let Some(v) = t.strip_prefix("BGP.as_path:") {
                e.as_path = parse_as_path(v);
            } else if let Some(v) = t.strip_prefix("Type:") {
                e.learned = v.trim_start().starts_with("BGP");
            } else if let Some(v) = t.strip_prefix("BGP.next_hop:")
                && e.next_hops.is_empty()
            {
                let hops: Vec<IpAddr> = v.split_whitespace().filter_map(parse_ip).collect();
                e.next_hops = hops;
            }
            continue;
        }
        // A route line: "PREFIX  type [proto time] * (pref) ..." or, for a
        // further path of the same prefix, the same without PREFIX.
        let mut words = line.split_whitespace();
        if !line.starts_with(' ') {
            match words.next() {
                Some(p) => prefix = p.to_string(),
                None => continue,
            }
        }
        let rest: Vec<&str> = words.collect();
        let best = rest.contains(&"*");
        out.push(RibEntry {
            prefix: prefix.clone(),
            next_hops: Vec::new(),
            as_path: Vec::new(),
            best,
            stale: false,
            learned: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTOCOLS: &str = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     09:46:26.565  
n1         BGP        ---        up     09:46:27.561  Established   
  BGP state:          Established
    Neighbor address: 10.0.0.1
    Neighbor AS:      65001
    Local AS:         65002
    Neighbor ID:      1.1.1.1
    Local capabilities
      Multiprotocol
        AF announced: ipv4 ipv6
      Route refresh
      Graceful restart
        Restart time: 120
        AF supported: ipv4 ipv6
        AF preserved:
      4-octet AS numbers
      ADD-PATH
        RX: ipv4 ipv6
        TX: ipv4
      Enhanced refresh
      Long-lived graceful restart
    Neighbor capabilities
      Multiprotocol
        AF announced: ipv4 ipv6
      Route refresh
      Extended next hop
        IPv6 nexthop: ipv4
      Graceful restart
        Restart time: 120
        AF supported: ipv4 ipv6
        AF preserved:
      4-octet AS numbers
      ADD-PATH
        RX: ipv4
        TX: ipv6
      Hostname: vm
    Session:          external AS4
    Source address:   10.0.0.2
    Hold timer:       7.724/9
    Keepalive timer:  1.324/3
  Channel ipv4
    State:          UP
    Table:          master4
n2         BGP        ---        start  09:46:26.565  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 10.0.0.5
    Neighbor AS:      65005
";

    #[test]
    fn parses_protocols_all() {
        let v = parse_protocols(PROTOCOLS);
        assert_eq!(v.len(), 2);
        let n = &v[0];
        assert_eq!(n.address, "10.0.0.1");
        assert_eq!(n.remote_as, Some(65001));
        assert!(n.established());
        assert!(n.caps.four_octet_as && n.caps.route_refresh && n.caps.graceful_restart);
        assert!(n.caps.mp_ipv4_unicast && n.caps.mp_ipv6_unicast);
        assert!(!n.caps.extended_nexthop, "only the neighbor sent it");
        assert!(n.caps.add_path_ipv4_send, "local TX ipv4, neighbor RX ipv4");
        assert!(
            n.caps.add_path_ipv6_receive,
            "local RX ipv6, neighbor TX ipv6"
        );
        assert!(!n.caps.add_path_ipv6_send && !n.caps.add_path_ipv4_receive);
        assert_eq!(v[1].state, BgpState::Fsm(State::Active));
        assert_eq!(v[1].address, "10.0.0.5");
    }

    #[test]
    fn parses_show_route_all() {
        let text = "BIRD 2.0.12 ready.
Table master4:
10.1.0.0/24          unicast [n1 09:46:27.570] * (100) [AS65001?]
\tvia 10.0.0.1 on v1
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001 65003
\tBGP.next_hop: 10.0.0.1
                     unicast [n2 09:46:27.571] (100) [AS65005i]
\tvia 10.0.0.5 on v2
\tType: BGP univ
\tBGP.as_path: 65005
10.2.0.0/24          blackhole [s4 09:46:26.565] * (200)
\tType: static univ
";
        let v = parse_routes(text);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].prefix, "10.1.0.0/24");
        assert!(v[0].best && v[0].learned);
        assert_eq!(v[0].as_path, vec![65001, 65003]);
        assert_eq!(v[0].next_hops, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(v[1].prefix, "10.1.0.0/24");
        assert!(!v[1].best && v[1].learned);
        assert_eq!(v[2].prefix, "10.2.0.0/24");
        assert!(v[2].best && !v[2].learned);
    }

    #[test]
    fn renders_options() {
        let mut n = crate::router::NeighborConfig::new("fe80::2".parse().unwrap(), 65002);
        n.interface = Some("eth0".into());
        n.password = Some("pw".into());
        n.ttl_security = Some(1);
        n.add_path.send = true;
        n.extended_nexthop = true;
        let cfg = RouterConfig::new("1.1.1.1".parse().unwrap(), 65001)
            .neighbor(n)
            .route(Route {
                prefix: "10.9.0.0/24".into(),
                med: Some(5),
                prepend: 1,
                ..Route::default()
            });
        let s = render(&cfg, "/tmp/x.log");
        for want in [
            "neighbor fe80::2 as 65002;",
            "interface \"eth0\";",
            "password \"pw\";",
            "ttl security on;",
            "add paths tx;",
            "extended next hop on;",
            "route 10.9.0.0/24 blackhole;",
            "if net = 10.9.0.0/24 then {",
            "bgp_med = 5;",
            "bgp_path.prepend(65001);",
            "error wait time 1,10;",
        ] {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }
    }
}
