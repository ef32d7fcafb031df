//! UPDATE (RFC 4271 section 4.3) decode with RFC 7606 error handling, and encode.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::attr::{
    Aggregator, AsPath, AsSegment, AttrValue, Community, ExtendedCommunity, LargeCommunity,
    MpNextHop, MpNlri, MpReach, MpUnreach, Origin, PathAttribute, SegmentType, attr_type as t,
    expected_flags, flags, prefix_family,
};
use super::error::{Action, AttrError, DecodeError, TreatAsWithdraw};
use super::family::{Afi, DecodeContext, Family, Safi};
use super::notification::{ErrorCode, Notification, subcode};
use super::prefix::{Nlri4, Nlri6, parse_nlri4, parse_nlri6};

/// An UPDATE message. IPv6 (and IPv4 with an IPv6 next hop) travel in the
/// MP_REACH_NLRI / MP_UNREACH_NLRI attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Update {
    /// Withdrawn routes field (IPv4 unicast).
    pub withdrawn: Vec<Nlri4>,
    /// Path attributes in wire order.
    pub attributes: Vec<PathAttribute>,
    /// NLRI field (IPv4 unicast).
    pub nlri: Vec<Nlri4>,
}

/// An UPDATE that decoded, plus attributes RFC 7606 says to drop and go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedUpdate {
    /// The update, without discarded attributes.
    pub update: Update,
    /// Attributes dropped under "attribute discard" (incl. duplicates).
    pub discarded: Vec<AttrError>,
}

