//! Peers as the RIB knows them: ids, session facts, counters, and a
//! session coming up (full export) or going down (routes removed or kept stale).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::adj_out::Out;
use super::export::ExportKey;
use super::table::FxMap;
use super::{Attrs, Changes, Fam, Rib, Source};
use crate::policy::{Direction, Policy, rfc8212_reason};
use crate::wire::{DecodeContext, EncodeContext, Family, Ipv4Prefix, Ipv6Prefix};

/// A peer as the RIB knows it; chosen by the caller (the session layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

impl PeerId {
    /// Locally originated routes.
    pub const LOCAL: PeerId = PeerId(u32::MAX);
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PeerId::LOCAL {
            f.write_str("local")
        } else {
            write!(f, "peer#{}", self.0)
        }
    }
}

/// What the RIB needs to know about an established session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Our AS on this session.
    pub local_as: u32,
    /// The peer's AS (eBGP iff different from `local_as`).
    pub remote_as: u32,
    /// The peer's BGP identifier (from its OPEN).
    pub router_id: Ipv4Addr,
    /// The peer's address (last tie-break, and for log lines).
    pub address: IpAddr,
    /// Negotiated families: routes are exported only in these.
    pub families: Vec<Family>,
    /// Import policy; `None` on eBGP = reject all (RFC 8212), on iBGP = accept all.
    pub import: Option<Policy>,
    /// Export policy; `None` on eBGP = send nothing (RFC 8212), on iBGP = send all.
    pub export: Option<Policy>,
    /// Set ourselves as next hop towards this iBGP peer (always done on eBGP).
    pub next_hop_self: bool,
    /// Our IPv4 address for next-hop-self.
    pub local_v4: Option<Ipv4Addr>,
    /// Our global IPv6 address for next-hop-self.
    pub local_v6: Option<Ipv6Addr>,
    /// Our link-local IPv6 address on the link to the peer (sent as the second next hop).
    pub local_v6_link_local: Option<Ipv6Addr>,
    /// Our address on the session. A route whose next hop is one of our
    /// addresses (this, `local_v4`, `local_v6`, `local_v6_link_local`) is
    /// treat-as-withdraw (RFC 4271 6.3 a, RFC 7606 7.3).
    pub local_address: Option<IpAddr>,
    /// The subnets of our interface on the session (from the driver; empty
    /// when unknown). When the peer is eBGP and inside one of them — one IP
    /// hop away — an IPv4 NEXT_HOP must be the peer or inside one of them
    /// (RFC 4271 6.3 b); otherwise the route is treat-as-withdraw.
    pub connected: Vec<Subnet>,
    /// Context UPDATEs from the peer were decoded with (AS4 merge).
    pub decode: DecodeContext,
    /// Context for UPDATEs to the peer (message size, 4-octet AS, extended next hop).
    pub encode: EncodeContext,
    /// Keep routes rejected by import policy (soft reconfiguration
    /// inbound). Without it a policy change needs a ROUTE-REFRESH.
    pub keep_rejected: bool,
    /// Report a prefix the import policy rejects in [`super::Changes::notices`],
    /// once: when the peer's route for it was not already rejected.
    pub log_import_rejects: bool,
}

impl PeerInfo {
    /// A session with defaults: IPv4+IPv6 unicast, 4-octet AS, no policies,
    /// soft reconfiguration inbound on.
    pub fn new(local_as: u32, remote_as: u32, router_id: Ipv4Addr, address: IpAddr) -> PeerInfo {
        let ctx = DecodeContext {
            four_octet_as: true,
            ..DecodeContext::default()
        };
        PeerInfo {
            local_as,
            remote_as,
            router_id,
            address,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            import: None,
            export: None,
            next_hop_self: false,
            local_v4: None,
            local_v6: None,
            local_v6_link_local: None,
            local_address: None,
            connected: Vec::new(),
            decode: ctx,
            encode: ctx,
            keep_rejected: true,
            log_import_rejects: false,
        }
    }

    /// eBGP session?
    pub fn is_ebgp(&self) -> bool {
        self.local_as != self.remote_as
    }

    /// An eBGP peer one IP hop away: inside a subnet of our interface.
    pub fn is_directly_connected_ebgp(&self) -> bool {
        self.is_ebgp() && self.connected.iter().any(|s| s.contains(self.address))
    }

    /// RFC 4271 6.3 b for a directly connected eBGP peer: the NEXT_HOP is
    /// the peer itself or shares one of our interface's subnets. Always
    /// true for other sessions.
    pub fn next_hop_is_reachable(&self, nh: Ipv4Addr) -> bool {
        !self.is_directly_connected_ebgp()
            || IpAddr::V4(nh) == self.address
            || self.connected.iter().any(|s| s.contains(IpAddr::V4(nh)))
    }

    /// Whether `a` is one of our addresses on this session.
    pub fn is_own_address(&self, a: IpAddr) -> bool {
        self.local_address == Some(a)
            || matches!(a, IpAddr::V4(v) if self.local_v4 == Some(v))
            || matches!(a, IpAddr::V6(v) if self.local_v6 == Some(v) || self.local_v6_link_local == Some(v))
    }

    /// Import policy in effect: `Err(reason)` when RFC 8212 rejects all.
    pub(super) fn import_policy(&self) -> Result<Option<&Policy>, String> {
        match (&self.import, self.is_ebgp()) {
            (Some(p), _) => Ok(Some(p)),
            (None, true) => Err(rfc8212_reason(self.address, Direction::Import)),
            (None, false) => Ok(None),
        }
    }

