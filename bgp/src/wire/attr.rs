//! Path attributes (RFC 4271 section 5 and extensions): owned reprs that
//! keep what routers vary (flags incl. the extended-length bit, order,
//! unknown attributes raw) so a decoded UPDATE re-encodes byte-exact.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::family::{Afi, DecodeContext, Family, Safi};
use super::open::AS_TRANS;
use super::prefix::{Nlri4, Nlri6};

/// Attribute flag bits.
pub mod flags {
    /// Optional (vs well-known).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial: an optional transitive attribute some speaker did not recognise.
    pub const PARTIAL: u8 = 0x20;
    /// Two-octet attribute length.
    pub const EXTENDED_LENGTH: u8 = 0x10;
    /// Well-known: transitive, not optional.
    pub const WELL_KNOWN: u8 = TRANSITIVE;
    /// Optional transitive.
    pub const OPTIONAL_TRANSITIVE: u8 = OPTIONAL | TRANSITIVE;
    /// Optional non-transitive.
    pub const OPTIONAL_NON_TRANSITIVE: u8 = OPTIONAL;
}

/// Attribute type codes (IANA).
pub mod attr_type {
    /// ORIGIN.
    pub const ORIGIN: u8 = 1;
    /// AS_PATH.
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP.
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC.
    pub const MED: u8 = 4;
    /// LOCAL_PREF.
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE.
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR.
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456).
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456).
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// EXTENDED_COMMUNITIES (RFC 4360).
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// One path attribute: the flags octet as received plus the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathAttribute {
    /// Flags octet as on the wire (incl. partial, extended-length and the
    /// unused low bits). The encoder uses a 2-octet length if the
    /// extended-length bit is set or the value needs it.
    pub flags: u8,
    /// The value.
    pub value: AttrValue,
}

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// IGP (0).
    Igp = 0,
    /// EGP (1).
    Egp = 1,
    /// INCOMPLETE (2).
    Incomplete = 2,
}

/// AS_PATH segment types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentType {
    /// AS_SET (1).
    Set = 1,
    /// AS_SEQUENCE (2).
    Sequence = 2,
    /// AS_CONFED_SEQUENCE (3, RFC 5065).
    ConfedSequence = 3,
    /// AS_CONFED_SET (4, RFC 5065).
    ConfedSet = 4,
}

impl SegmentType {
    /// From the wire octet.
    pub fn from_u8(v: u8) -> Option<SegmentType> {
        Some(match v {
            1 => SegmentType::Set,
            2 => SegmentType::Sequence,
            3 => SegmentType::ConfedSequence,
            4 => SegmentType::ConfedSet,
            _ => return None,
        })
    }
}

/// One AS_PATH segment. AS numbers are always held as 4 octets; the wire
/// width comes from the context (AS4_PATH is always 4 octets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    /// Segment type.
    pub kind: SegmentType,
    /// AS numbers (1..=255 on the wire).
    pub asns: Vec<u32>,
}

/// AS_PATH or AS4_PATH.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    /// Segments in wire order.
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE (empty path if `asns` is empty).
    pub fn sequence(asns: Vec<u32>) -> AsPath {
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: SegmentType::Sequence,
                asns,
            }],
        }
    }

    /// Path length for best-path selection (RFC 4271 9.1.2.2: an AS_SET
    /// counts 1, confederation segments count 0).
    pub fn path_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                _ => 0,
            })
            .sum()
    }

    /// The first AS of the first AS_SEQUENCE (the neighbour AS).
    pub fn first_as(&self) -> Option<u32> {
        self.segments
            .first()
            .filter(|s| s.kind == SegmentType::Sequence)
            .and_then(|s| s.asns.first().copied())
    }

    /// Whether an AS_CONFED_SEQUENCE or AS_CONFED_SET segment is present (RFC 5065).
    pub fn has_confed_segment(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s.kind, SegmentType::ConfedSequence | SegmentType::ConfedSet))
    }

    /// Drop confederation segments: a path leaving the confederation
    /// carries none (RFC 5065 5.3).
    pub fn remove_confed_segments(&mut self) {
        self.segments
            .retain(|s| matches!(s.kind, SegmentType::Sequence | SegmentType::Set));
    }

    /// Whether any 4-octet-only AS number appears (needs AS4_PATH towards a 2-octet peer).
    pub fn has_four_octet_asn(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.asns.iter().any(|&a| a > u32::from(u16::MAX)))
    }

    /// Prepend `asn` `count` times to the leading AS_SEQUENCE (a new one if
    /// needed; a full segment of 255 starts a new one).
    pub fn prepend(&mut self, asn: u32, count: usize) {
        for _ in 0..count {
            match self.segments.first_mut() {
                Some(s) if s.kind == SegmentType::Sequence && s.asns.len() < 255 => {
                    s.asns.insert(0, asn)
                }
                _ => self.segments.insert(
                    0,
                    AsSegment {
                        kind: SegmentType::Sequence,
                        asns: vec![asn],
                    },
                ),
            }
        }
    }
}

