//! Starting the hosts of a lab at once: flatnetd on every host in its own
//! thread, then the CNI ADDs of several hosts at a time (one host's
//! containers one after another, as a runtime on that host would). A serial
//! start grows with N by itself; started together, what `up` waits for
//! afterwards is the fabric's convergence. Errors still name the node; the
//! first in topology order is reported.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::routers::spawn_detached;
use super::up::node_err;
use super::{ContainerState, DeployError, NodeState, tail};
use crate::Netns;
use crate::topology::{HostDef, Topology};

/// Hosts whose containers are added at the same time (each ADD is a
/// flatnet-cni process and a round of netlink work in its flatnetd).
pub const PARALLEL_HOSTS: usize = 8;

/// How long one flatnetd may take to open its API socket; generous because
/// every host starts at once on a machine with few cores.
const SOCKET_WAIT: Duration = Duration::from_secs(60);

/// Runs `f` for every item on up to `width` threads; the results in item
/// order.
fn parallel<T: Sync, R: Send>(items: &[T], width: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|sc| {
        for _ in 0..width.clamp(1, items.len().max(1)) {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    if let Ok(mut o) = out.lock() {
                        o[i] = Some(r);
                    }
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// The first error in item order, else every value.
fn first_err<R>(rs: Vec<Result<R, DeployError>>) -> Result<Vec<R>, DeployError> {
    rs.into_iter().collect()
}

/// One host to start: its node state, definition and generated config.
pub(super) struct HostStart<'a> {
    pub st: &'a NodeState,
    pub def: &'a HostDef,
    pub config: String,
}

/// Starts flatnetd on every host at once and waits for every API socket.
pub(super) fn start_flatnetd(
    topo: &Topology,
    hosts: &[HostStart<'_>],
    flatnetd: &Path,
    static_default: impl Fn(&Netns, &HostDef) -> Result<(), crate::LabError> + Sync,
) -> Result<(), DeployError> {
    let rs = parallel(hosts, hosts.len(), |h| {
        let st = h.st;
        let ns = st.ns();
        if topo.flatnet.static_default {
            static_default(&ns, h.def).map_err(|e| node_err(&st.name, e))?;
        }
        let conf_path = st.dir.join("flatnetd.toml");
        std::fs::write(&conf_path, &h.config).map_err(|e| DeployError::Io(conf_path.clone(), e))?;
        spawn_detached(
            &ns,
            &st.dir,
            "flatnetd.log",
            flatnetd,
            &["--config".into(), conf_path.to_string_lossy().into_owned()],
        )
        .map_err(|e| node_err(&st.name, e))?;
        let socket = st.socket.clone().unwrap_or_default();
        let deadline = Instant::now() + SOCKET_WAIT;
        while !socket.exists() {
            if Instant::now() > deadline {
                return Err(node_err(
                    &st.name,
                    format!(
                        "flatnetd's API socket did not appear in {} s; last log lines:\n{}",
                        SOCKET_WAIT.as_secs(),
                        tail(&st.dir.join("flatnetd.log"), 10)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    });
    first_err(rs).map(drop)
}

/// Adds every container (their namespaces already exist, `containers` in
/// topology order) through flatnet-cni, `PARALLEL_HOSTS` hosts at a time,
/// and starts its TCP listener; fills in each container's addresses.
pub(super) fn add_containers(
    nodes: &[NodeState],
    containers: &mut [ContainerState],
    cni: &Path,
    listener: &Path,
) -> Result<(), DeployError> {
    let mut by_host: Vec<(&NodeState, Vec<usize>)> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        match by_host.iter_mut().find(|(n, _)| n.name == c.host) {
            Some((_, v)) => v.push(i),
            None => {
                let n = nodes
                    .iter()
                    .find(|n| n.name == c.host)
                    .ok_or_else(|| DeployError::UnknownNode(c.host.clone(), c.name.clone()))?;
                by_host.push((n, vec![i]));
            }
        }
    }
    let cs: &[ContainerState] = containers;
    let rs = parallel(&by_host, PARALLEL_HOSTS, |(st, idx)| {
        let socket = st.socket.clone().unwrap_or_default();
        let mut out: Vec<(usize, Vec<IpAddr>)> = Vec::new();
        for &i in idx {
            let c = &cs[i];
            let cns = c.ns();
            let addrs = super::cni::add(cni, &st.ns(), &socket, &c.name, &cns, c.app.as_deref())
                .map_err(|e| node_err(&st.name, format!("container {}: {e}", c.name)))?;
            spawn_detached(
                &cns,
                &st.dir,
                &format!("{}-listener.log", c.name),
                listener,
                &["serve-tcp".into(), "--port".into(), c.port.to_string()],
            )
            .map_err(|e| node_err(&st.name, format!("container {}: {e}", c.name)))?;
            out.push((i, addrs));
        }
        Ok(out)
    });
    for (i, addrs) in first_err(rs)?.into_iter().flatten() {
        containers[i].addrs = addrs;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parallel;

    #[test]
    fn parallel_keeps_item_order_and_runs_every_item() {
        let items: Vec<u32> = (0..50).collect();
        let out = parallel(&items, 7, |x| x * 2);
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(parallel(&[] as &[u32], 4, |x| *x).is_empty());
    }
}