/// Internal: what a value parser says about a bad attribute.
enum Bad {
    Withdraw(&'static str),
    Discard(&'static str),
    Reset(u8),
}

fn update_error(sub: u8, data: Vec<u8>) -> Notification {
    Notification::new(ErrorCode::UPDATE_MESSAGE, sub, data)
}

fn u32_of(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes)
}

fn parse_as_path(mut v: &[u8], four: bool) -> Option<AsPath> {
    let w = if four { 4 } else { 2 };
    let mut segments = Vec::new();
    while !v.is_empty() {
        // RFC 7606 7.2: unknown type, zero-length segment, overrun and a lone trailing octet are malformed.
        let (&[kind, count], rest) = v.split_first_chunk::<2>()?;
        let kind = SegmentType::from_u8(kind)?;
        if count == 0 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(usize::from(count) * w)?;
        let asns = if four {
            bytes.chunks_exact(4).filter_map(u32_of).collect()
        } else {
            bytes
                .chunks_exact(2)
                .filter_map(|c| <[u8; 2]>::try_from(c).ok())
                .map(|c| u32::from(u16::from_be_bytes(c)))
                .collect()
        };
        segments.push(AsSegment { kind, asns });
        v = rest;
    }
    Some(AsPath { segments })
}

fn parse_aggregator(v: &[u8], four: bool) -> Option<Aggregator> {
    let (asn, addr) = if four {
        let (a, r) = v.split_first_chunk::<4>()?;
        (u32::from_be_bytes(*a), r)
    } else {
        let (a, r) = v.split_first_chunk::<2>()?;
        (u32::from(u16::from_be_bytes(*a)), r)
    };
    let addr: [u8; 4] = addr.try_into().ok()?;
    Some(Aggregator {
        asn,
        addr: Ipv4Addr::from(addr),
    })
}

fn non_zero_multiple(v: &[u8], n: usize) -> bool {
    !v.is_empty() && v.len().is_multiple_of(n)
}

fn parse_mp_nlri(family: Family, v: &[u8], ctx: &DecodeContext) -> Result<MpNlri, Bad> {
    let add_path = ctx.add_path(family);
    match prefix_family(family) {
        Some(Afi::IPV4) => {
            let mut out = Vec::new();
            parse_nlri4(v, add_path, &mut out)
                .map_err(|_| Bad::Reset(subcode::update::OPTIONAL_ATTRIBUTE_ERROR))?;
            Ok(MpNlri::Ipv4(out))
        }
        Some(_) => {
            let mut out = Vec::new();
            parse_nlri6(v, add_path, &mut out)
                .map_err(|_| Bad::Reset(subcode::update::OPTIONAL_ATTRIBUTE_ERROR))?;
            Ok(MpNlri::Ipv6(out))
        }
        None => Ok(MpNlri::Raw(v.to_vec())),
    }
}

fn parse_family(v: &[u8]) -> Option<(Family, &[u8])> {
    let (&[a0, a1, s], rest) = v.split_first_chunk::<3>()?;
    Some((
        Family {
            afi: Afi(u16::from_be_bytes([a0, a1])),
            safi: Safi(s),
        },
        rest,
    ))
}

fn has_as0(p: &AsPath) -> bool {
    p.segments.iter().any(|s| s.asns.contains(&0))
}

fn parse_value(code: u8, v: &[u8], ctx: &DecodeContext) -> Result<AttrValue, Bad> {
    const MP_BAD: Bad = Bad::Reset(subcode::update::OPTIONAL_ATTRIBUTE_ERROR);
    Ok(match code {
        t::ORIGIN => match v {
            [0] => AttrValue::Origin(Origin::Igp),
            [1] => AttrValue::Origin(Origin::Egp),
            [2] => AttrValue::Origin(Origin::Incomplete),
            [_] => return Err(Bad::Withdraw("undefined ORIGIN value")),
            _ => return Err(Bad::Withdraw("ORIGIN length not 1")),
        },
        t::AS_PATH => {
            let p =
                parse_as_path(v, ctx.four_octet_as).ok_or(Bad::Withdraw("malformed AS_PATH"))?;
            if has_as0(&p) {
                // RFC 7607 2: AS 0 in AS_PATH is malformed: treat-as-withdraw.
                return Err(Bad::Withdraw("AS 0 in AS_PATH"));
            }
            AttrValue::AsPath(p)
        }
        t::NEXT_HOP => AttrValue::NextHop(Ipv4Addr::from(
            u32_of(v).ok_or(Bad::Withdraw("NEXT_HOP length not 4"))?,
        )),
        t::MED => AttrValue::Med(u32_of(v).ok_or(Bad::Withdraw("MULTI_EXIT_DISC length not 4"))?),
        t::LOCAL_PREF => {
            AttrValue::LocalPref(u32_of(v).ok_or(Bad::Withdraw("LOCAL_PREF length not 4"))?)
        }
        t::ATOMIC_AGGREGATE if v.is_empty() => AttrValue::AtomicAggregate,
        t::ATOMIC_AGGREGATE => return Err(Bad::Discard("ATOMIC_AGGREGATE length not 0")),
        t::AGGREGATOR => match parse_aggregator(v, ctx.four_octet_as) {
            // RFC 7607 2: AS 0 in AGGREGATOR: attribute discard.
            Some(a) if a.asn == 0 => return Err(Bad::Discard("AS 0 in AGGREGATOR")),
            Some(a) => AttrValue::Aggregator(a),
            None => return Err(Bad::Discard("AGGREGATOR length wrong")),
        },
        t::COMMUNITIES if non_zero_multiple(v, 4) => AttrValue::Communities(
            v.chunks_exact(4)
                .filter_map(u32_of)
                .map(Community)
                .collect(),
        ),
        t::COMMUNITIES => {
            return Err(Bad::Withdraw(
                "COMMUNITIES length not a non-zero multiple of 4",
            ));
        }
        t::ORIGINATOR_ID => AttrValue::OriginatorId(Ipv4Addr::from(
            u32_of(v).ok_or(Bad::Withdraw("ORIGINATOR_ID length not 4"))?,
        )),
        t::CLUSTER_LIST if non_zero_multiple(v, 4) => AttrValue::ClusterList(
            v.chunks_exact(4)
                .filter_map(u32_of)
                .map(Ipv4Addr::from)
                .collect(),
        ),
        t::CLUSTER_LIST => {
            return Err(Bad::Withdraw(
                "CLUSTER_LIST length not a non-zero multiple of 4",
            ));
        }
        t::MP_REACH_NLRI => {
            let (family, rest) = parse_family(v).ok_or(MP_BAD)?;
            let (&nh_len, rest) = rest.split_first().ok_or(MP_BAD)?;
            let (nh, rest) = rest.split_at_checked(usize::from(nh_len)).ok_or(MP_BAD)?;
            let (&reserved, nlri) = rest.split_first().ok_or(MP_BAD)?;
            // RFC 7606 7.11: a next hop length inconsistent with the family makes the NLRI unlocatable.
            let v6 = |b: &[u8]| <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from);
            let next_hop = match (prefix_family(family), nh.len()) {
                (Some(Afi::IPV4), 4) => MpNextHop::Ipv4(Ipv4Addr::from(u32_of(nh).ok_or(MP_BAD)?)),
                // RFC 8950 4: an IPv6 next hop for IPv4 NLRI only when negotiated.
                (Some(Afi::IPV4), _) if !ctx.extended_next_hop_ipv4 => return Err(MP_BAD),
                (Some(_), 16) => MpNextHop::Ipv6 {
                    global: v6(nh).ok_or(MP_BAD)?,
                    link_local: None,
                },
                (Some(_), 32) => MpNextHop::Ipv6 {
                    global: v6(nh.get(..16).ok_or(MP_BAD)?).ok_or(MP_BAD)?,
                    link_local: Some(v6(nh.get(16..).ok_or(MP_BAD)?).ok_or(MP_BAD)?),
                },
                (Some(_), _) => {
                    return Err(Bad::Reset(subcode::update::OPTIONAL_ATTRIBUTE_ERROR));
                }
                (None, _) => MpNextHop::Raw(nh.to_vec()),
            };
            let nlri = parse_mp_nlri(family, nlri, ctx)?;
            AttrValue::MpReach(MpReach {
                family,
                next_hop,
                reserved,
                nlri,
            })
        }
        t::MP_UNREACH_NLRI => {
            let (family, rest) = parse_family(v).ok_or(MP_BAD)?;
            AttrValue::MpUnreach(MpUnreach {
                family,
                withdrawn: parse_mp_nlri(family, rest, ctx)?,
            })
        }
        t::EXTENDED_COMMUNITIES if non_zero_multiple(v, 8) => AttrValue::ExtendedCommunities(
            v.chunks_exact(8)
                .filter_map(|c| <[u8; 8]>::try_from(c).ok())
                .map(ExtendedCommunity)
                .collect(),
        ),
        t::EXTENDED_COMMUNITIES => {
            return Err(Bad::Withdraw(
                "EXTENDED_COMMUNITIES length not a non-zero multiple of 8",
            ));
        }
        // RFC 6793 section 6: AS4_* errors are handled by attribute discard,
        // and a 4-octet speaker must not send them (discard too).
        t::AS4_PATH | t::AS4_AGGREGATOR if ctx.four_octet_as => {
            return Err(Bad::Discard("AS4_* attribute from a 4-octet AS speaker"));
        }
        t::AS4_PATH => match parse_as_path(v, true) {
            // RFC 7607 2 with RFC 6793 6: AS 0 in AS4_PATH: attribute discard.
            Some(p) if has_as0(&p) => return Err(Bad::Discard("AS 0 in AS4_PATH")),
            Some(p) => AttrValue::As4Path(p),
            None => return Err(Bad::Discard("malformed AS4_PATH")),
        },
        t::AS4_AGGREGATOR => match parse_aggregator(v, true) {
            Some(a) if a.asn == 0 => return Err(Bad::Discard("AS 0 in AS4_AGGREGATOR")),
            Some(a) => AttrValue::As4Aggregator(a),
            None => return Err(Bad::Discard("AS4_AGGREGATOR length not 8")),
        },
        t::LARGE_COMMUNITIES if non_zero_multiple(v, 12) => AttrValue::LargeCommunities(
            v.chunks_exact(12)
                .filter_map(|c| {
                    Some(LargeCommunity {
                        global_admin: u32_of(c.get(0..4)?)?,
                        local1: u32_of(c.get(4..8)?)?,
                        local2: u32_of(c.get(8..12)?)?,
                    })
                })
                .collect(),
        ),
        t::LARGE_COMMUNITIES => {
            return Err(Bad::Withdraw(
                "LARGE_COMMUNITY length not a non-zero multiple of 12",
            ));
        }
        _ => AttrValue::Unknown {
            type_code: code,
            data: v.to_vec(),
        },
    })
}