impl fmt::Display for AsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.segments {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            let (open, close) = match s.kind {
                SegmentType::Sequence => ("", ""),
                SegmentType::Set => ("{", "}"),
                SegmentType::ConfedSequence => ("(", ")"),
                SegmentType::ConfedSet => ("[", "]"),
            };
            f.write_str(open)?;
            for (i, a) in s.asns.iter().enumerate() {
                if i > 0 {
                    f.write_str(
                        if matches!(s.kind, SegmentType::Set | SegmentType::ConfedSet) {
                            ","
                        } else {
                            " "
                        },
                    )?;
                }
                write!(f, "{a}")?;
            }
            f.write_str(close)?;
        }
        Ok(())
    }
}

/// AGGREGATOR / AS4_AGGREGATOR value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    /// Aggregating AS.
    pub asn: u32,
    /// Aggregating speaker.
    pub addr: Ipv4Addr,
}

/// An RFC 1997 community.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// NO_EXPORT.
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    /// NO_ADVERTISE.
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    /// NO_EXPORT_SUBCONFED.
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
    /// NOPEER (RFC 3765).
    pub const NOPEER: Community = Community(0xFFFF_FF04);
    /// GRACEFUL_SHUTDOWN (RFC 8326).
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);
    /// ACCEPT_OWN (RFC 7611).
    pub const ACCEPT_OWN: Community = Community(0xFFFF_0001);
    /// LLGR_STALE (RFC 9494).
    pub const LLGR_STALE: Community = Community(0xFFFF_0006);
    /// NO_LLGR (RFC 9494).
    pub const NO_LLGR: Community = Community(0xFFFF_0007);
    /// BLACKHOLE (RFC 7999).
    pub const BLACKHOLE: Community = Community(0xFFFF_029A);

    /// From the conventional `asn:value` halves.
    pub const fn new(asn: u16, value: u16) -> Community {
        Community(((asn as u32) << 16) | value as u32)
    }

    /// Name of a well-known community.
    pub fn well_known_name(self) -> Option<&'static str> {
        Some(match self {
            Community::NO_EXPORT => "no-export",
            Community::NO_ADVERTISE => "no-advertise",
            Community::NO_EXPORT_SUBCONFED => "no-export-subconfed",
            Community::NOPEER => "nopeer",
            Community::GRACEFUL_SHUTDOWN => "graceful-shutdown",
            Community::ACCEPT_OWN => "accept-own",
            Community::LLGR_STALE => "llgr-stale",
            Community::NO_LLGR => "no-llgr",
            Community::BLACKHOLE => "blackhole",
            _ => return None,
        })
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.well_known_name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff),
        }
    }
}
impl fmt::Debug for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An RFC 4360 extended community (8 raw octets; type/subtype accessors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedCommunity(pub [u8; 8]);

impl ExtendedCommunity {
    /// Type octet (high).
    pub fn type_high(&self) -> u8 {
        let [t, ..] = self.0;
        t
    }
    /// Sub-type octet.
    pub fn subtype(&self) -> u8 {
        let [_, s, ..] = self.0;
        s
    }
    /// A two-octet-AS route target `asn:value` (type 0x00, subtype 0x02).
    pub fn route_target(asn: u16, value: u32) -> ExtendedCommunity {
        let [a0, a1] = asn.to_be_bytes();
        let [v0, v1, v2, v3] = value.to_be_bytes();
        ExtendedCommunity([0x00, 0x02, a0, a1, v0, v1, v2, v3])
    }
}

/// An RFC 8092 large community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global administrator (an AS).
    pub global_admin: u32,
    /// Local data part 1.
    pub local1: u32,
    /// Local data part 2.
    pub local2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global_admin, self.local1, self.local2)
    }
}

