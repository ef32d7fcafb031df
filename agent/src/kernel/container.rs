//! The container side of an attachment, run on a thread inside its
//! namespace: configure it, and check it.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// Inside the container: lo and the interface up, the addresses, the
/// on-link gateway (with a permanent neighbour entry for it, so the first
/// packet does not wait for ARP/NDP) and the default routes.
pub(super) async fn configure_container(
    h: &Handle,
    idx: u32,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    host_mac: &[u8],
) -> Result<(), DpError> {
    // Every request is sent at once and answered in order (one socket, the
    // kernel handles them as sent): the routes come after the addresses
    // and the neighbour, and no request waits for the previous answer.
    let mut reqs: Vec<(Request, String)> = Vec::new();
    // lo is index 1 in every network namespace; up is idempotent.
    reqs.push((
        Box::pin(
            h.link()
                .set(LinkUnspec::new_with_index(LOOPBACK_INDEX).up().build())
                .execute(),
        ),
        "set lo up".into(),
    ));
    if let Some(v6) = v6 {
        let mut req = h.address().add(idx, IpAddr::V6(v6), 128);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        reqs.push((Box::pin(req.execute()), format!("add {v6}/128")));
    }
    if let Some(v4) = v4 {
        reqs.push((
            Box::pin(h.address().add(idx, IpAddr::V4(v4), 32).execute()),
            format!("add {v4}/32"),
        ));
    }
    reqs.push((
        Box::pin(
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute(),
        ),
        "set the interface up".into(),
    ));
    // Per family: a permanent neighbour for the gateway, (IPv4 only) the
    // on-link route to it, and the default route via it.
    let gateways = [
        v4.map(|_| IpAddr::V4(GATEWAY_V4)),
        v6.map(|_| IpAddr::V6(GATEWAY_V6)),
    ];
    for gw in gateways.into_iter().flatten() {
        reqs.push((
            Box::pin(
                h.neighbours()
                    .add(idx, gw)
                    .link_layer_address(host_mac)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute(),
            ),
            format!("neighbour {gw}"),
        ));
        let def = match gw {
            IpAddr::V4(g) => {
                let onlink = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(g, 32)
                    .output_interface(idx)
                    .scope(RouteScope::Link)
                    .build();
                reqs.push((
                    Box::pin(h.route().add(onlink).replace().execute()),
                    format!("route {g} scope link"),
                ));
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(g)
                    .output_interface(idx)
                    .onlink()
                    .build()
            }
            IpAddr::V6(g) => RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(g)
                .output_interface(idx)
                .build(),
        };
        reqs.push((
            Box::pin(h.route().add(def).replace().execute()),
            format!("default route via {gw}"),
        ));
    }
    let (futs, whats): (Vec<_>, Vec<_>) = reqs.into_iter().unzip();
    for (r, what) in futures::future::join_all(futs).await.into_iter().zip(whats) {
        r.map_err(nl(what))?;
    }
    Ok(())
}

/// `net->loopback_dev` always has ifindex 1 (LOOPBACK_IFINDEX).
const LOOPBACK_INDEX: u32 = 1;

/// One pending rtnetlink request of the container side.
type Request<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), rtnetlink::Error>> + Send + 'a>>;

pub(super) async fn check_container(
    h: &Handle,
    ifname: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
) -> Result<(), DpError> {
    let l = get_link(h, ifname)
        .await?
        .ok_or_else(|| DpError::Check(format!("interface {ifname} is missing in the container")))?;
    if !l.header.flags.contains(LinkFlags::Up) {
        return Err(DpError::Check(format!("interface {ifname} is down")));
    }
    let idx = l.header.index;
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(idx)
        .execute()
        .try_collect()
        .await
        .map_err(nl("dump addresses"))?;
    let has = |ip: IpAddr, plen: u8| {
        addrs.iter().any(|m| {
            m.header.prefix_len == plen
                && m.attributes.iter().any(|a| {
                    matches!(a, AddressAttribute::Address(x) | AddressAttribute::Local(x) if *x == ip)
                })
        })
    };
    // One path for both families: the address, (IPv4 only) the on-link
    // route to the gateway, and the default route via the gateway.
    let fams = [
        v4.map(|a| (IpAddr::V4(a), IpAddr::V4(GATEWAY_V4), true)),
        v6.map(|a| (IpAddr::V6(a), IpAddr::V6(GATEWAY_V6), false)),
    ];
    for (addr, gw, gw_route) in fams.into_iter().flatten() {
        let plen = if addr.is_ipv4() { 32 } else { 128 };
        if !has(addr, plen) {
            return Err(DpError::Check(format!(
                "address {addr}/{plen} missing on {ifname}"
            )));
        }
        let routes = dump_routes(h, addr.is_ipv6()).await?;
        let via = |r: &RouteMessage, len: u8, dst: Option<IpAddr>, gateway: Option<IpAddr>| {
            r.header.destination_prefix_length == len
                && (dst.is_none() || route_dst(r) == dst)
                && (gateway.is_none() || route_gw(r) == gateway)
                && route_oif(r) == Some(idx)
        };
        if gw_route && !routes.iter().any(|r| via(r, plen, Some(gw), None)) {
            return Err(DpError::Check(format!(
                "route {gw} dev {ifname} is missing in the container"
            )));
        }
        if !routes.iter().any(|r| via(r, 0, None, Some(gw))) {
            return Err(DpError::Check(format!(
                "default route via {gw} dev {ifname} is missing in the container"
            )));
        }
    }
    Ok(())
}
