//! Address families and the per-session decode/encode context.

use core::fmt;

/// Address Family Identifier (IANA). A newtype so unknown values survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Afi(pub u16);

impl Afi {
    /// IPv4 (1).
    pub const IPV4: Afi = Afi(1);
    /// IPv6 (2).
    pub const IPV6: Afi = Afi(2);
}

/// Subsequent Address Family Identifier (IANA), kept as a raw byte for the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Safi(pub u8);

impl Safi {
    /// Unicast forwarding (1).
    pub const UNICAST: Safi = Safi(1);
    /// Multicast RPF (2).
    pub const MULTICAST: Safi = Safi(2);
}

/// An (AFI, SAFI) pair: the unit capabilities, add-path and End-of-RIB talk about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
}

impl Family {
    /// IPv4 unicast.
    pub const IPV4_UNICAST: Family = Family {
        afi: Afi::IPV4,
        safi: Safi::UNICAST,
    };
    /// IPv6 unicast.
    pub const IPV6_UNICAST: Family = Family {
        afi: Afi::IPV6,
        safi: Safi::UNICAST,
    };

    /// Build a family from raw values.
    pub const fn new(afi: Afi, safi: Safi) -> Family {
        Family { afi, safi }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (*self, self.afi, self.safi) {
            (Family::IPV4_UNICAST, ..) => f.write_str("ipv4-unicast"),
            (Family::IPV6_UNICAST, ..) => f.write_str("ipv6-unicast"),
            (_, Afi(a), Safi(s)) => write!(f, "afi{a}/safi{s}"),
        }
    }
}

/// A family name that is not `ipv4-unicast` / `ipv6-unicast` (or `ipv4` / `ipv6`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown family `{0}` (use ipv4-unicast or ipv6-unicast)")]
pub struct FamilyParseError(pub String);

impl core::str::FromStr for Family {
    type Err = FamilyParseError;

    /// The names [`Display`](fmt::Display) writes for the unicast families, plus
    /// the short forms `ipv4` / `ipv6`.
    fn from_str(s: &str) -> Result<Family, FamilyParseError> {
        match s {
            "ipv4-unicast" | "ipv4" => Ok(Family::IPV4_UNICAST),
            "ipv6-unicast" | "ipv6" => Ok(Family::IPV6_UNICAST),
            _ => Err(FamilyParseError(s.to_string())),
        }
    }
}

/// Serialised as its display name (`ipv4-unicast`), as state files always showed it.
#[cfg(feature = "speaker")]
impl serde::Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What was negotiated on a session and changes how bytes are read.
///
/// BGP is not self-describing: AS numbers are 2 or 4 octets, NLRI may carry a
/// path identifier, and the maximum message size depends on capabilities.
/// The session builds one context for receiving (add-path *receive*
/// direction) and one for sending (add-path *send* direction); both use this
/// type (see [`EncodeContext`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DecodeContext {
    /// Both sides announced the 4-octet AS capability (RFC 6793): AS_PATH and
    /// AGGREGATOR carry 4-octet AS numbers.
    pub four_octet_as: bool,
    /// IPv4 unicast NLRI carry a 4-octet path identifier (RFC 7911).
    pub add_path_ipv4: bool,
    /// IPv6 unicast NLRI carry a 4-octet path identifier (RFC 7911).
    pub add_path_ipv6: bool,
    /// Extended message negotiated (RFC 8654): messages up to 65535 octets
    /// (OPEN and KEEPALIVE stay at 4096).
    pub extended_message: bool,
    /// IPv4 unicast NLRI may be announced with an IPv6 next hop (RFC 8950).
    /// Without it, decoding refuses such next hops (RFC 7606 7.11: a next
    /// hop length not expected is a session reset); the encoder uses it to
    /// choose MP_REACH for IPv4.
    pub extended_next_hop_ipv4: bool,
}

/// The encoder takes the same context; put the add-path *send* direction in it.
pub type EncodeContext = DecodeContext;

/// Maximum BGP message length without RFC 8654.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Maximum BGP message length with RFC 8654 extended messages.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

impl DecodeContext {
    /// Context before/without any negotiation: 2-octet AS, no add-path, 4096 octets.
    pub const fn legacy() -> DecodeContext {
        DecodeContext {
            four_octet_as: false,
            add_path_ipv4: false,
            add_path_ipv6: false,
            extended_message: false,
            extended_next_hop_ipv4: false,
        }
    }

    /// The largest message this session may carry (4096 or 65535).
    pub const fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }

    /// Whether NLRI of `family` carry an add-path identifier.
    pub fn add_path(&self, family: Family) -> bool {
        match family {
            Family::IPV4_UNICAST => self.add_path_ipv4,
            Family::IPV6_UNICAST => self.add_path_ipv6,
            _ => false,
        }
    }
}
