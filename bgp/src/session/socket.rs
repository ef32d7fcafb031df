//! Socket options a BGP session needs that std/tokio do not expose: TCP MD5
//! signatures (RFC 2385) and GTSM (RFC 5082), plus connecting with them set
//! before the SYN, and listeners that can carry per-peer MD5 keys.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Linux `struct tcp_md5sig` (include/uapi/linux/tcp.h). libc does not define it.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; 80],
}

fn sockaddr_storage(addr: IpAddr, v6_socket: bool) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let addr = match addr {
        // A v6 socket talks to IPv4 peers through v4-mapped addresses.
        IpAddr::V4(a) if v6_socket => IpAddr::V6(a.to_ipv6_mapped()),
        a => a,
    };
    match addr {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage (128 bytes) and both are POD.
            unsafe {
                std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in>(), sin);
            }
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage and both are POD.
            unsafe {
                std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in6>(), sin6);
            }
        }
    }
    ss
}

fn is_v6_socket(fd: RawFd) -> io::Result<bool> {
    // SAFETY: zeroed sockaddr_storage is valid; getsockname writes at most `len` bytes.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: fd is an open socket owned by the caller; pointers are valid for the call.
    let r = unsafe { libc::getsockname(fd, (&raw mut ss).cast(), &mut len) };
    if r != 0 {
        // Unbound sockets still have a family; fall back to SO_DOMAIN.
        let mut dom: libc::c_int = 0;
        let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid fd and out-pointers sized for c_int.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&raw mut dom).cast(),
                &mut l,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(dom == libc::AF_INET6);
    }
    Ok(i32::from(ss.ss_family) == libc::AF_INET6)
}

/// Installs (or with `key = None` removes) the RFC 2385 key for `peer` on a
/// socket. On a listener this makes the kernel require the key on SYNs from
/// that address; on a connecting socket it signs our segments.
pub fn set_md5(fd: RawFd, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let key_bytes = key.unwrap_or_default();
    if key_bytes.len() > 80 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 key longer than 80 octets",
        ));
    }
    let v6 = is_v6_socket(fd)?;
    let mut sig = TcpMd5Sig {
        addr: sockaddr_storage(peer, v6),
        flags: 0,
        prefixlen: 0,
        keylen: key_bytes.len() as u16,
        ifindex: 0,
        key: [0; 80],
    };
    sig.key[..key_bytes.len()].copy_from_slice(key_bytes);
    // SAFETY: `sig` is a valid, fully initialised struct tcp_md5sig that lives
    // for the duration of the call; fd is an open TCP socket.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        // Removing a key that was never set is fine.
        if key.is_none() && e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: valid fd; the option value is a c_int that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends at TTL / hop limit 255 (GTSM, RFC 5082): set on listeners so our
/// SYN-ACK passes a peer's minimum-TTL check.
pub fn set_ttl255(fd: RawFd, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TTL, 255)
    }
}

/// GTSM (RFC 5082): send with TTL/hop limit 255 and drop anything that
/// arrives with less than `min_ttl` (255 - allowed hops + 1).
pub fn set_gtsm(fd: RawFd, v6: bool, min_ttl: u8) -> io::Result<()> {
    if v6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?;
        setsockopt_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MINHOPCOUNT,
            libc::c_int::from(min_ttl),
        )?;
        // IPv4-mapped peers on a v6 socket use the IPv4 options too; ignore failure.
        let _ = setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TTL, 255);
        let _ = setsockopt_int(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MINTTL,
            libc::c_int::from(min_ttl),
        );
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TTL, 255)?;
        setsockopt_int(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MINTTL,
            libc::c_int::from(min_ttl),
        )?;
    }
    Ok(())
}

/// Interface index of `name` (for IPv6 link-local scope).
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// How to reach one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// TCP MD5 key.
    pub password: Option<String>,
    /// GTSM: allowed hops (1 = directly connected → min TTL 255).
    pub ttl_security: Option<u8>,
    /// Interface for link-local peers.
    pub interface: Option<String>,
    /// Local address to bind to.
    pub local_address: Option<IpAddr>,
}

impl ConnectOptions {
    /// The minimum TTL to require.
    pub fn min_ttl(&self) -> Option<u8> {
        self.ttl_security
            .map(|hops| 255u8.saturating_sub(hops.saturating_sub(1)))
    }
}

/// Full socket address of the peer (scope id for link-local).
pub fn peer_socket_addr(
    addr: IpAddr,
    port: u16,
    interface: Option<&str>,
) -> io::Result<SocketAddr> {
    Ok(match addr {
        IpAddr::V6(a) if a.is_unicast_link_local() => {
            let scope = match interface {
                Some(i) => if_index(i)?,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a link-local peer needs an interface",
                    ));
                }
            };
            SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope))
        }
        a => SocketAddr::new(a, port),
    })
}

