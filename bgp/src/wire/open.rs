//! OPEN (RFC 4271 section 4.2) with optional parameters (RFC 5492, RFC 9072)
//! and the capabilities a ToR sends.

use std::net::Ipv4Addr;

use nom::Parser;
use nom::number::complete::{be_u8, be_u16, be_u32};

use super::EncodeError;
use super::family::{Afi, Family, Safi};
use super::notification::{ErrorCode, Notification, subcode};

type PResult<'a, T> = nom::IResult<&'a [u8], T, ()>;

/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS.
pub const AS_TRANS: u16 = 23456;

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Open {
    /// BGP version, 4.
    pub version: u8,
    /// 2-octet "My Autonomous System" (AS_TRANS if the real AS needs 4 octets).
    pub my_as: u16,
    /// Proposed hold time in seconds.
    pub hold_time: u16,
    /// BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Optional parameters in wire order (routers differ in how they group
    /// capabilities: one parameter each, or all in one; kept as received).
    pub params: Vec<OptionalParameter>,
    /// Whether the RFC 9072 extended optional parameters length was used.
    /// The encoder also switches to it when the parameters exceed 255 octets.
    pub extended_params: bool,
}

/// One optional parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OptionalParameter {
    /// Type 2: a list of capabilities.
    Capabilities(Vec<Capability>),
    /// Any other type (e.g. deprecated authentication). Encodable, so tests
    /// can send one; the decoder refuses it (RFC 4271 6.2, subcode 4).
    Unknown {
        /// Parameter type.
        kind: u8,
        /// Raw value.
        value: Vec<u8>,
    },
}

/// Capability codes (IANA).
pub mod capability_code {
    /// Multiprotocol extensions (RFC 4760).
    pub const MULTIPROTOCOL: u8 = 1;
    /// Route refresh (RFC 2918).
    pub const ROUTE_REFRESH: u8 = 2;
    /// Extended next hop encoding (RFC 8950).
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    /// Extended message (RFC 8654).
    pub const EXTENDED_MESSAGE: u8 = 6;
    /// Graceful restart (RFC 4724).
    pub const GRACEFUL_RESTART: u8 = 64;
    /// 4-octet AS (RFC 6793).
    pub const FOUR_OCTET_AS: u8 = 65;
    /// Add-path (RFC 7911).
    pub const ADD_PATH: u8 = 69;
    /// Enhanced route refresh (RFC 7313).
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    /// FQDN / hostname (draft-walton-bgp-hostname-capability).
    pub const FQDN: u8 = 73;
}

/// A capability (RFC 5492). A known code with an unexpected length is kept
/// as [`Capability::Unknown`] so it still re-encodes byte-exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Multiprotocol extensions for one family (RFC 4760).
    Multiprotocol(Family),
    /// Route refresh (RFC 2918).
    RouteRefresh,
    /// Extended next hop encoding (RFC 8950).
    ExtendedNextHop(Vec<ExtendedNextHop>),
    /// Extended message (RFC 8654).
    ExtendedMessage,
    /// Graceful restart (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// 4-octet AS number (RFC 6793).
    FourOctetAs(u32),
    /// Add-path (RFC 7911).
    AddPath(Vec<AddPathFamily>),
    /// Enhanced route refresh (RFC 7313).
    EnhancedRouteRefresh,
    /// Hostname and domain name (FQDN capability, sent by FRR).
    Fqdn {
        /// Host name.
        hostname: String,
        /// Domain name (often empty).
        domain: String,
    },
    /// Anything else, raw.
    Unknown {
        /// Capability code.
        code: u8,
        /// Raw value.
        value: Vec<u8>,
    },
}

/// One RFC 8950 tuple: NLRI of `nlri_afi`/`nlri_safi` may use a next hop of `next_hop_afi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedNextHop {
    /// NLRI AFI.
    pub nlri_afi: Afi,
    /// NLRI SAFI (2 octets in this capability).
    pub nlri_safi: u16,
    /// Next hop AFI.
    pub next_hop_afi: Afi,
}

/// Graceful restart capability body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// The 4 restart flag bits (R = 0x8, N = 0x4), as the top nibble shifted down.
    pub flags: u8,
    /// Restart time in seconds (12 bits).
    pub restart_time: u16,
    /// Per-family entries.
    pub families: Vec<GracefulRestartFamily>,
}

