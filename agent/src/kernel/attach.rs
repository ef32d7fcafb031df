//! One attachment, built and checked from links, sysctls, routes and the
//! container side.

use super::routes::{host_prefix_len, host_route};
use super::*;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags};
use rtnetlink::{LinkUnspec, LinkVeth};

impl Dataplane {
    /// Builds the attachment; with `host_peer` the peer stays in this
    /// (host) namespace under that name and the container side is left to
    /// the runtime (Docker moves and configures it), else it is created in
    /// the container's namespace and configured here (CNI).
    pub(super) async fn add_here(
        &self,
        a: &Attachment,
        host_peer: Option<&str>,
    ) -> Result<Built, DpError> {
        if !valid_ifname(&a.ifname) {
            return Err(DpError::BadIfname(a.ifname.clone()));
        }
        if let Some(p) = host_peer
            && !valid_ifname(p)
        {
            return Err(DpError::BadIfname(p.to_string()));
        }
        let mut created = None;
        match self.add_inner(a, host_peer, &mut created).await {
            Ok(b) => Ok(b),
            Err(e) => {
                // Deleting the host end takes the peer, addresses and both
                // sides' routes with it: nothing of this ADD remains.
                if let Some(name) = created
                    && let Err(err) = self.del_link(&name).await
                {
                    tracing::warn!(%name, %err, "rollback: delete veth failed");
                }
                Err(e)
            }
        }
    }

    pub(super) async fn add_inner(
        &self,
        a: &Attachment,
        host_peer: Option<&str>,
        created: &mut Option<String>,
    ) -> Result<Built, DpError> {
        let host_if = a.host_ifname();
        let t0 = std::time::Instant::now();
        // The container end's MAC is chosen here, so the container side
        // needs no lookup of its link: under concurrent ADDs every netlink
        // request queues on rtnl. (It cannot be created up: its peer does
        // not exist yet when the kernel would open it, ENOTCONN.) Under
        // Docker the peer keeps it when Docker moves it.
        let container_mac = random_mac();
        let (ns, peer_name) = match host_peer {
            Some(p) => (None, p),
            None => (Some(open_netns(&a.netns)?), a.ifname.as_str()),
        };
        let mut peer = LinkUnspec::new_with_name(peer_name)
            .mtu(self.mtu)
            .address(container_mac.to_vec());
        if let Some(ns) = &ns {
            peer = peer.setns_by_fd(ns.as_raw_fd());
        }
        let peer = peer.build();
        let msg = LinkVeth::new(&host_if, peer_name)
            .mtu(self.mtu)
            .alias(a.alias())
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        // EEXIST does not say which side collided. A host end of ours (a DEL's
        // veth still waiting for the reaper, or a crash leftover) is dead
        // weight: delete it and try once more. Only a clash inside the
        // container is "interface name taken".
        let mut retried = false;
        loop {
            match self.handle.link().add(msg.clone()).execute().await {
                Ok(()) => break,
                Err(e) if errno(&e) == Some(EEXIST) => {
                    if !retried && self.remove_stale_host_end(a, &host_if).await? {
                        retried = true;
                        continue;
                    }
                    if let Some(p) = host_peer {
                        return Err(DpError::Io(format!(
                            "creating veth {host_if} / {p}: one of the names is taken in the host namespace"
                        )));
                    }
                    return Err(self.diagnose_eexist(a, &host_if).await);
                }
                Err(e) => return Err(nl(format!("create veth {host_if}"))(e)),
            }
        }
        drop(ns);
        *created = Some(host_if.clone());
        let host = get_link(&self.handle, &host_if)
            .await?
            .ok_or_else(|| DpError::Io(format!("veth {host_if} vanished after creation")))?;
        let host_index = host.header.index;
        let host_mac = link_mac_bytes(&host);
        // A veth's IFLA_LINK is its peer's index in the peer's namespace.
        let peer_index = host
            .attributes
            .iter()
            .find_map(|at| match at {
                LinkAttribute::Link(i) => Some(*i),
                _ => None,
            })
            .ok_or_else(|| DpError::Io(format!("veth {host_if} reports no peer index")))?;

        let t_veth = t0.elapsed();
        // Host-end sysctls before the route, so the first packet finds them.
        sysctl(&format!("net.ipv4.conf.{host_if}.proxy_arp"), "1")?;
        sysctl(&format!("net.ipv4.neigh.{host_if}.proxy_delay"), "0")?;
        sysctl(&format!("net.ipv4.conf.{host_if}.rp_filter"), "1")?;
        if a.v6.is_some() {
            sysctl(&format!("net.ipv6.conf.{host_if}.proxy_ndp"), "1")?;
            sysctl(&format!("net.ipv6.conf.{host_if}.forwarding"), "1")?;
        }

        let t_sysctl = t0.elapsed();
        // CNI: the container side, on a thread inside its namespace. Under
        // Docker the runtime configures it after moving it.
        if host_peer.is_none() {
            let (v4, v6, mac) = (a.v4, a.v6, host_mac.clone());
            in_netns(&a.netns, move |h| async move {
                configure_container(&h, peer_index, v4, v6, &mac).await
            })
            .await?;
        }
        let t_container = t0.elapsed();

        if host_peer.is_some() && a.v4.is_some() {
            // No static neighbour for the gateway can be set in a container
            // flatnet does not configure: the host end answers ARP for
            // 169.254.1.1 as its own (link scope, like fe80::1 for IPv6).
            let mut req = self
                .handle
                .address()
                .add(host_index, IpAddr::V4(GATEWAY_V4), 32)
                .replace();
            req.message_mut().header.scope = netlink_packet_route::address::AddressScope::Link;
            req.execute()
                .await
                .map_err(nl("add 169.254.1.1 to host veth"))?;
        }
        if a.v6.is_some() {
            // The container's gateway fe80::1 answers NDP from the host end.
            let mut req = self
                .handle
                .address()
                .add(host_index, IpAddr::V6(GATEWAY_V6), 64)
                .replace();
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            req.execute()
                .await
                .map_err(nl("add fe80::1 to host veth"))?;
        }
        // Routes go away with the link, so the link undo covers them.
        for addr in [a.v4.map(IpAddr::V4), a.v6.map(IpAddr::V6)]
            .into_iter()
            .flatten()
        {
            let plen = host_prefix_len(addr);
            self.handle
                .route()
                .add(host_route(addr, host_index))
                .replace()
                .execute()
                .await
                .map_err(nl(format!("route {addr}/{plen} dev {host_if}")))?;
        }
        // Cumulative milliseconds at the end of each step: where an ADD's
        // kernel time goes when many run at once (rtnl is one lock).
        tracing::debug!(
            %host_if,
            veth_ms = t_veth.as_secs_f64() * 1e3,
            sysctl_ms = t_sysctl.as_secs_f64() * 1e3,
            container_ms = t_container.as_secs_f64() * 1e3,
            routes_ms = t0.elapsed().as_secs_f64() * 1e3,
            "attachment built"
        );
        Ok(Built {
            host_ifname: host_if,
            host_mac: mac_string(&host_mac),
            container_mac: mac_string(&container_mac),
            mtu: self.mtu,
        })
    }

