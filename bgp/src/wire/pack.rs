//! Packing many prefixes that share one attribute set into as few UPDATEs
//! as fit the negotiated maximum message size, splitting exactly at the
//! boundary (an UPDATE is filled while the next prefix still fits).

use super::attr::{AttrValue, MpNextHop, MpNlri, MpReach, MpUnreach, PathAttribute, flags};
use super::error::EncodeError;
use super::family::{EncodeContext, Family};
use super::header::HEADER_LEN;
use super::prefix::{Nlri4, Nlri6, nlri4_len, nlri6_len};
use super::update::Update;

/// Octets of an UPDATE carrying `attrs` and no NLRI: header, the two
/// length fields and the attributes.
pub fn update_overhead(attrs: &[PathAttribute], ctx: &EncodeContext) -> usize {
    HEADER_LEN + 4 + attrs.iter().map(|a| a.wire_len(ctx)).sum::<usize>()
}

/// Split `items` into runs whose encoded sizes sum to at most `budget`.
fn chunks<T>(
    items: &[T],
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> Result<Vec<&[T]>, EncodeError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, it) in items.iter().enumerate() {
        let s = size(it);
        if s > budget {
            return Err(EncodeError::AttributesTooLarge(budget));
        }
        if used + s > budget {
            out.push(items.get(start..i).unwrap_or_default());
            start = i;
            used = 0;
        }
        used += s;
    }
    if start < items.len() {
        out.push(items.get(start..).unwrap_or_default());
    }
    Ok(out)
}

fn budget(ctx: &EncodeContext, overhead: usize) -> Result<usize, EncodeError> {
    ctx.max_message_len()
        .checked_sub(overhead)
        .filter(|b| *b >= 1)
        .ok_or(EncodeError::AttributesTooLarge(overhead))
}

/// Announce IPv4 unicast prefixes in the NLRI field. `attrs` must include
/// ORIGIN, AS_PATH and NEXT_HOP (not checked). Path ids are written iff set.
pub fn pack_ipv4(
    attrs: &[PathAttribute],
    nlri: &[Nlri4],
    ctx: &EncodeContext,
) -> Result<Vec<Update>, EncodeError> {
    let b = budget(ctx, update_overhead(attrs, ctx))?;
    Ok(chunks(nlri, b, nlri4_len)?
        .into_iter()
        .map(|c| Update {
            withdrawn: Vec::new(),
            attributes: attrs.to_vec(),
            nlri: c.to_vec(),
        })
        .collect())
}

/// Withdraw IPv4 unicast prefixes via the withdrawn routes field.
pub fn pack_withdraw_ipv4(nlri: &[Nlri4], ctx: &EncodeContext) -> Result<Vec<Update>, EncodeError> {
    let b = budget(ctx, HEADER_LEN + 4)?;
    Ok(chunks(nlri, b, nlri4_len)?
        .into_iter()
        .map(|c| Update {
            withdrawn: c.to_vec(),
            ..Update::default()
        })
        .collect())
}

/// MP attribute header (flags, type, 2-octet length) + AFI/SAFI.
const MP_FIXED: usize = 4 + 3;

fn mp_chunks(nlri: &MpNlri, b: usize) -> Result<Vec<MpNlri>, EncodeError> {
    Ok(match nlri {
        MpNlri::Ipv4(v) => chunks(v, b, nlri4_len)?
            .into_iter()
            .map(|c| MpNlri::Ipv4(c.to_vec()))
            .collect(),
        MpNlri::Ipv6(v) => chunks(v, b, nlri6_len)?
            .into_iter()
            .map(|c| MpNlri::Ipv6(c.to_vec()))
            .collect(),
        MpNlri::Raw(v) if v.len() <= b => vec![MpNlri::Raw(v.clone())],
        MpNlri::Raw(_) => return Err(EncodeError::AttributesTooLarge(b)),
    })
}

/// Announce prefixes of `family` in MP_REACH_NLRI (IPv6, or IPv4 with an
/// IPv6 next hop per RFC 8950). MP_REACH_NLRI goes first (RFC 7606 5.1),
/// then `attrs` (which must not contain MP attributes or NEXT_HOP).
pub fn pack_mp(
    attrs: &[PathAttribute],
    family: Family,
    next_hop: &MpNextHop,
    nlri: &MpNlri,
    ctx: &EncodeContext,
) -> Result<Vec<Update>, EncodeError> {
    let nh_len = match next_hop {
        MpNextHop::Ipv4(_) => 4,
        MpNextHop::Ipv6 {
            link_local: None, ..
        } => 16,
        MpNextHop::Ipv6 { .. } => 32,
        MpNextHop::Raw(v) => v.len(),
    };
    let b = budget(ctx, update_overhead(attrs, ctx) + MP_FIXED + 1 + nh_len + 1)?;
    Ok(mp_chunks(nlri, b)?
        .into_iter()
        .map(|n| {
            let mut attributes = Vec::with_capacity(attrs.len() + 1);
            attributes.push(PathAttribute {
                flags: flags::OPTIONAL_NON_TRANSITIVE | flags::EXTENDED_LENGTH,
                value: AttrValue::MpReach(MpReach {
                    family,
                    next_hop: next_hop.clone(),
                    reserved: 0,
                    nlri: n,
                }),
            });
            attributes.extend_from_slice(attrs);
            Update {
                attributes,
                ..Update::default()
            }
        })
        .collect())
}

/// Withdraw prefixes of `family` via MP_UNREACH_NLRI.
pub fn pack_withdraw_mp(
    family: Family,
    nlri: &MpNlri,
    ctx: &EncodeContext,
) -> Result<Vec<Update>, EncodeError> {
    let b = budget(ctx, HEADER_LEN + 4 + MP_FIXED)?;
    Ok(mp_chunks(nlri, b)?
        .into_iter()
        .map(|n| Update {
            attributes: vec![PathAttribute {
                flags: flags::OPTIONAL_NON_TRANSITIVE | flags::EXTENDED_LENGTH,
                value: AttrValue::MpUnreach(MpUnreach {
                    family,
                    withdrawn: n,
                }),
            }],
            ..Update::default()
        })
        .collect())
}

/// IPv6 convenience over [`pack_mp`].
pub fn pack_ipv6(
    attrs: &[PathAttribute],
    next_hop: &MpNextHop,
    nlri: &[Nlri6],
    ctx: &EncodeContext,
) -> Result<Vec<Update>, EncodeError> {
    pack_mp(
        attrs,
        Family::IPV6_UNICAST,
        next_hop,
        &MpNlri::Ipv6(nlri.to_vec()),
        ctx,
    )
}