impl GracefulRestart {
    /// Restart State bit.
    pub const RESTART_STATE: u8 = 0x8;
    /// Graceful Notification bit (RFC 8538).
    pub const NOTIFICATION: u8 = 0x4;
}

/// Graceful restart per-family entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    /// The family.
    pub family: Family,
    /// Per-family flags (Forwarding State = 0x80).
    pub flags: u8,
}

impl GracefulRestartFamily {
    /// Forwarding State bit.
    pub const FORWARDING_STATE: u8 = 0x80;
}

/// Add-path send/receive mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddPathMode(pub u8);

impl AddPathMode {
    /// Willing to receive.
    pub const RECEIVE: AddPathMode = AddPathMode(1);
    /// Willing to send.
    pub const SEND: AddPathMode = AddPathMode(2);
    /// Both.
    pub const BOTH: AddPathMode = AddPathMode(3);
    /// Receive bit set.
    pub fn receive(self) -> bool {
        self.0 & 1 != 0
    }
    /// Send bit set.
    pub fn send(self) -> bool {
        self.0 & 2 != 0
    }
}

/// Add-path per-family entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddPathFamily {
    /// The family.
    pub family: Family,
    /// Send/receive mode.
    pub mode: AddPathMode,
}

fn open_error(sub: u8, data: Vec<u8>) -> Notification {
    Notification::new(ErrorCode::OPEN_MESSAGE, sub, data)
}

fn malformed_open() -> Notification {
    open_error(subcode::open::UNSPECIFIC, Vec::new())
}

fn all<'a, T>(mut i: &'a [u8], mut f: impl FnMut(&'a [u8]) -> PResult<'a, T>) -> Option<Vec<T>> {
    let mut v = Vec::new();
    while !i.is_empty() {
        let (rest, x) = f(i).ok()?;
        v.push(x);
        i = rest;
    }
    Some(v)
}

