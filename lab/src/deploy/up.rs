//! `flatnet-lab up`: namespaces, links, `exec` lines, ToR daemons, flatnetd
//! on every host, containers through flatnet-cni, then waiting (with
//! progress) until every session is Established and every host's blocks
//! are at every ToR.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::routers;
use super::{ContainerState, DeployError, LabState, NodeState, ns_name, run_dir, tail};
use crate::router::Family;
use crate::topology::{HostDef, Role, Topology};
use crate::{Netns, veth};

/// How to bring a lab up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Directory holding flatnetd, flatnet and flatnet-cni.
    pub bin_dir: PathBuf,
    /// Program run as `PROGRAM serve-tcp --port P` in every container: the
    /// TCP end of the reachability and policy matrices.
    pub listener: PathBuf,
    /// How long to wait for sessions and routes.
    pub timeout: Duration,
}

pub(super) fn node_err(node: &str, what: impl std::fmt::Display) -> DeployError {
    DeployError::Node {
        node: node.to_string(),
        what: what.to_string(),
    }
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |e| DeployError::Io(p.to_path_buf(), e)
}

fn need(bin: &Path, name: &str) -> Result<PathBuf, DeployError> {
    let p = bin.join(name);
    if !p.exists() {
        return Err(node_err(
            "flatnet-lab",
            format!(
                "{} not found; build it first: cargo build -p flatnet-agent -p flatnet-lab --bins",
                p.display()
            ),
        ));
    }
    Ok(p)
}

