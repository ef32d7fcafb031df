//! Puts a compilation into the kernel through the netfilter batch writer:
//! sets first (`ipset restore`, so every set a rule names exists), then
//! the chains that differ from what `iptables-save` shows
//! (`iptables-restore --noflush`, atomic per table), then flatnet's sets
//! nothing references any more. A compilation whose chains equal the last
//! one applied is a membership change: `add`/`del` lines only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::compile::{
    Compiled, EndpointAddr, FORWARD_HOOK, FamilyIr, NAT_HOOK, Origin, chains_differ,
    membership_delta, sets_delta,
};
use super::plan::{observe, plan, stale_sets};
use crate::netfilter::{Family, Netfilter, NfError};

/// What an apply wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The kernel already held it.
    Nothing,
    /// Set members only.
    Members,
    /// Chains (and sets).
    Rules,
}

/// Where the last full apply spent its time (the benchmark prints it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    /// `ipset restore` of every set, run alongside the `iptables-save`
    /// reads of both families and tables.
    pub sets_and_read: Duration,
    /// Planning against what was read.
    pub plan: Duration,
    /// `iptables-restore` of the chains that differ (both families).
    pub restore: Duration,
    /// Listing and destroying flatnet's sets nothing names any more.
    pub stale_sets: Duration,
}

/// The kernel side of policy, one per flatnetd.
pub struct Enforcer {
    nf: Arc<Netfilter>,
    last: tokio::sync::Mutex<Option<Compiled>>,
    phases: std::sync::Mutex<Phases>,
}

impl Enforcer {
    pub fn new(nf: Arc<Netfilter>) -> Self {
        Enforcer {
            nf,
            last: tokio::sync::Mutex::new(None),
            phases: std::sync::Mutex::new(Phases::default()),
        }
    }

    /// The phases of the last full apply.
    pub fn phases(&self) -> Phases {
        self.phases.lock().map(|p| *p).unwrap_or_default()
    }

    /// Applies `c`. The first apply (at start) reconciles against the
    /// kernel: chains already right are not written.
    pub async fn apply(&self, c: Compiled) -> Result<Applied, NfError> {
        let mut last = self.last.lock().await;
        if let Some(old) = last.as_ref()
            && !chains_differ(&old.v4, &c.v4)
            && !chains_differ(&old.v6, &c.v6)
        {
            let delta = membership_delta(&old.v4, &c.v4) + &membership_delta(&old.v6, &c.v6);
            if delta.is_empty() {
                return Ok(Applied::Nothing);
            }
            self.nf.ipset_restore(&delta).await?;
            *last = Some(c);
            return Ok(Applied::Members);
        }
        let t = Instant::now();
        let sets = c.v4.ipset_payload() + &c.v6.ipset_payload();
        // The reads do not depend on the sets: run them alongside.
        let nf = &self.nf;
        let (written, f4, n4, f6, n6) = tokio::join!(
            nf.ipset_restore(&sets),
            nf.save(Family::V4, "filter", false),
            nf.save(Family::V4, "nat", false),
            nf.save(Family::V6, "filter", false),
            nf.save(Family::V6, "nat", false),
        );
        written?;
        let read = [(Family::V4, f4?, n4?), (Family::V6, f6?, n6?)];
        let mut phases = Phases {
            sets_and_read: t.elapsed(),
            ..Phases::default()
        };
        let mut wrote = false;
        for (fam, filter, nat) in read {
            let ir = c.family(fam);
            let t = Instant::now();
            let filter = observe(&filter, FORWARD_HOOK);
            let nat = observe(&nat, NAT_HOOK);
            let p = plan(ir, &filter, &nat);
            phases.plan += t.elapsed();
            if p.is_empty() {
                continue;
            }
            tracing::info!(
                ?fam,
                rewrite = p.rewrite.len(),
                stale = p.stale.len(),
                "policy chains"
            );
            let t = Instant::now();
            self.nf
                .restore(
                    fam,
                    &ir.iptables_payload(p.hooks, &p.stale, Some(&p.rewrite)),
                )
                .await?;
            phases.restore += t.elapsed();
            wrote = true;
        }
        let t = Instant::now();
        let names = self.nf.ipset_names().await?;
        let stale = stale_sets(&names, &[&c.v4, &c.v6]);
        if !stale.is_empty() {
            self.nf.ipset_restore(&stale).await?;
        }
        phases.stale_sets = t.elapsed();
        if let Ok(mut p) = self.phases.lock() {
            *p = phases;
        }
        *last = Some(c);
        Ok(if wrote {
            Applied::Rules
        } else {
            Applied::Nothing
        })
    }

