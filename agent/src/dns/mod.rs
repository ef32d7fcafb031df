//! Service discovery: flatnetd answers DNS for `<app>.<zone>` from the
//! endpoint records it follows, at a link-local address every local
//! container reaches (`[dns]`, off unless enabled). A thin server that owns
//! nothing: the records are the datastore's, the zone is rebuilt from them.
//!
//! - [`zone`] *pure*: records → answers.
//! - [`follow`]: the datastore's endpoint records (all hosts) → the zone.
//! - [`server`]: hickory's `RequestHandler`, the UDP loop, the TCP server.
//! - [`forward`], [`resolv`]: names outside the zone to the host's resolvers.
//!
//! The listener: the address (default 169.254.1.1, the gateway of every
//! container) is made local on `lo` (scope host, so the kernel never picks
//! it as a source) unless an interface other than a container's host veth
//! has it already (Docker's host veths carry it only while their container
//! lives), and the sockets are
//! bound to that address only, with IP_FREEBIND so that the bind never
//! depends on the order of address and socket. The filter chain
//! `FLATNET-DNS` ([`crate::netfilter::dns`]) accepts queries from local
//! containers and the host, and drops the same address and port from any
//! other interface.

pub mod follow;
pub mod forward;
pub mod resolv;
pub mod server;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

use crate::config::DnsConfig;
use crate::handlers::Agent;

/// UDP sockets (SO_REUSEPORT) and receive loops: one per runtime worker.
const UDP_SOCKETS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns.listen {addr}: {what}: {source}")]
    Socket {
        addr: SocketAddr,
        what: &'static str,
        source: nix::Error,
    },
    #[error("dns.listen {addr}: cannot make the address local on lo: {msg}")]
    Address { addr: SocketAddr, msg: String },
    #[error("dns: {0}")]
    Follow(#[from] follow::FollowError),
    #[error("dns: netfilter: {0}")]
    Netfilter(#[from] crate::netfilter::NfError),
}

/// What a container's resolv.conf should say (the CNI result's `dns`).
pub fn cni_dns(cfg: &DnsConfig) -> Option<crate::api::DnsInfo> {
    cfg.enabled.then(|| crate::api::DnsInfo {
        nameservers: vec![cfg.listen.ip().to_string()],
        search: vec![cfg.zone_name()],
    })
}

/// A socket bound to `addr` only (IP_FREEBIND; TCP: listening).
pub fn bind_socket(addr: SocketAddr, ty: SockType) -> Result<OwnedFd, DnsError> {
    let err = |what| move |source| DnsError::Socket { addr, what, source };
    let fam = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        fam,
        ty,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(err("socket"))?;
    // IP_FREEBIND is honoured by IPv6 sockets too (ipv6_can_nonlocal_bind).
    setsockopt(&fd, sockopt::IpFreebind, &true).map_err(err("IP_FREEBIND"))?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(err("IPV6_V6ONLY"))?;
    }
    match ty {
        SockType::Stream => setsockopt(&fd, sockopt::ReuseAddr, &true),
        _ => setsockopt(&fd, sockopt::ReusePort, &true),
    }
    .map_err(err("SO_REUSEADDR/SO_REUSEPORT"))?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(err("bind"))?;
    if ty == SockType::Stream {
        listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN)).map_err(err("listen"))?;
    }
    Ok(fd)
}

/// Whether an interface in this namespace other than flatnet's host
/// veths has `ip` (a Docker host veth carries 169.254.1.1 too, but only
/// while its container lives).
fn is_local(ip: IpAddr) -> bool {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    addrs.into_iter().any(|a| {
        if a.interface_name.starts_with(crate::kernel::HOST_IF_PREFIX) {
            return false;
        }
        let Some(s) = a.address else { return false };
        match ip {
            IpAddr::V4(v4) => s.as_sockaddr_in().is_some_and(|x| x.ip() == v4),
            IpAddr::V6(v6) => s.as_sockaddr_in6().is_some_and(|x| x.ip() == v6),
        }
    })
}

/// Puts `addr`'s address on `lo` (scope host) unless it is a loopback
/// address or another interface (not a container's veth) has it.
async fn make_local(dp: &crate::kernel::Dataplane, addr: SocketAddr) -> Result<(), DnsError> {
    let ip = addr.ip();
    if ip.is_loopback() || is_local(ip) {
        return Ok(());
    }
    let fail = |msg: String| DnsError::Address { addr, msg };
    let lo = nix::net::if_::if_nametoindex("lo").map_err(|e| fail(e.to_string()))?;
    let plen = if ip.is_ipv4() { 32 } else { 128 };
    let mut req = dp.handle().address().add(lo, ip, plen).replace();
    req.message_mut().header.scope = netlink_packet_route::address::AddressScope::Host;
    if ip.is_ipv6() {
        req.message_mut()
            .attributes
            .push(netlink_packet_route::address::AddressAttribute::Flags(
                netlink_packet_route::address::AddressFlags::Nodad,
            ));
    }
    req.execute().await.map_err(|e| fail(e.to_string()))?;
    tracing::info!(address = %ip, "dns: listener address put on lo");
    Ok(())
}

fn tokio_err(addr: SocketAddr) -> impl Fn(std::io::Error) -> DnsError {
    move |e| DnsError::Socket {
        addr,
        what: "register with tokio",
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)),
    }
}

/// Starts DNS when `[dns] enabled`: the zone from a first listing, the
/// listener's address and rules, the sockets, then the follower and the
/// servers as tasks. Errors (the address cannot be bound) stop flatnetd.
pub async fn start(agent: &Arc<Agent>) -> Result<(), DnsError> {
    let cfg = agent.cfg.dns.clone();
    if !cfg.enabled {
        return Ok(());
    }
    let metrics = agent.metrics.dns.clone();
    let (follower, rev) = follow::Follower::start(
        agent.ds.clone(),
        &cfg.zone_name(),
        cfg.ttl,
        Some(metrics.clone()),
    )
    .await?;
    let zone = follower.zone();
    make_local(&agent.dp, cfg.listen).await?;
    crate::netfilter::dns::install(agent.dp.netfilter(), &cfg.listen).await?;
    let forward = cfg
        .forward
        .then(|| forward::Forwarder::new(cfg.resolv_conf.clone(), vec![cfg.listen]));
    let handler = server::Handler::new(zone, forward, metrics);
    let mut udp = Vec::new();
    for _ in 0..UDP_SOCKETS {
        let fd = bind_socket(cfg.listen, SockType::Datagram)?;
        let s = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd))
            .map_err(tokio_err(cfg.listen))?;
        udp.push(Arc::new(s));
    }
    let tcp = bind_socket(cfg.listen, SockType::Stream)?;
    let tcp = tokio::net::TcpListener::from_std(std::net::TcpListener::from(tcp))
        .map_err(tokio_err(cfg.listen))?;
    tokio::spawn(follower.run(rev));
    for s in udp {
        tokio::spawn(server::serve_udp(s, handler.clone()));
    }
    let mut srv = hickory_server::Server::new(handler);
    srv.register_listener(tcp, server::TCP_IDLE, 64);
    tokio::spawn(async move {
        if let Err(e) = srv.block_until_done().await {
            tracing::error!(error = %e, "dns: tcp server stopped");
        }
    });
    tracing::info!(
        listen = %cfg.listen,
        zone = %cfg.zone_name(),
        ttl = cfg.ttl,
        forward = cfg.forward,
        "dns listening (udp, tcp)"
    );
    Ok(())
}
