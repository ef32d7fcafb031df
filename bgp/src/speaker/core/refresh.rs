//! Route refresh (RFC 2918) and enhanced route refresh (RFC 7313): answer a
//! peer's request (wrapped in BoRR .. EoRR when enhanced), mark its routes
//! stale on its BoRR and sweep them at its EoRR, or at the stale deadline
//! when the EoRR never comes.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::rib::PeerId;
use crate::wire::{ErrorCode, Family, Notification, RouteRefresh, subcode};

use super::gr::DEFAULT_STALE_TIME;
use super::{Action, Core, CoreError, PeerCommand};

impl Core {
    /// The peer asked us to resend `family`.
    pub(super) fn route_refresh(&mut self, peer: IpAddr, family: Family) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let id = p.id;
        tracing::info!(%peer, %family, "peer asked for a route refresh");
        // RFC 7313: wrap the re-advertisement in BoRR .. EoRR.
        let enhanced = p
            .negotiated
            .as_ref()
            .is_some_and(|n| n.enhanced_route_refresh);
        if enhanced {
            self.actions.push_back(Action::Peer(
                peer,
                PeerCommand::Demarcation(family, RouteRefresh::BORR),
            ));
        }
        if let Ok(ch) = self.rib.resend(id, family) {
            self.apply(ch);
        }
        if enhanced {
            self.eorr.push((id, family));
        }
    }

    /// The peer's BoRR or EoRR.
    pub(super) fn demarcation(&mut self, peer: IpAddr, family: Family, subtype: u8, now: Instant) {
        let Some(id) = self.peers.get(&peer).map(|p| p.id) else {
            return;
        };
        if subtype == RouteRefresh::BORR {
            // Everything not re-sent before EoRR is gone.
            let n = self.rib.mark_stale(id, family);
            tracing::debug!(%peer, %family, marked = n, "BoRR");
            // RFC 7313 4: a peer that never sends EoRR must not pin stale
            // routes forever: sweep them after the stale time (on_timeout),
            // unless an earlier deadline is pending.
            if let Some(p) = self.peers.get_mut(&peer)
                && p.stale_deadline.is_none()
            {
                let stale_time = p
                    .cfg
                    .graceful_restart
                    .as_ref()
                    .map_or(DEFAULT_STALE_TIME, |g| g.stale_time);
                p.stale_deadline = Some(now + stale_time);
            }
        } else if subtype == RouteRefresh::EORR {
            let ch = self.rib.sweep_stale(id, family);
            tracing::debug!(%peer, %family, swept = ch.loc_rib.len(), "EoRR");
            self.after_eor(peer);
            self.apply(ch);
        }
    }

    /// Asks the peer to resend `fam`; a peer without route refresh gets its
    /// session reset instead (the only way to apply a new import policy).
    pub(super) fn send_refresh(&mut self, id: PeerId, fam: Family) {
        let Some(ip) = self.addr_of(id) else { return };
        let Some(p) = self.peers.get(&ip) else { return };
        match &p.negotiated {
            Some(n) if n.route_refresh || n.enhanced_route_refresh => {
                self.actions
                    .push_back(Action::Peer(ip, PeerCommand::RouteRefresh(fam)));
            }
            Some(_) => {
                tracing::warn!(peer = %ip, "peer does not support route refresh: resetting the session to apply the import policy");
                let n = Notification::new(
                    ErrorCode::CEASE,
                    subcode::cease::OTHER_CONFIGURATION_CHANGE,
                    Vec::new(),
                );
                self.actions.push_back(Action::Peer(
                    ip,
                    PeerCommand::LocalError {
                        notification: n,
                        restart_after: Some(Duration::from_secs(1)),
                    },
                ));
            }
            None => {}
        }
    }

    /// Soft reset inbound: a refresh of every negotiated family.
    pub(super) fn soft_reset_in(&mut self, ip: IpAddr) -> Result<(), CoreError> {
        let Some(p) = self.peers.get(&ip) else {
            return Err(CoreError::NoPeer(ip));
        };
        let fams = p
            .negotiated
            .as_ref()
            .map(|n| n.families.clone())
            .unwrap_or_default();
        let id = p.id;
        for f in fams {
            self.send_refresh(id, f);
        }
        Ok(())
    }
}
