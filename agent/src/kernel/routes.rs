//! Routes: the host routes to containers, the blackholes of owned blocks,
//! and route dumps.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

impl Dataplane {
    pub(super) async fn host_route_present(&self, addr: IpAddr, oif: u32) -> Result<bool, DpError> {
        let routes = dump_routes(&self.handle, addr.is_ipv6()).await?;
        let plen = host_prefix_len(addr);
        Ok(routes.iter().any(|r| {
            r.header.destination_prefix_length == plen
                && route_dst(r) == Some(addr)
                && route_oif(r) == Some(oif)
        }))
    }

    /// Installs (idempotently) the blackhole route for a block this host owns.
    pub async fn ensure_blackhole(&self, block: ipnetwork::IpNetwork) -> Result<(), DpError> {
        self.handle
            .route()
            .add(blackhole_msg(block))
            .replace()
            .execute()
            .await
            .map_err(nl(format!("blackhole {block}")))
    }

    /// Removes a block's blackhole route (when the block is released).
    pub async fn remove_blackhole(&self, block: ipnetwork::IpNetwork) -> Result<(), DpError> {
        match self
            .handle
            .route()
            .del(blackhole_msg(block))
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(ESRCH) | Some(ENOENT)) => Ok(()),
            Err(e) => Err(nl(format!("delete blackhole {block}"))(e)),
        }
    }

    /// The blackhole routes flatnet installed (its protocol number), both
    /// families: what a previous run left for its blocks.
    pub async fn list_blackholes(&self) -> Result<Vec<ipnetwork::IpNetwork>, DpError> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            for r in dump_routes(&self.handle, v6).await? {
                if r.header.kind != RouteType::BlackHole
                    || r.header.protocol != RouteProtocol::Other(RTPROT_FLATNET)
                {
                    continue;
                }
                let dst = route_dst(&r).unwrap_or(if v6 {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                });
                if let Ok(n) = ipnetwork::IpNetwork::new(dst, r.header.destination_prefix_length) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// Makes an attachment inert without waiting for the veth deletion's
    /// RCU grace periods: removes the host routes to its addresses (the
    /// kernel answers at once), so nothing reaches the container any more
    /// and, by the reverse-path anti-spoofing rule, nothing it sends is
    /// accepted. Returns the host end's index for [`Dataplane::del_index`]
    /// (`None` when the veth is already gone, e.g. with its namespace).
    pub async fn detach(
        &self,
        host_if: &str,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Result<Option<u32>, DpError> {
        let Some(l) = get_link(&self.handle, host_if).await? else {
            return Ok(None);
        };
        let index = l.header.index;
        let msgs = [v4.map(IpAddr::V4), v6.map(IpAddr::V6)]
            .into_iter()
            .flatten()
            .map(|addr| host_route(addr, index));
        for m in msgs {
            match self.handle.route().del(m).execute().await {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(ESRCH) | Some(ENOENT) | Some(ENODEV)) => {}
                Err(e) => return Err(nl(format!("delete host route via {host_if}"))(e)),
            }
        }
        Ok(Some(index))
    }
}

/// The blackhole route of a block, either family.
pub(super) fn blackhole_msg(block: ipnetwork::IpNetwork) -> RouteMessage {
    match block {
        ipnetwork::IpNetwork::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.network(), n.prefix())
            .kind(RouteType::BlackHole)
            .protocol(RouteProtocol::Other(RTPROT_FLATNET))
            .build(),
        ipnetwork::IpNetwork::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(n.network(), n.prefix())
            .kind(RouteType::BlackHole)
            .protocol(RouteProtocol::Other(RTPROT_FLATNET))
            .build(),
    }
}

pub(super) async fn dump_routes(h: &Handle, v6: bool) -> Result<Vec<RouteMessage>, DpError> {
    let msg = if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    };
    h.route()
        .get(msg)
        .execute()
        .try_collect()
        .await
        .map_err(nl("dump routes"))
}

pub(super) fn route_dst(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v)) => Some(IpAddr::V4(*v)),
        RouteAttribute::Destination(RouteAddress::Inet6(v)) => Some(IpAddr::V6(*v)),
        _ => None,
    })
}

