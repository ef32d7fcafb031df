//! The `scale` topology's hosts, generated: a file with a `flatnet.scale`
//! section lists only its ToRs; N hosts (from the section or the command
//! line) are added as nodes, links, ToR addresses and `flatnet.hosts`
//! entries before the file is checked. Host k (from 0) sits on
//! 10.(250+t).(k/128).(2·(k%128))/31 towards ToR t, so a ToR's config covers
//! every N with one `bgp listen range 10.(250+t).0.0/16`.

use serde::{Deserialize, Serialize};

use super::model::{ContainerDef, File, HostDef, LinkDef, NodeDef, PeerDef};

/// `flatnet.scale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScaleDef {
    /// N when the command line does not set it.
    pub hosts: usize,
    #[serde(default = "three")]
    pub containers_per_host: usize,
    /// The ToRs every host is linked to, with their ASNs.
    pub tors: Vec<ScaleTor>,
    /// AS of host 1; host k+1 uses base + k.
    #[serde(default = "base_asn")]
    pub base_asn: u32,
}

/// One ToR of a scale topology.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScaleTor {
    pub name: String,
    pub asn: u32,
}

fn three() -> usize {
    3
}

fn base_asn() -> u32 {
    64601
}

/// Most hosts the addressing plan holds (/16 of /31s per ToR).
pub const MAX_HOSTS: usize = 32_000;

/// Adds `n` hosts (default: the section's) to `file`. Errors name what is
/// wrong; unknown ToRs are left to the normal checks.
pub(super) fn expand(file: &mut File, n: Option<usize>) -> Result<(), String> {
    let Some(scale) = file.flatnet.scale.clone() else {
        return match n {
            Some(_) => Err("--hosts needs a topology with a flatnet.scale section".into()),
            None => Ok(()),
        };
    };
    let n = n.unwrap_or(scale.hosts);
    if n == 0 || n > MAX_HOSTS {
        return Err(format!("hosts must be 1..={MAX_HOSTS}, not {n}"));
    }
    for k in 0..n {
        let host = format!("host{}", k + 1);
        let mut exec = Vec::new();
        let mut peers = Vec::new();
        for (t, tor) in scale.tors.iter().enumerate() {
            let (tor4, host4) = v4(t, k);
            let (tor6, host6) = v6(t, k);
            let (tor_if, host_if) = (format!("eth{}", k + 1), format!("eth{t}"));
            exec.push(format!("ip addr add {host4}/31 dev {host_if}"));
            exec.push(format!("ip addr add {host6}/64 dev {host_if} nodad"));
            if let Some(node) = file.topology.nodes.get_mut(&tor.name) {
                node.exec
                    .push(format!("ip addr add {tor4}/31 dev {tor_if}"));
                node.exec
                    .push(format!("ip addr add {tor6}/64 dev {tor_if} nodad"));
            }
            file.topology.links.push(LinkDef {
                endpoints: vec![
                    format!("{}:{tor_if}", tor.name),
                    format!("{host}:{host_if}"),
                ],
            });
            peers.push(PeerDef {
                address: tor4,
                asn: tor.asn,
                next_hop_ipv6: Some(host6),
                gateway6: Some(tor6),
                interface: None,
                extended_next_hop: false,
            });
        }
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("flatnet.role".to_string(), "host".to_string());
        file.topology.nodes.insert(
            host.clone(),
            NodeDef {
                kind: Some("linux".into()),
                image: Some("flatnet/flatnetd:latest".into()),
                exec,
                labels,
                ..NodeDef::default()
            },
        );
        let containers = (0..scale.containers_per_host)
            .map(|j| ContainerDef {
                name: format!("c{}-{}", k + 1, j + 1),
                app: None,
                port: 8080,
            })
            .collect();
        file.flatnet.hosts.insert(
            host,
            HostDef {
                asn: scale.base_asn + k as u32,
                router_id: format!("10.254.{}.{}", (k + 1) / 256, (k + 1) % 256),
                peers,
                containers,
            },
        );
    }
    Ok(())
}

/// (ToR, host) IPv4 addresses of host k's link to ToR t.
pub fn v4(t: usize, k: usize) -> (String, String) {
    let (hi, lo) = (k / 128, 2 * (k % 128));
    (
        format!("10.{}.{hi}.{lo}", 251 + t),
        format!("10.{}.{hi}.{}", 251 + t, lo + 1),
    )
}

/// (ToR, host) IPv6 addresses of host k's link to ToR t.
pub fn v6(t: usize, k: usize) -> (String, String) {
    (
        format!("fd00:255:{}:{k:x}::1", t + 1),
        format!("fd00:255:{}:{k:x}::2", t + 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_31s() {
        assert_eq!(v4(0, 0), ("10.251.0.0".into(), "10.251.0.1".into()));
        assert_eq!(v4(1, 127), ("10.252.0.254".into(), "10.252.0.255".into()));
        assert_eq!(v4(0, 128), ("10.251.1.0".into(), "10.251.1.1".into()));
        assert_eq!(v6(1, 26).1, "fd00:255:2:1a::2");
    }
}
