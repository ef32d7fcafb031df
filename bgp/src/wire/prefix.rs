//! Compact IPv4/IPv6 prefixes and NLRI entries, and the hot NLRI walk.
//!
//! Prefixes are stored masked (host bits cleared), so two encodings of the
//! same route compare and hash equal. The NLRI walk is hand-written rather
//! than built from nom combinators: it is the hot loop of the codec.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4 prefix as (network bits, length): 8 bytes, `Copy`, orders like the address.
/// `Default` is 0.0.0.0/0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ipv4Prefix {
    addr: u32,
    len: u8,
}

/// An IPv6 prefix: 17 bytes, alignment 1 (no u128 padding). `Default` is ::/0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ipv6Prefix {
    addr: [u8; 16],
    len: u8,
}

/// A prefix length was out of range for its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("prefix length {0} out of range")]
pub struct PrefixLenError(pub u8);

#[inline]
const fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

impl Ipv4Prefix {
    /// Build a prefix; host bits are cleared. Fails if `len > 32`.
    pub const fn new(addr: Ipv4Addr, len: u8) -> Result<Ipv4Prefix, PrefixLenError> {
        if len > 32 {
            return Err(PrefixLenError(len));
        }
        Ok(Ipv4Prefix {
            addr: addr.to_bits() & mask4(len),
            len,
        })
    }

    /// Build from raw bits; host bits are cleared, `len` is clamped to 32.
    #[inline]
    pub const fn from_bits(bits: u32, len: u8) -> Ipv4Prefix {
        let len = if len > 32 { 32 } else { len };
        Ipv4Prefix {
            addr: bits & mask4(len),
            len,
        }
    }

    /// Network address.
    pub const fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addr)
    }

    /// Network address as a host-order integer.
    pub const fn bits(&self) -> u32 {
        self.addr
    }

    /// Prefix length (0..=32).
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside this prefix.
    pub const fn contains(&self, addr: Ipv4Addr) -> bool {
        addr.to_bits() & mask4(self.len) == self.addr
    }

    /// Octets this prefix occupies in an NLRI field (without the path id).
    pub const fn wire_len(&self) -> usize {
        1 + (self.len as usize).div_ceil(8)
    }
}

impl Ipv6Prefix {
    /// Build a prefix; host bits are cleared. Fails if `len > 128`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Ipv6Prefix, PrefixLenError> {
        if len > 128 {
            return Err(PrefixLenError(len));
        }
        let m = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        Ok(Ipv6Prefix {
            addr: (addr.to_bits() & m).to_be_bytes(),
            len,
        })
    }

    /// Network address.
    pub fn addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.addr)
    }

    /// Prefix length (0..=128).
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> u8 {
        self.len
    }

    /// Octets this prefix occupies in an NLRI field (without the path id).
    pub const fn wire_len(&self) -> usize {
        1 + (self.len as usize).div_ceil(8)
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}
impl fmt::Debug for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}
impl fmt::Debug for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Either family's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    /// IPv4.
    V4(Ipv4Prefix),
    /// IPv6.
    V6(Ipv6Prefix),
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prefix::V4(p) => p.fmt(f),
            Prefix::V6(p) => p.fmt(f),
        }
    }
}

/// Serialised as its text (`10.0.0.0/8`), as the state files always showed it.
#[cfg(feature = "speaker")]
impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a prefix in text (`10.0.0.0/8`, `2001:db8::/32`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixParseError {
    /// No `/length` part.
    #[error("prefix `{0}` needs a /length")]
    NoLength(String),
    /// The length is not a number.
    #[error("bad prefix length in `{0}`")]
    BadLength(String),
    /// The address part is not an IP address.
    #[error("bad address in `{text}`: {source}")]
    BadAddress {
        /// The whole text.
        text: String,
        /// Cause.
        source: std::net::AddrParseError,
    },
    /// The length is out of range for the family.
    #[error("`{text}`: {source}")]
    OutOfRange {
        /// The whole text.
        text: String,
        /// Cause.
        source: PrefixLenError,
    },
    /// Bits past the length are set: almost always a typo, so refused
    /// rather than silently cleared.
    #[error("`{text}` has host bits set (did you mean {canonical}?)")]
    HostBits {
        /// The whole text.
        text: String,
        /// The prefix with host bits cleared.
        canonical: Prefix,
    },
}

impl core::str::FromStr for Prefix {
    type Err = PrefixParseError;

    /// Parses `a.b.c.d/len` or an IPv6 prefix; host bits must be zero.
    fn from_str(s: &str) -> Result<Prefix, PrefixParseError> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| PrefixParseError::NoLength(s.to_string()))?;
        let len: u8 = l
            .parse()
            .map_err(|_| PrefixParseError::BadLength(s.to_string()))?;
        let range = |source| PrefixParseError::OutOfRange {
            text: s.to_string(),
            source,
        };
        let addr: std::net::IpAddr = a.parse().map_err(|source| PrefixParseError::BadAddress {
            text: s.to_string(),
            source,
        })?;
        let (p, exact) = match addr {
            std::net::IpAddr::V4(v4) => {
                let p = Ipv4Prefix::new(v4, len).map_err(range)?;
                (Prefix::V4(p), p.addr() == v4)
            }
            std::net::IpAddr::V6(v6) => {
                let p = Ipv6Prefix::new(v6, len).map_err(range)?;
                (Prefix::V6(p), p.addr() == v6)
            }
        };
        if !exact {
            return Err(PrefixParseError::HostBits {
                text: s.to_string(),
                canonical: p,
            });
        }
        Ok(p)
    }
}

