//! RFC 4724 §4.1 selection deferral while this speaker is the restarting
//! one: UPDATEs to peers (and so our End-of-RIB) and best-path events to
//! subscribers are held until every graceful-restart peer has sent its
//! End-of-RIB for every family it negotiated, or until the deferral limit.
//! The forwarding state a subscriber (the FIB) kept across the restart is
//! then replaced once, by the full selection, instead of by a partial one
//! while routes are still arriving.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::fsm::Negotiated;
use crate::wire::Family;

use super::{Action, Core, FAMILIES};

/// The deferral in progress.
pub(super) struct Deferral {
    /// Selection runs at this time at the latest.
    until: Instant,
    /// Families whose End-of-RIB each peer (that came up) still owes.
    awaiting: HashMap<IpAddr, Vec<Family>>,
    /// Peers that owe nothing more (sent every End-of-RIB, or negotiated
    /// no graceful restart and so are not waited for).
    done: HashSet<IpAddr>,
    /// Best-path events held for subscribers, in order.
    pub(super) held: Vec<Action>,
}

impl Core {
    /// Starts deferring route selection (we are restarting): called once
    /// before the peers come up; the limit bounds the wait (RFC 4724 §4.1's
    /// "selection_deferral_timer").
    pub fn defer_selection(&mut self, now: Instant, limit: Duration) {
        self.deferral = Some(Deferral {
            until: now + limit,
            awaiting: HashMap::new(),
            done: HashSet::new(),
            held: Vec::new(),
        });
    }

    /// Whether selection is still deferred.
    pub fn deferring(&self) -> bool {
        self.deferral.is_some()
    }

    pub(super) fn deferral_deadline(&self) -> Option<Instant> {
        self.deferral.as_ref().map(|d| d.until)
    }

    /// A peer came up: which End-of-RIBs it owes.
    pub(super) fn deferral_peer_up(&mut self, peer: IpAddr, n: &Negotiated) {
        let Some(d) = self.deferral.as_mut() else {
            return;
        };
        if n.graceful_restart.is_none() {
            // Not graceful-restart capable: RFC 4724 waits only for those that are.
            d.done.insert(peer);
        } else {
            let owed: Vec<Family> = n
                .families
                .iter()
                .copied()
                .filter(|f| FAMILIES.contains(f))
                .collect();
            if owed.is_empty() {
                d.done.insert(peer);
            } else {
                d.done.remove(&peer);
                d.awaiting.insert(peer, owed);
            }
        }
        self.check_deferral();
    }

    /// The peer sent End-of-RIB for `family`.
    pub(super) fn deferral_eor(&mut self, peer: IpAddr, family: Family) {
        let Some(d) = self.deferral.as_mut() else {
            return;
        };
        if let Some(owed) = d.awaiting.get_mut(&peer) {
            owed.retain(|f| *f != family);
            if owed.is_empty() {
                d.awaiting.remove(&peer);
                d.done.insert(peer);
            }
        }
        self.check_deferral();
    }

    /// The limit passed: select with what arrived.
    pub(super) fn deferral_timeout(&mut self, now: Instant) {
        if self.deferral.as_ref().is_some_and(|d| d.until <= now) {
            tracing::warn!("selection deferral limit reached before every End-of-RIB");
            self.end_deferral();
        }
    }

    /// Ends the deferral once every configured graceful-restart peer is done
    /// (a peer removed from the configuration is no longer waited for).
    pub(super) fn check_deferral(&mut self) {
        let Some(d) = self.deferral.as_ref() else {
            return;
        };
        let all = self
            .peers
            .iter()
            .filter(|(_, p)| p.cfg.graceful_restart.is_some())
            .all(|(ip, _)| d.done.contains(ip));
        if all {
            tracing::info!("End-of-RIB from every peer: running route selection");
            self.end_deferral();
        }
    }

    fn end_deferral(&mut self) {
        if let Some(d) = self.deferral.take() {
            self.actions.extend(d.held);
            self.actions.push_back(Action::SelectionDone);
            self.changed = true;
        }
    }
}
