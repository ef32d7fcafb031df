//! Reading BGP messages out of a tcpdump capture.
//!
//! Parses classic pcap files (Ethernet, Linux cooked v1/v2, raw IP),
//! reassembles each TCP direction by sequence number (retransmissions and
//! reordering tolerated) and splits the byte streams into BGP messages. A
//! truncated last record is ignored, so a capture can be read while tcpdump
//! is still writing it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Errors from reading a capture.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("not a pcap file (magic {0:#010x}); pcapng is not supported")]
    Magic(u32),
    #[error("unsupported link type {0}")]
    LinkType(u32),
    #[error("stream {src} -> {dst}: bytes at offset {offset} are not a BGP header")]
    NotBgp {
        src: SocketAddr,
        dst: SocketAddr,
        offset: usize,
    },
}

/// BGP message type codes.
pub const OPEN: u8 = 1;
pub const UPDATE: u8 = 2;
pub const NOTIFICATION: u8 = 3;
pub const KEEPALIVE: u8 = 4;
pub const ROUTE_REFRESH: u8 = 5;

/// Name of a message type as used in capture manifests.
pub fn type_name(t: u8) -> &'static str {
    match t {
        OPEN => "OPEN",
        UPDATE => "UPDATE",
        NOTIFICATION => "NOTIFICATION",
        KEEPALIVE => "KEEPALIVE",
        ROUTE_REFRESH => "ROUTE-REFRESH",
        _ => "UNKNOWN",
    }
}

/// One BGP message as seen on the wire, with the header.
#[derive(Debug, Clone)]
pub struct BgpMessage {
    /// Capture time (microseconds) of the segment that completed it.
    pub ts_us: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Which TCP connection of this 4-tuple (0 for the first SYN seen).
    pub connection: u32,
    pub bytes: Vec<u8>,
}

impl BgpMessage {
    pub fn kind(&self) -> u8 {
        self.bytes.get(18).copied().unwrap_or(0)
    }
}

struct Segment<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    syn: bool,
    payload: &'a [u8],
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}

/// Strips the link layer; returns the IP packet.
fn ip_of(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    match linktype {
        // Ethernet, with optional 802.1Q tags.
        1 => {
            let mut off = 12;
            let mut et = be16(frame, off)?;
            while et == 0x8100 || et == 0x88a8 {
                off += 4;
                et = be16(frame, off)?;
            }
            matches!(et, 0x0800 | 0x86dd).then(|| frame.get(off + 2..))?
        }
        // Linux cooked capture v1: protocol at 14.
        113 => {
            let et = be16(frame, 14)?;
            matches!(et, 0x0800 | 0x86dd).then(|| frame.get(16..))?
        }
        // Linux cooked capture v2: protocol at 0.
        276 => {
            let et = be16(frame, 0)?;
            matches!(et, 0x0800 | 0x86dd).then(|| frame.get(20..))?
        }
        // Raw IP.
        12 | 101 => Some(frame),
        _ => None,
    }
}

fn segment(ip: &[u8]) -> Option<Segment<'_>> {
    let version = ip.first()? >> 4;
    let (src, dst, tcp) = match version {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != 6 {
                return None;
            }
            let total = usize::from(be16(ip, 2)?);
            let frag = be16(ip, 6)? & 0x3fff;
            if frag != 0 {
                return None;
            }
            let s = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let d = Ipv4Addr::new(*ip.get(16)?, ip[17], ip[18], ip[19]);
            (
                IpAddr::V4(s),
                IpAddr::V4(d),
                ip.get(ihl..total.min(ip.len()))?,
            )
        }
        6 => {
            if *ip.get(6)? != 6 {
                return None;
            }
            let plen = usize::from(be16(ip, 4)?);
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(a)),
                IpAddr::V6(Ipv6Addr::from(b)),
                ip.get(40..(40 + plen).min(ip.len()))?,
            )
        }
        _ => return None,
    };
    let sport = be16(tcp, 0)?;
    let dport = be16(tcp, 2)?;
    let seq = be32(tcp, 4)?;
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let flags = *tcp.get(13)?;
    Some(Segment {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        seq,
        syn: flags & 0x02 != 0,
        payload: tcp.get(doff..)?,
    })
}

/// Reassembly state of one TCP direction.
struct Flow {
    connection: u32,
    /// Next expected sequence number (None until the first segment).
    next: Option<u32>,
    pending: BTreeMap<u32, Vec<u8>>,
    buf: Vec<u8>,
    broken: bool,
}

impl Flow {
    fn new(connection: u32) -> Self {
        Flow {
            connection,
            next: None,
            pending: BTreeMap::new(),
            buf: Vec::new(),
            broken: false,
        }
    }