/// One NLRI entry: a prefix plus the RFC 7911 path identifier when add-path
/// is negotiated for its family (`None` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri<P> {
    /// Add-path identifier, present iff add-path is negotiated for the family.
    pub path_id: Option<u32>,
    /// The prefix.
    pub prefix: P,
}

/// IPv4 NLRI entry.
pub type Nlri4 = Nlri<Ipv4Prefix>;
/// IPv6 NLRI entry.
pub type Nlri6 = Nlri<Ipv6Prefix>;

impl<P> Nlri<P> {
    /// An entry without path identifier.
    pub const fn new(prefix: P) -> Nlri<P> {
        Nlri {
            path_id: None,
            prefix,
        }
    }
    /// An entry with an add-path identifier.
    pub const fn with_path_id(path_id: u32, prefix: P) -> Nlri<P> {
        Nlri {
            path_id: Some(path_id),
            prefix,
        }
    }
}

impl From<Ipv4Prefix> for Nlri4 {
    fn from(p: Ipv4Prefix) -> Self {
        Nlri::new(p)
    }
}
impl From<Ipv6Prefix> for Nlri6 {
    fn from(p: Ipv6Prefix) -> Self {
        Nlri::new(p)
    }
}

/// Why an NLRI field could not be walked (RFC 7606 section 5.3: syntactically incorrect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NlriError {
    /// A prefix length above the family maximum.
    BadLength,
    /// The last prefix overruns the field.
    Truncated,
}

/// Walk an IPv4 NLRI field, appending entries to `out`.
///
/// Every read is a slice pattern or checked split, so no input can make it
/// panic; the per-length match avoids a variable-length copy per prefix.
#[inline]
pub(crate) fn parse_nlri4(
    mut buf: &[u8],
    add_path: bool,
    out: &mut Vec<Nlri4>,
) -> Result<(), NlriError> {
    // /24 is the most common length: 4 octets per entry is a good capacity guess.
    out.reserve(buf.len() / if add_path { 8 } else { 4 });
    while !buf.is_empty() {
        let mut path_id = None;
        if add_path {
            let Some((id, rest)) = buf.split_first_chunk::<4>() else {
                return Err(NlriError::Truncated);
            };
            path_id = Some(u32::from_be_bytes(*id));
            buf = rest;
        }
        let (bits, len, rest) = match buf {
            [len @ 0, rest @ ..] => (0, *len, rest),
            [len @ 1..=8, a, rest @ ..] => (u32::from(*a) << 24, *len, rest),
            [len @ 9..=16, a, b, rest @ ..] => (u32::from_be_bytes([*a, *b, 0, 0]), *len, rest),
            [len @ 17..=24, a, b, c, rest @ ..] => {
                (u32::from_be_bytes([*a, *b, *c, 0]), *len, rest)
            }
            [len @ 25..=32, a, b, c, d, rest @ ..] => {
                (u32::from_be_bytes([*a, *b, *c, *d]), *len, rest)
            }
            [33..=255, ..] => return Err(NlriError::BadLength),
            _ => return Err(NlriError::Truncated),
        };
        out.push(Nlri {
            path_id,
            prefix: Ipv4Prefix::from_bits(bits, len),
        });
        buf = rest;
    }
    Ok(())
}

/// Walk an IPv6 NLRI field, appending entries to `out`.
pub(crate) fn parse_nlri6(
    mut buf: &[u8],
    add_path: bool,
    out: &mut Vec<Nlri6>,
) -> Result<(), NlriError> {
    while !buf.is_empty() {
        let mut path_id = None;
        if add_path {
            let Some((id, rest)) = buf.split_first_chunk::<4>() else {
                return Err(NlriError::Truncated);
            };
            path_id = Some(u32::from_be_bytes(*id));
            buf = rest;
        }
        let Some((&len, rest)) = buf.split_first() else {
            return Err(NlriError::Truncated);
        };
        if len > 128 {
            return Err(NlriError::BadLength);
        }
        let n = (len as usize).div_ceil(8);
        let Some((bytes, rest)) = rest.split_at_checked(n) else {
            return Err(NlriError::Truncated);
        };
        let mut a = [0u8; 16];
        if let Some(dst) = a.get_mut(..n) {
            dst.copy_from_slice(bytes);
        }
        let prefix = Ipv6Prefix::new(Ipv6Addr::from(a), len).map_err(|_| NlriError::BadLength)?;
        out.push(Nlri { path_id, prefix });
        buf = rest;
    }
    Ok(())
}

/// Append one IPv4 NLRI entry.
#[inline]
pub(crate) fn emit_nlri4(n: &Nlri4, out: &mut Vec<u8>) {
    if let Some(id) = n.path_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.push(n.prefix.len);
    let b = n.prefix.addr.to_be_bytes();
    out.extend_from_slice(b.get(..(n.prefix.len as usize).div_ceil(8)).unwrap_or(&b));
}

/// Append one IPv6 NLRI entry.
pub(crate) fn emit_nlri6(n: &Nlri6, out: &mut Vec<u8>) {
    if let Some(id) = n.path_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.push(n.prefix.len);
    let b = &n.prefix.addr;
    out.extend_from_slice(b.get(..(n.prefix.len as usize).div_ceil(8)).unwrap_or(b));
}

/// Encoded size of an IPv4 NLRI entry.
#[inline]
pub(crate) fn nlri4_len(n: &Nlri4) -> usize {
    n.prefix.wire_len() + if n.path_id.is_some() { 4 } else { 0 }
}

/// Encoded size of an IPv6 NLRI entry.
#[inline]
pub(crate) fn nlri6_len(n: &Nlri6) -> usize {
    n.prefix.wire_len() + if n.path_id.is_some() { 4 } else { 0 }
}
