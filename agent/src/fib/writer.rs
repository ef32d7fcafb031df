//! The netlink side of the FIB: one rtnetlink connection of its own, the
//! routes flatnet learned (protocol 200, metric [`FIB_METRIC`], unicast via
//! a gateway) dumped at start, and a plan carried out as one pipelined
//! batch: every request of a burst is written before the first answer is
//! awaited.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::{StreamExt, TryStreamExt};
use ipnetwork::IpNetwork;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::plan::{FibPlan, NextHop, NextHops};
use crate::kernel::RTPROT_FLATNET;

/// Metric of learned routes. The kernel keys a route by (prefix, metric), so
/// a learned route never replaces a connected route, a container's host
/// route or a block's blackhole (all metric 0), and those still win for
/// the same prefix.
pub const FIB_METRIC: u32 = 20;

/// Requests in flight at once in one batch.
const IN_FLIGHT: usize = 1024;

const EEXIST: i32 = 17;
const ESRCH: i32 = 3;
const ENOENT: i32 = 2;

/// Why the FIB could not program or read the kernel.
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    #[error("netlink connection: {0}")]
    Connect(std::io::Error),
    #[error("netlink: {what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    /// A route for the prefix exists that flatnet did not install.
    #[error("{0}: a route flatnet did not install is in the way; left alone")]
    Foreign(IpNetwork),
}

/// What one route change of a batch came to.
#[derive(Debug)]
pub enum Outcome {
    Installed(IpNetwork, NextHops),
    Removed(IpNetwork),
    Failed(IpNetwork, FibError),
}

/// The FIB's own rtnetlink connection.
#[derive(Clone)]
pub struct FibWriter {
    handle: Handle,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// The route message of a learned route (without next hops for a delete).
fn route_msg(net: IpNetwork, hops: Option<&NextHops>) -> RouteMessage {
    let mut m = match net {
        IpNetwork::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.network(), n.prefix())
            .protocol(RouteProtocol::Other(RTPROT_FLATNET))
            .priority(FIB_METRIC)
            .build(),
        IpNetwork::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(n.network(), n.prefix())
            .protocol(RouteProtocol::Other(RTPROT_FLATNET))
            .priority(FIB_METRIC)
            .build(),
    };
    let Some(hops) = hops else { return m };
    let v4 = net.is_ipv4();
    if hops.len() == 1
        && let Some(h) = hops.first()
    {
        m.attributes.push(gw_attr(v4, h));
        m.attributes.extend(h.ifindex.map(RouteAttribute::Oif));
    } else {
        // RTA_MULTIPATH: one ECMP route over every next hop.
        let nh = hops
            .iter()
            .map(|h| {
                let mut n = RouteNextHop::default();
                n.attributes.push(gw_attr(v4, h));
                n.interface_index = h.ifindex.unwrap_or(0);
                n
            })
            .collect();
        m.attributes.push(RouteAttribute::MultiPath(nh));
    }
    m
}

/// RTA_GATEWAY for a gateway of the route's family, RTA_VIA for an IPv6
/// gateway of an IPv4 route (RFC 8950; kernel 5.2 and later).
fn gw_attr(v4_route: bool, h: &NextHop) -> RouteAttribute {
    match h.gateway {
        IpAddr::V4(a) => RouteAttribute::Gateway(RouteAddress::Inet(a)),
        IpAddr::V6(a) if v4_route => RouteAttribute::Via(RouteVia::Inet6(a)),
        IpAddr::V6(a) => RouteAttribute::Gateway(RouteAddress::Inet6(a)),
    }
}

