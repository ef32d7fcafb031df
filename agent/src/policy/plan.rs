//! The reconcile plan of policy rules, pure: desired chains (the compiled
//! IR) against what `iptables-save` shows. Only chains whose rules differ
//! are rewritten, chains flatnet's policy owns but no longer wants are
//! deleted, hooks are added when missing; anything else in the tables is
//! not looked at. A restart that finds every rule right writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::compile::{CHAIN_PREFIX, FORWARD_HOOK, FamilyIr, Hooks, NAT_HOOK, is_flatnet_set};
use crate::netfilter::{ANTISPOOF_CHAIN, DNS_CHAIN};

/// What `iptables-save` shows of flatnet's policy chains in one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Chain → rules (without `-A CHAIN `), in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Whether the built-in's jump to flatnet's chain is there.
    pub hooked: bool,
}

/// Policy's chains: flatnet's, but for anti-spoofing and the DNS
/// listener's (installed at start, not compiled from policies).
fn ours(chain: &str) -> bool {
    chain.starts_with(CHAIN_PREFIX) && chain != ANTISPOOF_CHAIN && chain != DNS_CHAIN
}

/// Parses one table's `iptables-save` output (`counters`: lines carry a
/// leading `[packets:bytes]`, which is dropped).
pub fn observe(save: &str, hook: (&str, &str, &str)) -> Observed {
    let (_, builtin, target) = hook;
    let jump = format!("-j {target}");
    let mut o = Observed::default();
    for line in save.lines() {
        let line = match line.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map_or(line, |(_, r)| r),
            None => line,
        };
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if ours(name) {
                o.chains.entry(name.to_string()).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let (chain, body) = rule.split_once(' ').unwrap_or((rule, ""));
            if ours(chain) {
                o.chains
                    .entry(chain.to_string())
                    .or_default()
                    .push(body.to_string());
            } else if chain == builtin && body == jump {
                o.hooked = true;
            }
        }
    }
    o
}

/// What one family's apply must write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// (table, chain) to declare and refill.
    pub rewrite: BTreeSet<(String, String)>,
    /// (table, chain) to flush and delete.
    pub stale: Vec<(String, String)>,
    pub hooks: Hooks,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.rewrite.is_empty() && self.stale.is_empty() && self.hooks == Hooks::default()
    }
}

/// Compares the desired chains with the observed `filter` and `nat`.
pub fn plan(desired: &FamilyIr, filter: &Observed, nat: &Observed) -> Plan {
    let mut p = Plan::default();
    let want = desired.rendered();
    for ((table, chain), rules) in &want {
        let obs = if table == "nat" { nat } else { filter };
        if obs.chains.get(chain) != Some(rules) {
            p.rewrite.insert((table.clone(), chain.clone()));
        }
    }
    for (table, obs) in [("filter", filter), ("nat", nat)] {
        for chain in obs.chains.keys() {
            if !want.contains_key(&(table.to_string(), chain.clone())) {
                p.stale.push((table.to_string(), chain.clone()));
            }
        }
    }
    let wants = |t: &str, c: &str| want.contains_key(&(t.to_string(), c.to_string()));
    p.hooks = Hooks {
        forward: !filter.hooked && wants(FORWARD_HOOK.0, FORWARD_HOOK.2),
        postrouting: !nat.hooked && wants(NAT_HOOK.0, NAT_HOOK.2),
    };
    p
}

/// The `ipset restore` lines that destroy flatnet's sets no compilation
/// wants (run after the rules that referenced them are gone).
pub fn stale_sets(existing: &[String], wanted: &[&FamilyIr]) -> String {
    let keep: BTreeSet<&String> = wanted
        .iter()
        .flat_map(|f| f.sets.keys().chain(f.lists.keys()))
        .collect();
    let stale: Vec<&String> = existing
        .iter()
        .filter(|n| is_flatnet_set(n) && !keep.contains(n))
        .collect();
    // Lists first: a set a list holds cannot be destroyed.
    let is_list = |n: &&&String| n.starts_with("fl");
    stale
        .iter()
        .filter(is_list)
        .chain(stale.iter().filter(|n| !is_list(n)))
        .map(|n| format!("destroy {n}\n"))
        .collect()
}

