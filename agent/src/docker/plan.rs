//! The pure half of the Docker driver: each plugin request mapped to an
//! answer or to what the driver must do, from the configured pools and the
//! driver's state only (no kernel, no datastore).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::wire::*;
use crate::api::AttachmentRef;
use crate::kernel::{GATEWAY_V4, GATEWAY_V6, HOST_IF_PREFIX};

/// The address space flatnet's IPAM serves (local and global alike: the
/// pools are the cluster's).
pub const ADDRESS_SPACE: &str = "flatnet";
/// Network (or endpoint) option carrying the app id: `-o flatnet.app=web`.
pub const APP_OPTION: &str = "flatnet.app";
/// IPAM option naming the pool: `--ipam-opt flatnet.pool=10.244.0.0-16`.
pub const POOL_OPTION: &str = "flatnet.pool";
/// Prefix of the IPAM handles of Docker's addresses: Docker asks for an
/// address before it names the endpoint, so the handle is flatnet's own.
pub const HANDLE_PREFIX: &str = "docker-";
/// The interface name recorded for Docker endpoints (Docker renames the
/// moved veth to `eth<N>` itself).
pub const IFNAME: &str = "eth0";
/// `Endpoint.network` of a Docker endpoint: `docker:<network id>`.
pub const NETWORK_PREFIX: &str = "docker:";

/// One configured pool as Docker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDesc {
    /// The pool's name in the datastore (`10.244.0.0-16`): Docker's PoolID.
    pub name: String,
    pub cidr: IpNetwork,
}

impl PoolDesc {
    pub fn new(cidr: IpNetwork) -> PoolDesc {
        PoolDesc {
            name: crate::ipam::pool_name(&cidr),
            cidr,
        }
    }
}

/// What a Docker network is to flatnet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkInfo {
    /// PoolID of its IPv4 pool.
    pub pool: String,
    /// PoolID of its IPv6 pool (`--ipv6 --subnet <v6 pool>`); absent in
    /// state files written before IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool6: Option<String>,
    pub app: Option<String>,
}

/// A Docker endpoint flatnet built.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointInfo {
    pub network: String,
    /// The IPAM handle of its address, and its record's key.
    pub handle: AttachmentRef,
    /// The veth end Docker moves into the container.
    pub peer: String,
    /// Its IPv6 address, when the network has an IPv6 pool (Join then
    /// names the IPv6 gateway too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<Ipv6Addr>,
}

pub fn is_docker_handle(h: &AttachmentRef) -> bool {
    h.container_id.starts_with(HANDLE_PREFIX) && h.ifname == IFNAME
}

/// A fresh handle for one RequestAddress (`nonce` unique per call).
pub fn new_handle(nonce: u128) -> AttachmentRef {
    AttachmentRef::new(format!("{HANDLE_PREFIX}{nonce:032x}"), IFNAME)
}

/// The temporary name of the veth end Docker moves: the host end's name
/// with another prefix, so it is as unique.
pub fn peer_name(host_if: &str) -> String {
    format!("fpr{}", host_if.trim_start_matches(HOST_IF_PREFIX))
}

pub fn address_spaces() -> AddressSpaces {
    AddressSpaces {
        local_default_address_space: ADDRESS_SPACE.into(),
        global_default_address_space: ADDRESS_SPACE.into(),
    }
}

