//! Kernel nexthop objects over netlink (RTM_NEWNEXTHOP / RTM_DELNEXTHOP /
//! RTM_GETNEXTHOP, kernel 5.3 and later). netlink-packet-route 0.34 has no
//! nexthop messages, so this is a small typed encoder and decoder of
//! `struct nhmsg` and the NHA_* attributes flatnet uses, sent on a netlink
//! socket of the FIB's own (opened in flatnetd's namespace).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::nh::{NhKey, NhSpec};
use crate::kernel::RTPROT_FLATNET;

const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const RTM_GETNEXTHOP: u16 = 106;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_GROUP_TYPE: u16 = 3;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const NHA_ENCAP_TYPE: u16 = 7;
const NHA_ENCAP: u16 = 8;
const NHA_MASTER: u16 = 10;
const NHA_FDB: u16 = 11;
const NEXTHOP_GRP_TYPE_MPATH: u16 = 0;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const HDR: usize = 16;
const NHMSG: usize = 8;
/// Requests written before their answers are read (the socket's receive
/// buffer holds that many acks).
const CHUNK: usize = 256;

/// A nexthop request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NhRequest {
    /// Create (never replace) object `id`.
    New(u32, NhSpec),
    /// A blackhole object (the support probe).
    Blackhole(u32),
    Del(u32),
}

/// What a nexthop dump shows of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NhObject {
    pub id: u32,
    pub protocol: u8,
    pub kind: NhKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NhKind {
    One(NhKey),
    Group(BTreeSet<u32>),
    /// Blackhole, a gateway without an interface, FDB, ...: not flatnet's shape.
    Other,
}

fn attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

fn message(kind: u16, flags: u16, seq: u32, family: u8, protocol: u8, attrs: &[u8]) -> Vec<u8> {
    let len = HDR + NHMSG + attrs.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    // struct nhmsg: family, scope, protocol, resvd, flags.
    b.extend_from_slice(&[family, 0, protocol, 0]);
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(attrs);
    b
}

