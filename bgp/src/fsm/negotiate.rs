//! Capability negotiation: what we offer, what the peer offered, and the
//! intersection both sides must honour for the rest of the session.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::{
    AddPathFamily, AddPathMode, Capability, ExtendedNextHop, GracefulRestart,
    GracefulRestartFamily, Open,
};
use crate::wire::{Afi, DecodeContext, Family, Safi};

/// Graceful restart settings we announce (RFC 4724).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGracefulRestart {
    /// How long the peer should keep our routes after a session loss.
    pub restart_time: u16,
    /// Set the Restart State bit: we are coming back from a restart (the
    /// driver knows this from its state file).
    pub restarting: bool,
    /// We preserved forwarding state across the restart (per family).
    pub forwarding: bool,
    /// Announce the N bit (RFC 8538): notifications other than Hard Reset
    /// also keep routes.
    pub notification: bool,
}

/// What we put in our OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCapabilities {
    /// Multiprotocol families (IPv4 and/or IPv6 unicast).
    pub families: Vec<Family>,
    /// Route refresh (RFC 2918).
    pub route_refresh: bool,
    /// Enhanced route refresh (RFC 7313).
    pub enhanced_route_refresh: bool,
    /// Extended next hop for IPv4 unicast over IPv6 next hops (RFC 8950).
    pub extended_next_hop: bool,
    /// Extended message (RFC 8654).
    pub extended_message: bool,
    /// Graceful restart; `None` to not announce it.
    pub graceful_restart: Option<LocalGracefulRestart>,
    /// Add-path modes per family (RFC 7911).
    pub add_path: Vec<(Family, AddPathMode)>,
}

impl Default for LocalCapabilities {
    fn default() -> Self {
        LocalCapabilities {
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            route_refresh: true,
            enhanced_route_refresh: true,
            extended_next_hop: false,
            extended_message: true,
            graceful_restart: None,
            add_path: Vec::new(),
        }
    }
}

impl LocalCapabilities {
    /// The capability list for our OPEN. 4-octet AS is always announced.
    pub fn to_capabilities(&self, local_as: u32) -> Vec<Capability> {
        let mut caps: Vec<Capability> = self
            .families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        if self.route_refresh {
            caps.push(Capability::RouteRefresh);
        }
        if self.enhanced_route_refresh {
            caps.push(Capability::EnhancedRouteRefresh);
        }
        if self.extended_next_hop {
            caps.push(Capability::ExtendedNextHop(vec![ExtendedNextHop {
                nlri_afi: Afi::IPV4,
                nlri_safi: u16::from(Safi::UNICAST.0),
                next_hop_afi: Afi::IPV6,
            }]));
        }
        if self.extended_message {
            caps.push(Capability::ExtendedMessage);
        }
        if let Some(gr) = &self.graceful_restart {
            let mut flags = 0;
            if gr.restarting {
                flags |= GracefulRestart::RESTART_STATE;
            }
            if gr.notification {
                flags |= GracefulRestart::NOTIFICATION;
            }
            caps.push(Capability::GracefulRestart(GracefulRestart {
                flags,
                restart_time: gr.restart_time.min(0x0fff),
                families: self
                    .families
                    .iter()
                    .map(|f| GracefulRestartFamily {
                        family: *f,
                        flags: if gr.forwarding {
                            GracefulRestartFamily::FORWARDING_STATE
                        } else {
                            0
                        },
                    })
                    .collect(),
            }));
        }
        caps.push(Capability::FourOctetAs(local_as));
        if !self.add_path.is_empty() {
            caps.push(Capability::AddPath(
                self.add_path
                    .iter()
                    .map(|(family, mode)| AddPathFamily {
                        family: *family,
                        mode: *mode,
                    })
                    .collect(),
            ));
        }
        caps
    }
}

/// The peer's graceful restart announcement, as far as we (the helper) care.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "speaker", derive(serde::Serialize))]
pub struct PeerGracefulRestart {
    /// How long to keep its routes as stale after the session drops.
    pub restart_time: u16,
    /// The peer says it is restarting (R bit): expect End-of-RIB.
    pub restarting: bool,
    /// N bit negotiated on both sides (RFC 8538).
    pub notification: bool,
    /// Families the peer can preserve, with its Forwarding State flag.
    pub families: Vec<(Family, bool)>,
}

/// Add-path directions for one family after negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "speaker", derive(serde::Serialize))]
pub struct AddPathNegotiated {
    /// We may send several paths (we announced send, peer announced receive).
    pub send: bool,
    /// The peer may send several paths (we announced receive, it announced send).
    pub receive: bool,
}

/// What both sides agreed on. Built once when the peer's OPEN is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Peer AS (from the 4-octet capability if present).
    pub remote_as: u32,
    /// Peer BGP identifier.
    pub remote_id: Ipv4Addr,
    /// Negotiated hold time in seconds (0 = no keepalives).
    pub hold_time: u16,
    /// Keepalive interval derived from the hold time.
    pub keepalive: Duration,
    /// Families both announced (IPv4 unicast if the peer announced no MP at all).
    pub families: Vec<Family>,
    /// 4-octet AS on both sides.
    pub four_octet_as: bool,
    /// Route refresh on both sides.
    pub route_refresh: bool,
    /// Enhanced route refresh on both sides.
    pub enhanced_route_refresh: bool,
    /// IPv4 unicast with IPv6 next hops on both sides.
    pub extended_next_hop_ipv4: bool,
    /// Extended message on both sides.
    pub extended_message: bool,
    /// The peer's GR capability, if we also announced GR.
    pub graceful_restart: Option<PeerGracefulRestart>,
    /// Add-path per family.
    pub add_path_ipv4: AddPathNegotiated,
    /// Add-path for IPv6 unicast.
    pub add_path_ipv6: AddPathNegotiated,
    /// The peer's raw capabilities, for display.
    pub peer_capabilities: Vec<Capability>,
}

