//! The container side of an attachment, run on a thread inside its
//! namespace: configure it, and check it.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// Inside the container: lo and the interface up, the addresses, the
/// on-link gateway (with a permanent neighbour entry for it, so the first
/// packet does not wait for ARP/NDP) and the default routes.
pub(super) async fn configure_container(
    h: &Handle,
    ifname: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    host_mac: &[u8],
) -> Result<String, DpError> {
    let lo = get_link(h, "lo")
        .await?
        .ok_or_else(|| DpError::Io("no lo in container".into()))?;
    if !lo.header.flags.contains(LinkFlags::Up) {
        h.link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(nl("set lo up"))?;
    }
    let l = get_link(h, ifname)
        .await?
        .ok_or_else(|| DpError::Io(format!("{ifname} missing in container after creation")))?;
    let idx = l.header.index;
    if let Some(v6) = v6 {
        let mut req = h.address().add(idx, IpAddr::V6(v6), 128);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.execute().await.map_err(nl(format!("add {v6}/128")))?;
    }
    if let Some(v4) = v4 {
        h.address()
            .add(idx, IpAddr::V4(v4), 32)
            .execute()
            .await
            .map_err(nl(format!("add {v4}/32")))?;
    }
    if !l.header.flags.contains(LinkFlags::Up) {
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(nl(format!("set {ifname} up")))?;
    }
    if v4.is_some() {
        h.neighbours()
            .add(idx, IpAddr::V4(GATEWAY_V4))
            .link_layer_address(host_mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl("neighbour 169.254.1.1"))?;
        let gw = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(GATEWAY_V4, 32)
            .output_interface(idx)
            .scope(RouteScope::Link)
            .build();
        h.route()
            .add(gw)
            .replace()
            .execute()
            .await
            .map_err(nl("route 169.254.1.1 scope link"))?;
        let def = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(GATEWAY_V4)
            .output_interface(idx)
            .onlink()
            .build();
        h.route()
            .add(def)
            .replace()
            .execute()
            .await
            .map_err(nl("default route via 169.254.1.1"))?;
    }
    if v6.is_some() {
        h.neighbours()
            .add(idx, IpAddr::V6(GATEWAY_V6))
            .link_layer_address(host_mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl("neighbour fe80::1"))?;
        let def = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(GATEWAY_V6)
            .output_interface(idx)
            .build();
        h.route()
            .add(def)
            .replace()
            .execute()
            .await
            .map_err(nl("default route via fe80::1"))?;
    }
    Ok(link_mac(&l))
}

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
    if let Some(v4) = v4 {
        if !has(IpAddr::V4(v4), 32) {
            return Err(DpError::Check(format!(
                "address {v4}/32 missing on {ifname}"
            )));
        }
        let routes = dump_routes(h, false).await?;
        let gw = routes.iter().any(|r| {
            r.header.destination_prefix_length == 32
                && route_dst(r) == Some(IpAddr::V4(GATEWAY_V4))
                && route_oif(r) == Some(idx)
        });
        if !gw {
            return Err(DpError::Check(format!(
                "route {GATEWAY_V4} dev {ifname} is missing in the container"
            )));
        }
        let def = routes.iter().any(|r| {
            r.header.destination_prefix_length == 0
                && route_gw(r) == Some(IpAddr::V4(GATEWAY_V4))
                && route_oif(r) == Some(idx)
        });
        if !def {
            return Err(DpError::Check(format!(
                "default route via {GATEWAY_V4} dev {ifname} is missing in the container"
            )));
        }
    }
    if let Some(v6) = v6 {
        if !has(IpAddr::V6(v6), 128) {
            return Err(DpError::Check(format!(
                "address {v6}/128 missing on {ifname}"
            )));
        }
        let routes = dump_routes(h, true).await?;
        let def = routes.iter().any(|r| {
            r.header.destination_prefix_length == 0
                && route_gw(r) == Some(IpAddr::V6(GATEWAY_V6))
                && route_oif(r) == Some(idx)
        });
        if !def {
            return Err(DpError::Check(format!(
                "default route via {GATEWAY_V6} dev {ifname} is missing in the container"
            )));
        }
    }
    Ok(())
}