/// Attributes whose own error handling is "attribute discard" (RFC 7606
/// 7.6, 7.7; RFC 6793 section 6); a flags error on them is a discard too.
fn discard_type(code: u8) -> bool {
    matches!(
        code,
        t::ATOMIC_AGGREGATE | t::AGGREGATOR | t::AS4_PATH | t::AS4_AGGREGATOR
    )
}

fn collect_withdrawals(u: &Update, v4: &mut Vec<Nlri4>, v6: &mut Vec<Nlri6>) {
    v4.extend_from_slice(&u.withdrawn);
    v4.extend_from_slice(&u.nlri);
    for a in &u.attributes {
        let n = match &a.value {
            AttrValue::MpReach(m) => &m.nlri,
            AttrValue::MpUnreach(m) => &m.withdrawn,
            _ => continue,
        };
        match n {
            MpNlri::Ipv4(x) => v4.extend_from_slice(x),
            MpNlri::Ipv6(x) => v6.extend_from_slice(x),
            MpNlri::Raw(_) => {}
        }
    }
}

impl Update {
    /// Decode an UPDATE body (after the header) with RFC 7606 handling.
    pub fn decode_body(body: &[u8], ctx: &DecodeContext) -> Result<DecodedUpdate, DecodeError> {
        let malformed_list = || update_error(subcode::update::MALFORMED_ATTRIBUTE_LIST, Vec::new());
        // RFC 7606 section 4 / RFC 4271 6.3: lengths that overrun the message are a session reset.
        let (wlen, rest) = body.split_first_chunk::<2>().ok_or_else(malformed_list)?;
        let (wbytes, rest) = rest
            .split_at_checked(usize::from(u16::from_be_bytes(*wlen)))
            .ok_or_else(malformed_list)?;
        let (alen, rest) = rest.split_first_chunk::<2>().ok_or_else(malformed_list)?;
        let (abytes, nbytes) = rest
            .split_at_checked(usize::from(u16::from_be_bytes(*alen)))
            .ok_or_else(malformed_list)?;

        let invalid_network = || update_error(subcode::update::INVALID_NETWORK_FIELD, Vec::new());
        let mut withdrawn = Vec::new();
        // RFC 7606 section 5.3: a syntactically incorrect NLRI/withdrawn field is a session reset.
        parse_nlri4(wbytes, ctx.add_path_ipv4, &mut withdrawn).map_err(|_| invalid_network())?;
        let mut nlri = Vec::new();
        parse_nlri4(nbytes, ctx.add_path_ipv4, &mut nlri).map_err(|_| invalid_network())?;

        let mut attributes = Vec::with_capacity(8);
        let mut errors: Vec<AttrError> = Vec::new();
        let mut seen = [0u64; 4];
        let mut a = abytes;
        while !a.is_empty() {
            let start = a;
            let header = a.split_first_chunk::<2>().and_then(|(&[fl, code], rest)| {
                if fl & flags::EXTENDED_LENGTH != 0 {
                    let (l, rest) = rest.split_first_chunk::<2>()?;
                    Some((fl, code, usize::from(u16::from_be_bytes(*l)), rest))
                } else {
                    let (&l, rest) = rest.split_first()?;
                    Some((fl, code, usize::from(l), rest))
                }
            });
            let Some((fl, code, len, rest)) = header else {
                // RFC 7606 section 4: too few octets for an attribute header: treat-as-withdraw.
                errors.push(AttrError {
                    type_code: start.get(1).copied().unwrap_or(0),
                    action: Action::TreatAsWithdraw,
                    reason: "truncated attribute header",
                });
                break;
            };
            let Some((value, rest)) = rest.split_at_checked(len) else {
                // RFC 7606 section 4: attribute length overruns the attributes field.
                errors.push(AttrError {
                    type_code: code,
                    action: Action::TreatAsWithdraw,
                    reason: "attribute length overruns the attributes field",
                });
                break;
            };
            let raw = start.get(..start.len() - rest.len()).unwrap_or(start);
            a = rest;

            let word = usize::from(code / 64);
            let bit = 1u64 << (code % 64);
            let dup = seen.get(word).is_some_and(|w| w & bit != 0);
            if let Some(w) = seen.get_mut(word) {
                *w |= bit;
            }
            if dup {
                if code == t::MP_REACH_NLRI || code == t::MP_UNREACH_NLRI {
                    // RFC 7606 3(g): repeated MP_REACH/MP_UNREACH: Malformed Attribute List.
                    return Err(DecodeError::SessionReset(malformed_list()));
                }
                // RFC 7606 3(g): keep the first, discard the rest.
                errors.push(AttrError {
                    type_code: code,
                    action: Action::AttributeDiscard,
                    reason: "duplicate attribute",
                });
                continue;
            }

            let expected = expected_flags(code);
            if expected.is_none() && fl & flags::OPTIONAL == 0 {
                // RFC 4271 6.3 (unchanged by RFC 7606): unrecognized well-known attribute.
                return Err(DecodeError::SessionReset(update_error(
                    subcode::update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    raw.to_vec(),
                )));
            }
            let flags_ok = expected.is_none_or(|e| fl & flags::OPTIONAL_TRANSITIVE == e);
            match parse_value(code, value, ctx) {
                Ok(v) if flags_ok => attributes.push(PathAttribute {
                    flags: fl,
                    value: v,
                }),
                Ok(v) => {
                    // RFC 7606 3(c): flags conflict: treat-as-withdraw (discard for attributes whose spec says so).
                    let action = if discard_type(code) {
                        Action::AttributeDiscard
                    } else {
                        Action::TreatAsWithdraw
                    };
                    // Keep MP attributes in the remainder so their NLRI are withdrawn.
                    if matches!(v, AttrValue::MpReach(_) | AttrValue::MpUnreach(_)) {
                        attributes.push(PathAttribute {
                            flags: fl,
                            value: v,
                        });
                    }
                    errors.push(AttrError {
                        type_code: code,
                        action,
                        reason: "attribute flags conflict with type",
                    });
                }
                Err(Bad::Withdraw(reason)) => {
                    let action = if flags_ok || !discard_type(code) {
                        Action::TreatAsWithdraw
                    } else {
                        Action::AttributeDiscard
                    };
                    errors.push(AttrError {
                        type_code: code,
                        action,
                        reason,
                    });
                }
                Err(Bad::Discard(reason)) => {
                    errors.push(AttrError {
                        type_code: code,
                        action: Action::AttributeDiscard,
                        reason,
                    });
                }
                Err(Bad::Reset(sub)) => {
                    return Err(DecodeError::SessionReset(update_error(sub, raw.to_vec())));
                }
            }
        }

        let update = Update {
            withdrawn,
            attributes,
            nlri,
        };
        // RFC 7606 3(d): well-known mandatory attributes missing while NLRI are present.
        let has = |c: u8| update.attributes.iter().any(|a| a.type_code() == c);
        let mp_nlri = update.mp_reach().is_some_and(|m| !m.nlri.is_empty());
        let mut missing = Vec::new();
        if !update.nlri.is_empty() || mp_nlri {
            missing.extend([t::ORIGIN, t::AS_PATH]);
        }
        if !update.nlri.is_empty() {
            missing.push(t::NEXT_HOP);
        }
        // RFC 7606 7.3 / 7.11: a next hop that is no neighbour's unicast address.
        super::next_hop::next_hop_errors(&update, &mut errors);
        for c in missing {
            if !has(c) && !errors.iter().any(|e| e.type_code == c) {
                errors.push(AttrError {
                    type_code: c,
                    action: Action::TreatAsWithdraw,
                    reason: "missing well-known mandatory attribute",
                });
            }
        }

        if errors.iter().any(|e| e.action == Action::TreatAsWithdraw) {
            let mut ipv4 = Vec::new();
            let mut ipv6 = Vec::new();
            collect_withdrawals(&update, &mut ipv4, &mut ipv6);
            return Err(DecodeError::TreatAsWithdraw(Box::new(TreatAsWithdraw {
                ipv4,
                ipv6,
                errors,
                remainder: update,
            })));
        }
        Ok(DecodedUpdate {
            update,
            discarded: errors,
        })
    }