impl Negotiated {
    /// Intersect our capabilities with the peer's OPEN.
    pub fn new(
        local: &LocalCapabilities,
        keepalive_cfg: Option<u16>,
        local_hold: u16,
        peer: &Open,
    ) -> Negotiated {
        let caps: Vec<Capability> = peer.capabilities().cloned().collect();
        let has = |f: &dyn Fn(&Capability) -> bool| caps.iter().any(f);
        let peer_families: Vec<Family> = caps
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        let peer_families = if peer_families.is_empty() {
            // RFC 4760: without MP capabilities, IPv4 unicast is implied.
            vec![Family::IPV4_UNICAST]
        } else {
            peer_families
        };
        let families: Vec<Family> = local
            .families
            .iter()
            .filter(|f| peer_families.contains(f))
            .copied()
            .collect();
        let hold_time = local_hold.min(peer.hold_time);
        let keepalive_secs = match keepalive_cfg {
            Some(k) if hold_time > 0 => k.min(hold_time / 3).max(1),
            _ => hold_time / 3,
        };
        let four_octet_as = peer.four_octet_as().is_some();
        let extended_next_hop_ipv4 = local.extended_next_hop
            && caps.iter().any(|c| match c {
                Capability::ExtendedNextHop(v) => v.iter().any(|e| {
                    e.nlri_afi == Afi::IPV4
                        && e.nlri_safi == u16::from(Safi::UNICAST.0)
                        && e.next_hop_afi == Afi::IPV6
                }),
                _ => false,
            });
        let graceful_restart = local.graceful_restart.as_ref().and_then(|lgr| {
            caps.iter().find_map(|c| match c {
                Capability::GracefulRestart(g) => Some(PeerGracefulRestart {
                    restart_time: g.restart_time,
                    restarting: g.flags & GracefulRestart::RESTART_STATE != 0,
                    notification: lgr.notification && g.flags & GracefulRestart::NOTIFICATION != 0,
                    families: g
                        .families
                        .iter()
                        .map(|f| {
                            (
                                f.family,
                                f.flags & GracefulRestartFamily::FORWARDING_STATE != 0,
                            )
                        })
                        .collect(),
                }),
                _ => None,
            })
        });
        let add_path_for = |fam: Family| {
            let ours = local
                .add_path
                .iter()
                .find(|(f, _)| *f == fam)
                .map(|(_, m)| *m);
            let theirs = caps.iter().find_map(|c| match c {
                Capability::AddPath(v) => v.iter().find(|e| e.family == fam).map(|e| e.mode),
                _ => None,
            });
            match (ours, theirs) {
                (Some(o), Some(t)) if families.contains(&fam) => AddPathNegotiated {
                    send: o.send() && t.receive(),
                    receive: o.receive() && t.send(),
                },
                _ => AddPathNegotiated::default(),
            }
        };
        Negotiated {
            remote_as: peer.asn(),
            remote_id: peer.bgp_id,
            hold_time,
            keepalive: Duration::from_secs(u64::from(keepalive_secs)),
            add_path_ipv4: add_path_for(Family::IPV4_UNICAST),
            add_path_ipv6: add_path_for(Family::IPV6_UNICAST),
            families,
            four_octet_as,
            route_refresh: local.route_refresh && has(&|c| matches!(c, Capability::RouteRefresh)),
            enhanced_route_refresh: local.enhanced_route_refresh
                && has(&|c| matches!(c, Capability::EnhancedRouteRefresh)),
            extended_next_hop_ipv4,
            extended_message: local.extended_message
                && has(&|c| matches!(c, Capability::ExtendedMessage)),
            graceful_restart,
            peer_capabilities: caps,
        }
    }

    /// Codec context for messages we receive.
    pub fn decode_context(&self) -> DecodeContext {
        DecodeContext {
            four_octet_as: self.four_octet_as,
            add_path_ipv4: self.add_path_ipv4.receive,
            add_path_ipv6: self.add_path_ipv6.receive,
            extended_message: self.extended_message,
            extended_next_hop_ipv4: self.extended_next_hop_ipv4,
        }
    }

    /// Codec context for messages we send.
    pub fn encode_context(&self) -> DecodeContext {
        DecodeContext {
            four_octet_as: self.four_octet_as,
            add_path_ipv4: self.add_path_ipv4.send,
            add_path_ipv6: self.add_path_ipv6.send,
            extended_message: self.extended_message,
            extended_next_hop_ipv4: self.extended_next_hop_ipv4,
        }
    }

    /// Whether `family` was negotiated.
    pub fn has_family(&self, family: Family) -> bool {
        self.families.contains(&family)
    }

    /// Capability names for display and the state dump.
    pub fn capability_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.families.iter().map(|f| format!("mp:{f}")).collect();
        let mut push = |on: bool, n: &str| {
            if on {
                v.push(n.to_string());
            }
        };
        push(self.four_octet_as, "four-octet-as");
        push(self.route_refresh, "route-refresh");
        push(self.enhanced_route_refresh, "enhanced-route-refresh");
        push(self.extended_next_hop_ipv4, "extended-next-hop");
        push(self.extended_message, "extended-message");
        push(self.graceful_restart.is_some(), "graceful-restart");
        push(
            self.add_path_ipv4.send
                || self.add_path_ipv4.receive
                || self.add_path_ipv6.send
                || self.add_path_ipv6.receive,
            "add-path",
        );
        v
    }
}