/// The gateway of RTA_GATEWAY or RTA_VIA.
fn gateway_of(a: &RouteAttribute) -> Option<IpAddr> {
    match a {
        RouteAttribute::Gateway(RouteAddress::Inet(v)) => Some(IpAddr::V4(*v)),
        RouteAttribute::Gateway(RouteAddress::Inet6(v)) => Some(IpAddr::V6(*v)),
        RouteAttribute::Via(RouteVia::Inet(v)) => Some(IpAddr::V4(*v)),
        RouteAttribute::Via(RouteVia::Inet6(v)) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// A dumped next hop as the plan writes it: the interface only for a
/// link-local gateway (the kernel reports one for every gateway).
fn hop(gateway: IpAddr, ifindex: Option<u32>) -> NextHop {
    let h = NextHop::via(gateway);
    if h.is_link_local() {
        NextHop {
            gateway,
            ifindex: ifindex.filter(|i| *i != 0),
        }
    } else {
        h
    }
}

/// The next hops of a dumped route: RTA_GATEWAY/RTA_VIA (with RTA_OIF) or
/// RTA_MULTIPATH.
fn hops_of(r: &RouteMessage) -> NextHops {
    let oif = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    });
    let mut out = NextHops::new();
    for a in &r.attributes {
        if let Some(g) = gateway_of(a) {
            out.insert(hop(g, oif));
        }
        if let RouteAttribute::MultiPath(nhs) = a {
            for nh in nhs {
                out.extend(
                    nh.attributes
                        .iter()
                        .filter_map(gateway_of)
                        .map(|g| hop(g, Some(nh.interface_index))),
                );
            }
        }
    }
    out
}

fn dst_of(r: &RouteMessage, v6: bool) -> Option<IpNetwork> {
    let a = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(v)) => Some(IpAddr::V4(*v)),
            RouteAttribute::Destination(RouteAddress::Inet6(v)) => Some(IpAddr::V6(*v)),
            _ => None,
        })
        .unwrap_or(if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        });
    IpNetwork::new(a, r.header.destination_prefix_length).ok()
}

fn metric_of(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

impl FibWriter {
    /// Opens the connection (in flatnetd's namespace).
    pub fn new() -> Result<FibWriter, FibError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(FibError::Connect)?;
        tokio::spawn(conn);
        Ok(FibWriter { handle })
    }

    /// The learned routes in the kernel: protocol 200, metric
    /// [`FIB_METRIC`], unicast with a gateway. Host routes and blackholes
    /// (also protocol 200) are the dataplane's and not listed.
    pub async fn dump(&self) -> Result<BTreeMap<IpNetwork, NextHops>, FibError> {
        let mut out = BTreeMap::new();
        for v6 in [false, true] {
            let msg = if v6 {
                RouteMessageBuilder::<Ipv6Addr>::new().build()
            } else {
                RouteMessageBuilder::<Ipv4Addr>::new().build()
            };
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(msg)
                .execute()
                .try_collect()
                .await
                .map_err(|source| FibError::Netlink {
                    what: "dump routes".into(),
                    source,
                })?;
            for r in routes {
                if r.header.protocol != RouteProtocol::Other(RTPROT_FLATNET)
                    || r.header.kind != RouteType::Unicast
                    || metric_of(&r) != FIB_METRIC
                {
                    continue;
                }
                let hops = hops_of(&r);
                if hops.is_empty() {
                    continue;
                }
                if let Some(n) = dst_of(&r, v6) {
                    out.insert(n, hops);
                }
            }
        }
        Ok(out)
    }

    async fn one(&self, op: Op) -> Outcome {
        match op {
            Op::Add(net, hops) => {
                // Create only: never over a route someone else installed.
                match self
                    .handle
                    .route()
                    .add(route_msg(net, Some(&hops)))
                    .execute()
                    .await
                {
                    Ok(()) => Outcome::Installed(net, hops),
                    Err(e) if errno(&e) == Some(EEXIST) => {
                        Outcome::Failed(net, FibError::Foreign(net))
                    }
                    Err(source) => Outcome::Failed(
                        net,
                        FibError::Netlink {
                            what: format!("add {net}"),
                            source,
                        },
                    ),
                }
            }
            Op::Replace(net, hops) => {
                match self
                    .handle
                    .route()
                    .add(route_msg(net, Some(&hops)))
                    .replace()
                    .execute()
                    .await
                {
                    Ok(()) => Outcome::Installed(net, hops),
                    Err(source) => Outcome::Failed(
                        net,
                        FibError::Netlink {
                            what: format!("replace {net}"),
                            source,
                        },
                    ),
                }
            }
            Op::Remove(net) => {
                // Protocol and metric in the request: the kernel deletes only
                // a route that has both, i.e. ours.
                match self
                    .handle
                    .route()
                    .del(route_msg(net, None))
                    .execute()
                    .await
                {
                    Ok(()) => Outcome::Removed(net),
                    Err(e) if matches!(errno(&e), Some(ESRCH) | Some(ENOENT)) => {
                        Outcome::Removed(net)
                    }
                    Err(source) => Outcome::Failed(
                        net,
                        FibError::Netlink {
                            what: format!("delete {net}"),
                            source,
                        },
                    ),
                }
            }
        }
    }

    /// Carries out a plan as one pipelined batch; one outcome per change.
    pub async fn apply(&self, plan: FibPlan) -> Vec<Outcome> {
        let ops = plan
            .remove
            .into_iter()
            .map(Op::Remove)
            .chain(plan.add.into_iter().map(|(n, h)| Op::Add(n, h)))
            .chain(plan.replace.into_iter().map(|(n, h)| Op::Replace(n, h)));
        futures::stream::iter(ops)
            .map(|op| self.one(op))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await
    }
}

