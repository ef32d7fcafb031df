//! A lab left running: `flatnet-lab up | status | down | exec | ping`.
//!
//! This room owns turning a checked [`Topology`] into namespaces, veth
//! pairs and daemons that outlive the command, the lab's state file, the
//! summary (sessions, routes, reachability, policy matrix) and tearing it
//! all down again. It touches only namespaces named `flab-<lab>-<node>` and
//! its run directory `/run/flatnet-lab/<lab>/`; `down` finds everything by
//! that name, also after an `up` that was SIGKILLed.

pub mod bench;
pub mod cni;
mod down;
mod enforce;
mod hosts;
pub mod preflight;
mod routers;
pub mod summary;
mod up;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use down::{down, leftovers};
pub use summary::{Summary, collect as summarize};
pub use up::{UpOptions, up};

use crate::Netns;
use crate::topology::{PolicyDef, RouterKind};

/// Where labs keep their state, configs and logs.
pub const RUN_ROOT: &str = "/run/flatnet-lab";

/// Prefix of every namespace a kept lab creates.
pub const LAB_NS_PREFIX: &str = "flab-";

/// Namespace name of `node` in lab `lab`.
pub fn ns_name(lab: &str, node: &str) -> String {
    format!("{LAB_NS_PREFIX}{lab}-{node}")
}

/// Run directory of a lab.
pub fn run_dir(lab: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(lab)
}

/// What `up` built, saved as `state.json` so later commands find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub file: PathBuf,
    pub bin_dir: PathBuf,
    pub nodes: Vec<NodeState>,
    pub containers: Vec<ContainerState>,
    pub policies: Vec<PolicyDef>,
    /// Whether `up` applied `policies` to flatnet and every host's rules
    /// decide as declared.
    #[serde(default)]
    pub policy_applied: bool,
    /// Seconds from the start of `up` to each milestone (`established`,
    /// `routes`, `policy`; `flatnetd_started`, `containers_added`), for the
    /// scale report.
    #[serde(default)]
    pub timings: std::collections::BTreeMap<String, f64>,
}

/// One ToR or host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub netns: String,
    /// `None` for a host (flatnetd).
    pub router: Option<RouterKind>,
    pub dir: PathBuf,
    /// flatnetd's API socket on a host.
    pub socket: Option<PathBuf>,
}

/// One container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub name: String,
    pub host: String,
    pub netns: String,
    pub app: Option<String>,
    pub port: u16,
    pub addrs: Vec<std::net::IpAddr>,
}

impl NodeState {
    pub fn ns(&self) -> Netns {
        Netns::open_kept(&self.netns)
    }
}

impl ContainerState {
    pub fn ns(&self) -> Netns {
        Netns::open_kept(&self.netns)
    }
}

/// Errors of a kept lab.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Topology(#[from] crate::topology::TopologyError),
    #[error("lab {0} is already up (run `flatnet-lab down` first)")]
    AlreadyUp(String),
    #[error("no lab {0} is up (no {1})")]
    NotUp(String, PathBuf),
    #[error("no node or container {0:?} in lab {1}")]
    UnknownNode(String, String),
    #[error("missing packages: {}; install them with `flatnet-lab up --install-deps` or `apt-get install {}`", .0.iter().map(|(p, progs)| format!("{p} (for {})", progs.join(", "))).collect::<Vec<_>>().join(", "), .0.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(" "))]
    Missing(Vec<(String, Vec<String>)>),
    #[error("{node}: {what}")]
    Node { node: String, what: String },
    #[error(transparent)]
    Lab(#[from] crate::LabError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("state file {0}: {1}")]
    State(PathBuf, serde_json::Error),
}

impl LabState {
    /// Reads the state of the lab called `name`.
    pub fn load(name: &str) -> Result<LabState, DeployError> {
        let p = run_dir(name).join("state.json");
        let text = std::fs::read_to_string(&p)
            .map_err(|_| DeployError::NotUp(name.to_string(), p.clone()))?;
        serde_json::from_str(&text).map_err(|e| DeployError::State(p, e))
    }

    fn save(&self) -> Result<(), DeployError> {
        let p = run_dir(&self.name).join("state.json");
        let text =
            serde_json::to_string_pretty(self).map_err(|e| DeployError::State(p.clone(), e))?;
        std::fs::write(&p, text).map_err(|e| DeployError::Io(p, e))
    }

    /// The namespace of a node or container by name.
    pub fn netns_of(&self, name: &str) -> Result<Netns, DeployError> {
        if let Some(n) = self.nodes.iter().find(|n| n.name == name) {
            return Ok(n.ns());
        }
        if let Some(c) = self.containers.iter().find(|c| c.name == name) {
            return Ok(c.ns());
        }
        Err(DeployError::UnknownNode(
            name.to_string(),
            self.name.clone(),
        ))
    }
}

/// The last `n` lines of a log file (empty if missing), for failure reports.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
