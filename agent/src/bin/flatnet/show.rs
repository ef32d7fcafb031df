//! Tables for the routing answers (`bgp neighbors`, `bgp routes`, `fib`,
//! `reload`), in the shape birdc and vtysh users read.

use flatnet_agent::api::FibRoute;
use flatnet_agent::routing::reload::ReloadReport;
use flatnet_bgp::speaker::control::{Neighbor, Route};

use super::table;

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

/// `1h02m03s` like vtysh's Up/Down column.
fn duration(secs: Option<u64>) -> String {
    match secs {
        None => "never".into(),
        Some(s) => format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

pub fn neighbors(n: &[Neighbor]) -> String {
    let mut out = table(
        &[
            "NEIGHBOR",
            "AS",
            "STATE",
            "UP/DOWN",
            "RCVD",
            "ACCEPTED",
            "ADVERTISED",
            "MSG-IN",
            "MSG-OUT",
        ],
        &n.iter()
            .map(|p| {
                vec![
                    p.address.to_string(),
                    p.remote_as.to_string(),
                    p.state.clone(),
                    duration(p.uptime_secs),
                    p.prefixes_received.to_string(),
                    p.prefixes_accepted.to_string(),
                    p.prefixes_advertised.to_string(),
                    p.updates_in.to_string(),
                    p.updates_out.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    for p in n {
        out.push_str(&format!(
            "\n{} (AS {}): {}\n  hold time: {}\n  families: {}\n  capabilities: {}\n  last error: {}\n",
            p.address,
            p.remote_as,
            p.state,
            opt(&p.hold_time),
            if p.families.is_empty() { "-".into() } else { p.families.join(", ") },
            if p.capabilities.is_empty() { "-".into() } else { p.capabilities.join(", ") },
            opt(&p.last_error),
        ));
        if let Some(line) = next_attempt(p) {
            out.push_str(&format!("  next attempt: {line}\n"));
        }
        for f in &p.per_family {
            out.push_str(&format!(
                "  {}: {} received, {} accepted, {} advertised\n",
                f.family, f.received, f.accepted, f.advertised
            ));
        }
    }
    out
}

/// When an Idle peer is tried again, and why that long (vtysh shows the
/// next connect, birdc the error wait): damped after errors, or the initial
/// wait after a clean end.
fn next_attempt(p: &Neighbor) -> Option<String> {
    let ms = p.next_attempt_ms?;
    let when = format!("in {:.1} s", ms as f64 / 1000.0);
    Some(match p.consecutive_errors {
        0 => format!("{when} (after a clean end: no damping)"),
        n => format!(
            "{when} (damped: {n} consecutive error{}; last: {})",
            if n == 1 { "" } else { "s" },
            opt(&p.last_error)
        ),
    })
}

pub fn routes(r: &[Route]) -> String {
    let mut rows = Vec::new();
    for e in r {
        for (i, p) in e.paths.iter().enumerate() {
            let mark = match (p.best, p.multipath) {
                (true, _) => "*>",
                (false, true) => "*=",
                _ => " ",
            };
            rows.push(vec![
                mark.to_string(),
                if i == 0 {
                    e.prefix.clone()
                } else {
                    String::new()
                },
                opt(&p.next_hop),
                p.source.clone(),
                p.local_pref.to_string(),
                p.med.to_string(),
                p.as_path
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
                    + if p.stale { " (stale)" } else { "" },
            ]);
        }
    }
    table(
        &["", "PREFIX", "NEXT-HOP", "FROM", "LOCPRF", "MED", "AS-PATH"],
        &rows,
    )
}

pub fn fib(f: &[FibRoute]) -> String {
    let mut rows = Vec::new();
    for r in f {
        let hops: Vec<String> = r
            .nexthops
            .iter()
            .map(|h| {
                let mut s = h.gateway.map(|g| format!("via {g}")).unwrap_or_default();
                if let Some(d) = &h.dev {
                    s = format!("{s} dev {d}").trim().to_string();
                }
                if h.weight != 1 {
                    s.push_str(&format!(" weight {}", h.weight));
                }
                s
            })
            .collect();
        rows.push(vec![
            r.prefix.clone(),
            r.kind.clone(),
            r.table.to_string(),
            opt(&r.nexthop_id),
            if hops.is_empty() {
                "-".into()
            } else {
                hops.join("; ")
            },
        ]);
    }
    table(&["PREFIX", "TYPE", "TABLE", "NHID", "NEXT-HOPS"], &rows)
}

pub fn reloaded(r: &ReloadReport) -> String {
    let list = |v: &[std::net::IpAddr]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut s = format!(
        "peers added: {}\npeers removed: {}\npeers changed: {}\npeers unchanged: {}\n",
        list(&r.added),
        list(&r.removed),
        list(&r.changed),
        r.unchanged
    );
    if !r.restart_needed.is_empty() {
        s.push_str(&format!(
            "not applied (restart flatnetd): {}\n",
            r.restart_needed.join(", ")
        ));
    }
    s
}

/// Each default: the cluster's value (datastore), the host's config, and
/// the one in force here.
pub fn policy_defaults(d: &flatnet_agent::policy::defaults::DefaultsView) -> String {
    let name = |a: flatnet_agent::policy::compile::DefaultAction| {
        serde_json::to_value(a)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let cluster =
        |a: Option<flatnet_agent::policy::compile::DefaultAction>| a.map_or("-".to_string(), name);
    table(
        &["DEFAULT", "CLUSTER", "HOST", "EFFECTIVE"],
        &[
            vec![
                "between_apps".into(),
                cluster(d.cluster.between_apps),
                name(d.host_between_apps),
                name(d.between_apps),
            ],
            vec![
                "egress".into(),
                cluster(d.cluster.egress),
                name(d.host_egress),
                name(d.egress),
            ],
        ],
    )
}
