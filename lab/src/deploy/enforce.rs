//! The lab's declared policy, applied to flatnet: written as a flatnet
//! policy document, stored once with `flatnet policy apply -f` (the hosts
//! share one datastore, every host's flatnetd follows it), then waited for
//! until every host's compiled rules (`flatnet policy trace`, which walks
//! what that host's kernel holds) decide every pair the way the declaration
//! does.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::up::{node_err, wait_until};
use super::{ContainerState, DeployError, LabState, NodeState};
use crate::topology::policy;

/// Stores the lab's policy document through `host`'s flatnetd.
pub(super) fn apply(state: &LabState, flatnet: &Path, host: &NodeState) -> Result<(), DeployError> {
    let doc = policy::document(&state.name, &state.policies);
    let file = host.dir.join("policy.json");
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    std::fs::write(&file, text).map_err(|e| DeployError::Io(file.clone(), e))?;
    let socket = host.socket.clone().unwrap_or_default();
    let out = Command::new(flatnet)
        .arg("--socket")
        .arg(&socket)
        .args(["policy", "apply", "-f"])
        .arg(&file)
        .output()
        .map_err(|e| DeployError::Io(flatnet.to_path_buf(), e))?;
    if !out.status.success() {
        return Err(node_err(
            &host.name,
            format!(
                "flatnet policy apply -f {} failed: {}{}",
                file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    Ok(())
}

/// What `host`'s compiled rules decide for TCP from `from` to `to`:`port`
/// (`None`: no answer yet, e.g. nothing compiled).
fn trace(flatnet: &Path, host: &NodeState, from: IpAddr, to: IpAddr, port: u16) -> Option<bool> {
    let socket = host.socket.clone().unwrap_or_default();
    let out = Command::new(flatnet)
        .arg("--socket")
        .arg(&socket)
        .args(["--json", "policy", "trace", "--proto", "tcp"])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .args(["--port", &port.to_string()])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["allow"].as_bool()
}

/// Ordered pairs of containers with an end on `host`, per address family.
fn pairs<'a>(
    state: &'a LabState,
    host: &'a str,
) -> impl Iterator<Item = (&'a ContainerState, &'a ContainerState, IpAddr, IpAddr)> + 'a {
    let all = &state.containers;
    all.iter()
        .flat_map(move |a| all.iter().map(move |b| (a, b)))
        .filter(move |(a, b)| a.name != b.name && (a.host == host || b.host == host))
        .flat_map(|(a, b)| {
            b.addrs.iter().filter_map(move |to| {
                let from = a.addrs.iter().find(|f| f.is_ipv4() == to.is_ipv4())?;
                Some((a, b, *from, *to))
            })
        })
}

/// Waits until every host's rules decide every pair with an end on it
/// (TCP to the destination's port) as the declared policy does.
pub(super) fn wait_enforced(
    state: &LabState,
    flatnet: &Path,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(), DeployError> {
    let hosts: Vec<&NodeState> = state.nodes.iter().filter(|n| n.router.is_none()).collect();
    wait_until(
        "every host's policy rules as declared (flatnet policy trace)",
        timeout,
        progress,
        || {
            let mut missing = Vec::new();
            for h in &hosts {
                for (a, b, from, to) in pairs(state, &h.name) {
                    let want = policy::allowed(
                        &state.policies,
                        a.app.as_deref(),
                        b.app.as_deref(),
                        b.port,
                    );
                    let got = trace(flatnet, h, from, to, b.port);
                    if got != Some(want) {
                        let c = |x: bool| if x { "allow" } else { "deny" };
                        missing.push((
                            h.name.clone(),
                            format!(
                                "{} traces {} -> {} {to}:{} as {}, the policy says {}",
                                h.name,
                                a.name,
                                b.name,
                                b.port,
                                got.map_or("nothing (no rules yet)", c),
                                c(want)
                            ),
                        ));
                    }
                }
            }
            missing
        },
    )
    .map_err(|(node, what)| {
        let log = hosts
            .iter()
            .find(|h| h.name == node)
            .map(|h| super::tail(&h.dir.join("flatnetd.log"), 8))
            .unwrap_or_default();
        node_err(
            &node,
            format!("{what}\n--- last lines of flatnetd.log:\n{log}"),
        )
    })
}
