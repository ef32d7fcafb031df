//! BGP-4 wire codec (sans-IO).
//!
//! Bytes in, owned message reprs out, and errors that are the RFC 7606
//! action to take. The fixed header is a zerocopy view ([`Header`]);
//! bodies are parsed with nom (OPEN) or checked slice walks (the hot
//! UPDATE/NLRI path). Decoding depends on what the session negotiated,
//! carried in a [`DecodeContext`]. Decoding never panics: every read is
//! bounds-checked.
//!
//! Typical use by a session driver:
//! 1. [`frame`] the receive buffer until it yields a whole message length;
//! 2. [`decode`] that slice with the receive context;
//! 3. act on `Err(DecodeError::SessionReset(n))` (send `n`, close) or
//!    `Err(DecodeError::TreatAsWithdraw(w))` (withdraw `w.ipv4`/`w.ipv6`).
//!
//! Sending: [`Message::encode`], or [`pack_ipv4`]/[`pack_mp`]/... to pack
//! many prefixes sharing attributes into as few UPDATEs as fit.

mod attr;
mod error;
mod family;
mod header;
mod next_hop;
mod notification;
mod open;
mod pack;
mod prefix;
mod route_refresh;
mod update;

pub use attr::{
    Aggregator, AsPath, AsSegment, AttrValue, Community, ExtendedCommunity, LargeCommunity,
    MpNextHop, MpNlri, MpReach, MpUnreach, Origin, PathAttribute, SegmentType, attr_type,
    expected_flags, flags, merge_as4,
};
pub use error::{Action, AttrError, DecodeError, EncodeError, TreatAsWithdraw};
pub use family::{
    Afi, DecodeContext, EncodeContext, Family, FamilyParseError, MAX_EXTENDED_MESSAGE_LEN,
    MAX_MESSAGE_LEN, Safi,
};
pub use header::{HEADER_LEN, Header, MARKER, MessageType, check_header, frame};
pub use next_hop::{ipv4_next_hop_ok, mp_next_hop_problem};
pub use notification::{
    ErrorCode, MAX_SHUTDOWN_MESSAGE_LEN, Notification, ShutdownMessageError, subcode, subcode_name,
};
pub use open::{
    AS_TRANS, AddPathFamily, AddPathMode, Capability, ExtendedNextHop, GracefulRestart,
    GracefulRestartFamily, Open, OptionalParameter, capability_code,
};
pub use pack::{
    pack_ipv4, pack_ipv6, pack_mp, pack_withdraw_ipv4, pack_withdraw_mp, update_overhead,
};
pub use prefix::{
    Ipv4Prefix, Ipv6Prefix, Nlri, Nlri4, Nlri6, Prefix, PrefixLenError, PrefixParseError,
};
pub use route_refresh::RouteRefresh;
pub use update::{DecodedUpdate, Update};

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

/// A decoded message plus attributes RFC 7606 said to drop and continue
/// (always empty for non-UPDATE messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The message.
    pub message: Message,
    /// Attributes handled by "attribute discard".
    pub discarded: Vec<AttrError>,
}

/// Decode one whole message (header included), as delimited by [`frame`].
///
/// The header is re-checked, so this is safe on any input.
pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<Decoded, DecodeError> {
    let Some(h) = Header::peek(buf) else {
        return Err(DecodeError::SessionReset(Notification::new(
            ErrorCode::MESSAGE_HEADER,
            subcode::header::BAD_MESSAGE_LENGTH,
            u16::try_from(buf.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes()
                .to_vec(),
        )));
    };
    let (kind, len) = check_header(h, ctx)?;
    if len != buf.len() {
        return Err(DecodeError::SessionReset(Notification::new(
            ErrorCode::MESSAGE_HEADER,
            subcode::header::BAD_MESSAGE_LENGTH,
            h.length.get().to_be_bytes().to_vec(),
        )));
    }
    let body = buf.get(HEADER_LEN..).unwrap_or_default();
    let message = match kind {
        MessageType::OPEN => Message::Open(Open::decode_body(body)?),
        MessageType::UPDATE => {
            let d = Update::decode_body(body, ctx)?;
            return Ok(Decoded {
                message: Message::Update(d.update),
                discarded: d.discarded,
            });
        }
        MessageType::NOTIFICATION => {
            Message::Notification(Notification::decode_body(body).ok_or_else(|| {
                Notification::new(
                    ErrorCode::MESSAGE_HEADER,
                    subcode::header::BAD_MESSAGE_LENGTH,
                    h.length.get().to_be_bytes().to_vec(),
                )
            })?)
        }
        MessageType::KEEPALIVE => Message::Keepalive,
        _ => Message::RouteRefresh(RouteRefresh::decode_body(body, buf)?),
    };
    Ok(Decoded {
        message,
        discarded: Vec::new(),
    })
}

impl Message {
    /// Decode, dropping the list of discarded attributes.
    pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<Message, DecodeError> {
        decode(buf, ctx).map(|d| d.message)
    }

    /// Message type.
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::OPEN,
            Message::Update(_) => MessageType::UPDATE,
            Message::Notification(_) => MessageType::NOTIFICATION,
            Message::Keepalive => MessageType::KEEPALIVE,
            Message::RouteRefresh(_) => MessageType::ROUTE_REFRESH,
        }
    }

    /// Append the whole message (header included) to `out`.
    ///
    /// Fails (leaving `out` as it was) if the message exceeds the maximum
    /// length for `ctx` (4096 for OPEN/KEEPALIVE always), or if NLRI path
    /// identifiers disagree with the context's add-path state.
    pub fn encode(&self, ctx: &EncodeContext, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Message::Update(u) = self {
            return u.encode(ctx, out);
        }
        let start = out.len();
        out.extend_from_slice(&MARKER);
        out.extend_from_slice(&[0, 0, self.kind().0]);
        let r = match self {
            Message::Open(o) => o.encode_body(out),
            Message::Update(u) => u.check_add_path(ctx).map(|()| u.encode_body(ctx, out)),
            Message::Notification(n) => {
                n.encode_body(out);
                Ok(())
            }
            Message::Keepalive => Ok(()),
            Message::RouteRefresh(r) => {
                r.encode_body(out);
                Ok(())
            }
        };
        let len = out.len() - start;
        let max = match self {
            Message::Open(_) | Message::Keepalive => MAX_MESSAGE_LEN,
            _ => ctx.max_message_len(),
        };
        if let Err(e) = r {
            out.truncate(start);
            return Err(e);
        }
        if len > max {
            out.truncate(start);
            return Err(EncodeError::TooLong { len, max });
        }
        update::patch_u16(out, start + 16, len);
        Ok(())
    }

    /// The encoded message as a new buffer.
    pub fn to_bytes(&self, ctx: &EncodeContext) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode(ctx, &mut v)?;
        Ok(v)
    }
}