/// RequestPool: the configured pool whose CIDR is `Pool` (`--subnet`); a
/// `flatnet.pool` option must name the same pool.
pub fn request_pool(req: &RequestPool, pools: &[PoolDesc]) -> Result<PoolAnswer, String> {
    if !req.address_space.is_empty() && req.address_space != ADDRESS_SPACE {
        return Err(format!(
            "address space {:?} is not flatnet's (flatnet serves {ADDRESS_SPACE:?})",
            req.address_space
        ));
    }
    if !req.sub_pool.is_empty() {
        return Err(format!(
            "sub-pool {} (--ip-range) is not supported: flatnet allocates from this host's blocks",
            req.sub_pool
        ));
    }
    let names = || {
        pools
            .iter()
            .map(|p| format!("{} ({})", p.cidr, p.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Without `Pool`, libnetwork checks the answer against the host's
    // routes and asks again while they overlap, which a flatnet pool
    // always does (its blackholes and host routes): it would never end.
    if req.pool.is_empty() {
        return Err(format!(
            "name the flatnet pool with --subnet (configured: {}): with no subnet Docker \
             re-requests a pool that overlaps this host's routes forever",
            names()
        ));
    }
    let n: IpNetwork = req
        .pool
        .parse()
        .map_err(|e| format!("pool {:?} is not a CIDR: {e}", req.pool))?;
    let chosen = pools
        .iter()
        .find(|p| p.cidr == n)
        .ok_or_else(|| format!("pool {n} is not a flatnet pool; configured: {}", names()))?;
    // `flatnet.pool`, when given, must agree (a guard against a typo'd subnet).
    if let Some(name) = req.options.get(POOL_OPTION)
        && name != &chosen.name
    {
        return Err(format!(
            "{POOL_OPTION}={name:?} disagrees with pool {n} ({}); configured: {}",
            chosen.name,
            names()
        ));
    }
    if chosen.cidr.is_ipv6() != req.v6 {
        return Err(format!(
            "pool {} is {}, the request is for {}",
            chosen.cidr,
            if chosen.cidr.is_ipv6() {
                "IPv6"
            } else {
                "IPv4"
            },
            if req.v6 { "IPv6" } else { "IPv4" }
        ));
    }
    Ok(PoolAnswer {
        pool_id: chosen.name.clone(),
        pool: chosen.cidr.to_string(),
        data: BTreeMap::new(),
    })
}

/// What RequestAddress asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum AddressPlan {
    /// The network's gateway: the on-link 169.254.1.1, no pool address.
    Gateway(AddressAnswer),
    /// The next address of this host's block (CNI's allocation path).
    Allocate,
}

pub fn find_pool<'a>(pools: &'a [PoolDesc], id: &str) -> Result<&'a PoolDesc, String> {
    pools
        .iter()
        .find(|p| p.name == id)
        .ok_or_else(|| format!("unknown pool {id:?}: not one flatnet handed out"))
}

pub fn request_address(req: &RequestAddress, pools: &[PoolDesc]) -> Result<AddressPlan, String> {
    let pool = find_pool(pools, &req.pool_id)?;
    let gw: IpAddr = if pool.cidr.is_ipv6() {
        GATEWAY_V6.into()
    } else {
        GATEWAY_V4.into()
    };
    let is_gateway =
        req.options.get(REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(GATEWAY_TYPE);
    if is_gateway {
        if !req.address.is_empty() && req.address.parse::<IpAddr>() != Ok(gw) {
            return Err(format!(
                "gateway {}: flatnet containers use the on-link gateway {gw} (omit --gateway)",
                req.address
            ));
        }
        let plen = if gw.is_ipv6() { 128 } else { 32 };
        return Ok(AddressPlan::Gateway(AddressAnswer {
            address: format!("{gw}/{plen}"),
            data: BTreeMap::new(),
        }));
    }
    if !req.address.is_empty() {
        return Err(format!(
            "address {}: flatnet chooses container addresses itself (--ip is not supported)",
            req.address
        ));
    }
    Ok(AddressPlan::Allocate)
}

/// The answer for an allocated address: exactly a /32 or /128, as CNI
/// gives.
pub fn address_answer(ip: IpAddr) -> AddressAnswer {
    let plen = if ip.is_ipv6() { 128 } else { 32 };
    AddressAnswer {
        address: format!("{ip}/{plen}"),
        data: BTreeMap::new(),
    }
}

/// The address of an `a.b.c.d/len` (or bare) text.
pub fn parse_v4(text: &str) -> Result<Ipv4Addr, String> {
    let ip = text.split_once('/').map_or(text, |(a, _)| a);
    ip.parse()
        .map_err(|_| format!("address {text:?} is not an IPv4 address"))
}

/// The address of an `x::y/len` (or bare) text.
pub fn parse_v6(text: &str) -> Result<Ipv6Addr, String> {
    let ip = text.split_once('/').map_or(text, |(a, _)| a);
    ip.parse()
        .map_err(|_| format!("address {text:?} is not an IPv6 address"))
}

/// The address of either family (ReleaseAddress names no family).
pub fn parse_ip(text: &str) -> Result<IpAddr, String> {
    let ip = text.split_once('/').map_or(text, |(a, _)| a);
    ip.parse()
        .map_err(|_| format!("address {text:?} is not an IP address"))
}

/// Whether `text` is the on-link gateway of its family, which Docker
/// "releases" like any address but flatnet never allocated.
pub fn is_gateway(text: &str) -> bool {
    matches!(parse_ip(text), Ok(ip) if ip == IpAddr::V4(GATEWAY_V4) || ip == IpAddr::V6(GATEWAY_V6))
}

fn app_in(map: &BTreeMap<String, serde_json::Value>) -> Result<Option<String>, String> {
    match map.get(APP_OPTION) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => crate::names::check_app(s).map(|()| Some(s.clone())),
        Some(other) => Err(format!("{APP_OPTION}: expected a string, found {other}")),
    }
}