pub(super) fn route_gw(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(v)) => Some(IpAddr::V4(*v)),
        RouteAttribute::Gateway(RouteAddress::Inet6(v)) => Some(IpAddr::V6(*v)),
        _ => None,
    })
}

pub(super) fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// Prefix length of a single address: 32 or 128.
pub(super) fn host_prefix_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// The host route to a container address, either family:
/// `ip/32 dev <host veth> scope link` or `ip/128 dev <host veth>`.
pub(super) fn host_route(addr: IpAddr, oif: u32) -> RouteMessage {
    match addr {
        IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(v4, 32)
            .output_interface(oif)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Other(RTPROT_FLATNET))
            .build(),
        IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(v6, 128)
            .output_interface(oif)
            .protocol(RouteProtocol::Other(RTPROT_FLATNET))
            .build(),
    }
}

impl Dataplane {
    /// Every route with flatnet's protocol number (200), both families, for
    /// `flatnet fib`: container host routes, block blackholes and what the
    /// FIB room installed from BGP. Read-only.
    pub async fn flatnet_routes(&self) -> Result<Vec<crate::api::FibRoute>, DpError> {
        use crate::api::{FibNexthop, FibRoute};
        let mut names = std::collections::HashMap::new();
        let mut links = self.handle.link().get().execute();
        while let Some(m) = links.try_next().await.map_err(nl("dump links"))? {
            if let Some(n) = super::links::link_name(&m) {
                names.insert(m.header.index, n);
            }
        }
        let dev =
            |i: u32| (i != 0).then(|| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}")));
        let mut out = Vec::new();
        for v6 in [false, true] {
            for r in dump_routes(&self.handle, v6).await? {
                if r.header.protocol != RouteProtocol::Other(RTPROT_FLATNET) {
                    continue;
                }
                let dst = route_dst(&r).unwrap_or(if v6 {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                });
                let mut table = u32::from(r.header.table);
                let mut metric = None;
                let mut nexthop_id = None;
                let mut nexthops = Vec::new();
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Priority(p) => metric = Some(*p),
                        RouteAttribute::NhId(i) => nexthop_id = Some(*i),
                        RouteAttribute::MultiPath(hops) => {
                            for h in hops {
                                let gateway = h.attributes.iter().find_map(|a| match a {
                                    RouteAttribute::Gateway(RouteAddress::Inet(v)) => {
                                        Some(IpAddr::V4(*v))
                                    }
                                    RouteAttribute::Gateway(RouteAddress::Inet6(v)) => {
                                        Some(IpAddr::V6(*v))
                                    }
                                    RouteAttribute::Via(v) => via_addr(v),
                                    _ => None,
                                });
                                nexthops.push(FibNexthop {
                                    gateway,
                                    dev: dev(h.interface_index),
                                    weight: u16::from(h.hops) + 1,
                                });
                            }
                        }
                        _ => {}
                    }
                }
                if nexthops.is_empty() && (route_gw(&r).is_some() || route_oif(&r).is_some()) {
                    nexthops.push(FibNexthop {
                        gateway: route_gw(&r).or_else(|| {
                            r.attributes.iter().find_map(|a| match a {
                                RouteAttribute::Via(v) => via_addr(v),
                                _ => None,
                            })
                        }),
                        dev: route_oif(&r).and_then(dev),
                        weight: 1,
                    });
                }
                out.push(FibRoute {
                    prefix: format!("{dst}/{}", r.header.destination_prefix_length),
                    kind: format!("{:?}", r.header.kind).to_lowercase(),
                    table,
                    metric,
                    nexthop_id,
                    nexthops,
                });
            }
        }
        Ok(out)
    }
}

/// The address of an RTA_VIA (an IPv6 next hop of an IPv4 route, RFC 8950).
fn via_addr(v: &netlink_packet_route::route::RouteVia) -> Option<IpAddr> {
    use netlink_packet_route::route::RouteVia;
    match v {
        RouteVia::Inet(a) => Some(IpAddr::V4(*a)),
        RouteVia::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}
