//! Prometheus metrics of flatnetd.

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

/// A policy rule by its comment (`flatnet:<policy>:<edge>` or a default).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub ops: Family<OpLabels, Counter>,
    pub latency: Family<OpOnly, Histogram>,
    pub endpoints: Gauge,
    pub ipam_used: Gauge,
    pub ipam_capacity: Gauge,
    pub reconcile_errors: Counter,
    /// Kernel counters of policy rules, read at each scrape; gauges, as a
    /// rewritten chain restarts its counters.
    pub policy_packets: Family<RuleLabels, Gauge>,
    pub policy_bytes: Family<RuleLabels, Gauge>,
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
        Metrics {
            policy_packets,
            policy_bytes,
            registry,
            ops,
            latency,
            endpoints,
            ipam_used,
            ipam_capacity,
            reconcile_errors,
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