/// MP_REACH_NLRI next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MpNextHop {
    /// 4 octets.
    Ipv4(Ipv4Addr),
    /// 16 octets (global) or 32 (global + link-local, RFC 2545).
    Ipv6 {
        /// Global address.
        global: Ipv6Addr,
        /// Link-local address when 32 octets were sent.
        link_local: Option<Ipv6Addr>,
    },
    /// Families we do not interpret: raw octets.
    Raw(Vec<u8>),
}

impl MpNextHop {
    fn wire_len(&self) -> usize {
        match self {
            MpNextHop::Ipv4(_) => 4,
            MpNextHop::Ipv6 {
                link_local: None, ..
            } => 16,
            MpNextHop::Ipv6 {
                link_local: Some(_),
                ..
            } => 32,
            MpNextHop::Raw(v) => v.len(),
        }
    }
    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            MpNextHop::Ipv4(a) => out.extend_from_slice(&a.octets()),
            MpNextHop::Ipv6 { global, link_local } => {
                out.extend_from_slice(&global.octets());
                if let Some(ll) = link_local {
                    out.extend_from_slice(&ll.octets());
                }
            }
            MpNextHop::Raw(v) => out.extend_from_slice(v),
        }
    }
}

/// NLRI inside MP_REACH/MP_UNREACH: parsed for IPv4/IPv6 unicast and
/// multicast, raw for other families.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MpNlri {
    /// IPv4 prefixes.
    Ipv4(Vec<Nlri4>),
    /// IPv6 prefixes.
    Ipv6(Vec<Nlri6>),
    /// Other families, raw.
    Raw(Vec<u8>),
}

impl MpNlri {
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        match self {
            MpNlri::Ipv4(v) => v.is_empty(),
            MpNlri::Ipv6(v) => v.is_empty(),
            MpNlri::Raw(v) => v.is_empty(),
        }
    }
}

/// MP_REACH_NLRI (RFC 4760).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpReach {
    /// Family of the NLRI.
    pub family: Family,
    /// Next hop.
    pub next_hop: MpNextHop,
    /// The reserved octet (formerly SNPA count), kept as received.
    pub reserved: u8,
    /// Announced NLRI.
    pub nlri: MpNlri,
}

/// MP_UNREACH_NLRI (RFC 4760).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    /// Family of the withdrawn NLRI.
    pub family: Family,
    /// Withdrawn NLRI (empty: End-of-RIB, RFC 4724).
    pub withdrawn: MpNlri,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// ORIGIN (1).
    Origin(Origin),
    /// AS_PATH (2), width from the context.
    AsPath(AsPath),
    /// NEXT_HOP (3).
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC (4).
    Med(u32),
    /// LOCAL_PREF (5).
    LocalPref(u32),
    /// ATOMIC_AGGREGATE (6).
    AtomicAggregate,
    /// AGGREGATOR (7), width from the context.
    Aggregator(Aggregator),
    /// COMMUNITIES (8).
    Communities(Vec<Community>),
    /// ORIGINATOR_ID (9).
    OriginatorId(Ipv4Addr),
    /// CLUSTER_LIST (10).
    ClusterList(Vec<Ipv4Addr>),
    /// MP_REACH_NLRI (14).
    MpReach(MpReach),
    /// MP_UNREACH_NLRI (15).
    MpUnreach(MpUnreach),
    /// EXTENDED_COMMUNITIES (16).
    ExtendedCommunities(Vec<ExtendedCommunity>),
    /// AS4_PATH (17), always 4-octet.
    As4Path(AsPath),
    /// AS4_AGGREGATOR (18).
    As4Aggregator(Aggregator),
    /// LARGE_COMMUNITY (32).
    LargeCommunities(Vec<LargeCommunity>),
    /// Any other attribute, raw.
    Unknown {
        /// Type code.
        type_code: u8,
        /// Raw value.
        data: Vec<u8>,
    },
}