enum Op {
    Add(IpNetwork, NextHops),
    Replace(IpNetwork, NextHops),
    Remove(IpNetwork),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hops(gws: &[&str]) -> NextHops {
        gws.iter()
            .map(|g| NextHop::via(g.parse().unwrap()))
            .collect()
    }

    fn ll(gw: &str, ifindex: u32) -> NextHop {
        NextHop {
            gateway: gw.parse().unwrap(),
            ifindex: Some(ifindex),
        }
    }

    #[test]
    fn ipv6_next_hops_of_ipv4_routes_are_via_inet6_on_their_interface() {
        let net: IpNetwork = "10.244.1.0/26".parse().unwrap();
        let one: NextHops = [ll("fe80::1", 7)].into();
        let m = route_msg(net, Some(&one));
        assert!(
            m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Via(RouteVia::Inet6(_))))
        );
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_)))
        );
        assert_eq!(hops_of(&m), one);
        let two: NextHops = [ll("fe80::1", 7), ll("fe80::1", 9)].into();
        let m = route_msg(net, Some(&two));
        let Some(RouteAttribute::MultiPath(nhs)) = m
            .attributes
            .iter()
            .find(|a| matches!(a, RouteAttribute::MultiPath(_)))
        else {
            panic!("no multipath: {m:?}");
        };
        assert_eq!(
            nhs.iter().map(|n| n.interface_index).collect::<Vec<_>>(),
            vec![7, 9]
        );
        assert!(
            nhs.iter()
                .all(|n| matches!(n.attributes[..], [RouteAttribute::Via(RouteVia::Inet6(_))]))
        );
        assert_eq!(hops_of(&m), two);
        // An IPv6 route via a link-local gateway is RTA_GATEWAY with RTA_OIF.
        let v6: IpNetwork = "2001:db8:1::/64".parse().unwrap();
        let m = route_msg(v6, Some(&one));
        assert!(
            m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(RouteAddress::Inet6(_))))
        );
        assert_eq!(hops_of(&m), one);
        // The kernel reports an interface for every gateway: a global one's
        // is dropped, as the plan has none.
        let mut m = route_msg(net, Some(&hops(&["10.0.1.1"])));
        m.attributes.push(RouteAttribute::Oif(3));
        assert_eq!(hops_of(&m), hops(&["10.0.1.1"]));
    }

    #[test]
    fn messages_carry_protocol_metric_and_ecmp_next_hops() {
        let net: IpNetwork = "10.244.1.0/26".parse().unwrap();
        let one = route_msg(net, Some(&hops(&["10.0.1.1"])));
        assert_eq!(one.header.protocol, RouteProtocol::Other(200));
        assert_eq!(metric_of(&one), FIB_METRIC);
        assert_eq!(hops_of(&one), hops(&["10.0.1.1"]));
        assert_eq!(dst_of(&one, false), Some(net));
        let two = route_msg(net, Some(&hops(&["10.0.1.1", "10.0.2.1"])));
        assert!(
            two.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::MultiPath(n) if n.len() == 2))
        );
        assert_eq!(hops_of(&two), hops(&["10.0.1.1", "10.0.2.1"]));
        let del = route_msg(net, None);
        assert!(hops_of(&del).is_empty());
        assert_eq!(metric_of(&del), FIB_METRIC);
    }
}