/// Opens a TCP connection to a peer with MD5 and GTSM set before the SYN.
pub async fn connect(addr: IpAddr, port: u16, opts: &ConnectOptions) -> io::Result<TcpStream> {
    let target = peer_socket_addr(addr, port, opts.interface.as_deref())?;
    let sock = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let fd = sock.as_raw_fd();
    if let Some(p) = &opts.password {
        set_md5(fd, addr, Some(p.as_bytes()))?;
    }
    if let Some(min) = opts.min_ttl() {
        set_gtsm(fd, target.is_ipv6(), min)?;
    }
    if let Some(local) = opts.local_address {
        let bind = match (local, &target) {
            (IpAddr::V6(l), SocketAddr::V6(t)) if l.is_unicast_link_local() => {
                SocketAddr::V6(SocketAddrV6::new(l, 0, 0, t.scope_id()))
            }
            (l, _) => SocketAddr::new(l, 0),
        };
        sock.bind(bind)?;
    }
    sock.set_nodelay(true)?;
    let stream = sock.connect(target).await?;
    Ok(stream)
}

/// Binds a listener with SO_REUSEADDR (v6 listeners are v6-only so an IPv4
/// listener on the same port can coexist).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    sock.bind(addr)?;
    sock.listen(128)
}

/// Applies GTSM to an accepted connection (the listener is shared by all peers).
pub fn apply_accepted(stream: &TcpStream, opts: &ConnectOptions) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(min) = opts.min_ttl() {
        let v6 = stream.local_addr()?.is_ipv6();
        set_gtsm(stream.as_raw_fd(), v6, min)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn md5_and_gtsm_options_apply_on_loopback_sockets() {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let fd = l.as_raw_fd();
        let peer = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
        set_md5(fd, peer, Some(b"s3cret")).unwrap();
        set_md5(fd, peer, None).unwrap();
        // Removing a key that is not there is not an error.
        set_md5(fd, peer, None).unwrap();
        assert!(
            set_md5(fd, peer, Some(&[b'x'; 81])).is_err(),
            "keys are at most 80 octets"
        );
        set_gtsm(fd, false, 255).unwrap();
        let l6 = listen("[::1]:0".parse().unwrap()).unwrap();
        set_md5(l6.as_raw_fd(), peer, Some(b"k")).unwrap();
        set_gtsm(l6.as_raw_fd(), true, 254).unwrap();
    }

    #[test]
    fn min_ttl_from_hops() {
        let o = |h| ConnectOptions {
            ttl_security: Some(h),
            ..ConnectOptions::default()
        };
        assert_eq!(o(1).min_ttl(), Some(255));
        assert_eq!(o(2).min_ttl(), Some(254));
        assert_eq!(ConnectOptions::default().min_ttl(), None);
    }

    #[test]
    fn link_local_needs_an_interface() {
        let ll: IpAddr = "fe80::1".parse().unwrap();
        assert!(peer_socket_addr(ll, 179, None).is_err());
        let a = peer_socket_addr(ll, 179, Some("lo")).unwrap();
        let SocketAddr::V6(v6) = a else { panic!("{a}") };
        assert_eq!(v6.scope_id(), if_index("lo").unwrap());
        assert!(if_index("no-such-if0").is_err());
    }
}

/// The subnets of the interface(s) holding `local` (every address on them
/// with its prefix length), for the RFC 4271 6.3 b next-hop check; empty
/// when `local` is on no interface or the list cannot be read.
pub fn connected_subnets(local: IpAddr) -> Vec<crate::rib::Subnet> {
    let local = local.to_canonical();
    let mut all: Vec<(String, crate::rib::Subnet)> = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        // SAFETY: non-null sockaddrs of the list point at sockaddrs whose
        // family says their real type.
        let (Some(addr), Some(mask)) = (unsafe { sockaddr_ip(ifa.ifa_addr) }, unsafe {
            sockaddr_ip(ifa.ifa_netmask)
        }) else {
            continue;
        };
        let len = match mask {
            IpAddr::V4(m) => u32::from(m).leading_ones() as u8,
            IpAddr::V6(m) => u128::from(m).leading_ones() as u8,
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        all.push((name, crate::rib::Subnet { addr, len }));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    let names: Vec<String> = all
        .iter()
        .filter(|(_, s)| s.addr == local)
        .map(|(n, _)| n.clone())
        .collect();
    all.into_iter()
        .filter(|(n, _)| names.contains(n))
        .map(|(_, s)| s)
        .collect()
}

/// The address of an AF_INET / AF_INET6 sockaddr; `None` for others or null.
///
/// # Safety
/// `sa` is null or points at a sockaddr whose `sa_family` gives its type.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller's contract: a valid sockaddr, typed by its family.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let v4 = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(
                    v4.sin_addr.s_addr,
                ))))
            }
            libc::AF_INET6 => {
                let v6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::V6(std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod subnet_tests {
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn loopback_is_found_with_its_prefix() {
        let s = super::connected_subnets(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let far = IpAddr::V4(Ipv4Addr::new(127, 9, 9, 9));
        assert!(s.iter().any(|s| s.len == 8 && s.contains(far)), "{s:?}");
        let none = super::connected_subnets(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)));
        assert!(none.is_empty(), "{none:?}");
    }
}
