//! ROUTE-REFRESH (RFC 2918) with the RFC 7313 message subtypes.

use super::family::{Afi, Family, Safi};
use super::notification::{ErrorCode, Notification, subcode};

/// A ROUTE-REFRESH message: AFI, subtype (formerly reserved), SAFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    /// Family to refresh.
    pub family: Family,
    /// Message subtype (see the constants; unknown values are kept).
    pub subtype: u8,
}

impl RouteRefresh {
    /// Normal route refresh request (0).
    pub const REQUEST: u8 = 0;
    /// Beginning of Route Refresh (1, RFC 7313).
    pub const BORR: u8 = 1;
    /// End of Route Refresh (2, RFC 7313).
    pub const EORR: u8 = 2;

    /// A plain refresh request for `family`.
    pub fn request(family: Family) -> RouteRefresh {
        RouteRefresh {
            family,
            subtype: Self::REQUEST,
        }
    }

    /// Decode the body. RFC 7313 section 5: a body that is not 4 octets is
    /// a ROUTE-REFRESH Message Error / Invalid Message Length, with the
    /// whole message as data (`whole` is the message incl. header).
    pub fn decode_body(body: &[u8], whole: &[u8]) -> Result<RouteRefresh, Notification> {
        match body {
            &[a0, a1, subtype, safi] => Ok(RouteRefresh {
                family: Family {
                    afi: Afi(u16::from_be_bytes([a0, a1])),
                    safi: Safi(safi),
                },
                subtype,
            }),
            _ => Err(Notification::new(
                ErrorCode::ROUTE_REFRESH,
                subcode::route_refresh::INVALID_MESSAGE_LENGTH,
                whole.to_vec(),
            )),
        }
    }

    /// Append the body.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.0.to_be_bytes());
        out.push(self.subtype);
        out.push(self.family.safi.0);
    }
}
