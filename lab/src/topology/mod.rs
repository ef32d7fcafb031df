//! Topology files: containerlab `.clab.yml` parsed and validated before
//! anything is created.
//!
//! This room owns reading a topology file into a [`Topology`] (the checked
//! model every test, benchmark and `flatnet-lab` builds from) and the pure
//! policy matrix. It touches nothing on the machine except reading the file
//! and checking that the config files it binds exist. Every problem is
//! reported as `file:line: message`, all of them at once.

mod locate;
pub mod model;
pub mod policy;
pub mod scale;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub use model::{ContainerDef, FlatnetSection, HostDef, PeerDef, PolicyDef, PoolDef, Proto};

use locate::Locator;

/// The routing daemon a ToR runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    Frr,
    Bird,
    Gobgp,
}

impl RouterKind {
    /// The container path its config is bound to, containerlab style.
    pub fn config_target(self) -> &'static str {
        match self {
            RouterKind::Frr => "/etc/frr/frr.conf",
            RouterKind::Bird => "/etc/bird/bird.conf",
            RouterKind::Gobgp => "/etc/gobgp/gobgp.toml",
        }
    }
}

/// What a node is in the lab.
#[derive(Debug, Clone)]
pub enum Role {
    /// A ToR: a routing daemon with its config file (absolute path).
    Tor { router: RouterKind, config: PathBuf },
    /// A host running flatnetd.
    Host(HostDef),
}

/// A checked node.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub exec: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub node: String,
    pub iface: String,
}

/// A checked link (veth pair).
#[derive(Debug, Clone)]
pub struct Link {
    pub a: Endpoint,
    pub b: Endpoint,
}

/// A validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub file: PathBuf,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    pub flatnet: FlatnetSection,
}

/// One problem, at a line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

/// Why a topology file was rejected: every problem found, with its line.
#[derive(Debug, thiserror::Error)]
pub struct TopologyError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in &self.problems {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{}:{}: {}", self.file.display(), p.line, p.message)?;
        }
        Ok(())
    }
}

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