    /// Append the whole UPDATE message (header included), as
    /// [`Message::encode`](super::Message::encode) does, without wrapping
    /// it in a `Message` first.
    pub fn encode(
        &self,
        ctx: &DecodeContext,
        out: &mut Vec<u8>,
    ) -> Result<(), super::error::EncodeError> {
        self.check_add_path(ctx)?;
        let start = out.len();
        out.extend_from_slice(&super::header::MARKER);
        out.extend_from_slice(&[0, 0, super::header::MessageType::UPDATE.0]);
        self.encode_body(ctx, out);
        let len = out.len() - start;
        let max = ctx.max_message_len();
        if len > max {
            out.truncate(start);
            return Err(super::error::EncodeError::TooLong { len, max });
        }
        patch_u16(out, start + 16, len);
        Ok(())
    }

    /// Append the UPDATE body.
    pub fn encode_body(&self, ctx: &DecodeContext, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        for n in &self.withdrawn {
            super::prefix::emit_nlri4(n, out);
        }
        let wlen = out.len() - at - 2;
        patch_u16(out, at, wlen);
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        for a in &self.attributes {
            a.emit(ctx, out);
        }
        let alen = out.len() - at - 2;
        patch_u16(out, at, alen);
        for n in &self.nlri {
            super::prefix::emit_nlri4(n, out);
        }
    }