impl AttrValue {
    /// Type code.
    pub fn type_code(&self) -> u8 {
        use attr_type as t;
        match self {
            AttrValue::Origin(_) => t::ORIGIN,
            AttrValue::AsPath(_) => t::AS_PATH,
            AttrValue::NextHop(_) => t::NEXT_HOP,
            AttrValue::Med(_) => t::MED,
            AttrValue::LocalPref(_) => t::LOCAL_PREF,
            AttrValue::AtomicAggregate => t::ATOMIC_AGGREGATE,
            AttrValue::Aggregator(_) => t::AGGREGATOR,
            AttrValue::Communities(_) => t::COMMUNITIES,
            AttrValue::OriginatorId(_) => t::ORIGINATOR_ID,
            AttrValue::ClusterList(_) => t::CLUSTER_LIST,
            AttrValue::MpReach(_) => t::MP_REACH_NLRI,
            AttrValue::MpUnreach(_) => t::MP_UNREACH_NLRI,
            AttrValue::ExtendedCommunities(_) => t::EXTENDED_COMMUNITIES,
            AttrValue::As4Path(_) => t::AS4_PATH,
            AttrValue::As4Aggregator(_) => t::AS4_AGGREGATOR,
            AttrValue::LargeCommunities(_) => t::LARGE_COMMUNITIES,
            AttrValue::Unknown { type_code, .. } => *type_code,
        }
    }
}

/// The optional/transitive bits a known attribute type must carry, or
/// `None` for types this codec does not know.
pub fn expected_flags(type_code: u8) -> Option<u8> {
    use attr_type as t;
    Some(match type_code {
        t::ORIGIN | t::AS_PATH | t::NEXT_HOP | t::LOCAL_PREF | t::ATOMIC_AGGREGATE => {
            flags::WELL_KNOWN
        }
        t::MED | t::ORIGINATOR_ID | t::CLUSTER_LIST | t::MP_REACH_NLRI | t::MP_UNREACH_NLRI => {
            flags::OPTIONAL_NON_TRANSITIVE
        }
        t::AGGREGATOR
        | t::COMMUNITIES
        | t::EXTENDED_COMMUNITIES
        | t::AS4_PATH
        | t::AS4_AGGREGATOR
        | t::LARGE_COMMUNITIES => flags::OPTIONAL_TRANSITIVE,
        _ => return None,
    })
}

impl PathAttribute {
    /// An attribute with the standard flags for its type (unknown types:
    /// optional transitive).
    pub fn new(value: AttrValue) -> PathAttribute {
        let flags = expected_flags(value.type_code()).unwrap_or(flags::OPTIONAL_TRANSITIVE);
        PathAttribute { flags, value }
    }

    /// Type code.
    pub fn type_code(&self) -> u8 {
        self.value.type_code()
    }

    /// Whether the optional bit is set.
    pub fn is_optional(&self) -> bool {
        self.flags & flags::OPTIONAL != 0
    }
    /// Whether the transitive bit is set.
    pub fn is_transitive(&self) -> bool {
        self.flags & flags::TRANSITIVE != 0
    }
    /// Whether the partial bit is set.
    pub fn is_partial(&self) -> bool {
        self.flags & flags::PARTIAL != 0
    }

    /// The attribute as it should be passed on to another peer (RFC 4271
    /// 5 / 9.1.3): unknown optional transitive attributes get the Partial
    /// bit; unknown optional non-transitive ones are dropped (`None`).
    /// Known attributes are returned unchanged; export policy decides about
    /// MED, LOCAL_PREF and the like.
    pub fn readvertised(&self) -> Option<PathAttribute> {
        match &self.value {
            AttrValue::Unknown { .. } if self.is_optional() && self.is_transitive() => {
                Some(PathAttribute {
                    flags: self.flags | flags::PARTIAL,
                    value: self.value.clone(),
                })
            }
            AttrValue::Unknown { .. } if self.is_optional() => None,
            _ => Some(self.clone()),
        }
    }

