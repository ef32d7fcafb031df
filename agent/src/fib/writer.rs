//! The netlink side of the FIB: one rtnetlink connection of its own, the
//! routes flatnet learned (protocol 200, metric [`FIB_METRIC`], unicast via
//! a gateway) dumped at start, and a plan carried out as one pipelined
//! batch: every request of a burst is written before the first answer is
//! awaited.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use ipnetwork::IpNetwork;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::nh::{NH_ID_BASE, NH_ID_END};
use super::nhmsg::{NhError, NhObject, NhRequest, NhSocket};
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
const ENOSPC: i32 = 28;
const EOPNOTSUPP: i32 = 95;

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
    /// Installed with these next hops, by this nexthop object if any.
    Installed(IpNetwork, NextHops, Option<u32>),
    Removed(IpNetwork),
    Failed(IpNetwork, FibError),
}

/// The FIB's own rtnetlink connection, and its nexthop socket while the
/// kernel takes nexthop objects.
#[derive(Clone)]
pub struct FibWriter {
    handle: Handle,
    nh: Option<Arc<NhSocket>>,
}

/// A learned route found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dumped {
    /// Its next hops as the kernel expands them (empty when it shows only
    /// the nexthop object).
    pub hops: NextHops,
    /// The nexthop object it uses (RTA_NH_ID).
    pub nhid: Option<u32>,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// The route message of a learned route (without next hops for a delete):