    /// Check that every NLRI entry carries a path identifier iff add-path
    /// is negotiated for its family in `ctx` (a mismatch would be garbage
    /// to the peer).
    pub fn check_add_path(&self, ctx: &DecodeContext) -> Result<(), super::error::EncodeError> {
        let v4 = ctx.add_path_ipv4;
        let bad4 = |v: &[Nlri4], want: bool| v.iter().any(|n| n.path_id.is_some() != want);
        let bad6 = |v: &[Nlri6], want: bool| v.iter().any(|n| n.path_id.is_some() != want);
        if bad4(&self.withdrawn, v4) || bad4(&self.nlri, v4) {
            return Err(super::error::EncodeError::AddPathMismatch(
                Family::IPV4_UNICAST,
            ));
        }
        for a in &self.attributes {
            let (family, n) = match &a.value {
                AttrValue::MpReach(m) => (m.family, &m.nlri),
                AttrValue::MpUnreach(m) => (m.family, &m.withdrawn),
                _ => continue,
            };
            let want = ctx.add_path(family);
            let bad = match n {
                MpNlri::Ipv4(v) => bad4(v, want),
                MpNlri::Ipv6(v) => bad6(v, want),
                MpNlri::Raw(_) => false,
            };
            if bad {
                return Err(super::error::EncodeError::AddPathMismatch(family));
            }
        }
        Ok(())
    }