impl Capability {
    /// The capability code.
    pub fn code(&self) -> u8 {
        use capability_code as c;
        match self {
            Capability::Multiprotocol(_) => c::MULTIPROTOCOL,
            Capability::RouteRefresh => c::ROUTE_REFRESH,
            Capability::ExtendedNextHop(_) => c::EXTENDED_NEXT_HOP,
            Capability::ExtendedMessage => c::EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => c::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => c::FOUR_OCTET_AS,
            Capability::AddPath(_) => c::ADD_PATH,
            Capability::EnhancedRouteRefresh => c::ENHANCED_ROUTE_REFRESH,
            Capability::Fqdn { .. } => c::FQDN,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Parse one capability value; anything unexpected becomes `Unknown`.
    pub fn parse(code: u8, v: &[u8]) -> Capability {
        Self::parse_known(code, v).unwrap_or_else(|| Capability::Unknown {
            code,
            value: v.to_vec(),
        })
    }

    fn parse_known(code: u8, v: &[u8]) -> Option<Capability> {
        use capability_code as c;
        Some(match code {
            c::MULTIPROTOCOL => {
                // Keep a non-zero reserved octet raw so it round-trips.
                let [a0, a1, 0, s] = *<&[u8; 4]>::try_from(v).ok()? else {
                    return None;
                };
                Capability::Multiprotocol(Family {
                    afi: Afi(u16::from_be_bytes([a0, a1])),
                    safi: Safi(s),
                })
            }
            c::ROUTE_REFRESH if v.is_empty() => Capability::RouteRefresh,
            c::EXTENDED_MESSAGE if v.is_empty() => Capability::ExtendedMessage,
            c::ENHANCED_ROUTE_REFRESH if v.is_empty() => Capability::EnhancedRouteRefresh,
            c::FOUR_OCTET_AS => {
                Capability::FourOctetAs(u32::from_be_bytes(*<&[u8; 4]>::try_from(v).ok()?))
            }
            c::EXTENDED_NEXT_HOP => Capability::ExtendedNextHop(all(v, |i| {
                let (i, (a, s, n)) = (be_u16, be_u16, be_u16).parse(i)?;
                Ok((
                    i,
                    ExtendedNextHop {
                        nlri_afi: Afi(a),
                        nlri_safi: s,
                        next_hop_afi: Afi(n),
                    },
                ))
            })?),
            c::GRACEFUL_RESTART => {
                let (rest, ft) = be_u16::<_, ()>(v).ok()?;
                let families = all(rest, |i| {
                    let (i, (a, s, f)) = (be_u16, be_u8, be_u8).parse(i)?;
                    Ok((
                        i,
                        GracefulRestartFamily {
                            family: Family {
                                afi: Afi(a),
                                safi: Safi(s),
                            },
                            flags: f,
                        },
                    ))
                })?;
                Capability::GracefulRestart(GracefulRestart {
                    flags: (ft >> 12) as u8,
                    restart_time: ft & 0x0fff,
                    families,
                })
            }
            c::ADD_PATH => Capability::AddPath(all(v, |i| {
                let (i, (a, s, m)) = (be_u16, be_u8, be_u8).parse(i)?;
                Ok((
                    i,
                    AddPathFamily {
                        family: Family {
                            afi: Afi(a),
                            safi: Safi(s),
                        },
                        mode: AddPathMode(m),
                    },
                ))
            })?),
            c::FQDN => {
                let (i, h) = nom::multi::length_data(be_u8::<_, ()>).parse(v).ok()?;
                let (i, d) = nom::multi::length_data(be_u8::<_, ()>).parse(i).ok()?;
                if !i.is_empty() {
                    return None;
                }
                Capability::Fqdn {
                    hostname: String::from_utf8(h.to_vec()).ok()?,
                    domain: String::from_utf8(d.to_vec()).ok()?,
                }
            }
            _ => return None,
        })
    }

    /// Append the capability value (without code and length).
    fn emit_value(&self, out: &mut Vec<u8>) {
        match self {
            Capability::Multiprotocol(f) => {
                out.extend_from_slice(&f.afi.0.to_be_bytes());
                out.push(0);
                out.push(f.safi.0);
            }
            Capability::RouteRefresh
            | Capability::ExtendedMessage
            | Capability::EnhancedRouteRefresh => {}
            Capability::ExtendedNextHop(v) => {
                for e in v {
                    out.extend_from_slice(&e.nlri_afi.0.to_be_bytes());
                    out.extend_from_slice(&e.nlri_safi.to_be_bytes());
                    out.extend_from_slice(&e.next_hop_afi.0.to_be_bytes());
                }
            }
            Capability::GracefulRestart(g) => {
                let ft = (u16::from(g.flags & 0x0f) << 12) | (g.restart_time & 0x0fff);
                out.extend_from_slice(&ft.to_be_bytes());
                for f in &g.families {
                    out.extend_from_slice(&f.family.afi.0.to_be_bytes());
                    out.push(f.family.safi.0);
                    out.push(f.flags);
                }
            }
            Capability::FourOctetAs(a) => out.extend_from_slice(&a.to_be_bytes()),
            Capability::AddPath(v) => {
                for e in v {
                    out.extend_from_slice(&e.family.afi.0.to_be_bytes());
                    out.push(e.family.safi.0);
                    out.push(e.mode.0);
                }
            }
            Capability::Fqdn { hostname, domain } => {
                // Lengths are checked by `emit` (value must fit 255 octets).
                out.push(hostname.len() as u8);
                out.extend_from_slice(hostname.as_bytes());
                out.push(domain.len() as u8);
                out.extend_from_slice(domain.as_bytes());
            }
            Capability::Unknown { value, .. } => out.extend_from_slice(value),
        }
    }

    /// Append code, length, value.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Capability::Fqdn { hostname, domain } = self
            && (hostname.len() > 255 || domain.len() > 255)
        {
            return Err(EncodeError::FieldTooLong("FQDN capability"));
        }
        out.push(self.code());
        let at = out.len();
        out.push(0);
        self.emit_value(out);
        let len = u8::try_from(out.len() - at - 1)
            .map_err(|_| EncodeError::FieldTooLong("capability"))?;
        if let Some(b) = out.get_mut(at) {
            *b = len;
        }
        Ok(())
    }
}

/// The RFC 9072 marker type in the non-extended parameter position.
const EXTENDED_OPT_PARAMS: u8 = 255;
const PARAM_CAPABILITIES: u8 = 2;

impl Open {
    /// A plain OPEN with the given capabilities in one optional parameter,
    /// putting AS_TRANS in `my_as` when `asn` needs 4 octets.
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr, capabilities: Vec<Capability>) -> Open {
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
        let params = if capabilities.is_empty() {
            Vec::new()
        } else {
            vec![OptionalParameter::Capabilities(capabilities)]
        };
        Open {
            version: 4,
            my_as,
            hold_time,
            bgp_id,
            params,
            extended_params: false,
        }
    }

