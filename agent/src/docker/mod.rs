//! flatnetd as Docker's libnetwork remote NetworkDriver and IpamDriver
//! (`[docker] enabled`): [`wire`] is the plugin API's JSON, [`plan`] maps
//! requests to answers and actions without IO, [`server`] serves them on
//! `<plugin_dir>/flatnet.sock`, and this file applies them to the
//! [`Agent`] with the same IPAM, kernel pieces and records as CNI.
//!
//! Docker's model differs from CNI's in who does what: Docker asks IPAM
//! for the address first (RequestAddress, under a handle flatnet makes,
//! `docker-<nonce>/eth0`), then CreateEndpoint builds the veth in the host
//! namespace (host end, route, proxy ARP, anti-spoofing, record, policy
//! sets), Join names the peer for Docker to move into the container and
//! configure, and ReleaseAddress gives the address back.

pub mod plan;
pub mod server;
pub mod wire;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::api::Endpoint;
use crate::handlers::{Agent, attachment};
use plan::{AddressPlan, EndpointInfo, NetworkInfo, PoolDesc};
use wire::*;

/// A plugin call that failed: its message goes to Docker as `{"Err": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

impl From<String> for DriverError {
    fn from(s: String) -> Self {
        DriverError(s)
    }
}

impl From<crate::api::ApiError> for DriverError {
    fn from(e: crate::api::ApiError) -> Self {
        DriverError(e.message)
    }
}

type Res<T> = Result<T, DriverError>;

/// The networks and endpoints Docker created through flatnet, kept in
/// `<state_dir>/docker.json` (Docker creates a network once and expects
/// the driver to know it after a restart).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct State {
    networks: BTreeMap<String, NetworkInfo>,
    endpoints: BTreeMap<String, EndpointInfo>,
}

pub struct Driver {
    agent: Arc<Agent>,
    pools: Vec<PoolDesc>,
    state: tokio::sync::Mutex<State>,
    path: PathBuf,
}

fn nonce() -> u128 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (t << 32) ^ (u128::from(std::process::id()) << 16) ^ u128::from(n)
}