/// by nexthop object (RTA_NH_ID) when `nhid` is given, else by its next hops.
fn route_msg(net: IpNetwork, hops: Option<&NextHops>, nhid: Option<u32>) -> RouteMessage {
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
    if let Some(id) = nhid {
        m.attributes.push(RouteAttribute::NhId(id));
        return m;
    }
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
    /// Opens the connections (in flatnetd's namespace). Routes are written
    /// with plain next hops until [`FibWriter::probe_nexthops`] found support.
    pub fn new() -> Result<FibWriter, FibError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(FibError::Connect)?;
        tokio::spawn(conn);
        Ok(FibWriter { handle, nh: None })
    }

    /// Whether routes go by nexthop objects.
    pub fn nexthops(&self) -> bool {
        self.nh.is_some()
    }

    /// Finds out once whether the kernel takes nexthop objects: dumps them
    /// (every protocol's: their ids are taken) and creates and deletes a
    /// blackhole object of flatnet's. `Some(objects)` when it does; `None`
    /// (plain next hops from then on) when the kernel refused.
    pub async fn probe_nexthops(&mut self) -> Option<Vec<NhObject>> {
        let sock = match NhSocket::open() {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(error = %e, "no nexthop socket: routes by plain next hops");
                return None;
            }
        };
        let s = sock.clone();
        let r = tokio::task::spawn_blocking(move || {
            let objs = s.dump()?;
            let taken: std::collections::BTreeSet<u32> = objs.iter().map(|o| o.id).collect();
            let probe = (NH_ID_END - 1..NH_ID_END)
                .chain(NH_ID_BASE..NH_ID_END)
                .find(|i| !taken.contains(i))
                .ok_or(NhError::Errno(ENOSPC))?;
            let mut r = s.transact(&[NhRequest::Blackhole(probe), NhRequest::Del(probe)]);
            match r.swap_remove(0) {
                Ok(()) => Ok(objs),
                Err(e) => Err(e),
            }
        })
        .await;
        match r {
            Ok(Ok(objs)) => {
                self.nh = Some(sock);
                Some(objs)
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "kernel without nexthop objects: routes by plain next hops");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "nexthop probe: routes by plain next hops");
                None
            }
        }
    }

    /// Carries out nexthop requests; one result per request, in order.
    pub async fn nexthop_requests(&self, reqs: Vec<NhRequest>) -> Vec<Result<(), NhError>> {
        let Some(s) = self.nh.clone() else {
            return reqs
                .iter()
                .map(|_| Err(NhError::Errno(EOPNOTSUPP)))
                .collect();
        };
        let n = reqs.len();
        if n == 0 {
            return Vec::new();
        }
        match tokio::task::spawn_blocking(move || s.transact(&reqs)).await {
            Ok(r) => r,
            Err(e) => (0..n)
                .map(|_| Err(NhError::Io(std::io::Error::other(e.to_string()))))
                .collect(),
        }
    }

    /// The interface the kernel reaches `gateway` on directly (a
    /// connected route, no gateway of its own): the device of its nexthop
    /// object. `None` when it is not on-link (then plain next hops).
    pub async fn on_link(&self, gateway: IpAddr) -> Option<u32> {
        let msg = match gateway {
            IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build(),
        };
        let r: Vec<RouteMessage> = self
            .handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .ok()?;
        let r = r.first()?;
        let direct = r.header.kind == RouteType::Unicast
            && !r
                .attributes
                .iter()
                .any(|a| gateway_of(a).is_some() || matches!(a, RouteAttribute::MultiPath(_)));
        if !direct {
            return None;
        }
        r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) if *i != 0 => Some(*i),
            _ => None,
        })
    }

    /// The learned routes in the kernel: protocol 200, metric
    /// [`FIB_METRIC`], unicast with a gateway. Host routes and blackholes
    /// (also protocol 200) are the dataplane's and not listed.
    pub async fn dump(&self) -> Result<BTreeMap<IpNetwork, Dumped>, FibError> {
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
                let nhid = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::NhId(i) => Some(*i),
                    _ => None,
                });
                if hops.is_empty() && nhid.is_none() {
                    continue;
                }
                if let Some(n) = dst_of(&r, v6) {
                    out.insert(n, Dumped { hops, nhid });
                }
            }
        }
        Ok(out)
    }

    async fn one(&self, op: Op) -> Outcome {
        match op {
            Op::Add(net, hops, nhid) => {
                // Create only: never over a route someone else installed.
                match self
                    .handle
                    .route()
                    .add(route_msg(net, Some(&hops), nhid))
                    .execute()
                    .await
                {
                    Ok(()) => Outcome::Installed(net, hops, nhid),
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
            Op::Replace(net, hops, nhid) => {
                match self
                    .handle
                    .route()
                    .add(route_msg(net, Some(&hops), nhid))
                    .replace()
                    .execute()
                    .await
                {
                    Ok(()) => Outcome::Installed(net, hops, nhid),
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
                    .del(route_msg(net, None, None))
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
    /// `nhid` gives the nexthop object of an added or replaced route (none:
    /// plain next hops).
    pub async fn apply(
        &self,
        plan: FibPlan,
        nhid: impl Fn(&IpNetwork) -> Option<u32>,
    ) -> Vec<Outcome> {
        let ops = plan
            .remove
            .into_iter()
            .map(Op::Remove)
            .chain(plan.add.into_iter().map(|(n, h)| Op::Add(n, h, nhid(&n))))
            .chain(
                plan.replace
                    .into_iter()
                    .map(|(n, h)| Op::Replace(n, h, nhid(&n))),
            );
        futures::stream::iter(ops)
            .map(|op| self.one(op))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await
    }
}

enum Op {
    Add(IpNetwork, NextHops, Option<u32>),
    Replace(IpNetwork, NextHops, Option<u32>),
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
        let m = route_msg(net, Some(&one), None);
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
        let m = route_msg(net, Some(&two), None);
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
        let m = route_msg(v6, Some(&one), None);
        assert!(
            m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(RouteAddress::Inet6(_))))
        );
        assert_eq!(hops_of(&m), one);
        // The kernel reports an interface for every gateway: a global one's
        // is dropped, as the plan has none.
        let mut m = route_msg(net, Some(&hops(&["10.0.1.1"])), None);
        m.attributes.push(RouteAttribute::Oif(3));
        assert_eq!(hops_of(&m), hops(&["10.0.1.1"]));
    }

    #[test]
    fn messages_carry_protocol_metric_and_ecmp_next_hops() {
        let net: IpNetwork = "10.244.1.0/26".parse().unwrap();
        let one = route_msg(net, Some(&hops(&["10.0.1.1"])), None);
        assert_eq!(one.header.protocol, RouteProtocol::Other(200));
        assert_eq!(metric_of(&one), FIB_METRIC);
        assert_eq!(hops_of(&one), hops(&["10.0.1.1"]));
        assert_eq!(dst_of(&one, false), Some(net));
        let two = route_msg(net, Some(&hops(&["10.0.1.1", "10.0.2.1"])), None);
        assert!(
            two.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::MultiPath(n) if n.len() == 2))
        );
        assert_eq!(hops_of(&two), hops(&["10.0.1.1", "10.0.2.1"]));
        let del = route_msg(net, None, None);
        assert!(hops_of(&del).is_empty());
        assert_eq!(metric_of(&del), FIB_METRIC);
    }
}
