//! A peer's configuration and what the FSM makes of it.

use std::net::IpAddr;
use std::time::Duration;

use crate::fsm::FsmConfig;
use crate::wire::Family;

use super::ConnectOptions;

/// Max-prefix limit for one family of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPrefix {
    /// Family the limit applies to.
    pub family: Family,
    /// Accepted prefixes allowed; one more sends Cease/1.
    pub limit: usize,
    /// Log a warning at this percentage of the limit.
    pub warning_percent: u8,
    /// Restart the session this long after the Cease (`None`: stay down).
    pub restart_interval: Option<Duration>,
    /// Past the limit, only log (once per session) instead of sending the
    /// Cease: for peers whose table size is watched, not enforced.
    pub warning_only: bool,
}

/// Graceful restart settings of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart time we announce.
    pub restart_time: u16,
    /// How long to keep stale routes after the peer came back, waiting for its End-of-RIB.
    pub stale_time: Duration,
}

/// Peer-oscillation damping (RFC 4271 8.1.1): after a session ends in an
/// error the next attempt waits `initial`, doubling per consecutive error up
/// to `max`; a session that stays Established `reset_after` forgets the
/// errors. Clean ends (a Cease, the peer closing a working session) always
/// wait only `initial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damping {
    /// Wait after a clean end and after the first error.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Established this long: consecutive errors reset.
    pub reset_after: Duration,
}

impl Default for Damping {
    /// 1 s, up to 60 s, reset after 60 s Established.
    fn default() -> Self {
        Damping {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Everything about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Peer address (IPv6 link-local needs `connect.interface`).
    pub address: IpAddr,
    /// Peer AS.
    pub remote_as: u32,
    /// TCP port to connect to.
    pub port: u16,
    /// MD5, GTSM, interface, local address.
    pub connect: ConnectOptions,
    /// Only accept connections.
    pub passive: bool,
    /// Proposed hold time.
    pub hold_time: u16,
    /// Keepalive interval.
    pub keepalive: Option<u16>,
    /// First ConnectRetry interval.
    pub connect_retry: Duration,
    /// DelayOpen (RFC 4271 8.1.1).
    pub delay_open: Option<Duration>,
    /// Idle hold after a session ends (damping on errors only).
    pub damping: Damping,
    /// Families to negotiate.
    pub families: Vec<Family>,
    /// Announce extended next hop (IPv4 over IPv6).
    pub extended_next_hop: bool,
    /// Graceful restart.
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// Import policy name (`None`: RFC 8212 default).
    pub import_policy: Option<String>,
    /// Export policy name (`None`: RFC 8212 default).
    pub export_policy: Option<String>,
    /// Max-prefix limits (on prefixes received, before import policy).
    pub max_prefix: Vec<MaxPrefix>,
    /// Keep routes the import policy rejected (soft reconfiguration inbound);
    /// without it a policy change sends ROUTE-REFRESH to the peer.
    pub soft_reconfiguration_inbound: bool,
    /// Next hop for IPv4 routes we send (default: local session address if IPv4).
    pub next_hop_ipv4: Option<std::net::Ipv4Addr>,
    /// Next hop for IPv6 routes we send (default: local session address if IPv6).
    pub next_hop_ipv6: Option<std::net::Ipv6Addr>,
    /// Log (warn) each prefix the import policy rejects from this peer once,
    /// when it is first rejected (hijack protection on hosts).
    pub log_import_rejects: bool,
}

impl PeerConfig {
    /// A peer with defaults: both unicast families, hold 90, retry 1 s.
    pub fn new(address: IpAddr, remote_as: u32) -> PeerConfig {
        PeerConfig {
            address,
            remote_as,
            port: 179,
            connect: ConnectOptions::default(),
            passive: false,
            hold_time: 90,
            keepalive: None,
            connect_retry: Duration::from_secs(1),
            delay_open: None,
            damping: Damping::default(),
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            extended_next_hop: false,
            graceful_restart: None,
            import_policy: None,
            export_policy: None,
            max_prefix: Vec::new(),
            soft_reconfiguration_inbound: false,
            next_hop_ipv4: None,
            next_hop_ipv6: None,
            log_import_rejects: false,
        }
    }

    /// The FSM configuration for this peer.
    pub fn fsm_config(
        &self,
        local_as: u32,
        router_id: std::net::Ipv4Addr,
        restarting: bool,
    ) -> FsmConfig {
        let mut c = FsmConfig::new(local_as, Some(self.remote_as), router_id);
        c.hold_time = self.hold_time;
        c.keepalive = self.keepalive;
        c.passive = self.passive;
        c.delay_open = self.delay_open;
        c.connect_retry = self.connect_retry;
        c.connect_retry_max = Duration::from_secs(30).max(self.connect_retry);
        c.idle_hold = self.damping.initial;
        c.idle_hold_max = self.damping.max.max(self.damping.initial);
        c.stable_time = self.damping.reset_after;
        c.capabilities.families = self.families.clone();
        c.capabilities.extended_next_hop = self.extended_next_hop;
        c.capabilities.graceful_restart =
            self.graceful_restart
                .as_ref()
                .map(|g| crate::fsm::LocalGracefulRestart {
                    restart_time: g.restart_time,
                    restarting,
                    forwarding: true,
                    // No N bit (RFC 8538): every NOTIFICATION flatnet sends
                    // then ends graceful restart at the peer, so a Cease it
                    // sends (shutdown, de-configured, max-prefix) never
                    // leaves its routes stale there and never needs the
                    // Hard Reset (Cease 9) wrapper.
                    notification: false,
                });
        let mut seed = u64::from(u32::from(router_id));
        if let IpAddr::V4(a) = self.address {
            seed ^= u64::from(u32::from(a)) << 32;
        }
        c.seed = seed ^ std::process::id() as u64;
        c
    }

    /// Whether the peer is eBGP.
    pub fn is_ebgp(&self, local_as: u32) -> bool {
        self.remote_as != local_as
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graceful_restart_never_announces_the_n_bit() {
        let mut p = PeerConfig::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)), 65001);
        p.graceful_restart = Some(GracefulRestartConfig {
            restart_time: 120,
            stale_time: Duration::from_secs(360),
        });
        let c = p.fsm_config(65000, std::net::Ipv4Addr::new(192, 0, 2, 2), false);
        let gr = c.capabilities.graceful_restart;
        assert!(matches!(gr, Some(g) if !g.notification && g.restart_time == 120));
    }
}
