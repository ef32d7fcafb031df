//! The file as written: containerlab's `.clab.yml` shape (name, topology.nodes,
//! topology.links) plus the top-level `flatnet:` section containerlab ignores.
//! Fields containerlab knows and flatnet-lab does not use are accepted and
//! ignored, so one file deploys under both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole `.clab.yml` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct File {
    pub name: String,
    pub topology: TopologySection,
    #[serde(default)]
    pub flatnet: FlatnetSection,
}

/// `topology:`: nodes by name and the links between them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopologySection {
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeDef>,
    #[serde(default)]
    pub links: Vec<LinkDef>,
}

/// One node as containerlab describes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeDef {
    pub kind: Option<String>,
    pub image: Option<String>,
    /// `host-path:container-path[:ro]`, host path relative to the file.
    #[serde(default)]
    pub binds: Vec<String>,
    /// Commands run inside the node once its links exist (addresses, routes).
    #[serde(default)]
    pub exec: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `flatnet.role` (tor | host) and `flatnet.router` (frr | bird | gobgp).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `endpoints: ["a:eth1", "b:eth0"]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkDef {
    pub endpoints: Vec<String>,
}

/// flatnet's own settings; containerlab ignores unknown top-level keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FlatnetSection {
    /// Hosts get a static ECMP default over their peers instead of relying
    /// on the routes flatnetd learns. Off by default; the `unnumbered`
    /// topology needs it while the FIB cannot program RFC 8950 next hops.
    #[serde(default)]
    pub static_default: bool,
    #[serde(default)]
    pub pools: Vec<PoolDef>,
    /// Application names containers belong to.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Allowed app-to-app connections; see [`crate::topology::policy`].
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    /// Per host node: its BGP identity, peers and containers.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostDef>,
    /// Generated hosts (the `scale` topology); see [`crate::topology::scale`].
    pub scale: Option<super::scale::ScaleDef>,
}

fn default_port() -> u16 {
    8080
}

/// An IPAM pool handed to every host's flatnetd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PoolDef {
    pub cidr: String,
    pub block_size: Option<u8>,
}

/// The protocol of a policy edge (flatnet's `[[allow]] proto`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Proto {
    /// flatnet's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Any => "any",
        }
    }
}

/// `from` app may open connections to `to` app with `proto` (default tcp)
/// on `ports` (none: every port): one flatnet `[[allow]]` edge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PolicyDef {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub proto: Proto,
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// A host node's flatnetd settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostDef {
    pub asn: u32,
    pub router_id: String,
    #[serde(default)]
    pub peers: Vec<PeerDef>,
    #[serde(default)]
    pub containers: Vec<ContainerDef>,
}

/// One BGP peer of a host (a ToR's address on the shared link).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerDef {
    pub address: String,
    pub asn: u32,
    /// The host's IPv6 address on this link, sent as IPv6 next hop.
    pub next_hop_ipv6: Option<String>,
    /// The ToR's IPv6 address on this link (static IPv6 default).
    pub gateway6: Option<String>,
    /// The host's interface towards a link-local (unnumbered) peer.
    pub interface: Option<String>,
    /// Announce extended next hop (IPv4 blocks over an IPv6 session).
    #[serde(default)]
    pub extended_next_hop: bool,
}

/// A container attached through flatnet-cni on its host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContainerDef {
    pub name: String,
    pub app: Option<String>,
    /// TCP port the container listens on for the reachability matrix.
    #[serde(default = "default_port")]
    pub port: u16,
}
