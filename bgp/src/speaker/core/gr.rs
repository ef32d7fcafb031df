//! Graceful restart as the helper (RFC 4724, RFC 8538): keep a restarting
//! peer's routes as stale, sweep what it did not preserve or refresh, and
//! sweep everything left when its stale deadline passes. Peer up/down
//! handling lives here because it is where the stale state is decided.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::fsm::{DownReason, Negotiated, State};
use crate::rib::{Changes, PeerInfo};
use crate::wire::Family;

use super::{Core, FAMILIES, merge, normalize};

/// RFC 4724 suggests a stale time well above the restart time; used when a
/// peer has no graceful-restart configuration of its own.
pub(super) const DEFAULT_STALE_TIME: Duration = Duration::from_secs(360);

impl Core {
    pub(super) fn peer_down(
        &mut self,
        peer: IpAddr,
        reason: DownReason,
        was_established: bool,
        now: Instant,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !matches!(reason, DownReason::ManualStop) {
            p.last_error = Some(reason.to_string());
        }
        if !was_established {
            self.changed = true;
            return;
        }
        let id = p.id;
        let gr = p.negotiated.take().and_then(|n| n.graceful_restart);
        p.up_since = None;
        let retain: Vec<Family> = match &gr {
            Some(g) if reason.keeps_routes(g.notification) && g.restart_time > 0 => g
                .families
                .iter()
                .map(|(f, _)| *f)
                .filter(|f| FAMILIES.contains(f))
                .collect(),
            _ => Vec::new(),
        };
        if let (false, Some(g)) = (retain.is_empty(), &gr) {
            tracing::info!(%peer, restart_time = g.restart_time, "graceful restart: keeping routes as stale");
            p.stale_deadline = Some(now + Duration::from_secs(u64::from(g.restart_time)));
        } else {
            p.stale_deadline = None;
        }
        let ch = self.rib.peer_down(id, &retain);
        self.apply(ch);
    }

    pub(super) fn peer_up(
        &mut self,
        peer: IpAddr,
        n: Negotiated,
        local: SocketAddr,
        connected: Vec<crate::rib::Subnet>,
        now: Instant,
    ) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let id = p.id;
        let import = self.resolve(p.cfg.import_policy.as_deref(), peer, "import");
        let export = self.resolve(p.cfg.export_policy.as_deref(), peer, "export");
        let mut info = PeerInfo::new(self.asn, p.cfg.remote_as, n.remote_id, peer);
        info.families = n.families.clone();
        info.import = import;
        info.export = export;
        info.decode = n.decode_context();
        info.encode = n.encode_context();
        info.keep_rejected = p.cfg.soft_reconfiguration_inbound;
        info.log_import_rejects = p.cfg.log_import_rejects;
        let lip = normalize(local.ip());
        info.local_address = Some(lip);
        info.connected = connected;
        info.local_v4 = p.cfg.next_hop_ipv4.or(match lip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        });
        match lip {
            IpAddr::V6(a) if a.is_unicast_link_local() => {
                info.local_v6_link_local = Some(a);
                // A link-local-only session: the link-local is also the global next hop.
                info.local_v6 = Some(p.cfg.next_hop_ipv6.unwrap_or(a));
            }
            IpAddr::V6(a) => info.local_v6 = Some(p.cfg.next_hop_ipv6.unwrap_or(a)),
            IpAddr::V4(_) => info.local_v6 = p.cfg.next_hop_ipv6,
        }
        let stale_time = p
            .cfg
            .graceful_restart
            .as_ref()
            .map_or(DEFAULT_STALE_TIME, |g| g.stale_time);
        let had_stale = p.stale_deadline.is_some();
        // RFC 4724 4.2: families the restarted peer did not preserve (no F bit) are swept now.
        let preserved: Vec<Family> = n
            .graceful_restart
            .as_ref()
            .map(|g| {
                g.families
                    .iter()
                    .filter(|(f, fwd)| *fwd && FAMILIES.contains(f))
                    .map(|(f, _)| *f)
                    .collect()
            })
            .unwrap_or_default();
        let mut all = self.rib.peer_up(id, info);
        if had_stale {
            for f in FAMILIES {
                if !preserved.contains(&f) {
                    merge(&mut all, self.rib.sweep_stale(id, f));
                }
            }
        }
        self.deferral_peer_up(peer, &n);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.state = State::Established;
            p.up_since = Some(now);
            p.negotiated = Some(n);
            p.stale_deadline = if had_stale && !preserved.is_empty() {
                Some(now + stale_time)
            } else {
                None
            };
            p.warned.clear();
            p.over_limit.clear();
        }
        self.apply(all);
    }

    /// End-of-RIB (or EoRR): once nothing is stale, the deadline is moot.
    pub(super) fn after_eor(&mut self, peer: IpAddr) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let left: usize = FAMILIES
            .iter()
            .map(|f| self.rib.counts(p.id, *f).stale)
            .sum();
        if left == 0 {
            p.stale_deadline = None;
        }
    }

    /// Sweeps the stale routes of every peer whose deadline has passed.
    pub(super) fn on_timeout(&mut self, now: Instant) {
        let expired: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.stale_deadline.is_some_and(|d| d <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in expired {
            tracing::warn!(peer = %ip, "stale timer expired (graceful restart or enhanced route refresh without EoRR): sweeping stale routes");
            let Some(p) = self.peers.get_mut(&ip) else {
                continue;
            };
            p.stale_deadline = None;
            let id = p.id;
            let mut all = Changes::default();
            for f in FAMILIES {
                merge(&mut all, self.rib.sweep_stale(id, f));
            }
            self.apply(all);
        }
    }
}
