//! Maximum prefixes per peer and family: a warning at a threshold, and past
//! the limit a Cease / Maximum Number of Prefixes Reached NOTIFICATION
//! (RFC 4486) with an optional restart after an interval, or in warning-only
//! mode a log line and nothing else.

use std::net::IpAddr;

use crate::fsm::State;
use crate::wire::{ErrorCode, Family, Notification, subcode};

use super::{Action, Core, PeerCommand};

/// RFC 4486 section 4 data of Cease subcode 1: AFI (2 octets), SAFI (1),
/// the prefix upper bound (4; saturates at `u32::MAX`).
pub fn cease_data(family: Family, limit: usize) -> Vec<u8> {
    let mut data = family.afi.0.to_be_bytes().to_vec();
    data.push(family.safi.0);
    data.extend_from_slice(&u32::try_from(limit).unwrap_or(u32::MAX).to_be_bytes());
    data
}

impl Core {
    /// After each UPDATE from `peer`: warn once per family at the
    /// threshold, and reset the session past the limit.
    pub(super) fn check_max_prefix(&mut self, peer: IpAddr) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.state != State::Established {
            return;
        }
        let mut exceeded = None;
        for mp in &p.cfg.max_prefix {
            let count = self.rib.counts(p.id, mp.family).received;
            let warn_at = mp.limit * usize::from(mp.warning_percent) / 100;
            if count >= warn_at && count <= mp.limit && p.warned.insert(mp.family) {
                tracing::warn!(%peer, family = %mp.family, count, limit = mp.limit, "max-prefix warning threshold reached");
            }
            if count > mp.limit {
                if !mp.warning_only {
                    exceeded = Some(mp.clone());
                } else if p.over_limit.insert(mp.family) {
                    tracing::warn!(%peer, family = %mp.family, count, limit = mp.limit, "max-prefix exceeded (warning only): keeping the session");
                }
            }
        }
        if let Some(mp) = exceeded {
            tracing::error!(%peer, family = %mp.family, limit = mp.limit, "max-prefix exceeded: sending Cease/1");
            p.max_prefix_resets += 1;
            p.state = State::Idle;
            let n = Notification::new(
                ErrorCode::CEASE,
                subcode::cease::MAX_PREFIXES,
                cease_data(mp.family, mp.limit),
            );
            self.actions.push_back(Action::Peer(
                peer,
                PeerCommand::LocalError {
                    notification: n,
                    restart_after: mp.restart_interval,
                },
            ));
        }
    }
}
