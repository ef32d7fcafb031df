//! The summary of a running lab: nodes, sessions, routes at each ToR and in
//! each host's kernel, the reachability matrix (ping and real TCP connects
//! between containers) and, where policies exist, expected versus actual.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{LabState, routers};
use crate::router::Family;
use crate::topology::policy;

#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub role: String,
    pub netns: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub node: String,
    pub neighbor: String,
    pub remote_as: Option<u32>,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteRow {
    pub node: String,
    pub prefix: String,
    pub via: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReachRow {
    pub from: String,
    pub to: String,
    pub addr: IpAddr,
    pub ping: bool,
    pub tcp: bool,
    /// What the declared policy allows for this ping.
    pub expected_ping: bool,
    /// What the declared policy allows for this TCP connect.
    pub expected_tcp: bool,
}

impl ReachRow {
    /// Both the ping and the TCP connect did what the policy says.
    pub fn as_declared(&self) -> bool {
        self.ping == self.expected_ping && self.tcp == self.expected_tcp
    }
}

/// Everything `up` and `status` print, also as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Destinations each container tried (None: every other).
    pub sample: Option<usize>,
    pub lab: String,
    pub nodes: Vec<NodeRow>,
    pub sessions: Vec<SessionRow>,
    pub tor_routes: Vec<RouteRow>,
    pub host_routes: Vec<RouteRow>,
    pub containers: Vec<super::ContainerState>,
    pub reach: Vec<ReachRow>,
    pub policy_declared: bool,
    /// Whether `up` applied the declared policy to flatnet (`flatnet policy
    /// apply`) and saw every host's rules decide as declared.
    pub policy_applied: bool,
    pub all_established: bool,
    /// Every ping the policy allows answered, on every address (all of them
    /// without a policy).
    pub full_reachability: bool,
    /// Every ping and TCP connect did what the declared policy says
    /// (allowed ones got through, denied ones did not).
    pub policy_as_declared: bool,
}