    /// Append this attribute (flags, type, length, value).
    pub fn emit(&self, ctx: &DecodeContext, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(self.flags);
        out.push(self.type_code());
        let ext = self.flags & flags::EXTENDED_LENGTH != 0;
        out.push(0);
        if ext {
            out.push(0);
        }
        let vstart = out.len();
        emit_value(&self.value, ctx, out);
        let len = out.len() - vstart;
        if ext {
            let l = (len.min(usize::from(u16::MAX)) as u16).to_be_bytes();
            if let Some(d) = out.get_mut(vstart - 2..vstart) {
                d.copy_from_slice(&l);
            }
        } else if let Ok(l) = u8::try_from(len) {
            if let Some(d) = out.get_mut(vstart - 1) {
                *d = l;
            }
        } else {
            // Value outgrew one length octet: switch to the 2-octet form.
            out.insert(vstart, 0);
            let l = (len.min(usize::from(u16::MAX)) as u16).to_be_bytes();
            if let Some(d) = out.get_mut(vstart - 1..vstart + 1) {
                d.copy_from_slice(&l);
            }
            if let Some(f) = out.get_mut(start) {
                *f |= flags::EXTENDED_LENGTH;
            }
        }
    }

    /// Encoded size of this attribute.
    pub fn wire_len(&self, ctx: &DecodeContext) -> usize {
        let mut v = Vec::new();
        self.emit(ctx, &mut v);
        v.len()
    }
}

fn emit_as_path(p: &AsPath, four: bool, out: &mut Vec<u8>) {
    for s in &p.segments {
        // Segments longer than 255 are split (in memory they may be longer).
        for chunk in s.asns.chunks(255) {
            out.push(s.kind as u8);
            out.push(chunk.len() as u8);
            for &a in chunk {
                if four {
                    out.extend_from_slice(&a.to_be_bytes());
                } else {
                    out.extend_from_slice(&u16::try_from(a).unwrap_or(AS_TRANS).to_be_bytes());
                }
            }
        }
    }
}

fn emit_aggregator(a: &Aggregator, four: bool, out: &mut Vec<u8>) {
    if four {
        out.extend_from_slice(&a.asn.to_be_bytes());
    } else {
        out.extend_from_slice(&u16::try_from(a.asn).unwrap_or(AS_TRANS).to_be_bytes());
    }
    out.extend_from_slice(&a.addr.octets());
}

pub(crate) fn emit_mp_nlri(n: &MpNlri, out: &mut Vec<u8>) {
    match n {
        MpNlri::Ipv4(v) => v.iter().for_each(|n| super::prefix::emit_nlri4(n, out)),
        MpNlri::Ipv6(v) => v.iter().for_each(|n| super::prefix::emit_nlri6(n, out)),
        MpNlri::Raw(v) => out.extend_from_slice(v),
    }
}

fn emit_value(v: &AttrValue, ctx: &DecodeContext, out: &mut Vec<u8>) {
    match v {
        AttrValue::Origin(o) => out.push(*o as u8),
        AttrValue::AsPath(p) => emit_as_path(p, ctx.four_octet_as, out),
        AttrValue::NextHop(a) | AttrValue::OriginatorId(a) => out.extend_from_slice(&a.octets()),
        AttrValue::Med(x) | AttrValue::LocalPref(x) => out.extend_from_slice(&x.to_be_bytes()),
        AttrValue::AtomicAggregate => {}
        AttrValue::Aggregator(a) => emit_aggregator(a, ctx.four_octet_as, out),
        AttrValue::Communities(c) => c
            .iter()
            .for_each(|c| out.extend_from_slice(&c.0.to_be_bytes())),
        AttrValue::ClusterList(c) => c.iter().for_each(|c| out.extend_from_slice(&c.octets())),
        AttrValue::MpReach(m) => {
            out.extend_from_slice(&m.family.afi.0.to_be_bytes());
            out.push(m.family.safi.0);
            out.push(m.next_hop.wire_len().min(255) as u8);
            m.next_hop.emit(out);
            out.push(m.reserved);
            emit_mp_nlri(&m.nlri, out);
        }
        AttrValue::MpUnreach(m) => {
            out.extend_from_slice(&m.family.afi.0.to_be_bytes());
            out.push(m.family.safi.0);
            emit_mp_nlri(&m.withdrawn, out);
        }
        AttrValue::ExtendedCommunities(c) => c.iter().for_each(|c| out.extend_from_slice(&c.0)),
        AttrValue::As4Path(p) => emit_as_path(p, true, out),
        AttrValue::As4Aggregator(a) => emit_aggregator(a, true, out),
        AttrValue::LargeCommunities(c) => c.iter().for_each(|c| {
            out.extend_from_slice(&c.global_admin.to_be_bytes());
            out.extend_from_slice(&c.local1.to_be_bytes());
            out.extend_from_slice(&c.local2.to_be_bytes());
        }),
        AttrValue::Unknown { data, .. } => out.extend_from_slice(data),
    }
}