/// The hooks as (table, built-in, target) for callers that check them.
pub const HOOKS: [(&str, &str, &str); 2] = [FORWARD_HOOK, NAT_HOOK];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::{Cluster, EndpointAddr, compile};

    fn ir() -> FamilyIr {
        let eps = vec![EndpointAddr {
            app: Some("web".into()),
            addrs: vec!["10.244.0.2".parse().unwrap()],
        }];
        let cluster = Cluster {
            pools: vec![("10.244.0.0/16".parse().unwrap(), false)],
            ..Cluster::default()
        };
        compile(&[], &eps, &cluster).v4
    }

    /// What iptables-save would print after applying `ir` fully, with a
    /// foreign chain and rule around it.
    fn saved(ir: &FamilyIr, table: &str) -> String {
        let mut s = format!("# Generated\n*{table}\n:FORWARD ACCEPT [0:0]\n:DOCKER - [0:0]\n");
        s += ":FLATNET-ANTISPOOF - [0:0]\n:FLATNET-DNS - [0:0]\n";
        for c in ir.chains.iter().filter(|c| c.table == table) {
            s += &format!(":{} - [0:0]\n", c.name);
        }
        s += if table == "nat" {
            "[3:180] -A POSTROUTING -j FLATNET-POSTROUTING\n"
        } else {
            "[0:0] -A FORWARD -j FLATNET-FORWARD\n"
        };
        s += "[1:2] -A FORWARD -j DOCKER\n";
        if table == "filter" {
            s += "[0:0] -A FLATNET-DNS -d 169.254.1.1/32 -i flat+ -p udp -m udp --dport 53 -j ACCEPT\n";
        }
        for ((t, c), rules) in ir.rendered() {
            if t == table {
                for r in rules {
                    s += &format!("[5:300] -A {c} {r}\n");
                }
            }
        }
        s + "COMMIT\n"
    }

    #[test]
    fn right_rules_plan_nothing() {
        let d = ir();
        let f = observe(&saved(&d, "filter"), FORWARD_HOOK);
        let n = observe(&saved(&d, "nat"), NAT_HOOK);
        assert!(f.hooked && n.hooked);
        assert!(!f.chains.contains_key("FLATNET-ANTISPOOF") && !f.chains.contains_key("DOCKER"));
        // The DNS listener's chain is not policy's: never stale, never rewritten.
        assert!(!f.chains.contains_key("FLATNET-DNS"));
        assert!(!d.chains.is_empty());
        assert!(plan(&d, &f, &n).is_empty(), "{:?}", plan(&d, &f, &n));
        // A family without pools wants nothing and hooks nothing.
        let none = compile(&[], &[], &Cluster::default()).v6;
        let empty = Observed::default();
        assert!(plan(&none, &empty, &empty).is_empty());
    }

    #[test]
    fn only_differing_chains_are_rewritten_and_stale_ones_deleted() {
        let d = ir();
        let text = saved(&d, "filter")
            .replace(
                "-A FLATNET-IN-web -m comment",
                "-A FLATNET-IN-web -m comment --x",
            )
            .replace(
                ":DOCKER - [0:0]\n",
                ":DOCKER - [0:0]\n:FLATNET-IN-gone - [0:0]\n",
            )
            .replace("[0:0] -A FORWARD -j FLATNET-FORWARD\n", "");
        let f = observe(&text, FORWARD_HOOK);
        let n = observe(&saved(&d, "nat"), NAT_HOOK);
        let p = plan(&d, &f, &n);
        assert_eq!(
            p.rewrite.into_iter().collect::<Vec<_>>(),
            vec![("filter".to_string(), "FLATNET-IN-web".to_string())]
        );
        assert_eq!(
            p.stale,
            vec![("filter".to_string(), "FLATNET-IN-gone".to_string())]
        );
        assert_eq!(
            p.hooks,
            Hooks {
                forward: true,
                postrouting: false
            }
        );
    }

    #[test]
    fn only_flatnet_sets_are_destroyed() {
        let d = ir();
        let existing: Vec<String> = [
            "fa4-web",
            "fa4-old",
            "docker-set",
            "fn4-all",
            "za4-x",
            "fl4-old-0123456789abcdef",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // The stale list before the sets it may hold.
        assert_eq!(
            stale_sets(&existing, &[&d]),
            "destroy fl4-old-0123456789abcdef\ndestroy fa4-old\ndestroy za4-x\n"
        );
    }
}
