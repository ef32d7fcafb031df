//! Prometheus metrics of flatnetd: CNI operations, IPAM use, routing
//! (BGP sessions, prefixes and UPDATEs per peer, kernel route installs)
//! and the DNS server (queries, answers by rcode, latency, drops).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpOnly {
    pub op: String,
}

/// One BGP peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

/// One peer, family and count kind (`received`, `accepted`, `advertised`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerPrefixLabels {
    pub peer: String,
    pub family: String,
    pub kind: String,
}

/// RFC 4273 `bgpPeerState` numbering: idle(1) .. established(6).
fn state_number(s: flatnet_bgp::fsm::State) -> i64 {
    use flatnet_bgp::fsm::State;
    match s {
        State::Idle => 1,
        State::Connect => 2,
        State::Active => 3,
        State::OpenSent => 4,
        State::OpenConfirm => 5,
        State::Established => 6,
    }
}

/// A policy rule by its comment (`flatnet:<policy>:<edge>` or a default).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

/// DNS: the transport a query came over.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtoLabels {
    pub proto: String,
}

/// DNS: an answer's response code (`NOERROR`, `NXDOMAIN`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RcodeLabels {
    pub rcode: String,
}

/// DNS: why a packet got no answer (`malformed`, `oversized`, `response`,
/// `overload`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// The DNS server's series: handles that the server clones (they share
/// their values with the registry).
#[derive(Clone)]
pub struct DnsMetrics {
    pub queries: Family<ProtoLabels, Counter>,
    pub answers: Family<RcodeLabels, Counter>,
    /// Seconds from a query's arrival to its answer being sent.
    pub latency: Histogram,
    pub dropped: Family<ReasonLabels, Counter>,
    /// Names outside the zone sent to the host's resolvers, and those
    /// that got no usable answer from any of them.
    pub forwarded: Counter,
    pub forward_failures: Counter,
    /// Apps with at least one endpoint (names in the zone).
    pub zone_apps: Gauge,
}

impl DnsMetrics {
    fn register(registry: &mut Registry) -> DnsMetrics {
        let m = DnsMetrics {
            queries: Family::default(),
            answers: Family::default(),
            // 20 µs .. ~0.65 s: answers from the zone take microseconds,
            // forwarded ones the upstream's round trip.
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00002, 2.0, 16,
            )),
            dropped: Family::default(),
            forwarded: Counter::default(),
            forward_failures: Counter::default(),
            zone_apps: Gauge::default(),
        };
        registry.register(
            "dns_queries",
            "DNS queries received (well-formed), by transport",
            m.queries.clone(),
        );
        registry.register(
            "dns_answers",
            "DNS answers sent, by response code",
            m.answers.clone(),
        );
        registry.register(
            "dns_query_duration_seconds",
            "Time from a DNS query's arrival to its answer",
            m.latency.clone(),
        );
        registry.register(
            "dns_dropped",
            "DNS packets dropped without an answer, by reason (malformed, oversized, response, overload)",
            m.dropped.clone(),
        );
        registry.register(
            "dns_forwarded",
            "DNS queries outside the zone forwarded to the host's resolvers",
            m.forwarded.clone(),
        );
        registry.register(
            "dns_forward_failures",
            "Forwarded DNS queries no resolver answered (answered SERVFAIL)",
            m.forward_failures.clone(),
        );
        registry.register(
            "dns_zone_apps",
            "Apps with at least one endpoint in the DNS zone",
            m.zone_apps.clone(),
        );
        m
    }

    pub fn dropped(&self, reason: &str) {
        self.dropped
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub dns: DnsMetrics,
    pub ops: Family<OpLabels, Counter>,
    pub latency: Family<OpOnly, Histogram>,
    pub endpoints: Gauge,
    pub ipam_used: Gauge,
    pub ipam_capacity: Gauge,
    pub reconcile_errors: Counter,
    /// Per peer: RFC 4273 state number, 6 = Established.
    pub bgp_session_state: Family<PeerLabels, Gauge>,
    /// Per peer, family and kind: prefix counts.
    pub bgp_prefixes: Family<PeerPrefixLabels, Gauge>,
    pub bgp_updates_received: Family<PeerLabels, Counter>,
    pub bgp_updates_sent: Family<PeerLabels, Counter>,
    /// Seconds per kernel route programming batch. Recorded by the FIB room
    /// through [`Metrics::observe_route_install`].
    pub route_install_duration: Histogram,
    /// Routes the kernel refused (per route, not per batch).
    pub route_install_errors: Counter,
    /// Routes programmed into the kernel (successful, per route).
    pub routes_installed: Counter,
    /// Last seen cumulative UPDATE counts per peer, to feed the counters.
    seen_updates: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
    /// Kernel counters of policy rules, read at each scrape; gauges, as a
    /// rewritten chain restarts its counters.
    pub policy_packets: Family<RuleLabels, Gauge>,
    pub policy_bytes: Family<RuleLabels, Gauge>,
    /// Control connections being served now.
    pub api_connections: Gauge,
    /// Control connections answered "busy" at `api.max_connections`.
    pub api_connections_refused: Counter,
}