impl Driver {
    /// Loads the state file (absent: no networks yet).
    pub fn new(agent: Arc<Agent>) -> anyhow::Result<Arc<Driver>> {
        let path = agent.cfg.dataplane.state_dir.join("docker.json");
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        };
        let pools = agent
            .cfg
            .pools
            .iter()
            .map(|p| PoolDesc::new(p.cidr.0))
            .collect();
        Ok(Arc::new(Driver {
            agent,
            pools,
            state: tokio::sync::Mutex::new(state),
            path,
        }))
    }

    /// Writes the state (temp file, then rename: never half a file).
    fn save(&self, s: &State) -> Res<()> {
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(s).map_err(|e| DriverError(e.to_string()))?;
        std::fs::create_dir_all(self.agent.cfg.dataplane.state_dir.as_path())
            .and_then(|()| std::fs::write(&tmp, body))
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| DriverError(format!("saving {}: {e}", self.path.display())))
    }

    pub fn request_pool(&self, req: &RequestPool) -> Res<PoolAnswer> {
        Ok(plan::request_pool(req, &self.pools)?)
    }

    pub fn release_pool(&self, req: &PoolRef) -> Res<()> {
        plan::find_pool(&self.pools, &req.pool_id)?;
        Ok(())
    }

    /// An address from this host's block of the requested pool (one
    /// family: Docker asks for IPv4 and IPv6 separately, each under its
    /// own handle), the block getting its blackhole before the address is
    /// handed out, as on CNI's ADD.
    pub async fn request_address(&self, req: &RequestAddress) -> Res<AddressAnswer> {
        match plan::request_address(req, &self.pools)? {
            AddressPlan::Gateway(a) => Ok(a),
            AddressPlan::Allocate => {
                let a = &self.agent;
                let pool = plan::find_pool(&self.pools, &req.pool_id)?;
                let v6 = pool.cidr.is_ipv6();
                let handle = plan::new_handle(nonce());
                let alloc = a
                    .ipam
                    .allocate_from(&handle, &pool.name, v6)
                    .await
                    .map_err(|e| DriverError(e.to_string()))?;
                let ip = if v6 {
                    alloc.addrs.v6.map(IpAddr::V6)
                } else {
                    alloc.addrs.v4.map(IpAddr::V4)
                };
                let Some(ip) = ip else {
                    let _ = a.ipam.release(&handle).await;
                    return Err(DriverError(format!(
                        "IPAM gave no address from pool {}",
                        pool.cidr
                    )));
                };
                if let Err(e) = a.blocks.ensure(&alloc.own_blocks).await {
                    let _ = a.ipam.release(&handle).await;
                    return Err(DriverError(e.to_string()));
                }
                if alloc.borrowed {
                    a.blocks.nudge();
                }
                tracing::info!(%handle, %ip, "docker: address allocated");
                Ok(plan::address_answer(ip))
            }
        }
    }

    /// The Docker handle holding `addr`, if any.
    async fn holder(&self, addr: IpAddr) -> Res<Option<crate::api::AttachmentRef>> {
        let allocs = self
            .agent
            .ipam
            .allocations()
            .await
            .map_err(|e| DriverError(e.to_string()))?;
        Ok(allocs
            .into_iter()
            .filter(|al| al.addr == addr)
            .filter_map(|al| al.handle.parse().ok())
            .find(plan::is_docker_handle))
    }

    /// Frees an address; one already free is fine (a restart's
    /// reconciliation released a dead endpoint's).
    pub async fn release_address(&self, req: &ReleaseAddress) -> Res<()> {
        let pool = plan::find_pool(&self.pools, &req.pool_id)?;
        if plan::is_gateway(&req.address) {
            return Ok(());
        }
        let ip = plan::parse_ip(&req.address)?;
        if ip.is_ipv6() != pool.cidr.is_ipv6() || !pool.cidr.contains(ip) {
            return Err(DriverError(format!(
                "address {} is not in pool {}",
                req.address, pool.cidr
            )));
        }
        if let Some(h) = self.holder(ip).await? {
            let lock = self.agent.lock_for(&h);
            let _g = lock.lock().await;
            self.agent
                .ipam
                .release(&h)
                .await
                .map_err(|e| DriverError(e.to_string()))?;
            // A borrowed address's /32 (/128) is withdrawn at once.
            self.agent.blocks.released(&[ip]);
            tracing::info!(handle = %h, %ip, "docker: address released");
        }
        Ok(())
    }

    pub async fn create_network(&self, req: &CreateNetwork) -> Res<()> {
        let info = plan::create_network(req, &self.pools)?;
        let mut s = self.state.lock().await;
        if s.networks.contains_key(&req.network_id) {
            return Err(DriverError(format!(
                "network {} exists already",
                req.network_id
            )));
        }
        let mut next = s.clone();
        next.networks.insert(req.network_id.clone(), info);
        self.save(&next)?;
        *s = next;
        tracing::info!(network = %req.network_id, "docker: network created");
        Ok(())
    }

    pub async fn delete_network(&self, req: &NetworkRef) -> Res<()> {
        let mut s = self.state.lock().await;
        if !s.networks.contains_key(&req.network_id) {
            return Err(DriverError(format!("unknown network {:?}", req.network_id)));
        }
        if let Some((eid, _)) = s
            .endpoints
            .iter()
            .find(|(_, e)| e.network == req.network_id)
        {
            return Err(DriverError(format!(
                "network {} still has endpoint {eid}",
                req.network_id
            )));
        }
        let mut next = s.clone();
        next.networks.remove(&req.network_id);
        self.save(&next)?;
        *s = next;
        tracing::info!(network = %req.network_id, "docker: network deleted");
        Ok(())
    }

    /// The host side of the endpoint, as CNI's ADD builds it, with the
    /// peer left in the host namespace for Docker to move.
    pub async fn create_endpoint(&self, req: &CreateEndpoint) -> Res<()> {
        let a = &self.agent;
        let (net, addr) = {
            let s = self.state.lock().await;
            let net = s
                .networks
                .get(&req.network_id)
                .ok_or_else(|| DriverError(format!("unknown network {:?}", req.network_id)))?
                .clone();
            if s.endpoints.contains_key(&req.endpoint_id) {
                return Err(DriverError(format!(
                    "endpoint {} exists already",
                    req.endpoint_id
                )));
            }
            let iface = req.interface.clone().unwrap_or_default();
            if iface.address.is_empty() {
                return Err(DriverError(
                    "endpoint has no IPv4 address (the network must use --ipam-driver flatnet)"
                        .into(),
                ));
            }
            let v6 = match (iface.address_ipv6.is_empty(), &net.pool6) {
                (true, _) => None,
                (false, Some(_)) => Some(plan::parse_v6(&iface.address_ipv6)?),
                (false, None) => {
                    return Err(DriverError(format!(
                        "endpoint has IPv6 address {} but network {} has no flatnet IPv6 pool",
                        iface.address_ipv6, req.network_id
                    )));
                }
            };
            (net, (plan::parse_v4(&iface.address)?, v6))
        };
        let (addr, addr6) = addr;
        let app = plan::app_option(&req.options)?.or(net.app.clone());
        let unknown =
            |ip: IpAddr| DriverError(format!("address {ip} was not handed out by flatnet's IPAM"));
        let handle = self
            .holder(IpAddr::V4(addr))
            .await?
            .ok_or_else(|| unknown(IpAddr::V4(addr)))?;
        // The IPv6 address has a handle of its own; the endpoint is keyed
        // by the IPv4 one.
        if let Some(v6) = addr6 {
            self.holder(IpAddr::V6(v6))
                .await?
                .ok_or_else(|| unknown(IpAddr::V6(v6)))?;
        }
        let _gc = a.gc_lock.read().await;
        let lock = a.lock_for(&handle);
        let _g = lock.lock().await;
        let att = attachment(&handle.container_id, &handle.ifname, "", Some(addr), addr6);
        let peer = plan::peer_name(&att.host_ifname());
        let built =
            a.dp.add_host_pair(&att, &peer)
                .await
                .map_err(|e| DriverError(e.to_string()))?;
        let ep = Endpoint {
            node: a.cfg.node.name.clone(),
            container_id: handle.container_id.clone(),
            ifname: handle.ifname.clone(),
            netns: String::new(),
            host_ifname: built.host_ifname,
            host_mac: built.host_mac,
            container_mac: built.container_mac,
            v4: Some(addr),
            v6: addr6,
            app,
            network: Some(format!("{}{}", plan::NETWORK_PREFIX, req.network_id)),
            mtu: Some(built.mtu),
            dns: None,
        };
        // Docker releases the address itself when this fails.
        a.commit_endpoint(&ep, false).await?;
        let mut s = self.state.lock().await;
        let mut next = s.clone();
        next.endpoints.insert(
            req.endpoint_id.clone(),
            EndpointInfo {
                network: req.network_id.clone(),
                handle: handle.clone(),
                peer,
                v6: addr6,
            },
        );
        if let Err(e) = self.save(&next) {
            let _ = a.remove_attachment(&handle, false).await;
            return Err(e);
        }
        *s = next;
        tracing::info!(endpoint = %req.endpoint_id, %handle, %addr, addr6 = ?addr6, host_if = %ep.host_ifname, "docker: endpoint created");
        Ok(())
    }

    async fn endpoint(&self, nid: &str, eid: &str) -> Res<EndpointInfo> {
        let s = self.state.lock().await;
        if !s.networks.contains_key(nid) {
            return Err(DriverError(format!("unknown network {nid:?}")));
        }
        s.endpoints
            .get(eid)
            .filter(|e| e.network == nid)
            .cloned()
            .ok_or_else(|| DriverError(format!("unknown endpoint {eid:?} in network {nid}")))
    }

    pub async fn check_endpoint(&self, req: &EndpointRef) -> Res<()> {
        self.endpoint(&req.network_id, &req.endpoint_id)
            .await
            .map(|_| ())
    }

    pub async fn join(&self, req: &Join) -> Res<JoinAnswer> {
        let ep = self.endpoint(&req.network_id, &req.endpoint_id).await?;
        Ok(plan::join_answer(&ep.peer, ep.v6.is_some()))
    }

    /// Removes the veth (with its routes) and the record; the address
    /// stays Docker's until its ReleaseAddress (released now, a concurrent
    /// RequestAddress could get it and that ReleaseAddress would free it).
    pub async fn delete_endpoint(&self, req: &EndpointRef) -> Res<()> {
        let ep = self.endpoint(&req.network_id, &req.endpoint_id).await?;
        {
            let lock = self.agent.lock_for(&ep.handle);
            let _g = lock.lock().await;
            self.agent
                .remove_attachment_with(&ep.handle, true, false)
                .await?;
        }
        let mut s = self.state.lock().await;
        let mut next = s.clone();
        next.endpoints.remove(&req.endpoint_id);
        self.save(&next)?;
        *s = next;
        tracing::info!(endpoint = %req.endpoint_id, handle = %ep.handle, "docker: endpoint deleted");
        Ok(())
    }
}

/// The IPAM handles Docker holds on this host (CNI's GC and restart
/// reconciliation leave them alone: Docker releases them).
pub(crate) async fn handles(
    ipam: &crate::ipam::FlatnetIpam,
) -> Result<Vec<crate::api::AttachmentRef>, crate::ipam::IpamError> {
    Ok(ipam
        .allocations()
        .await?
        .iter()
        .filter_map(|a| a.handle.parse().ok())
        .filter(plan::is_docker_handle)
        .collect())
}

/// Starts the plugin server when `[docker] enabled` (one call from
/// flatnetd).
pub fn start(agent: &Arc<Agent>) -> anyhow::Result<()> {
    if !agent.cfg.docker.enabled {
        return Ok(());
    }
    let socket = agent.cfg.docker.socket();
    let driver = Driver::new(agent.clone())?;
    let listener = server::bind(&socket)?;
    tracing::info!(socket = %socket.display(), "docker plugin listening");
    tokio::spawn(server::serve(driver, listener));
    Ok(())
}
