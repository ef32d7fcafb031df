//! Decode and encode errors. A decode error *is* the action RFC 7606
//! prescribes, so the session cannot forget to act on it.

use super::notification::Notification;
use super::prefix::{Nlri4, Nlri6};
use super::update::Update;

/// What RFC 7606 (or RFC 4271 where 7606 is silent) says to do about a
/// malformed attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this NOTIFICATION and close the session.
    SessionReset(Notification),
    /// Withdraw every prefix the UPDATE carried (RFC 7606 section 2).
    TreatAsWithdraw,
    /// Drop this attribute, process the rest (RFC 7606 section 2).
    AttributeDiscard,
}

/// One attribute problem found while decoding an UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrError {
    /// Attribute type code.
    pub type_code: u8,
    /// What to do.
    pub action: Action,
    /// What was wrong, for logs.
    pub reason: &'static str,
}

/// The UPDATE is to be treated as a withdrawal of everything it carried
/// (RFC 7606 section 2 "treat-as-withdraw").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreatAsWithdraw {
    /// IPv4 prefixes to withdraw: the withdrawn routes field, the NLRI field,
    /// and IPv4 MP_REACH/MP_UNREACH NLRI.
    pub ipv4: Vec<Nlri4>,
    /// IPv6 prefixes to withdraw (MP_REACH/MP_UNREACH NLRI).
    pub ipv6: Vec<Nlri6>,
    /// Why; at least one entry has [`Action::TreatAsWithdraw`].
    pub errors: Vec<AttrError>,
    /// What did parse (attributes with errors removed), for logging.
    pub remainder: Update,
}

/// Decoding failed; the variant is the action to take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Send the NOTIFICATION and close the session.
    #[error("session reset: {0}")]
    SessionReset(Notification),
    /// Withdraw the carried prefixes and keep the session.
    #[error("treat-as-withdraw ({} IPv4, {} IPv6 prefixes): {}", .0.ipv4.len(), .0.ipv6.len(), .0.errors.first().map_or("", |e| e.reason))]
    TreatAsWithdraw(Box<TreatAsWithdraw>),
}

impl DecodeError {
    /// The NOTIFICATION to send, if the session must be reset.
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            DecodeError::SessionReset(n) => Some(n),
            DecodeError::TreatAsWithdraw(_) => None,
        }
    }
}

impl From<Notification> for DecodeError {
    fn from(n: Notification) -> Self {
        DecodeError::SessionReset(n)
    }
}

/// Encoding failed (the repr cannot be put on the wire in this context).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message would exceed the negotiated maximum length.
    #[error("message of {len} octets exceeds the maximum {max}")]
    TooLong {
        /// Encoded length.
        len: usize,
        /// Negotiated maximum.
        max: usize,
    },
    /// A length-prefixed field overflowed its length field.
    #[error("{0} too long for its length field")]
    FieldTooLong(&'static str),
    /// NLRI path identifiers disagree with the context's add-path setting
    /// for this family (every entry must have one iff add-path is on).
    #[error("add-path identifiers do not match the negotiated add-path state for {0}")]
    AddPathMismatch(super::family::Family),
    /// The shared attributes alone leave no room for a single prefix.
    #[error("attributes of {0} octets leave no room for NLRI")]
    AttributesTooLarge(usize),
}