    /// Adds a segment; in-order bytes move to `buf`.
    fn push(&mut self, seq: u32, data: &[u8]) {
        let next = *self.next.get_or_insert(seq);
        // Offset of this segment relative to `next`, with wrap-around.
        let rel = seq.wrapping_sub(next) as i32;
        if rel < 0 {
            let skip = rel.unsigned_abs() as usize;
            if skip >= data.len() {
                return; // a pure retransmission
            }
            self.append(&data[skip..]);
        } else if rel == 0 {
            self.append(data);
        } else {
            self.pending.entry(seq).or_insert_with(|| data.to_vec());
            return;
        }
        // Drain segments that are now in order.
        while let Some(n) = self.next {
            let Some((&s, _)) = self.pending.iter().find(|(s, _)| {
                let r = s.wrapping_sub(n) as i32;
                r <= 0
            }) else {
                break;
            };
            let Some(d) = self.pending.remove(&s) else {
                break;
            };
            let skip = n.wrapping_sub(s) as usize;
            if skip < d.len() {
                self.append(&d[skip..]);
            }
        }
    }

    fn append(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if let Some(n) = self.next.as_mut() {
            // TCP sequence space is modulo 2^32; a segment is < 64 KiB.
            *n = n.wrapping_add(data.len() as u32);
        }
    }
}

/// All BGP messages in a pcap file, in the order they were completed on the
/// wire. Only TCP port 179 traffic is considered.
pub fn bgp_messages(pcap: &[u8]) -> Result<Vec<BgpMessage>, PcapError> {
    let magic = be32(pcap, 0).ok_or(PcapError::Magic(0))?;
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (false, false),
        0xd4c3b2a1 => (true, false),
        0xa1b23c4d => (false, true),
        0x4d3cb2a1 => (true, true),
        m => return Err(PcapError::Magic(m)),
    };
    let rd32 = |i: usize| -> Option<u32> {
        let b: [u8; 4] = pcap.get(i..i + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let linktype = rd32(20).ok_or(PcapError::Magic(magic))? & 0x0fff_ffff;
    if ![1, 12, 101, 113, 276].contains(&linktype) {
        return Err(PcapError::LinkType(linktype));
    }
    let mut flows: HashMap<(SocketAddr, SocketAddr), Flow> = HashMap::new();
    let mut conn_seq: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    let mut out = Vec::new();
    let mut off = 24;
    while let (Some(sec), Some(frac), Some(incl)) = (rd32(off), rd32(off + 4), rd32(off + 8)) {
        let start = off + 16;
        let end = start + incl as usize;
        let Some(frame) = pcap.get(start..end) else {
            break; // truncated last record: tcpdump is still writing
        };
        off = end;
        let ts_us = u64::from(sec) * 1_000_000
            + if nanos {
                u64::from(frac) / 1000
            } else {
                u64::from(frac)
            };
        let Some(seg) = ip_of(linktype, frame).and_then(segment) else {
            continue;
        };
        if seg.src.port() != 179 && seg.dst.port() != 179 {
            continue;
        }
        let key = (seg.src, seg.dst);
        if seg.syn {
            // A new connection on this 4-tuple starts a new stream.
            let c = conn_seq.entry(key).or_insert(0);
            let id = *c;
            *c += 1;
            let mut f = Flow::new(id);
            f.next = Some(seg.seq.wrapping_add(1));
            flows.insert(key, f);
            continue;
        }
        if seg.payload.is_empty() {
            continue;
        }
        let flow = flows.entry(key).or_insert_with(|| {
            let c = conn_seq.entry(key).or_insert(0);
            let id = *c;
            *c += 1;
            Flow::new(id)
        });
        if flow.broken {
            continue;
        }
        flow.push(seg.seq, seg.payload);
        // Split complete messages off the front of the stream.
        loop {
            if flow.buf.len() < 19 {
                break;
            }
            if flow.buf[..16].iter().any(|&b| b != 0xff) {
                flow.broken = true;
                return Err(PcapError::NotBgp {
                    src: seg.src,
                    dst: seg.dst,
                    offset: 0,
                });
            }
            let len = usize::from(u16::from_be_bytes([flow.buf[16], flow.buf[17]]));
            if len < 19 {
                return Err(PcapError::NotBgp {
                    src: seg.src,
                    dst: seg.dst,
                    offset: 0,
                });
            }
            if flow.buf.len() < len {
                break;
            }
            let bytes: Vec<u8> = flow.buf.drain(..len).collect();
            out.push(BgpMessage {
                ts_us,
                src: seg.src,
                dst: seg.dst,
                connection: flow.connection,
                bytes,
            });
        }
    }
    Ok(out)
}

/// Capabilities of one OPEN that matter to decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenCaps {
    pub four_octet_as: bool,
    pub extended_message: bool,
    /// (afi, safi, mode) with mode 1 receive, 2 send, 3 both.
    pub add_path: Vec<(u16, u8, u8)>,
    /// (nlri afi, nlri safi, next hop afi).
    pub extended_next_hop: Vec<(u16, u16, u16)>,
    /// All capability codes seen.
    pub codes: Vec<u8>,
}

