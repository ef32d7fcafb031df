//! Read-only views of the core for the API: peer status, the Loc-RIB, stats.

use std::net::IpAddr;
use std::time::Instant;

use crate::fsm::State;
use crate::rib::{Attrs, PeerId};
use crate::wire::{MpNextHop, Prefix};

use super::{Core, CoreError, FAMILIES};

/// Which side of a peer's Adj-RIB to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjRib {
    /// Received from the peer.
    In,
    /// Advertised to the peer.
    Out,
}
use crate::speaker::{FamilyPrefixes, PathInfo, PathSource, PeerStatus, RibEntry, Stats};

fn next_hop_ip(nh: &Option<MpNextHop>) -> Option<IpAddr> {
    match nh {
        Some(MpNextHop::Ipv4(a)) if a.is_unspecified() => None,
        Some(MpNextHop::Ipv4(a)) => Some(IpAddr::V4(*a)),
        Some(MpNextHop::Ipv6 { global, link_local }) => {
            if global.is_unspecified() {
                link_local.map(IpAddr::V6).filter(|a| !a.is_unspecified())
            } else {
                Some(IpAddr::V6(*global))
            }
        }
        _ => None,
    }
}

impl Core {
    /// Every peer, by address; `now` gives the uptimes.
    pub fn peer_status(&self, now: Instant) -> Vec<PeerStatus> {
        let mut v: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(ip, p)| {
                let c: Vec<_> = FAMILIES.iter().map(|f| self.rib.counts(p.id, *f)).collect();
                PeerStatus {
                    address: *ip,
                    remote_as: p.cfg.remote_as,
                    state: p.state,
                    uptime_secs: p
                        .up_since
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                    capabilities: p
                        .negotiated
                        .as_ref()
                        .map(|n| n.capability_names())
                        .unwrap_or_default(),
                    hold_time: p.negotiated.as_ref().map(|n| n.hold_time),
                    peer_restart_time: p
                        .negotiated
                        .as_ref()
                        .and_then(|n| n.graceful_restart.as_ref().map(|g| g.restart_time)),
                    prefixes_received: c.iter().map(|x| x.received).sum(),
                    prefixes_accepted: c.iter().map(|x| x.accepted).sum(),
                    prefixes_advertised: c.iter().map(|x| x.advertised).sum(),
                    stale_paths: c.iter().map(|x| x.stale).sum(),
                    last_error: p.last_error.clone(),
                    next_attempt_ms: p
                        .next_attempt
                        .filter(|_| p.state == State::Idle)
                        .map(|t| t.saturating_duration_since(now).as_millis() as u64),
                    consecutive_errors: p.damped_errors,
                    max_prefix_resets: p.max_prefix_resets,
                    updates_in: p.updates_in,
                    updates_out: p.updates_out,
                    families: FAMILIES
                        .iter()
                        .zip(&c)
                        .map(|(f, x)| FamilyPrefixes {
                            family: f.to_string(),
                            received: x.received,
                            accepted: x.accepted,
                            advertised: x.advertised,
                        })
                        .collect(),
                    negotiated_families: p
                        .negotiated
                        .as_ref()
                        .map(|n| n.families.iter().map(|f| f.to_string()).collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        v.sort_by_key(|p| p.address);
        v
    }

    /// Loc-RIB size and peers, without walking the RIB.
    pub fn stats(&self, now: Instant) -> Stats {
        Stats {
            loc_rib_len: self.rib.loc_rib_len(),
            peers: self.peer_status(now),
        }
    }

    /// The Loc-RIB, prefixes in order, best path first.
    pub fn rib_entries(&self) -> Vec<RibEntry> {
        let mut prefixes: Vec<Prefix> = self.rib.loc_rib().into_iter().map(|(p, _)| p).collect();
        prefixes.sort();
        prefixes
            .into_iter()
            .map(|pr| {
                let mut paths: Vec<PathInfo> = self
                    .rib
                    .routes(&pr)
                    .into_iter()
                    .filter_map(|r| {
                        r.post
                            .map(|a| self.path_info(r.peer, &a, r.stale, r.best, r.multipath))
                    })
                    .collect();
                paths.sort_by_key(|p| (!p.best, !p.multipath));
                RibEntry { prefix: pr, paths }
            })
            .collect()
    }

    /// One peer's Adj-RIB: what it sent us (before import policy, with the
    /// Loc-RIB's best/multipath marks on what was accepted) or what we send
    /// it (after export policy). Prefixes in order, one path each.
    pub fn adj_rib(&self, peer: IpAddr, dir: AdjRib) -> Result<Vec<RibEntry>, CoreError> {
        let ip = super::normalize(peer);
        let id = self.peers.get(&ip).ok_or(CoreError::NoPeer(ip))?.id;
        let rows = match dir {
            AdjRib::In => self.rib.adj_rib_in_pre(id),
            AdjRib::Out => self.rib.adj_rib_out(id),
        };
        Ok(rows
            .into_iter()
            .map(|(prefix, a)| {
                let path = match dir {
                    AdjRib::In => {
                        let r = self.rib.routes(&prefix).into_iter().find(|r| r.peer == id);
                        let (best, multipath, stale) =
                            r.map_or((false, false, false), |r| (r.best, r.multipath, r.stale));
                        self.path_info(id, &a, stale, best, multipath)
                    }
                    AdjRib::Out => self.path_info(PeerId::LOCAL, &a, false, false, false),
                };
                RibEntry {
                    prefix,
                    paths: vec![path],
                }
            })
            .collect())
    }

    pub(super) fn path_info(
        &self,
        peer: PeerId,
        a: &Attrs,
        stale: bool,
        best: bool,
        multipath: bool,
    ) -> PathInfo {
        PathInfo {
            source: if peer == PeerId::LOCAL {
                PathSource::Local
            } else {
                self.addr_of(peer)
                    .map_or(PathSource::Unknown(peer), PathSource::Peer)
            },
            next_hop: next_hop_ip(&a.next_hop),
            as_path: a
                .as_path
                .segments
                .iter()
                .flat_map(|s| s.asns.iter().copied())
                .collect(),
            local_pref: a.local_pref_or_default(),
            med: a.med.unwrap_or(0),
            stale,
            best,
            multipath,
        }
    }
}