/// The netlink message of one request.
pub fn encode(req: &NhRequest, seq: u32) -> Vec<u8> {
    let mut a = Vec::new();
    let create = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    match req {
        NhRequest::New(id, NhSpec::One(k)) => {
            attr(&mut a, NHA_ID, &id.to_ne_bytes());
            let family = match k.gateway {
                IpAddr::V4(g) => {
                    attr(&mut a, NHA_GATEWAY, &g.octets());
                    AF_INET
                }
                IpAddr::V6(g) => {
                    attr(&mut a, NHA_GATEWAY, &g.octets());
                    AF_INET6
                }
            };
            attr(&mut a, NHA_OIF, &k.ifindex.to_ne_bytes());
            message(RTM_NEWNEXTHOP, create, seq, family, RTPROT_FLATNET, &a)
        }
        NhRequest::New(id, NhSpec::Group(members)) => {
            attr(&mut a, NHA_ID, &id.to_ne_bytes());
            // struct nexthop_grp: id, weight - 1, two reserved fields.
            let mut g = Vec::with_capacity(8 * members.len());
            for m in members {
                g.extend_from_slice(&m.to_ne_bytes());
                g.extend_from_slice(&[0, 0, 0, 0]);
            }
            attr(&mut a, NHA_GROUP, &g);
            attr(
                &mut a,
                NHA_GROUP_TYPE,
                &NEXTHOP_GRP_TYPE_MPATH.to_ne_bytes(),
            );
            message(RTM_NEWNEXTHOP, create, seq, AF_UNSPEC, RTPROT_FLATNET, &a)
        }
        NhRequest::Blackhole(id) => {
            attr(&mut a, NHA_ID, &id.to_ne_bytes());
            attr(&mut a, NHA_BLACKHOLE, &[]);
            message(RTM_NEWNEXTHOP, create, seq, AF_INET, RTPROT_FLATNET, &a)
        }
        NhRequest::Del(id) => {
            attr(&mut a, NHA_ID, &id.to_ne_bytes());
            let flags = NLM_F_REQUEST | NLM_F_ACK;
            message(RTM_DELNEXTHOP, flags, seq, AF_UNSPEC, 0, &a)
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One object of an RTM_NEWNEXTHOP payload (nhmsg and attributes).
pub fn decode_object(p: &[u8]) -> Option<NhObject> {
    let protocol = *p.get(2)?;
    let (mut id, mut gw, mut oif, mut group, mut other) = (None, None, None, None, false);
    let mut at = NHMSG;
    while at + 4 <= p.len() {
        let len = usize::from(u16_at(p, at)?);
        let kind = u16_at(p, at + 2)? & 0x3fff;
        if len < 4 || at + len > p.len() {
            break;
        }
        let v = &p[at + 4..at + len];
        match kind {
            NHA_ID => id = u32_at(v, 0),
            NHA_OIF => oif = u32_at(v, 0),
            NHA_GATEWAY => {
                gw = match v.len() {
                    4 => <[u8; 4]>::try_from(v)
                        .ok()
                        .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
                    16 => <[u8; 16]>::try_from(v)
                        .ok()
                        .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
                    _ => None,
                }
            }
            NHA_GROUP => group = Some(v.chunks_exact(8).filter_map(|c| u32_at(c, 0)).collect()),
            // Blackhole, encapsulation, master device, FDB: not flatnet's shape.
            NHA_BLACKHOLE | NHA_ENCAP_TYPE | NHA_ENCAP | NHA_MASTER | NHA_FDB => other = true,
            // Group type, statistics, flags of newer kernels: informational.
            _ => {}
        }
        at += (len + 3) & !3;
    }
    let kind = match (group, gw, oif) {
        (Some(g), None, _) if !other => NhKind::Group(g),
        (None, Some(gateway), Some(ifindex)) if !other => NhKind::One(NhKey { gateway, ifindex }),
        _ => NhKind::Other,
    };
    Some(NhObject {
        id: id?,
        protocol,
        kind,
    })
}

/// The FIB's nexthop socket.
pub struct NhSocket {
    sock: Mutex<Socket>,
    seq: AtomicU32,
}

/// A netlink error number (positive), or an IO error of the socket.
#[derive(Debug, thiserror::Error)]
pub enum NhError {
    #[error("netlink nexthop socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("kernel refused: errno {0}")]
    Errno(i32),
}

impl NhSocket {
    /// Opens a NETLINK_ROUTE socket (in the calling thread's namespace).
    pub fn open() -> Result<NhSocket, std::io::Error> {
        let mut s = Socket::new(NETLINK_ROUTE)?;
        s.bind_auto()?;
        s.connect(&SocketAddr::new(0, 0))?;
        Ok(NhSocket {
            sock: Mutex::new(s),
            seq: AtomicU32::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Socket> {
        self.sock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads answers until `f` says the exchange is over.
    fn read(s: &Socket, mut f: impl FnMut(u16, u32, &[u8]) -> bool) -> Result<(), NhError> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = s.recv(&mut &mut buf[..], 0)?;
            let mut at = 0;
            while at + HDR <= n {
                let len = u32_at(&buf, at).unwrap_or(0) as usize;
                let kind = u16_at(&buf, at + 4).unwrap_or(0);
                let seq = u32_at(&buf, at + 8).unwrap_or(0);
                if len < HDR || at + len > n {
                    return Err(NhError::Io(std::io::Error::other("short netlink message")));
                }
                if f(kind, seq, &buf[at + HDR..at + len]) {
                    return Ok(());
                }
                at += (len + 3) & !3;
            }
        }
    }

    /// Carries out requests (pipelined in chunks); one result per request,
    /// in order. Blocking: call from a blocking thread.
    pub fn transact(&self, reqs: &[NhRequest]) -> Vec<Result<(), NhError>> {
        let s = self.lock();
        let mut out = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks(CHUNK) {
            let base = self.seq.fetch_add(chunk.len() as u32, Ordering::Relaxed);
            let mut res: Vec<Option<Result<(), NhError>>> =
                (0..chunk.len()).map(|_| None).collect();
            let mut sent = 0;
            for (i, r) in chunk.iter().enumerate() {
                match s.send(&encode(r, base.wrapping_add(i as u32)), 0) {
                    Ok(_) => sent += 1,
                    Err(e) => res[i] = Some(Err(NhError::Io(e))),
                }
            }
            let mut acked = 0;
            let r = if sent == 0 {
                Ok(())
            } else {
                Self::read(&s, |kind, seq, p| {
                    let i = seq.wrapping_sub(base) as usize;
                    if kind == NLMSG_ERROR && i < chunk.len() && res[i].is_none() {
                        let code = p
                            .get(..4)
                            .and_then(|c| c.try_into().ok())
                            .map_or(0, i32::from_ne_bytes);
                        res[i] = Some(if code == 0 {
                            Ok(())
                        } else {
                            Err(NhError::Errno(-code))
                        });
                        acked += 1;
                    }
                    acked == sent
                })
            };
            let failed = r.err().map(|e| e.to_string());
            out.extend(res.into_iter().map(|x| {
                x.unwrap_or_else(|| {
                    Err(NhError::Io(std::io::Error::other(
                        failed.clone().unwrap_or_else(|| "no answer".into()),
                    )))
                })
            }));
        }
        out
    }

    /// Every nexthop object in the namespace (all protocols).
    pub fn dump(&self) -> Result<Vec<NhObject>, NhError> {
        let s = self.lock();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        s.send(
            &message(
                RTM_GETNEXTHOP,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                AF_UNSPEC,
                0,
                &[],
            ),
            0,
        )?;
        let mut out = Vec::new();
        let mut err = None;
        Self::read(&s, |kind, sq, p| {
            if sq != seq {
                return false;
            }
            match kind {
                RTM_NEWNEXTHOP => {
                    out.extend(decode_object(p));
                    false
                }
                NLMSG_ERROR => {
                    let code = p
                        .get(..4)
                        .and_then(|c| c.try_into().ok())
                        .map_or(0, i32::from_ne_bytes);
                    if code != 0 {
                        err = Some(-code);
                    }
                    true
                }
                NLMSG_DONE => true,
                _ => false,
            }
        })?;
        match err {
            Some(e) => Err(NhError::Errno(e)),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn objects_round_trip_through_the_encoder() {
        let k = NhKey {
            gateway: "fe80::1".parse().unwrap(),
            ifindex: 7,
        };
        let m = encode(&NhRequest::New(NH, NhSpec::One(k)), 9);
        assert_eq!(u32_at(&m, 0).unwrap() as usize, m.len());
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWNEXTHOP));
        assert_eq!(u32_at(&m, 8), Some(9));
        // family inet6, protocol 200
        assert_eq!((m[HDR], m[HDR + 2]), (AF_INET6, 200));
        assert_eq!(
            decode_object(&m[HDR..]),
            Some(NhObject {
                id: NH,
                protocol: 200,
                kind: NhKind::One(k)
            })
        );
        let g = encode(
            &NhRequest::New(NH + 2, NhSpec::Group([NH, NH + 1].into())),
            1,
        );
        assert_eq!(g[HDR], AF_UNSPEC);
        assert_eq!(
            decode_object(&g[HDR..]).unwrap().kind,
            NhKind::Group([NH, NH + 1].into())
        );
        let b = encode(&NhRequest::Blackhole(NH), 1);
        assert_eq!(decode_object(&b[HDR..]).unwrap().kind, NhKind::Other);
        let d = encode(&NhRequest::Del(NH), 1);
        assert_eq!(u16_at(&d, 4), Some(RTM_DELNEXTHOP));
        assert_eq!(decode_object(&d[HDR..]).unwrap().id, NH);
    }

    const NH: u32 = super::super::nh::NH_ID_BASE;
}
