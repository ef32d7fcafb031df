//! NOTIFICATION (RFC 4271 section 4.5) with named error codes and subcodes
//! (RFC 4271, RFC 4486, RFC 6608, RFC 7313) and the RFC 8203/9003 shutdown
//! communication.

use core::fmt;

/// A NOTIFICATION: what to send when closing a session, or what the peer sent us.
///
/// Code and subcode stay raw bytes so unknown values round-trip; use
/// [`ErrorCode`] and the `subcode` modules for names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code (see [`ErrorCode`]).
    pub code: u8,
    /// Error subcode (see the [`subcode`] modules).
    pub subcode: u8,
    /// Diagnostic data, meaning depends on code/subcode.
    pub data: Vec<u8>,
}

/// NOTIFICATION error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    /// Message Header Error (1).
    pub const MESSAGE_HEADER: ErrorCode = ErrorCode(1);
    /// OPEN Message Error (2).
    pub const OPEN_MESSAGE: ErrorCode = ErrorCode(2);
    /// UPDATE Message Error (3).
    pub const UPDATE_MESSAGE: ErrorCode = ErrorCode(3);
    /// Hold Timer Expired (4).
    pub const HOLD_TIMER_EXPIRED: ErrorCode = ErrorCode(4);
    /// Finite State Machine Error (5).
    pub const FSM: ErrorCode = ErrorCode(5);
    /// Cease (6).
    pub const CEASE: ErrorCode = ErrorCode(6);
    /// ROUTE-REFRESH Message Error (7, RFC 7313).
    pub const ROUTE_REFRESH: ErrorCode = ErrorCode(7);

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            7 => "ROUTE-REFRESH Message Error",
            _ => "Unknown error code",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Subcode constants per error code.
pub mod subcode {
    /// Message Header Error subcodes (RFC 4271 section 6.1).
    pub mod header {
        /// Connection Not Synchronized.
        pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
        /// Bad Message Length (data: the bad length field).
        pub const BAD_MESSAGE_LENGTH: u8 = 2;
        /// Bad Message Type (data: the bad type octet).
        pub const BAD_MESSAGE_TYPE: u8 = 3;
    }
    /// OPEN Message Error subcodes (RFC 4271 section 6.2, RFC 5492).
    pub mod open {
        /// Unspecific (used for malformed OPEN bodies).
        pub const UNSPECIFIC: u8 = 0;
        /// Unsupported Version Number.
        pub const UNSUPPORTED_VERSION: u8 = 1;
        /// Bad Peer AS.
        pub const BAD_PEER_AS: u8 = 2;
        /// Bad BGP Identifier.
        pub const BAD_BGP_IDENTIFIER: u8 = 3;
        /// Unsupported Optional Parameter.
        pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
        /// Unacceptable Hold Time.
        pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
        /// Unsupported Capability (RFC 5492).
        pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    }
    /// UPDATE Message Error subcodes (RFC 4271 section 6.3).
    pub mod update {
        /// Malformed Attribute List.
        pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
        /// Unrecognized Well-known Attribute.
        pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
        /// Missing Well-known Attribute.
        pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
        /// Attribute Flags Error.
        pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
        /// Attribute Length Error.
        pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
        /// Invalid ORIGIN Attribute.
        pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
        /// Invalid NEXT_HOP Attribute.
        pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
        /// Optional Attribute Error.
        pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
        /// Invalid Network Field.
        pub const INVALID_NETWORK_FIELD: u8 = 10;
        /// Malformed AS_PATH.
        pub const MALFORMED_AS_PATH: u8 = 11;
    }
    /// Finite State Machine Error subcodes (RFC 6608).
    pub mod fsm {
        /// Unspecified Error.
        pub const UNSPECIFIED: u8 = 0;
        /// Receive Unexpected Message in OpenSent State.
        pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
        /// Receive Unexpected Message in OpenConfirm State.
        pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
        /// Receive Unexpected Message in Established State.
        pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    }
    /// Cease subcodes (RFC 4486, RFC 8538).
    pub mod cease {
        /// Maximum Number of Prefixes Reached.
        pub const MAX_PREFIXES: u8 = 1;
        /// Administrative Shutdown (may carry a shutdown communication).
        pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
        /// Peer De-configured.
        pub const PEER_DECONFIGURED: u8 = 3;
        /// Administrative Reset (may carry a shutdown communication).
        pub const ADMINISTRATIVE_RESET: u8 = 4;
        /// Connection Rejected.
        pub const CONNECTION_REJECTED: u8 = 5;
        /// Other Configuration Change.
        pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
        /// Connection Collision Resolution.
        pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
        /// Out of Resources.
        pub const OUT_OF_RESOURCES: u8 = 8;
        /// Hard Reset (RFC 8538).
        pub const HARD_RESET: u8 = 9;
    }
    /// ROUTE-REFRESH Message Error subcodes (RFC 7313).
    pub mod route_refresh {
        /// Invalid Message Length.
        pub const INVALID_MESSAGE_LENGTH: u8 = 1;
    }
}