/// A TCP connect from inside `ns` to `addr:port`, retried until `wait`.
fn tcp(ns: &crate::Netns, addr: IpAddr, port: u16, wait: Duration) -> bool {
    ns.run_in(move || {
        let deadline = Instant::now() + wait;
        loop {
            if TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_millis(500))
                .is_ok()
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .unwrap_or(false)
}

/// One ping a second from inside `ns` until one answers or `wait` passes.
pub fn ping(ns: &crate::Netns, dst: IpAddr, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let ok = ns
            .command("ping")
            .args(["-c", "1", "-W", "1", &dst.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok || Instant::now() >= deadline {
            return ok;
        }
    }
}

/// Kernel routes of a host namespace learned or set for the fabric.
fn kernel_routes(node: &super::NodeState) -> Vec<RouteRow> {
    let mut rows = Vec::new();
    for fam in ["-4", "-6"] {
        let Ok(out) = node.ns().ip(&["-j", fam, "route", "show"]) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for r in v.as_array().into_iter().flatten() {
            let dst = r["dst"].as_str().unwrap_or("").to_string();
            if dst.starts_with("fe80") || r["protocol"].as_str() == Some("kernel") {
                continue;
            }
            // A gateway is `gateway`, or `via.host` for an IPv4 route over
            // an IPv6 next hop; ECMP routes list them under `nexthops`.
            let gw = |v: &serde_json::Value| {
                v["gateway"]
                    .as_str()
                    .or(v["via"]["host"].as_str())
                    .map(|g| match v["dev"].as_str() {
                        Some(d) if g.starts_with("fe80") => format!("{g}%{d}"),
                        _ => g.to_string(),
                    })
            };
            let mut via: Vec<String> = gw(r).into_iter().collect();
            for nh in r["nexthops"].as_array().into_iter().flatten() {
                via.extend(gw(nh));
            }
            if via.is_empty() {
                via.push(
                    r["dev"]
                        .as_str()
                        .or(r["type"].as_str())
                        .unwrap_or("")
                        .to_string(),
                );
            }
            rows.push(RouteRow {
                node: node.name.clone(),
                prefix: dst,
                via: via.join(","),
            });
        }
    }
    rows
}

/// Collects the summary of a running lab. `sample` limits the destinations
/// each container tries (None: all), for large labs.
pub fn collect(state: &LabState, sample: Option<usize>) -> Summary {
    let mut s = Summary {
        sample,
        lab: state.name.clone(),
        nodes: Vec::new(),
        sessions: Vec::new(),
        tor_routes: Vec::new(),
        host_routes: Vec::new(),
        containers: state.containers.clone(),
        reach: Vec::new(),
        policy_declared: !state.policies.is_empty(),
        policy_applied: state.policy_applied,
        all_established: true,
        full_reachability: true,
        policy_as_declared: true,
    };
    for n in &state.nodes {
        let role = match n.router {
            Some(k) => format!("tor ({k:?})").to_lowercase(),
            None => "host (flatnetd)".into(),
        };
        s.nodes.push(NodeRow {
            name: n.name.clone(),
            role,
            netns: n.netns.clone(),
        });
        let Some(kind) = n.router else {
            s.host_routes.extend(kernel_routes(n));
            continue;
        };
        match routers::neighbors(kind, &n.ns(), &n.dir) {
            Ok(ns) => {
                for nb in ns {
                    s.all_established &= nb.established();
                    s.sessions.push(SessionRow {
                        node: n.name.clone(),
                        neighbor: nb.address.clone(),
                        remote_as: nb.remote_as,
                        state: nb.state.to_string(),
                    });
                }
            }
            Err(e) => {
                s.all_established = false;
                s.sessions.push(SessionRow {
                    node: n.name.clone(),
                    neighbor: "-".into(),
                    remote_as: None,
                    state: format!("error: {e}"),
                });
            }
        }
        for fam in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            for r in routers::rib(kind, &n.ns(), &n.dir, fam)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.learned && r.best)
            {
                let nh: Vec<String> = r.next_hops.iter().map(|n| n.to_string()).collect();
                s.tor_routes.push(RouteRow {
                    node: n.name.clone(),
                    prefix: r.prefix,
                    via: nh.join(","),
                });
            }
        }
    }
    s.reach = reach_rows(state, sample);
    s.full_reachability = s.reach.iter().all(|r| r.ping || !r.expected_ping);
    s.policy_as_declared = s.reach.iter().all(ReachRow::as_declared);
    s
}

/// Sources tried at the same time: each connect mostly waits (a denied one
/// for its whole timeout), so a few threads shorten the matrix a lot.
const PARALLEL_SOURCES: usize = 8;

/// Ping and TCP from every container to its destinations; the rows in
/// container order.
fn reach_rows(state: &LabState, sample: Option<usize>) -> Vec<ReachRow> {
    let all = &state.containers;
    let idx: Vec<usize> = (0..all.len()).collect();
    let mut rows = Vec::new();
    for chunk in idx.chunks(PARALLEL_SOURCES) {
        let per_source: Vec<Vec<ReachRow>> = std::thread::scope(|sc| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|&i| sc.spawn(move || rows_from(state, i, sample)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        rows.extend(per_source.into_iter().flatten());
    }
    rows
}

/// The rows of container `i`: a connect the policy allows gets the full
/// wait; one it denies is expected to fail and is tried briefly.
fn rows_from(state: &LabState, i: usize, sample: Option<usize>) -> Vec<ReachRow> {
    let wait = Duration::from_secs(5);
    let brief = Duration::from_secs(1);
    let all = &state.containers;
    let a = &all[i];
    let ns = a.ns();
    let mut rows = Vec::new();
    for b in destinations(all.len(), i, sample).map(|j| &all[j]) {
        let (from, to) = (a.app.as_deref(), b.app.as_deref());
        let expected_tcp = policy::allowed(&state.policies, from, to, b.port);
        let expected_ping = policy::ping_allowed(&state.policies, from, to);
        for addr in &b.addrs {
            let p = ping(&ns, *addr, if expected_ping { wait } else { brief });
            let t = tcp(&ns, *addr, b.port, if expected_tcp { wait } else { brief });
            rows.push(ReachRow {
                from: a.name.clone(),
                to: b.name.clone(),
                addr: *addr,
                ping: p,
                tcp: t,
                expected_ping,
                expected_tcp,
            });
        }
    }
    rows
}

/// Indices container `i` of `n` tries: all others, or `k` spread evenly.
pub fn destinations(n: usize, i: usize, sample: Option<usize>) -> impl Iterator<Item = usize> {
    let others = n.saturating_sub(1);
    let k = sample.unwrap_or(others).min(others);
    let step = others.checked_div(k).unwrap_or(1).max(1);
    (0..k).map(move |j| (i + 1 + j * step) % n)
}

/// Largest lab whose matrices are printed as grids.
const GRID_MAX: usize = 16;

fn mark(b: bool) -> &'static str {
    if b { "ok" } else { "FAIL" }
}

fn ping_mark(r: &ReachRow) -> &'static str {
    match (r.expected_ping, r.ping) {
        (true, true) => "ok",
        (true, false) => "FAIL",
        (false, false) => "deny",
        (false, true) => "LEAK",
    }
}

impl Summary {
    /// The summary as text tables.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Lab {}", self.lab);
        let _ = writeln!(o, "\nNodes\n{:<12} {:<16} Namespace", "Name", "Role");
        for n in &self.nodes {
            let _ = writeln!(o, "{:<12} {:<16} {}", n.name, n.role, n.netns);
        }
        let _ = writeln!(
            o,
            "\nBGP sessions (as the ToRs see them)\n{:<8} {:<26} {:<8} State",
            "ToR", "Neighbor", "AS"
        );
        for r in &self.sessions {
            let asn = r.remote_as.map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(o, "{:<8} {:<26} {:<8} {}", r.node, r.neighbor, asn, r.state);
        }
        let _ = writeln!(
            o,
            "\nRoutes at the ToRs\n{:<8} {:<26} Next hops",
            "ToR", "Prefix"
        );
        for r in &self.tor_routes {
            let _ = writeln!(o, "{:<8} {:<26} {}", r.node, r.prefix, r.via);
        }
        let _ = writeln!(
            o,
            "\nRoutes in the hosts' kernels\n{:<8} {:<26} Via",
            "Host", "Prefix"
        );
        for r in &self.host_routes {
            let _ = writeln!(o, "{:<8} {:<26} {}", r.node, r.prefix, r.via);
        }
        let _ = writeln!(
            o,
            "\nContainers\n{:<10} {:<8} {:<6} {:<6} Addresses",
            "Name", "Host", "App", "Port"
        );
        for c in &self.containers {
            let a: Vec<String> = c.addrs.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(
                o,
                "{:<10} {:<8} {:<6} {:<6} {}",
                c.name,
                c.host,
                c.app.as_deref().unwrap_or("-"),
                c.port,
                a.join(" ")
            );
        }
        if self.policy_declared {
            let _ = writeln!(
                o,
                "\nReachability (row to column; ping v4/v6: ok, deny = dropped as the policy says, FAIL = allowed but no answer, LEAK = denied but answered)"
            );
            self.matrix(&mut o, |r| ping_mark(r).to_string());
            let _ = writeln!(
                o,
                "\nPolicy (TCP to the column's port; expected/actual, allow or deny; `!` marks a difference)"
            );
            self.policy_matrix(&mut o);
            if !self.policy_applied {
                let _ = writeln!(
                    o,
                    "note: the policy is declared but was not applied to flatnet by this lab"
                );
            }
        } else {
            let _ = writeln!(o, "\nReachability (row to column; ping v4/v6)");
            self.matrix(&mut o, |r| mark(r.ping).to_string());
            let _ = writeln!(o, "\nTCP connects (row to column's port; v4/v6)");
            self.matrix(&mut o, |r| mark(r.tcp).to_string());
        }
        let _ = writeln!(
            o,
            "\nall sessions Established: {}; full reachability (where allowed): {}; pings and TCP as the policy declares: {}",
            yes(self.all_established),
            yes(self.full_reachability),
            yes(self.policy_as_declared)
        );
        for m in self.mismatches() {
            let _ = writeln!(o, "  not as declared: {m}");
        }
        o
    }

    /// Every ping or TCP connect that did not do what the policy says, as
    /// `from -> to addr: ...` (empty when all did).
    pub fn mismatches(&self) -> Vec<String> {
        let c = |b: bool| if b { "allows" } else { "denies" };
        let got = |b: bool| if b { "got through" } else { "did not" };
        let mut v = Vec::new();
        for r in self.reach.iter().filter(|r| !r.as_declared()) {
            let port = self
                .containers
                .iter()
                .find(|c| c.name == r.to)
                .map_or(0, |c| c.port);
            if r.tcp != r.expected_tcp {
                v.push(format!(
                    "{} -> {} {}: policy {} TCP to port {port}, the connect {}",
                    r.from,
                    r.to,
                    r.addr,
                    c(r.expected_tcp),
                    got(r.tcp)
                ));
            }
            if r.ping != r.expected_ping {
                v.push(format!(
                    "{} -> {} {}: policy {} ping, the ping {}",
                    r.from,
                    r.to,
                    r.addr,
                    c(r.expected_ping),
                    got(r.ping)
                ));
            }
        }
        v
    }

    /// Expected/actual per pair, both families folded into one word.
    fn policy_matrix(&self, o: &mut String) {
        let c = |b: bool| if b { "allow" } else { "deny" };
        let cells: Vec<(String, String, String)> = self
            .containers
            .iter()
            .flat_map(|a| self.containers.iter().map(move |b| (a, b)))
            .filter(|(a, b)| a.name != b.name)
            .filter_map(|(a, b)| {
                let rs: Vec<&ReachRow> = self
                    .reach
                    .iter()
                    .filter(|r| r.from == a.name && r.to == b.name)
                    .collect();
                let first = rs.first()?;
                let actual = if rs.iter().all(|r| r.tcp) {
                    "allow"
                } else if rs.iter().all(|r| !r.tcp) {
                    "deny"
                } else {
                    "mixed"
                };
                let m = if actual == c(first.expected_tcp) {
                    ""
                } else {
                    "!"
                };
                Some((
                    a.name.clone(),
                    b.name.clone(),
                    format!("{}/{actual}{m}", c(first.expected_tcp)),
                ))
            })
            .collect();
        self.grid(o, |a, b| {
            cells
                .iter()
                .find(|(x, y, _)| x == a && y == b)
                .map(|(_, _, s)| s.clone())
        });
    }

    fn matrix(&self, o: &mut String, cell: impl Fn(&ReachRow) -> String) {
        self.grid(o, |a, b| {
            let cells: Vec<String> = self
                .reach
                .iter()
                .filter(|r| r.from == a && r.to == b)
                .map(&cell)
                .collect();
            (!cells.is_empty()).then(|| cells.join("/"))
        });
    }

    fn grid(&self, o: &mut String, cell: impl Fn(&str, &str) -> Option<String>) {
        if self.containers.len() > GRID_MAX {
            let tried = self.reach.len();
            let ping = self.reach.iter().filter(|r| r.ping).count();
            let tcp = self.reach.iter().filter(|r| r.tcp).count();
            let _ = writeln!(
                o,
                "{} containers (sampled): {ping}/{tried} pings and {tcp}/{tried} TCP connects ok",
                self.containers.len()
            );
            for r in self.reach.iter().filter(|r| !r.as_declared()).take(10) {
                let _ = writeln!(
                    o,
                    "  {} -> {} {}: ping {}, tcp {}",
                    r.from,
                    r.to,
                    r.addr,
                    mark(r.ping),
                    mark(r.tcp)
                );
            }
            return;
        }
        let names: Vec<&str> = self.containers.iter().map(|c| c.name.as_str()).collect();
        let w = names.iter().map(|n| n.len()).max().unwrap_or(4).max(4);
        let mut rows: Vec<Vec<String>> = Vec::new();
        for a in &names {
            let mut row = Vec::new();
            for b in &names {
                row.push(if a == b {
                    "-".to_string()
                } else {
                    cell(a, b).unwrap_or_else(|| ".".to_string())
                });
            }
            rows.push(row);
        }
        let cw = rows
            .iter()
            .flatten()
            .map(String::len)
            .chain(names.iter().map(|n| n.len()))
            .max()
            .unwrap_or(4);
        let _ = write!(o, "{:<w$}", "");
        for b in &names {
            let _ = write!(o, " {b:<cw$}");
        }
        let _ = writeln!(o);
        for (a, row) in names.iter().zip(rows) {
            let _ = write!(o, "{a:<w$}");
            for c in row {
                let _ = write!(o, " {c:<cw$}");
            }
            let _ = writeln!(o);
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// Ping and TCP from container `from` to every address of `to`.
pub fn pair(state: &LabState, from: &str, to: &str) -> Result<Vec<ReachRow>, super::DeployError> {
    let find = |n: &str| {
        state
            .containers
            .iter()
            .find(|c| c.name == n)
            .ok_or_else(|| super::DeployError::UnknownNode(n.to_string(), state.name.clone()))
    };
    let (a, b) = (find(from)?, find(to)?);
    let expected_tcp = policy::allowed(&state.policies, a.app.as_deref(), b.app.as_deref(), b.port);
    let expected_ping = policy::ping_allowed(&state.policies, a.app.as_deref(), b.app.as_deref());
    let ns = a.ns();
    Ok(b.addrs
        .iter()
        .map(|addr| ReachRow {
            from: a.name.clone(),
            to: b.name.clone(),
            addr: *addr,
            ping: ping(&ns, *addr, Duration::from_secs(3)),
            tcp: tcp(&ns, *addr, b.port, Duration::from_secs(2)),
            expected_ping,
            expected_tcp,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::destinations;

    #[test]
    fn sample_spreads_and_skips_self() {
        let all: Vec<usize> = destinations(4, 1, None).collect();
        assert_eq!(all, [2, 3, 0]);
        let s: Vec<usize> = destinations(10, 0, Some(3)).collect();
        assert_eq!(s, [1, 4, 7]);
        assert!(destinations(10, 9, Some(3)).all(|j| j != 9));
        assert_eq!(destinations(1, 0, Some(3)).count(), 0);
    }
}