impl Topology {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        Self::load_scaled(path, None)
    }

    /// Like [`Topology::load`], with `hosts` generated hosts for a file with
    /// a `flatnet.scale` section (None: the section's own number).
    pub fn load_scaled(path: &Path, hosts: Option<usize>) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                line: 0,
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::parse_scaled(path, &text, hosts)
    }

    /// Validates `text` as if read from `path` (bind paths are relative to
    /// its directory).
    pub fn parse(path: &Path, text: &str) -> Result<Topology, TopologyError> {
        Self::parse_scaled(path, text, None)
    }

    /// [`Topology::parse`] with generated hosts (see [`scale`]).
    pub fn parse_scaled(
        path: &Path,
        text: &str,
        hosts: Option<usize>,
    ) -> Result<Topology, TopologyError> {
        let err = |problems| TopologyError {
            file: path.to_path_buf(),
            problems,
        };
        let mut file: model::File = serde_norway::from_str(text).map_err(|e| {
            err(vec![Problem {
                line: e.location().map(|l| l.line()).unwrap_or(0),
                message: e.to_string(),
            }])
        })?;
        scale::expand(&mut file, hosts).map_err(|message| {
            err(vec![Problem {
                line: Locator::new(text).key_line(&["flatnet"], "scale"),
                message,
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        check(path, base, text, file).map_err(err)
    }

    /// The file with its generated hosts written out (for containerlab).
    pub fn expanded_yaml(path: &Path, hosts: Option<usize>) -> Result<String, TopologyError> {
        let t = Self::load_scaled(path, hosts)?;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut file: model::File = serde_norway::from_str(&text).map_err(|e| TopologyError {
            file: t.file.clone(),
            problems: vec![Problem {
                line: 0,
                message: e.to_string(),
            }],
        })?;
        let bad = |message: String| TopologyError {
            file: t.file.clone(),
            problems: vec![Problem { line: 0, message }],
        };
        scale::expand(&mut file, hosts).map_err(bad)?;
        file.flatnet.scale = None;
        serde_norway::to_string(&file).map_err(|e| bad(e.to_string()))
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Host nodes in order.
    pub fn hosts(&self) -> impl Iterator<Item = (&Node, &HostDef)> {
        self.nodes.iter().filter_map(|n| match &n.role {
            Role::Host(h) => Some((n, h)),
            Role::Tor { .. } => None,
        })
    }

    /// ToR nodes in order.
    pub fn tors(&self) -> impl Iterator<Item = (&Node, RouterKind, &Path)> {
        self.nodes.iter().filter_map(|n| match &n.role {
            Role::Tor { router, config } => Some((n, *router, config.as_path())),
            Role::Host(_) => None,
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 16
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check(
    path: &Path,
    base: &Path,
    text: &str,
    file: model::File,
) -> Result<Topology, Vec<Problem>> {
    let loc = Locator::new(text);
    let mut problems = Vec::new();
    let mut bad = |line: usize, message: String| problems.push(Problem { line, message });

    if !valid_name(&file.name) {
        bad(
            loc.key_line(&[], "name"),
            format!(
                "lab name {:?} must be 1-16 characters of a-z, 0-9 and '-' (namespaces carry it)",
                file.name
            ),
        );
    }

    let mut nodes = Vec::new();
    for (name, def) in &file.topology.nodes {
        let line = loc.key_line(&["topology", "nodes"], name);
        if !valid_name(name) {
            bad(
                line,
                format!("node name {name:?} must be 1-16 characters of a-z, 0-9 and '-'"),
            );
        }
        match def.kind.as_deref() {
            Some("linux") => {}
            Some(k) => {
                bad(
                    loc.key_line(&["topology", "nodes", name], "kind").max(line),
                    format!(
                        "node {name}: kind {k:?} cannot run in flatnet-lab (only `linux` nodes: FRR, BIRD, GoBGP or flatnetd)"
                    ),
                );
                continue;
            }
            None => {
                bad(line, format!("node {name}: no kind (use `kind: linux`)"));
                continue;
            }
        }
        let role = def.labels.get("flatnet.role").map(String::as_str);
        let role = match role {
            Some("host") => {
                let Some(h) = file.flatnet.hosts.get(name) else {
                    bad(
                        line,
                        format!(
                            "host {name} has no entry under flatnet.hosts (asn, router-id, peers)"
                        ),
                    );
                    continue;
                };
                Role::Host(h.clone())
            }
            Some("tor") | None => {
                let router = match def.labels.get("flatnet.router").map(String::as_str) {
                    Some("frr") => RouterKind::Frr,
                    Some("bird") => RouterKind::Bird,
                    Some("gobgp") => RouterKind::Gobgp,
                    Some(other) => {
                        bad(
                            loc.key_line(&["topology", "nodes", name, "labels"], "flatnet.router"),
                            format!("node {name}: router {other:?} is not one of frr, bird, gobgp"),
                        );
                        continue;
                    }
                    None => match def.image.as_deref().unwrap_or("") {
                        i if i.contains("bird") => RouterKind::Bird,
                        i if i.contains("gobgp") => RouterKind::Gobgp,
                        _ => RouterKind::Frr,
                    },
                };
                let target = router.config_target();
                let bind = def.binds.iter().find_map(|b| {
                    let mut parts = b.split(':');
                    let host = parts.next()?;
                    (parts.next()? == target).then_some((b, host))
                });
                let Some((bind, host_path)) = bind else {
                    bad(
                        line,
                        format!("ToR {name}: no bind of its {router:?} config to {target}"),
                    );
                    continue;
                };
                let config = base.join(host_path);
                if !config.is_file() {
                    bad(
                        loc.value_line(&["topology", "nodes", name, "binds"], bind),
                        format!(
                            "ToR {name}: config file {} does not exist",
                            config.display()
                        ),
                    );
                    continue;
                }
                Role::Tor { router, config }
            }
            Some(other) => {
                bad(
                    loc.key_line(&["topology", "nodes", name, "labels"], "flatnet.role"),
                    format!("node {name}: flatnet.role {other:?} is not tor or host"),
                );
                continue;
            }
        };
        nodes.push(Node {
            name: name.clone(),
            role,
            exec: def.exec.clone(),
            env: def.env.clone(),
        });
    }

    let mut links = Vec::new();
    let mut used: BTreeSet<Endpoint> = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for link in &file.topology.links {
        let mut ends = Vec::new();
        for ep in &link.endpoints {
            let n = seen.entry(ep.clone()).or_insert(0);
            let line = loc.nth_value_line(&["topology", "links"], ep, *n);
            *n += 1;
            let Some((node, iface)) = ep.split_once(':') else {
                bad(line, format!("link endpoint {ep:?} is not node:interface"));
                continue;
            };
            if !file.topology.nodes.contains_key(node) {
                bad(line, format!("link endpoint {ep:?}: unknown node {node:?}"));
                continue;
            }
            if iface.is_empty() || iface.len() > MAX_IFNAME || iface == "lo" {
                bad(
                    line,
                    format!(
                        "link endpoint {ep:?}: interface name must be 1-{MAX_IFNAME} characters and not lo"
                    ),
                );
                continue;
            }
            let e = Endpoint {
                node: node.to_string(),
                iface: iface.to_string(),
            };
            if !used.insert(e.clone()) {
                bad(line, format!("link endpoint {ep:?}: interface used twice"));
                continue;
            }
            ends.push(e);
        }
        if link.endpoints.len() != 2 {
            let first = link.endpoints.first().map(String::as_str);
            bad(
                loc.nth_value_line(&["topology", "links"], first.unwrap_or("endpoints"), 0),
                format!(
                    "a link has exactly 2 endpoints, this one has {}",
                    link.endpoints.len()
                ),
            );
        } else if let Ok([a, b]) = <[Endpoint; 2]>::try_from(ends) {
            links.push(Link { a, b });
        }
    }

    let fl = &file.flatnet;
    let apps: BTreeSet<&str> = fl.apps.iter().map(String::as_str).collect();
    let mut ctr_names: BTreeSet<&str> = BTreeSet::new();
    for (host, h) in &fl.hosts {
        let line = loc.key_line(&["flatnet", "hosts"], host);
        match file.topology.nodes.get(host) {
            None => bad(line, format!("flatnet.hosts: unknown node {host:?}")),
            Some(d) if d.labels.get("flatnet.role").map(String::as_str) != Some("host") => bad(
                line,
                format!("flatnet.hosts: node {host} is not labelled flatnet.role: host"),
            ),
            Some(_) => {}
        }
        if h.router_id.parse::<std::net::Ipv4Addr>().is_err() {
            bad(
                line,
                format!(
                    "host {host}: router-id {:?} is not an IPv4 address",
                    h.router_id
                ),
            );
        }
        for p in &h.peers {
            let link_local = matches!(p.address.parse::<std::net::IpAddr>(), Ok(std::net::IpAddr::V6(a)) if a.is_unicast_link_local());
            if link_local && p.interface.is_none() {
                bad(
                    loc.value_line(&["flatnet", "hosts", host], &p.address),
                    format!(
                        "host {host}: link-local peer {} needs an interface",
                        p.address
                    ),
                );
            }
            if p.address.parse::<std::net::IpAddr>().is_err() {
                bad(
                    loc.value_line(&["flatnet", "hosts", host], &p.address),
                    format!(
                        "host {host}: peer address {:?} is not an IP address",
                        p.address
                    ),
                );
            }
        }
        for c in &h.containers {
            let cl = loc.value_line(&["flatnet", "hosts", host], &c.name);
            if !valid_name(&c.name) || file.topology.nodes.contains_key(&c.name) {
                bad(
                    cl,
                    format!(
                        "container name {:?} must be a-z0-9- and not a node's name",
                        c.name
                    ),
                );
            }
            if !ctr_names.insert(&c.name) {
                bad(cl, format!("container {:?} declared twice", c.name));
            }
            if let Some(app) = &c.app
                && !apps.contains(app.as_str())
            {
                bad(
                    cl,
                    format!("container {}: app {app:?} is not in flatnet.apps", c.name),
                );
            }
        }
    }
    if !fl.hosts.is_empty() && fl.pools.is_empty() {
        bad(
            loc.key_line(&[], "flatnet"),
            "flatnet.pools: hosts need at least one pool".into(),
        );
    }
    for p in &fl.pools {
        if p.cidr.parse::<flatnet_bgp::wire::Prefix>().is_err() {
            bad(
                loc.value_line(&["flatnet", "pools"], &p.cidr),
                format!("pool {:?} is not a CIDR", p.cidr),
            );
        }
    }
    for p in &fl.policies {
        if matches!(p.proto, Proto::Icmp) && !p.ports.is_empty() {
            bad(
                loc.value_line(&["flatnet", "policies"], &p.to),
                format!("policy {} -> {}: icmp has no ports", p.from, p.to),
            );
        }
        for app in [&p.from, &p.to] {
            if !apps.contains(app.as_str()) {
                bad(
                    loc.value_line(&["flatnet", "policies"], app),
                    format!(
                        "policy {} -> {}: app {app:?} is not in flatnet.apps",
                        p.from, p.to
                    ),
                );
            }
        }
    }

    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Err(problems);
    }
    Ok(Topology {
        name: file.name,
        file: path.to_path_buf(),
        nodes,
        links,
        flatnet: file.flatnet,
    })
}