    /// All capabilities across all optional parameters, in order.
    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> {
        self.params.iter().flat_map(|p| match p {
            OptionalParameter::Capabilities(c) => c.as_slice(),
            OptionalParameter::Unknown { .. } => &[],
        })
    }

    /// The 4-octet AS from the capability, if announced.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
    }

    /// The speaker's AS: the 4-octet capability if present, else `my_as`.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    /// Decode an OPEN body (after the header).
    pub fn decode_body(body: &[u8]) -> Result<Open, Notification> {
        let (rest, (version, my_as, hold_time, bgp_id, opt_len)) =
            (be_u8::<_, ()>, be_u16, be_u16, be_u32, be_u8)
                .parse(body)
                .map_err(|_| malformed_open())?;
        if version != 4 {
            // RFC 4271 6.2: data is the largest supported version (2 octets).
            return Err(open_error(
                subcode::open::UNSUPPORTED_VERSION,
                4u16.to_be_bytes().to_vec(),
            ));
        }
        let bgp_id = Ipv4Addr::from(bgp_id);
        let extended = opt_len == 255 && rest.first() == Some(&EXTENDED_OPT_PARAMS);
        let params = if extended {
            let (rest, len) = (be_u8::<_, ()>, be_u16)
                .parse(rest)
                .map(|(r, (_, l))| (r, l))
                .map_err(|_| malformed_open())?;
            if rest.len() != usize::from(len) {
                return Err(malformed_open());
            }
            all(rest, |i| {
                let (i, (kind, value)) = (be_u8, nom::multi::length_data(be_u16)).parse(i)?;
                Ok((i, (kind, value)))
            })
        } else {
            if rest.len() != usize::from(opt_len) {
                return Err(malformed_open());
            }
            all(rest, |i| {
                let (i, (kind, value)) = (be_u8, nom::multi::length_data(be_u8)).parse(i)?;
                Ok((i, (kind, value)))
            })
        }
        .ok_or_else(malformed_open)?;
        let mut out = Vec::with_capacity(params.len());
        for (kind, value) in params {
            out.push(if kind == PARAM_CAPABILITIES {
                let caps = all(value, |i| {
                    let (i, (code, v)) = (be_u8, nom::multi::length_data(be_u8)).parse(i)?;
                    Ok((i, Capability::parse(code, v)))
                })
                .ok_or_else(malformed_open)?;
                OptionalParameter::Capabilities(caps)
            } else {
                // RFC 4271 6.2: an optional parameter we do not recognise is
                // refused (only Capabilities exist; 255 is RFC 9072's marker,
                // never a parameter type).
                return Err(open_error(
                    subcode::open::UNSUPPORTED_OPTIONAL_PARAMETER,
                    Vec::new(),
                ));
            });
        }
        Ok(Open {
            version,
            my_as,
            hold_time,
            bgp_id,
            params: out,
            extended_params: extended,
        })
    }

    /// Append the OPEN body.
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.version);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        let mut values = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let mut v = Vec::new();
            let kind = match p {
                OptionalParameter::Capabilities(caps) => {
                    for c in caps {
                        c.emit(&mut v)?;
                    }
                    PARAM_CAPABILITIES
                }
                OptionalParameter::Unknown { kind, value } => {
                    v.extend_from_slice(value);
                    *kind
                }
            };
            values.push((kind, v));
        }
        let short_total: usize = values.iter().map(|(_, v)| 2 + v.len()).sum();
        let extended =
            self.extended_params || short_total > 255 || values.iter().any(|(_, v)| v.len() > 255);
        if extended {
            let total: usize = values.iter().map(|(_, v)| 3 + v.len()).sum();
            let total = u16::try_from(total)
                .map_err(|_| EncodeError::FieldTooLong("optional parameters"))?;
            out.extend_from_slice(&[255, EXTENDED_OPT_PARAMS]);
            out.extend_from_slice(&total.to_be_bytes());
            for (k, v) in &values {
                out.push(*k);
                // Each value is part of `total`, which fits u16.
                out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                out.extend_from_slice(v);
            }
        } else {
            out.push(short_total as u8);
            for (k, v) in &values {
                out.push(*k);
                out.push(v.len() as u8);
                out.extend_from_slice(v);
            }
        }
        Ok(())
    }
}