/// The app of options given as `-o` (under `com.docker.network.generic`)
/// or directly.
pub fn app_option(opts: &BTreeMap<String, serde_json::Value>) -> Result<Option<String>, String> {
    if let Some(g) = opts.get(GENERIC_OPTIONS)
        && let Ok(g) = serde_json::from_value::<BTreeMap<String, serde_json::Value>>(g.clone())
        && let Some(app) = app_in(&g)?
    {
        return Ok(Some(app));
    }
    app_in(opts)
}

/// The configured pool of family `v6` that `data` names.
fn network_pool<'a>(
    data: &IpamData,
    v6: bool,
    pools: &'a [PoolDesc],
) -> Result<&'a PoolDesc, String> {
    let n: Option<IpNetwork> = data.pool.parse().ok();
    pools
        .iter()
        .find(|p| Some(p.cidr) == n && p.cidr.is_ipv6() == v6)
        .ok_or_else(|| {
            format!(
                "pool {} is not a flatnet {} pool (use --ipam-driver flatnet)",
                data.pool,
                if v6 { "IPv6" } else { "IPv4" }
            )
        })
}

/// CreateNetwork: the network must take its IPv4 pool, and its IPv6 pool
/// if it has one, from flatnet's IPAM.
pub fn create_network(req: &CreateNetwork, pools: &[PoolDesc]) -> Result<NetworkInfo, String> {
    if req.network_id.is_empty() {
        return Err("NetworkID is empty".into());
    }
    let [v4] = req.ipv4_data.as_slice() else {
        return Err(format!(
            "expected one IPv4 pool, found {} (use --ipam-driver flatnet)",
            req.ipv4_data.len()
        ));
    };
    let pool = network_pool(v4, false, pools)?;
    let pool6 = match req.ipv6_data.as_slice() {
        [] => None,
        [v6] => Some(network_pool(v6, true, pools)?.name.clone()),
        more => {
            return Err(format!(
                "expected at most one IPv6 pool, found {}",
                more.len()
            ));
        }
    };
    Ok(NetworkInfo {
        pool: pool.name.clone(),
        pool6,
        app: app_option(&req.options)?,
    })
}

/// Join: Docker moves `peer` into the container as `eth<N>` and routes
/// through the on-link gateways, which the host end answers for (proxy
/// ARP for 169.254.1.1; fe80::1 is the host end's own address). An
/// endpoint with IPv6 gets the IPv6 gateway too.
pub fn join_answer(peer: &str, v6: bool) -> JoinAnswer {
    let mut static_routes = vec![StaticRoute {
        destination: format!("{GATEWAY_V4}/32"),
        route_type: ROUTE_CONNECTED,
        next_hop: String::new(),
    }];
    if v6 {
        // On link without waiting for the container's fe80::/64.
        static_routes.push(StaticRoute {
            destination: format!("{GATEWAY_V6}/128"),
            route_type: ROUTE_CONNECTED,
            next_hop: String::new(),
        });
    }
    JoinAnswer {
        interface_name: InterfaceName {
            src_name: peer.into(),
            dst_prefix: "eth".into(),
        },
        gateway: GATEWAY_V4.to_string(),
        gateway_ipv6: if v6 {
            GATEWAY_V6.to_string()
        } else {
            String::new()
        },
        static_routes,
        disable_gateway_service: true,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
