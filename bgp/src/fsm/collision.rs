//! Connection collision detection (RFC 4271 section 6.8, RFC 6286 section 2.3)
//! as a pure decision. The driver calls it when an OPEN arrives on one
//! connection while another connection to the same peer exists.

use std::net::Ipv4Addr;

/// Who opened a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "speaker", derive(serde::Serialize))]
pub enum Direction {
    /// We connected to the peer.
    Outbound,
    /// The peer connected to us.
    Inbound,
}

/// State of the connection that already exists when a second one gets an OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingState {
    /// OpenSent without the peer's identifier yet: no collision can be decided;
    /// both go on until one gets an OPEN.
    OpenSentNoId,
    /// OpenSent/OpenConfirm, identifier known.
    OpenConfirm,
    /// Established.
    Established,
}

/// Which connection survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Keep both for now (no identifier to compare yet).
    KeepBoth,
    /// Close the existing connection (Cease/7), keep the new one.
    CloseExisting,
    /// Close the new connection (Cease/7), keep the existing one.
    CloseNew,
}

/// Decides a collision between an existing connection (direction `existing`,
/// state `state`) and a new one on which the peer's OPEN just arrived.
///
/// RFC 4271: if the local identifier is lower than the remote one, keep the
/// connection the remote initiated; otherwise keep ours. RFC 6286: when the
/// identifiers are equal (allowed between ASes), the side with the larger AS
/// number keeps the connection it initiated. An Established session always
/// wins over a new connection (we do not configure collision detection in
/// Established).
pub fn resolve(
    local_id: Ipv4Addr,
    local_as: u32,
    remote_id: Ipv4Addr,
    remote_as: u32,
    existing: Direction,
    state: ExistingState,
) -> Resolution {
    match state {
        ExistingState::Established => return Resolution::CloseNew,
        ExistingState::OpenSentNoId => return Resolution::KeepBoth,
        ExistingState::OpenConfirm => {}
    }
    let keep = keep_direction(local_id, local_as, remote_id, remote_as);
    if keep == existing {
        Resolution::CloseNew
    } else {
        Resolution::CloseExisting
    }
}

/// The direction of the connection that survives a collision.
pub fn keep_direction(
    local_id: Ipv4Addr,
    local_as: u32,
    remote_id: Ipv4Addr,
    remote_as: u32,
) -> Direction {
    let (l, r) = (u32::from(local_id), u32::from(remote_id));
    let local_wins = if l != r { l > r } else { local_as > remote_as };
    if local_wins {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}