/// Name of a (code, subcode) pair's subcode, if known.
pub fn subcode_name(code: u8, sub: u8) -> Option<&'static str> {
    Some(match (code, sub) {
        (1, 1) => "Connection Not Synchronized",
        (1, 2) => "Bad Message Length",
        (1, 3) => "Bad Message Type",
        (2, 0) => "Unspecific",
        (2, 1) => "Unsupported Version Number",
        (2, 2) => "Bad Peer AS",
        (2, 3) => "Bad BGP Identifier",
        (2, 4) => "Unsupported Optional Parameter",
        (2, 6) => "Unacceptable Hold Time",
        (2, 7) => "Unsupported Capability",
        (3, 1) => "Malformed Attribute List",
        (3, 2) => "Unrecognized Well-known Attribute",
        (3, 3) => "Missing Well-known Attribute",
        (3, 4) => "Attribute Flags Error",
        (3, 5) => "Attribute Length Error",
        (3, 6) => "Invalid ORIGIN Attribute",
        (3, 8) => "Invalid NEXT_HOP Attribute",
        (3, 9) => "Optional Attribute Error",
        (3, 10) => "Invalid Network Field",
        (3, 11) => "Malformed AS_PATH",
        (5, 0) => "Unspecified Error",
        (5, 1) => "Receive Unexpected Message in OpenSent State",
        (5, 2) => "Receive Unexpected Message in OpenConfirm State",
        (5, 3) => "Receive Unexpected Message in Established State",
        (6, 1) => "Maximum Number of Prefixes Reached",
        (6, 2) => "Administrative Shutdown",
        (6, 3) => "Peer De-configured",
        (6, 4) => "Administrative Reset",
        (6, 5) => "Connection Rejected",
        (6, 6) => "Other Configuration Change",
        (6, 7) => "Connection Collision Resolution",
        (6, 8) => "Out of Resources",
        (6, 9) => "Hard Reset",
        (7, 1) => "Invalid Message Length",
        (_, 0) => "Unspecific",
        _ => return None,
    })
}

/// Maximum length of a shutdown communication (RFC 9003 raised it from 128 to 255).
pub const MAX_SHUTDOWN_MESSAGE_LEN: usize = 255;

/// Why a shutdown communication could not be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownMessageError {
    /// Longer than 255 octets of UTF-8.
    #[error("shutdown communication longer than 255 octets")]
    TooLong,
    /// The length octet does not match the data.
    #[error("shutdown communication length does not match the data")]
    BadLength,
    /// Not valid UTF-8.
    #[error("shutdown communication is not UTF-8")]
    NotUtf8,
}

impl Notification {
    /// A NOTIFICATION from code, subcode and data.
    pub fn new(code: ErrorCode, subcode: u8, data: Vec<u8>) -> Notification {
        Notification {
            code: code.0,
            subcode,
            data,
        }
    }

    /// Typed error code.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode(self.code)
    }

    /// Cease with a shutdown communication (RFC 9003): `subcode` should be
    /// Administrative Shutdown or Administrative Reset.
    pub fn shutdown(subcode: u8, message: &str) -> Result<Notification, ShutdownMessageError> {
        let len = u8::try_from(message.len()).map_err(|_| ShutdownMessageError::TooLong)?;
        let mut data = Vec::with_capacity(1 + message.len());
        data.push(len);
        data.extend_from_slice(message.as_bytes());
        Ok(Notification {
            code: ErrorCode::CEASE.0,
            subcode,
            data,
        })
    }

    /// The shutdown communication, if this is a Cease/Administrative
    /// Shutdown or Reset carrying data. `None` if there is no data (an
    /// empty message is `Some(Ok(""))`).
    pub fn shutdown_message(&self) -> Option<Result<&str, ShutdownMessageError>> {
        if self.code != ErrorCode::CEASE.0
            || !matches!(
                self.subcode,
                subcode::cease::ADMINISTRATIVE_SHUTDOWN | subcode::cease::ADMINISTRATIVE_RESET
            )
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        // RFC 9003 section 2: trailing data after the message is allowed; only the prefix counts.
        let Some(text) = rest.get(..usize::from(len)) else {
            return Some(Err(ShutdownMessageError::BadLength));
        };
        Some(core::str::from_utf8(text).map_err(|_| ShutdownMessageError::NotUtf8))
    }

    /// Decode a NOTIFICATION body (after the 19-byte header): `None` if
    /// shorter than code + subcode (framing already rejects that).
    pub fn decode_body(body: &[u8]) -> Option<Notification> {
        let (&code, rest) = body.split_first()?;
        let (&subcode, data) = rest.split_first()?;
        Some(Notification {
            code,
            subcode,
            data: data.to_vec(),
        })
    }

    /// Append the body (code, subcode, data).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.code);
        out.push(self.subcode);
        out.extend_from_slice(&self.data);
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", ErrorCode(self.code), self.code)?;
        match subcode_name(self.code, self.subcode) {
            Some(n) => write!(f, " / {n} ({})", self.subcode)?,
            None => write!(f, " / subcode {}", self.subcode)?,
        }
        if let Some(Ok(m)) = self.shutdown_message() {
            write!(f, ": \"{}\"", m.escape_debug())?;
        } else if !self.data.is_empty() {
            write!(f, ", data ")?;
            for b in &self.data {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}