/// Whether the family's NLRI are parsed as IPv4 / IPv6 prefixes.
pub(crate) fn prefix_family(f: Family) -> Option<Afi> {
    match (f.afi, f.safi) {
        (Afi::IPV4, Safi::UNICAST | Safi::MULTICAST) => Some(Afi::IPV4),
        (Afi::IPV6, Safi::UNICAST | Safi::MULTICAST) => Some(Afi::IPV6),
        _ => None,
    }
}

/// RFC 6793 section 4.2.3: rebuild the real AS path and aggregator from a
/// 2-octet speaker's AS_PATH/AGGREGATOR and AS4_PATH/AS4_AGGREGATOR.
///
/// Call only for sessions without the 4-octet AS capability (a 4-octet
/// speaker's AS4_* attributes must be ignored). Returns the merged path and
/// aggregator.
pub fn merge_as4(
    as_path: &AsPath,
    as4_path: Option<&AsPath>,
    aggregator: Option<Aggregator>,
    as4_aggregator: Option<Aggregator>,
) -> (AsPath, Option<Aggregator>) {
    // An AGGREGATOR that is not AS_TRANS means AS4_* came from elsewhere: ignore both.
    if let Some(agg) = aggregator
        && agg.asn != u32::from(AS_TRANS)
    {
        return (as_path.clone(), Some(agg));
    }
    let aggregator = match (aggregator, as4_aggregator) {
        (Some(_), Some(a4)) => Some(a4),
        (a, _) => a,
    };
    let Some(as4) = as4_path else {
        return (as_path.clone(), aggregator);
    };
    // Confederation segments in AS4_PATH are discarded (RFC 6793 section 6).
    let as4_segments: Vec<AsSegment> = as4
        .segments
        .iter()
        .filter(|s| matches!(s.kind, SegmentType::Sequence | SegmentType::Set))
        .cloned()
        .collect();
    let as4 = AsPath {
        segments: as4_segments,
    };
    let n2 = as_path.path_len();
    let n4 = as4.path_len();
    if n2 < n4 {
        return (as_path.clone(), aggregator);
    }
    // Keep the leading (n2 - n4) ASes of AS_PATH, then AS4_PATH.
    let mut keep = n2 - n4;
    let mut segments: Vec<AsSegment> = Vec::new();
    for s in &as_path.segments {
        if keep == 0 {
            // Confederation segments at the front do not count; keep them in place.
            let confed = |s: &AsSegment| {
                matches!(s.kind, SegmentType::ConfedSequence | SegmentType::ConfedSet)
            };
            if confed(s) && segments.iter().all(confed) {
                segments.push(s.clone());
                continue;
            }
            break;
        }
        match s.kind {
            SegmentType::Sequence => {
                let take = keep.min(s.asns.len());
                segments.push(AsSegment {
                    kind: s.kind,
                    asns: s.asns.iter().take(take).copied().collect(),
                });
                keep -= take;
            }
            SegmentType::Set => {
                segments.push(s.clone());
                keep -= 1;
            }
            _ => segments.push(s.clone()),
        }
    }
    for s in as4.segments {
        match (segments.last_mut(), s.kind) {
            (Some(last), SegmentType::Sequence) if last.kind == SegmentType::Sequence => {
                last.asns.extend(s.asns)
            }
            _ => segments.push(s),
        }
    }
    (AsPath { segments }, aggregator)
}