    pub(super) async fn check_here(&self, a: &Attachment) -> Result<(), DpError> {
        let host_if = a.host_ifname();
        let host = get_link(&self.handle, &host_if)
            .await?
            .ok_or_else(|| DpError::Check(format!("host veth {host_if} is missing")))?;
        if !host.header.flags.contains(LinkFlags::Up) {
            return Err(DpError::Check(format!("host veth {host_if} is down")));
        }
        if read_sysctl(&format!("net.ipv4.conf.{host_if}.proxy_arp"))? != "1" {
            return Err(DpError::Check(format!("proxy_arp is off on {host_if}")));
        }
        let idx = host.header.index;
        for addr in [a.v4.map(IpAddr::V4), a.v6.map(IpAddr::V6)]
            .into_iter()
            .flatten()
        {
            if !self.host_route_present(addr, idx).await? {
                return Err(DpError::Check(format!(
                    "host route {addr} dev {host_if} is missing"
                )));
            }
            if !self.antispoof_present(addr.is_ipv6()).await? {
                return Err(DpError::Check(format!(
                    "anti-spoofing rule ({} raw {ANTISPOOF_CHAIN}) is missing",
                    if addr.is_ipv6() {
                        "ip6tables"
                    } else {
                        "iptables"
                    }
                )));
            }
        }
        // A Docker endpoint's container side is Docker's (flatnet does not
        // know its namespace): the host side is all there is to check.
        if a.netns.as_os_str().is_empty() {
            return Ok(());
        }
        let (ifname, v4, v6) = (a.ifname.clone(), a.v4, a.v6);
        in_netns(&a.netns, move |h| async move {
            check_container(&h, &ifname, v4, v6).await
        })
        .await
    }
}

/// A random locally administered unicast MAC (what the kernel would pick
/// for a veth end), from the std hasher's per-process random keys.
fn random_mac() -> [u8; 6] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let b = h.finish().to_le_bytes();
    [(b[0] & 0xfe) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

#[cfg(test)]
mod mac_tests {
    #[test]
    fn random_macs_are_local_unicast_and_differ() {
        let a = super::random_mac();
        let b = super::random_mac();
        assert_eq!(a[0] & 0x03, 0x02, "{a:02x?}");
        assert_ne!(a, b);
    }
}
