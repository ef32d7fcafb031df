//! The fixed 19-octet message header (RFC 4271 section 4.1) as a zerocopy
//! view, and framing of a TCP byte stream into whole messages.

use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Ref, Unaligned};

use super::family::{DecodeContext, MAX_MESSAGE_LEN};
use super::notification::{ErrorCode, Notification, subcode};

/// Octets in the message header.
pub const HEADER_LEN: usize = 19;
/// The all-ones marker.
pub const MARKER: [u8; 16] = [0xff; 16];

/// Message type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType(pub u8);

impl MessageType {
    /// OPEN (1).
    pub const OPEN: MessageType = MessageType(1);
    /// UPDATE (2).
    pub const UPDATE: MessageType = MessageType(2);
    /// NOTIFICATION (3).
    pub const NOTIFICATION: MessageType = MessageType(3);
    /// KEEPALIVE (4).
    pub const KEEPALIVE: MessageType = MessageType(4);
    /// ROUTE-REFRESH (5, RFC 2918).
    pub const ROUTE_REFRESH: MessageType = MessageType(5);

    /// Minimum total length of a message of this type (RFC 4271 section 6.1),
    /// or `None` for an unknown type.
    pub const fn min_len(self) -> Option<usize> {
        match self.0 {
            1 => Some(29),
            2 => Some(23),
            3 => Some(21),
            4 => Some(19),
            // RFC 7313 section 5 makes a wrong ROUTE-REFRESH length its own
            // error; the header check only needs the bare header.
            5 => Some(19),
            _ => None,
        }
    }
}

/// The wire header: marker, length, type. All fields are byte arrays or
/// unaligned network-endian integers, so any 19 bytes are a valid `Header`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Header {
    /// Must be all ones.
    pub marker: [u8; 16],
    /// Total message length including this header.
    pub length: U16,
    /// Message type.
    pub kind: u8,
}

impl Header {
    /// A header with the all-ones marker.
    pub fn new(kind: MessageType, length: u16) -> Header {
        Header {
            marker: MARKER,
            length: U16::new(length),
            kind: kind.0,
        }
    }

    /// Borrow the header at the start of `buf`, if there are 19 octets.
    pub fn peek(buf: &[u8]) -> Option<&Header> {
        Ref::<&[u8], Header>::from_prefix(buf)
            .ok()
            .map(|(h, _)| Ref::into_ref(h))
    }
}

fn header_error(sub: u8, data: Vec<u8>) -> Notification {
    Notification::new(ErrorCode::MESSAGE_HEADER, sub, data)
}

/// Validate a header against RFC 4271 section 6.1 (and RFC 8654 limits).
///
/// OPEN and KEEPALIVE are limited to 4096 octets even with extended
/// messages (RFC 8654 section 4); a NOTIFICATION may use the extended size.
pub fn check_header(h: &Header, ctx: &DecodeContext) -> Result<(MessageType, usize), Notification> {
    if h.marker != MARKER {
        return Err(header_error(
            subcode::header::CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    let len = usize::from(h.length.get());
    let kind = MessageType(h.kind);
    let Some(min) = kind.min_len() else {
        return Err(header_error(
            subcode::header::BAD_MESSAGE_TYPE,
            vec![h.kind],
        ));
    };
    let max = match kind {
        MessageType::OPEN | MessageType::KEEPALIVE => MAX_MESSAGE_LEN,
        _ => ctx.max_message_len(),
    };
    let bad = len < min || len > max || (kind == MessageType::KEEPALIVE && len != HEADER_LEN);
    if bad {
        return Err(header_error(
            subcode::header::BAD_MESSAGE_LENGTH,
            h.length.get().to_be_bytes().to_vec(),
        ));
    }
    Ok((kind, len))
}

/// How many octets the next whole message at the start of `buf` occupies.
///
/// `Ok(None)`: not enough bytes yet (read more). `Ok(Some(n))`: `buf[..n]`
/// is one whole message, pass it to [`decode`](super::decode). `Err`: the
/// stream is broken; send the NOTIFICATION and close.
pub fn frame(buf: &[u8], ctx: &DecodeContext) -> Result<Option<usize>, Notification> {
    let Some(h) = Header::peek(buf) else {
        // Fail early on a bad marker even before 19 octets arrived.
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(header_error(
                subcode::header::CONNECTION_NOT_SYNCHRONIZED,
                Vec::new(),
            ));
        }
        return Ok(None);
    };
    let (_, len) = check_header(h, ctx)?;
    Ok(if buf.len() >= len { Some(len) } else { None })
}