    /// The End-of-RIB marker for `family` (RFC 4724 section 2): an empty
    /// UPDATE for IPv4 unicast, an empty MP_UNREACH_NLRI otherwise.
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            return Update::default();
        }
        let withdrawn = match prefix_family(family) {
            Some(Afi::IPV4) => MpNlri::Ipv4(Vec::new()),
            Some(_) => MpNlri::Ipv6(Vec::new()),
            None => MpNlri::Raw(Vec::new()),
        };
        Update {
            attributes: vec![PathAttribute::new(AttrValue::MpUnreach(MpUnreach {
                family,
                withdrawn,
            }))],
            ..Update::default()
        }
    }

    /// If this UPDATE is an End-of-RIB marker, its family.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        match self.attributes.as_slice() {
            [] => Some(Family::IPV4_UNICAST),
            [
                PathAttribute {
                    value: AttrValue::MpUnreach(m),
                    ..
                },
            ] if m.withdrawn.is_empty() => Some(m.family),
            _ => None,
        }
    }

    /// The first attribute with this type code.
    pub fn attribute(&self, type_code: u8) -> Option<&PathAttribute> {
        self.attributes.iter().find(|a| a.type_code() == type_code)
    }

    /// MP_REACH_NLRI, if present.
    pub fn mp_reach(&self) -> Option<&MpReach> {
        self.attributes.iter().find_map(|a| match &a.value {
            AttrValue::MpReach(m) => Some(m),
            _ => None,
        })
    }

    /// MP_UNREACH_NLRI, if present.
    pub fn mp_unreach(&self) -> Option<&MpUnreach> {
        self.attributes.iter().find_map(|a| match &a.value {
            AttrValue::MpUnreach(m) => Some(m),
            _ => None,
        })
    }

    /// ORIGIN, if present.
    pub fn origin(&self) -> Option<Origin> {
        self.attributes.iter().find_map(|a| match a.value {
            AttrValue::Origin(o) => Some(o),
            _ => None,
        })
    }

    /// AS_PATH, if present.
    pub fn as_path(&self) -> Option<&AsPath> {
        self.attributes.iter().find_map(|a| match &a.value {
            AttrValue::AsPath(p) => Some(p),
            _ => None,
        })
    }

    /// NEXT_HOP, if present.
    pub fn next_hop(&self) -> Option<Ipv4Addr> {
        self.attributes.iter().find_map(|a| match a.value {
            AttrValue::NextHop(n) => Some(n),
            _ => None,
        })
    }

    /// The attributes that describe the path itself (all but MP_REACH /
    /// MP_UNREACH): the part a RIB can share between prefixes.
    pub fn path_attributes(&self) -> impl Iterator<Item = &PathAttribute> {
        self.attributes
            .iter()
            .filter(|a| !matches!(a.value, AttrValue::MpReach(_) | AttrValue::MpUnreach(_)))
    }

    /// RFC 6793 merge of AS_PATH/AS4_PATH and AGGREGATOR/AS4_AGGREGATOR for
    /// an update received with `ctx` (no-op on 4-octet sessions).
    pub fn effective_as_path(&self, ctx: &DecodeContext) -> (AsPath, Option<Aggregator>) {
        let path = self.as_path().cloned().unwrap_or_default();
        let agg = self.attributes.iter().find_map(|a| match a.value {
            AttrValue::Aggregator(g) => Some(g),
            _ => None,
        });
        if ctx.four_octet_as {
            return (path, agg);
        }
        let as4 = self.attributes.iter().find_map(|a| match &a.value {
            AttrValue::As4Path(p) => Some(p),
            _ => None,
        });
        let as4_agg = self.attributes.iter().find_map(|a| match a.value {
            AttrValue::As4Aggregator(g) => Some(g),
            _ => None,
        });
        super::attr::merge_as4(&path, as4, agg, as4_agg)
    }
}

pub(crate) fn patch_u16(out: &mut [u8], at: usize, value: usize) {
    let v = u16::try_from(value).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(d) = out.get_mut(at..at + 2) {
        d.copy_from_slice(&v);
    }
}