fn histogram() -> Histogram {
    // 0.5 ms .. ~4 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 14,
    ))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flatnet");
        let ops = Family::<OpLabels, Counter>::default();
        let latency = Family::<OpOnly, Histogram>::new_with_constructor(histogram as fn() -> _);
        let endpoints = Gauge::default();
        let ipam_used = Gauge::default();
        let ipam_capacity = Gauge::default();
        let reconcile_errors = Counter::default();
        let api_connections = Gauge::default();
        let api_connections_refused = Counter::default();
        registry.register(
            "api_connections",
            "Control API connections being served",
            api_connections.clone(),
        );
        registry.register(
            "api_connections_refused",
            "Control API connections refused as busy (api.max_connections)",
            api_connections_refused.clone(),
        );
        registry.register(
            "cni_operations",
            "CNI operations served, by operation and result",
            ops.clone(),
        );
        registry.register(
            "cni_operation_duration_seconds",
            "Time flatnetd spent serving a CNI operation",
            latency.clone(),
        );
        registry.register(
            "endpoints",
            "Container attachments on this host",
            endpoints.clone(),
        );
        registry.register(
            "ipam_addresses_used",
            "Addresses allocated in this host's blocks",
            ipam_used.clone(),
        );
        registry.register(
            "ipam_addresses_capacity",
            "Addresses in this host's blocks",
            ipam_capacity.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Errors while reconciling kernel state with records",
            reconcile_errors.clone(),
        );
        let bgp_session_state = Family::<PeerLabels, Gauge>::default();
        let bgp_prefixes = Family::<PeerPrefixLabels, Gauge>::default();
        let bgp_updates_received = Family::<PeerLabels, Counter>::default();
        let bgp_updates_sent = Family::<PeerLabels, Counter>::default();
        let route_install_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16),
        );
        let route_install_errors = Counter::default();
        let routes_installed = Counter::default();
        registry.register(
            "bgp_session_state",
            "BGP session state per peer (RFC 4273 numbering: 1 idle .. 6 established)",
            bgp_session_state.clone(),
        );
        registry.register(
            "bgp_prefixes",
            "Prefixes per peer and family: received (before import policy), accepted, advertised",
            bgp_prefixes.clone(),
        );
        registry.register(
            "bgp_updates_received",
            "BGP UPDATE messages received per peer",
            bgp_updates_received.clone(),
        );
        registry.register(
            "bgp_updates_sent",
            "BGP UPDATE messages sent per peer",
            bgp_updates_sent.clone(),
        );
        registry.register(
            "kernel_route_install_duration_seconds",
            "Time to program one batch of learned routes into the kernel",
            route_install_duration.clone(),
        );
        registry.register(
            "kernel_route_install_errors",
            "Learned routes the kernel refused",
            route_install_errors.clone(),
        );
        registry.register(
            "kernel_routes_installed",
            "Learned routes programmed into the kernel",
            routes_installed.clone(),
        );
        let policy_packets = Family::<RuleLabels, Gauge>::default();
        let policy_bytes = Family::<RuleLabels, Gauge>::default();
        registry.register(
            "policy_rule_packets",
            "Packets that matched a policy rule (edge or default), both families",
            policy_packets.clone(),
        );
        registry.register(
            "policy_rule_bytes",
            "Bytes that matched a policy rule (edge or default), both families",
            policy_bytes.clone(),
        );
        let dns = DnsMetrics::register(&mut registry);
        Metrics {
            dns,
            policy_packets,
            policy_bytes,
            api_connections,
            api_connections_refused,
            registry,
            ops,
            latency,
            endpoints,
            ipam_used,
            ipam_capacity,
            reconcile_errors,
            bgp_session_state,
            bgp_prefixes,
            bgp_updates_received,
            bgp_updates_sent,
            route_install_duration,
            route_install_errors,
            routes_installed,
            seen_updates: Default::default(),
        }
    }

    /// For the FIB room: one kernel batch of `routes` routes took `secs`,
    /// `failed` of them were refused.
    pub fn observe_route_install(&self, secs: f64, routes: u64, failed: u64) {
        self.route_install_duration.observe(secs);
        self.routes_installed.inc_by(routes.saturating_sub(failed));
        self.route_install_errors.inc_by(failed);
    }

    /// Sets the BGP series from the speaker's peer list (at scrape time):
    /// removed peers' series go, UPDATE counters grow by what is new.
    pub fn record_peers(&self, peers: &[flatnet_bgp::speaker::PeerStatus]) {
        let mut seen = self.seen_updates.lock().unwrap_or_else(|p| p.into_inner());
        let now: std::collections::HashSet<String> =
            peers.iter().map(|p| p.address.to_string()).collect();
        for gone in seen
            .keys()
            .filter(|k| !now.contains(*k))
            .cloned()
            .collect::<Vec<_>>()
        {
            let l = PeerLabels { peer: gone.clone() };
            self.bgp_session_state.remove(&l);
            self.bgp_updates_received.remove(&l);
            self.bgp_updates_sent.remove(&l);
            seen.remove(&gone);
        }
        self.bgp_prefixes.clear();
        for p in peers {
            let peer = p.address.to_string();
            let l = PeerLabels { peer: peer.clone() };
            self.bgp_session_state
                .get_or_create(&l)
                .set(state_number(p.state));
            for f in &p.families {
                for (kind, n) in [
                    ("received", f.received),
                    ("accepted", f.accepted),
                    ("advertised", f.advertised),
                ] {
                    self.bgp_prefixes
                        .get_or_create(&PeerPrefixLabels {
                            peer: peer.clone(),
                            family: f.family.clone(),
                            kind: kind.into(),
                        })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            let last = seen.entry(peer).or_insert((0, 0));
            // A peer removed and added again between scrapes starts from 0.
            let delta = |now: u64, before: u64| if now >= before { now - before } else { now };
            self.bgp_updates_received
                .get_or_create(&l)
                .inc_by(delta(p.updates_in, last.0));
            self.bgp_updates_sent
                .get_or_create(&l)
                .inc_by(delta(p.updates_out, last.1));
            *last = (p.updates_in, p.updates_out);
        }
    }

    pub fn observe(&self, op: &str, ok: bool, secs: f64) {
        self.ops
            .get_or_create(&OpLabels {
                op: op.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        self.latency
            .get_or_create(&OpOnly { op: op.into() })
            .observe(secs);
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flatnet_bgp::fsm::State;
    use flatnet_bgp::speaker::{FamilyPrefixes, PeerStatus};

    fn status(addr: &str, state: State, updates_in: u64) -> PeerStatus {
        PeerStatus {
            address: addr.parse().unwrap(),
            remote_as: 65001,
            state,
            uptime_secs: None,
            capabilities: Vec::new(),
            hold_time: None,
            peer_restart_time: None,
            prefixes_received: 3,
            prefixes_accepted: 2,
            prefixes_advertised: 1,
            stale_paths: 0,
            last_error: None,
            max_prefix_resets: 0,
            next_attempt_ms: None,
            consecutive_errors: 0,
            updates_in,
            updates_out: 4,
            families: vec![FamilyPrefixes {
                family: "ipv4-unicast".into(),
                received: 3,
                accepted: 2,
                advertised: 1,
            }],
            negotiated_families: Vec::new(),
        }
    }

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn peers_become_series_and_removed_peers_vanish() {
        let m = Metrics::new();
        m.record_peers(&[
            status("10.0.0.1", State::Established, 5),
            status("10.0.0.5", State::Active, 0),
        ]);
        m.record_peers(&[
            status("10.0.0.1", State::Established, 7),
            status("10.0.0.5", State::Active, 0),
        ]);
        let t = m.encode();
        assert_eq!(
            line(&t, "flatnet_bgp_session_state{peer=\"10.0.0.1\"}"),
            Some("flatnet_bgp_session_state{peer=\"10.0.0.1\"} 6"),
            "{t}"
        );
        assert!(
            t.contains("flatnet_bgp_session_state{peer=\"10.0.0.5\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("flatnet_bgp_updates_received_total{peer=\"10.0.0.1\"} 7"),
            "{t}"
        );
        assert!(
            t.contains("flatnet_bgp_updates_sent_total{peer=\"10.0.0.1\"} 4"),
            "{t}"
        );
        assert!(
            t.contains(
                "flatnet_bgp_prefixes{peer=\"10.0.0.1\",family=\"ipv4-unicast\",kind=\"accepted\"} 2"
            ),
            "{t}"
        );
        m.record_peers(&[status("10.0.0.1", State::Idle, 7)]);
        let t = m.encode();
        assert!(!t.contains("10.0.0.5"), "{t}");
        assert!(
            t.contains("flatnet_bgp_session_state{peer=\"10.0.0.1\"} 1"),
            "{t}"
        );
    }

    #[test]
    fn route_installs_are_counted() {
        let m = Metrics::new();
        m.observe_route_install(0.002, 100, 3);
        let t = m.encode();
        assert!(
            t.contains("flatnet_kernel_routes_installed_total 97"),
            "{t}"
        );
        assert!(
            t.contains("flatnet_kernel_route_install_errors_total 3"),
            "{t}"
        );
        assert!(
            t.contains("flatnet_kernel_route_install_duration_seconds_count 1"),
            "{t}"
        );
    }
}