impl OpenCaps {
    /// Parses the capabilities of an OPEN message (with header). Handles
    /// RFC 9072 extended optional parameters.
    pub fn parse(msg: &[u8]) -> Option<OpenCaps> {
        if msg.get(18) != Some(&OPEN) {
            return None;
        }
        let body = msg.get(19..)?;
        let mut opt_len = usize::from(*body.get(9)?);
        let mut pos = 10;
        let mut ext = false;
        if opt_len == 255 && body.get(10) == Some(&255) {
            ext = true;
            opt_len = usize::from(be16(body, 11)?);
            pos = 13;
        }
        let params = body.get(pos..pos + opt_len)?;
        let mut caps = OpenCaps::default();
        let mut i = 0;
        while i < params.len() {
            let ptype = params[i];
            let (plen, hdr) = if ext {
                (usize::from(be16(params, i + 1)?), 3)
            } else {
                (usize::from(*params.get(i + 1)?), 2)
            };
            let val = params.get(i + hdr..i + hdr + plen)?;
            i += hdr + plen;
            if ptype != 2 {
                continue;
            }
            let mut j = 0;
            while j + 2 <= val.len() {
                let code = val[j];
                let clen = usize::from(val[j + 1]);
                let cv = val.get(j + 2..j + 2 + clen)?;
                j += 2 + clen;
                caps.codes.push(code);
                match code {
                    65 => caps.four_octet_as = true,
                    6 => caps.extended_message = true,
                    69 => {
                        for t in cv.chunks_exact(4) {
                            caps.add_path
                                .push((u16::from_be_bytes([t[0], t[1]]), t[2], t[3]));
                        }
                    }
                    5 => {
                        for t in cv.chunks_exact(6) {
                            caps.extended_next_hop.push((
                                u16::from_be_bytes([t[0], t[1]]),
                                u16::from_be_bytes([t[2], t[3]]),
                                u16::from_be_bytes([t[4], t[5]]),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(caps)
    }

    fn add_path_mode(&self, afi: u16) -> u8 {
        self.add_path
            .iter()
            .filter(|t| t.0 == afi && t.1 == 1)
            .fold(0, |m, t| m | t.2)
    }
}

/// Decoding context for messages sent by one side of a session, derived
/// from both OPENs (RFC 6793, 7911, 8654, 8950).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub four_octet_as: bool,
    /// The sender puts path identifiers on IPv4 / IPv6 unicast NLRI.
    pub add_path_ipv4: bool,
    pub add_path_ipv6: bool,
    pub extended_message: bool,
    /// IPv4 unicast NLRI may carry an IPv6 next hop.
    pub extended_next_hop_ipv4: bool,
}

impl Negotiated {
    /// Context for messages from the side that sent `sender` to the side
    /// that sent `receiver`.
    pub fn from_opens(sender: &OpenCaps, receiver: &OpenCaps) -> Negotiated {
        let ap = |afi| sender.add_path_mode(afi) & 2 != 0 && receiver.add_path_mode(afi) & 1 != 0;
        let enh = |c: &OpenCaps| c.extended_next_hop.contains(&(1, 1, 2));
        Negotiated {
            four_octet_as: sender.four_octet_as && receiver.four_octet_as,
            add_path_ipv4: ap(1),
            add_path_ipv6: ap(2),
            extended_message: sender.extended_message && receiver.extended_message,
            extended_next_hop_ipv4: enh(sender) && enh(receiver),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_reassembles_out_of_order_and_retransmitted() {
        let mut f = Flow::new(0);
        f.next = Some(100);
        f.push(105, b"fghij");
        f.push(100, b"abc");
        f.push(100, b"abcde"); // retransmission overlapping new bytes
        f.push(103, b"de");
        assert_eq!(f.buf, b"abcdefghij");
    }

    #[test]
    fn open_caps_and_negotiation() {
        // OPEN with caps: MP ipv4, 4-octet AS 65001, add-path ipv4 send+recv.
        let mut body = vec![4, 0xfd, 0xe9, 0, 9, 1, 1, 1, 1];
        let caps = [
            2, 6, 1, 4, 0, 1, 0, 1, // MP
            2, 6, 65, 4, 0, 0, 0xfd, 0xe9, // 4-octet
            2, 6, 69, 4, 0, 1, 1, 3, // add-path
        ];
        body.push(caps.len() as u8);
        body.extend_from_slice(&caps);
        let mut msg = vec![0xff; 16];
        msg.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        msg.push(OPEN);
        msg.extend_from_slice(&body);
        let c = OpenCaps::parse(&msg).unwrap();
        assert!(c.four_octet_as);
        assert_eq!(c.add_path, vec![(1, 1, 3)]);
        let plain = OpenCaps {
            four_octet_as: true,
            ..OpenCaps::default()
        };
        let n = Negotiated::from_opens(&c, &plain);
        assert!(n.four_octet_as && !n.add_path_ipv4);
        let n = Negotiated::from_opens(&c, &c);
        assert!(n.add_path_ipv4 && !n.add_path_ipv6);
    }
}