/// Brings `topo` up and leaves it running; returns its state once every
/// session is Established and every block is at every ToR. `progress` gets
/// one line per step and, while waiting, what it waits for and for how long.
pub fn up(
    topo: &Topology,
    opts: &UpOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<LabState, DeployError> {
    crate::require_root()?;
    let missing = super::preflight::missing(topo);
    if !missing.is_empty() {
        return Err(DeployError::Missing(
            missing
                .into_iter()
                .map(|(p, progs)| (p.to_string(), progs.iter().map(|s| s.to_string()).collect()))
                .collect(),
        ));
    }
    let flatnetd = need(&opts.bin_dir, "flatnetd")?;
    let flatnet = need(&opts.bin_dir, "flatnet")?;
    let cni = need(&opts.bin_dir, "flatnet-cni")?;
    let dir = run_dir(&topo.name);
    if dir.join("state.json").exists() || !super::leftovers(&topo.name).is_empty() {
        return Err(DeployError::AlreadyUp(topo.name.clone()));
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut state = LabState {
        name: topo.name.clone(),
        file: topo.file.clone(),
        bin_dir: opts.bin_dir.clone(),
        nodes: Vec::new(),
        containers: Vec::new(),
        policies: topo.flatnet.policies.clone(),
        policy_applied: false,
        timings: Default::default(),
    };
    let t0 = Instant::now();

    progress(&format!(
        "creating {} namespaces and {} links",
        topo.nodes.len(),
        topo.links.len()
    ));
    for n in &topo.nodes {
        let ndir = dir.join(&n.name);
        std::fs::create_dir_all(&ndir).map_err(io(&ndir))?;
        let ns = Netns::create_kept(&ns_name(&topo.name, &n.name))?;
        let (router, socket) = match &n.role {
            Role::Tor { router, .. } => (Some(*router), None),
            Role::Host(_) => (None, Some(ndir.join("flatnetd.sock"))),
        };
        state.nodes.push(NodeState {
            name: n.name.clone(),
            netns: ns.name().to_string(),
            router,
            dir: ndir,
            socket,
        });
    }
    state.save()?;
    for l in &topo.links {
        let a = Netns::open_kept(&ns_name(&topo.name, &l.a.node));
        let b = Netns::open_kept(&ns_name(&topo.name, &l.b.node));
        veth(&a, &l.a.iface, &b, &l.b.iface)
            .map_err(|e| node_err(&l.a.node, format!("link {}:{}: {e}", l.a.iface, l.b.node)))?;
    }
    for n in &topo.nodes {
        let ns = Netns::open_kept(&ns_name(&topo.name, &n.name));
        for line in &n.exec {
            let mut c = ns.command("sh");
            c.args(["-c", line]).envs(&n.env);
            crate::run(&mut c).map_err(|e| node_err(&n.name, format!("exec {line:?}: {e}")))?;
        }
    }

    progress("starting the ToRs' routing daemons");
    for (n, kind, config) in topo.tors() {
        let st = node_state(&state, &n.name)?;
        routers::start(kind, &st.ns(), &st.dir, config).map_err(|e| {
            node_err(
                &n.name,
                format!("{kind:?} did not start: {e}\n{}", daemon_tail(st)),
            )
        })?;
    }

    progress("starting flatnetd on every host at once (one shared file datastore)");
    let store = dir.join("datastore");
    std::fs::create_dir_all(&store).map_err(io(&store))?;
    let mut starts = Vec::new();
    for (n, h) in topo.hosts() {
        let st = node_state(&state, &n.name)?;
        let socket = st.socket.clone().unwrap_or_default();
        starts.push(super::hosts::HostStart {
            st,
            def: h,
            config: flatnetd_config(topo, &n.name, h, &socket, &st.dir, &store),
        });
    }
    super::hosts::start_flatnetd(topo, &starts, &flatnetd, static_default)?;
    drop(starts);
    state
        .timings
        .insert("flatnetd_started".into(), t0.elapsed().as_secs_f64());

    if !state.policies.is_empty()
        && let Some(first) = state.nodes.iter().find(|n| n.router.is_none())
    {
        progress(&format!(
            "applying the topology's {} policy edges (flatnet policy apply, once: the hosts share the datastore)",
            state.policies.len()
        ));
        super::enforce::apply(&state, &flatnet, first)?;
    }

    let total: usize = topo.hosts().map(|(_, h)| h.containers.len()).sum();
    progress(&format!(
        "adding {total} containers through flatnet-cni ({} hosts at a time)",
        super::hosts::PARALLEL_HOSTS
    ));
    for (n, h) in topo.hosts() {
        for c in &h.containers {
            let cns = Netns::create_kept(&ns_name(&topo.name, &c.name))?;
            state.containers.push(ContainerState {
                name: c.name.clone(),
                host: n.name.clone(),
                netns: cns.name().to_string(),
                app: c.app.clone(),
                port: c.port,
                addrs: Vec::new(),
            });
        }
    }
    state.save()?;
    super::hosts::add_containers(&state.nodes, &mut state.containers, &cni, &opts.listener)?;
    state
        .timings
        .insert("containers_added".into(), t0.elapsed().as_secs_f64());
    state.save()?;

    wait_sessions(&state, opts.timeout, progress)?;
    let established = t0.elapsed().as_secs_f64();
    state.timings.insert("established".into(), established);
    wait_routes(&state, &flatnet, opts.timeout, progress)?;
    if !topo.flatnet.static_default {
        let peers = topo
            .hosts()
            .map(|(n, h)| (n.name.clone(), h.peers.len()))
            .collect();
        wait_learned(&state, &flatnet, &peers, opts.timeout, progress)?;
    }
    let routes = t0.elapsed().as_secs_f64();
    state.timings.insert("routes".into(), routes);
    if !state.policies.is_empty() {
        super::enforce::wait_enforced(&state, &flatnet, opts.timeout, progress)?;
        state.policy_applied = true;
        state
            .timings
            .insert("policy".into(), t0.elapsed().as_secs_f64());
    }
    state.save()?;
    Ok(state)
}

fn node_state<'a>(state: &'a LabState, name: &str) -> Result<&'a NodeState, DeployError> {
    state
        .nodes
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| DeployError::UnknownNode(name.to_string(), state.name.clone()))
}

fn daemon_tail(st: &NodeState) -> String {
    let files: &[&str] = match st.router {
        Some(k) => routers::logs(k),
        None => &["flatnetd.log"],
    };
    let mut s = String::new();
    for f in files {
        let _ = writeln!(s, "--- last lines of {f}:\n{}", tail(&st.dir.join(f), 8));
    }
    s
}