    /// Export policy in effect: `Err(reason)` when RFC 8212 sends nothing.
    pub(super) fn export_policy(&self) -> Result<Option<&Policy>, String> {
        match (&self.export, self.is_ebgp()) {
            (Some(p), _) => Ok(Some(p)),
            (None, true) => Err(rfc8212_reason(self.address, Direction::Export)),
            (None, false) => Ok(None),
        }
    }
}

/// Per peer and family counts (max-prefix is enforced by the session on `received`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    /// Routes held in Adj-RIB-In pre-policy.
    pub received: usize,
    /// Routes accepted by import policy (Adj-RIB-In post-policy).
    pub accepted: usize,
    /// Routes in Adj-RIB-Out.
    pub advertised: usize,
    /// Routes currently marked stale.
    pub stale: usize,
    /// Routes rejected because our AS was in the AS_PATH (cumulative).
    pub loop_rejected: u64,
}

/// A peer's session facts, Adj-RIB-Out and counters (kept while down with stale routes).
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) info: PeerInfo,
    pub(super) source: Source,
    pub(super) up: bool,
    pub(super) out4: Out<Ipv4Prefix>,
    pub(super) out6: Out<Ipv6Prefix>,
    pub(super) counts4: PrefixCounts,
    pub(super) counts6: PrefixCounts,
    /// Memoised exports for this peer, holding the source Arc so the key pointer stays valid.
    pub(super) export_cache: FxMap<ExportKey, (Arc<Attrs>, Option<Arc<Attrs>>)>,
}

impl Peer {
    /// The counters of family `P`.
    pub(super) fn counts<P: Fam>(&mut self) -> &mut PrefixCounts {
        if P::FAMILY == Family::IPV4_UNICAST {
            &mut self.counts4
        } else {
            &mut self.counts6
        }
    }
}

impl Rib {
    /// A session reached Established (or came back after a graceful
    /// restart): export the Loc-RIB to it (End-of-RIB after the dump for
    /// every negotiated family). Stale routes kept from before stay until
    /// refreshed or swept.
    pub fn peer_up(&mut self, id: PeerId, info: PeerInfo) -> Changes {
        self.last_in = None;
        let mut ch = Changes::default();
        if let Err(r) = info.import_policy() {
            ch.notices.push(r);
        }
        if let Err(r) = info.export_policy() {
            ch.notices.push(r);
        }
        let source = Source {
            id: id.0,
            ebgp: info.is_ebgp(),
            local: false,
            router_id: info.router_id,
            address: info.address,
            local_as: info.local_as,
        };
        let (counts4, counts6) = self
            .peers
            .get(&id)
            .map(|p| (p.counts4, p.counts6))
            .unwrap_or_default();
        self.peers.insert(
            id,
            Peer {
                info,
                source,
                up: true,
                out4: Out::default(),
                out6: Out::default(),
                counts4: PrefixCounts {
                    advertised: 0,
                    ..counts4
                },
                counts6: PrefixCounts {
                    advertised: 0,
                    ..counts6
                },
                export_cache: FxMap::default(),
            },
        );
        self.refresh_up();
        self.full_export::<Ipv4Prefix>(id, true, &mut ch);
        self.full_export::<Ipv6Prefix>(id, true, &mut ch);
        ch
    }

    /// A session went down. Routes of the families in `retain_stale`
    /// (graceful restart, helper role) are kept and marked stale; all other
    /// routes of the peer are removed. Adj-RIB-Out is dropped.
    pub fn peer_down(&mut self, id: PeerId, retain_stale: &[Family]) -> Changes {
        self.last_in = None;
        let mut ch = Changes::default();
        let Some(p) = self.peers.get_mut(&id) else {
            return ch;
        };
        p.up = false;
        p.out4 = Out::default();
        p.out6 = Out::default();
        p.counts4.advertised = 0;
        p.counts6.advertised = 0;
        p.export_cache.clear();
        self.refresh_up();
        for fam in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
            if retain_stale.contains(&fam) {
                self.mark_stale(id, fam);
            } else {
                ch.merge(self.remove_peer_routes(id, fam, false));
            }
        }
        if self.count_routes(id) == 0 {
            self.peers.remove(&id);
        }
        self.interner.maybe_gc();
        ch
    }

    fn refresh_up(&mut self) {
        self.up = self
            .peers
            .iter()
            .filter(|(_, p)| p.up)
            .map(|(k, _)| *k)
            .collect();
    }

    /// Routes the peer still holds in Adj-RIB-In (both families).
    pub(super) fn count_routes(&self, id: PeerId) -> usize {
        self.peers
            .get(&id)
            .map_or(0, |p| p.counts4.received + p.counts6.received)
    }
}

/// An address and prefix length of one of our interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: IpAddr,
    pub len: u8,
}

impl Subnet {
    /// Whether `a` is in this subnet (same family, same first `len` bits).
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(x)) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.len.min(32)))
                    .unwrap_or(0);
                u32::from(n) & m == u32::from(x) & m
            }
            (IpAddr::V6(n), IpAddr::V6(x)) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.len.min(128)))
                    .unwrap_or(0);
                u128::from(n) & m == u128::from(x) & m
            }
            _ => false,
        }
    }
}