    /// A membership change under the chains last applied: only the sets
    /// are recomputed and only `add`/`del` lines written. `None` when it
    /// is not one (nothing applied yet, or an endpoint of a new app).
    pub async fn apply_members(&self, eps: &[EndpointAddr]) -> Result<Option<Applied>, NfError> {
        let mut last = self.last.lock().await;
        let Some(c) = last.as_mut() else {
            return Ok(None);
        };
        let (Some(s4), Some(s6)) = (c.v4.sets_for(eps), c.v6.sets_for(eps)) else {
            return Ok(None);
        };
        let delta = sets_delta(&c.v4.sets, &s4) + &sets_delta(&c.v6.sets, &s6);
        if delta.is_empty() {
            return Ok(Some(Applied::Nothing));
        }
        self.nf.ipset_restore(&delta).await?;
        c.v4.sets = s4;
        c.v6.sets = s6;
        Ok(Some(Applied::Members))
    }

    /// The compilation in the kernel (what `policy trace` walks).
    pub async fn current(&self) -> Option<Compiled> {
        self.last.lock().await.clone()
    }

    /// Packets and bytes per policy edge, both families summed.
    pub async fn stats(&self) -> Result<Vec<EdgeCounter>, NfError> {
        let current = self.last.lock().await.clone();
        let mut all = BTreeMap::new();
        for fam in Family::ALL {
            let save = self.nf.save(fam, "filter", true).await?;
            let ir = current.as_ref().map(|c| c.family(fam));
            let mut found = counters(&save, ir);
            // Grouped edges count in their list's members.
            for (name, members) in ir.map(|ir| &ir.lists).into_iter().flatten() {
                let text = self.nf.ipset_save(name).await?;
                for (k, c) in list_counters(&text, name, members) {
                    let e = found.entry(k).or_insert((0, 0));
                    e.0 += c.0;
                    e.1 += c.1;
                }
            }
            for (k, (p, b)) in found {
                let e = all.entry(k).or_insert((0, 0));
                e.0 += p;
                e.1 += b;
            }
        }
        Ok(all
            .into_iter()
            .map(|(rule, (packets, bytes))| EdgeCounter {
                rule,
                packets,
                bytes,
            })
            .collect())
    }
}

/// One rule's counters, keyed by its comment (`flatnet:<policy>:<edge>`
/// or a default's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeCounter {
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Sums `iptables-save -c` counters by origin: a rule with a flatnet
/// comment by that comment; an edge rule (no comment) by its position in
/// its chain, which is the position of its rule in `ir` (the reconcile
/// keeps flatnet's chains exactly as compiled).
pub fn counters(save: &str, ir: Option<&FamilyIr>) -> BTreeMap<String, (u64, u64)> {
    let chains: BTreeMap<&str, &[super::compile::Rule]> = ir
        .map(|ir| {
            ir.chains
                .iter()
                .filter(|c| c.table == "filter")
                .map(|c| (c.name.as_str(), &c.rules[..]))
                .collect()
        })
        .unwrap_or_default();
    let mut pos: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in save.lines() {
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((cnt, rule)) = rest.split_once("] ") else {
            continue;
        };
        let Some(chain) = rule
            .strip_prefix("-A ")
            .and_then(|r| r.split_whitespace().next())
        else {
            continue;
        };
        let i = pos.entry(chain.to_string()).or_insert(0);
        let at = *i;
        *i += 1;
        let comment = rule
            .split_once("--comment \"")
            .and_then(|(_, after)| after.split_once('"'))
            .map(|(c, _)| c.to_string())
            .filter(|c| c.starts_with("flatnet:"));
        let key = match comment {
            Some(c) => c,
            None => match chains
                .get(chain)
                .and_then(|rules| rules.get(at))
                .and_then(|r| r.origin.as_ref())
            {
                Some(o @ Origin::Edge { .. }) => o.comment(),
                _ => continue,
            },
        };
        let (p, b) = cnt.split_once(':').unwrap_or(("0", "0"));
        let e = out.entry(key).or_insert((0u64, 0u64));
        e.0 += p.parse::<u64>().unwrap_or(0);
        e.1 += b.parse::<u64>().unwrap_or(0);
    }
    out
}