/// ECMP defaults over the host's peers (until flatnetd programs learned
/// routes).
fn static_default(ns: &Netns, h: &HostDef) -> Result<(), crate::LabError> {
    let mut v4: Vec<String> = ["-4", "route", "add", "default"].map(String::from).to_vec();
    let mut v6: Vec<String> = ["-6", "route", "add", "default"].map(String::from).to_vec();
    let base = (v4.len(), v6.len());
    for p in &h.peers {
        let dev = |v: &mut Vec<String>| {
            if let Some(i) = &p.interface {
                v.extend(["dev".to_string(), i.clone()]);
            }
        };
        if !p.address.contains(':') {
            v4.extend(["nexthop", "via", p.address.as_str()].map(String::from));
        } else if p.extended_next_hop {
            // IPv4 over an IPv6 next hop (RFC 5549 routes).
            v4.extend(["nexthop", "via", "inet6", p.address.as_str()].map(String::from));
            dev(&mut v4);
        }
        if let Some(g) = &p.gateway6 {
            v6.extend(["nexthop", "via", g.as_str()].map(String::from));
            dev(&mut v6);
        }
    }
    if v4.len() > base.0 {
        let a: Vec<&str> = v4.iter().map(String::as_str).collect();
        ns.ip(&a)?;
    }
    if v6.len() > base.1 {
        let a: Vec<&str> = v6.iter().map(String::as_str).collect();
        ns.ip(&a)?;
    }
    Ok(())
}

/// flatnetd's config for one host, generated from the `flatnet:` section.
fn flatnetd_config(
    topo: &Topology,
    name: &str,
    h: &HostDef,
    socket: &Path,
    dir: &Path,
    store: &Path,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[node]\nname = \"{name}\"\nrouter_id = \"{}\"\nasn = {}\n",
        h.router_id, h.asn
    );
    let _ = writeln!(s, "[api]\nsocket = \"{}\"\n", socket.display());
    let _ = writeln!(s, "[metrics]\nlisten = \"127.0.0.1:9469\"\n");
    let _ = writeln!(
        s,
        "[dataplane]\nmtu = 1500\nstate_dir = \"{}\"\n",
        dir.join("state").display()
    );
    let _ = writeln!(s, "[datastore]\nurl = \"file:{}\"\n", store.display());
    if !topo.flatnet.policies.is_empty() {
        // Default deny between apps: the lab's declared semantics.
        let _ = writeln!(s, "[policy]\nenabled = true\n");
    }
    for p in &topo.flatnet.pools {
        let _ = writeln!(s, "[[pool]]\ncidr = \"{}\"", p.cidr);
        if let Some(b) = p.block_size {
            let _ = writeln!(s, "block_size = {b}");
        }
        s.push('\n');
    }
    for p in &h.peers {
        let _ = writeln!(
            s,
            "[[bgp.peer]]\naddress = \"{}\"\nasn = {}",
            p.address, p.asn
        );
        if let Some(nh) = &p.next_hop_ipv6 {
            let _ = writeln!(s, "next_hop_ipv6 = \"{nh}\"");
        }
        if let Some(i) = &p.interface {
            let _ = writeln!(s, "interface = \"{i}\"");
        }
        if p.extended_next_hop {
            let _ = writeln!(s, "extended_next_hop = true");
        }
        s.push('\n');
    }
    s
}

/// Polls `check` (returns what is still missing, empty when done), printing
/// progress every 5 s; on timeout the error names what was missing.
pub(super) fn wait_until(
    what: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
    mut check: impl FnMut() -> Vec<(String, String)>,
) -> Result<(), (String, String)> {
    let t0 = Instant::now();
    let mut next = t0 + Duration::from_secs(5);
    loop {
        let missing = check();
        if missing.is_empty() {
            progress(&format!(
                "{what}: done in {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if t0.elapsed() > timeout {
            return Err(missing.into_iter().next().unwrap_or_default());
        }
        if Instant::now() >= next {
            progress(&format!(
                "waiting for {what}: {} missing, e.g. {} ({} s of {} s)",
                missing.len(),
                missing[0].1,
                t0.elapsed().as_secs(),
                timeout.as_secs()
            ));
            next += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn wait_sessions(
    state: &LabState,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(), DeployError> {
    let tors: Vec<&NodeState> = state.nodes.iter().filter(|n| n.router.is_some()).collect();
    wait_until("BGP sessions Established", timeout, progress, || {
        let mut missing = Vec::new();
        for t in &tors {
            let Some(kind) = t.router else { continue };
            match routers::neighbors(kind, &t.ns(), &t.dir) {
                Ok(ns) if ns.is_empty() => missing.push((
                    t.name.clone(),
                    format!("{}: no sessions configured", t.name),
                )),
                Ok(ns) => {
                    for n in ns.iter().filter(|n| !n.established()) {
                        missing.push((
                            t.name.clone(),
                            format!("{} session to {} is {}", t.name, n.address, n.state),
                        ));
                    }
                }
                Err(e) => missing.push((t.name.clone(), format!("{}: {e}", t.name))),
            }
        }
        missing
    })
    .map_err(|(node, what)| {
        let st = state.nodes.iter().find(|n| n.name == node);
        // The other end's view: the first hosts' flatnetd logs.
        let hosts: String = state
            .nodes
            .iter()
            .filter(|n| n.router.is_none())
            .take(3)
            .map(|h| {
                format!(
                    "--- {} flatnetd.log:\n{}\n",
                    h.name,
                    tail(&h.dir.join("flatnetd.log"), 4)
                )
            })
            .collect();
        node_err(
            &node,
            format!(
                "{what} after {} s\n{}{hosts}",
                timeout.as_secs(),
                st.map(daemon_tail).unwrap_or_default()
            ),
        )
    })
}

/// Every host's kernel holds a route flatnetd learned (protocol 200) to
/// every other host's blocks, over each of its peers (ECMP): what the hosts
/// reach, they reach by BGP.
fn wait_learned(
    state: &LabState,
    flatnet: &Path,
    peers: &std::collections::BTreeMap<String, usize>,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(), DeployError> {
    let hosts: Vec<&NodeState> = state.nodes.iter().filter(|n| n.router.is_none()).collect();
    let mut blocks = Vec::new();
    for h in &hosts {
        let socket = h.socket.clone().unwrap_or_default();
        let b = super::cni::host_blocks(flatnet, &socket)
            .map_err(|e| node_err(&h.name, format!("flatnet ipam show: {e}")))?;
        blocks.push((h.name.clone(), b));
    }
    wait_until(
        "every host's kernel routes to the other hosts' blocks over each peer (learned, proto 200)",
        timeout,
        progress,
        || {
            let mut missing = Vec::new();
            for h in &hosts {
                let want = peers.get(&h.name).copied().unwrap_or(1).max(1);
                let mut have = BTreeSet::new();
                for fam in ["-4", "-6"] {
                    let out = h.ns().ip(&["-j", fam, "route", "show", "proto", "200"]);
                    let v: serde_json::Value = out
                        .ok()
                        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
                        .unwrap_or_default();
                    for r in v.as_array().into_iter().flatten() {
                        let hops = r["nexthops"].as_array().map_or(1, Vec::len);
                        if r["type"].as_str() != Some("blackhole")
                            && hops >= want
                            && let Some(d) = r["dst"].as_str()
                        {
                            have.insert(d.to_string());
                        }
                    }
                }
                for (other, bs) in blocks.iter().filter(|(o, _)| *o != h.name) {
                    for b in bs.iter().filter(|b| !have.contains(*b)) {
                        missing.push((
                            h.name.clone(),
                            format!("{} has no learned route to {b} ({other})", h.name),
                        ));
                    }
                }
            }
            missing
        },
    )
    .map_err(|(node, what)| {
        let st = state.nodes.iter().find(|n| n.name == node);
        node_err(
            &node,
            format!("{what}\n{}", st.map(daemon_tail).unwrap_or_default()),
        )
    })
}

fn wait_routes(
    state: &LabState,
    flatnet: &Path,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(), DeployError> {
    let mut blocks = BTreeSet::new();
    for h in state.nodes.iter().filter(|n| n.router.is_none()) {
        let socket = h.socket.clone().unwrap_or_default();
        for b in super::cni::host_blocks(flatnet, &socket)
            .map_err(|e| node_err(&h.name, format!("flatnet ipam show: {e}")))?
        {
            blocks.insert(b);
        }
    }
    let tors: Vec<&NodeState> = state.nodes.iter().filter(|n| n.router.is_some()).collect();
    wait_until("every host block at every ToR", timeout, progress, || {
        let mut missing = Vec::new();
        for t in &tors {
            let Some(kind) = t.router else { continue };
            let mut have = BTreeSet::new();
            for fam in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
                if let Ok(rib) = routers::rib(kind, &t.ns(), &t.dir, fam) {
                    have.extend(rib.into_iter().map(|r| r.prefix));
                }
            }
            for b in blocks.iter().filter(|b| !have.contains(*b)) {
                missing.push((t.name.clone(), format!("{} has no route to {b}", t.name)));
            }
        }
        missing
    })
    .map_err(|(node, what)| {
        let st = state.nodes.iter().find(|n| n.name == node);
        node_err(
            &node,
            format!("{what}\n{}", st.map(daemon_tail).unwrap_or_default()),
        )
    })
}