/// Per-edge counters of one policy `list:set` from `ipset save NAME`
/// (`add NAME MEMBER packets P bytes B`), by the member's edge.
pub fn list_counters(
    save: &str,
    list: &str,
    members: &[super::compile::ListMember],
) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in save.lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some("add") || w.next() != Some(list) {
            continue;
        }
        let Some(member) = w.next() else { continue };
        let Some(m) = members.iter().find(|m| m.set == member) else {
            continue;
        };
        let rest: Vec<&str> = w.collect();
        let field = |k: &str| {
            rest.windows(2)
                .find(|p| p[0] == k)
                .and_then(|p| p[1].parse::<u64>().ok())
                .unwrap_or(0)
        };
        let e = out.entry(m.origin.comment()).or_insert((0u64, 0u64));
        e.0 += field("packets");
        e.1 += field("bytes");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::counters;
    use crate::policy::compile::{Cluster, EndpointAddr, compile};
    use crate::policy::model::Policy;

    /// Edge rules carry no comment: their counters are found by position
    /// against the compilation; defaults by their comment.
    #[test]
    fn counters_by_edge_position_and_by_comment() {
        let text = "name = \"p\"\n[[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [80]\n\
                    [[allow]]\nfrom = \"a\"\nto = \"c\"\nproto = \"tcp\"\nports = [80]\n";
        let (_, p) = Policy::parse(text, "t").unwrap();
        let eps: Vec<EndpointAddr> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, app)| EndpointAddr {
                app: Some(app.to_string()),
                addrs: vec![format!("10.244.0.{}", i + 2).parse().unwrap()],
            })
            .collect();
        let cluster = Cluster {
            pools: vec![("10.244.0.0/16".parse().unwrap(), false)],
            ..Cluster::default()
        };
        let ir = compile(&[p], &eps, &cluster).v4;
        let payload = ir.iptables_payload(Default::default(), &[], None);
        assert!(!payload.contains("flatnet:p:allow"), "{payload}");
        let mut save = String::from("*filter\n[7:7] -A OTHER -j ACCEPT\n");
        for l in payload.lines() {
            if l.starts_with("-A FLATNET-IN-b") || l.starts_with("-A FLATNET-IN-c") {
                save.push_str(&format!("[3:180] {l}\n"));
            } else if l.starts_with("-A ") {
                save.push_str(&format!("[1:60] {l}\n"));
            }
        }
        let c = counters(&save, Some(&ir));
        assert_eq!(c.get("flatnet:p:allow[0]"), Some(&(3, 180)), "{c:?}");
        assert_eq!(c.get("flatnet:p:allow[1]"), Some(&(3, 180)), "{c:?}");
        // Two chains' default rules, both IN-b and IN-c, plus the
        // FLATNET-INGRESS one.
        assert!(c["flatnet:default-between-apps"].0 >= 6, "{c:?}");
        assert!(!c.keys().any(|k| !k.starts_with("flatnet:")));
        // Without a compilation edges are not attributed.
        assert!(!counters(&save, None).contains_key("flatnet:p:allow[0]"));
    }
}
