//! The RFC 4271 section 9.1.2.2 decision process and the multipath set,
//! as set filters over the candidates (the RFC's own formulation), so the
//! result does not depend on the order routes arrived in even though the
//! MED rule is not a total order.

use std::net::{IpAddr, Ipv4Addr};

use super::attrs::Attrs;

/// What the decision process needs to know about the peer a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Peer id (last tie-break, so the result is unique).
    pub id: u32,
    /// Learned over eBGP.
    pub ebgp: bool,
    /// Locally originated.
    pub local: bool,
    /// The peer's BGP identifier.
    pub router_id: Ipv4Addr,
    /// The peer's address.
    pub address: IpAddr,
    /// Our AS on that session (neighbour AS of routes with an empty AS_PATH).
    pub local_as: u32,
}

/// One candidate route.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Attributes after import policy.
    pub attrs: &'a Attrs,
    /// Where it came from.
    pub source: &'a Source,
}

/// Knobs of the decision process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionConfig {
    /// Compare MED between routes from different neighbouring ASes too.
    pub always_compare_med: bool,
    /// Size limit of the multipath set (1 = no ECMP).
    pub max_paths: usize,
    /// Allow multipath members from different neighbouring ASes with equal
    /// AS_PATH length (`bestpath as-path multipath-relax`).
    pub multipath_relax: bool,
}

impl Default for DecisionConfig {
    fn default() -> DecisionConfig {
        DecisionConfig {
            always_compare_med: false,
            max_paths: 8,
            multipath_relax: false,
        }
    }
}

/// Result: index of the best route and the multipath set (indices, best
/// first, then in tie-break order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Index of the best candidate.
    pub best: usize,
    /// Multipath members, `best` first; at most `max_paths`.
    pub multipath: Vec<usize>,
}

fn keep_min<K: Ord>(s: &mut Vec<usize>, key: impl Fn(usize) -> K) {
    if let Some(m) = s.iter().map(|&i| key(i)).min() {
        s.retain(|&i| key(i) == m);
    }
}

/// The tie-breaks after "eBGP over iBGP": lowest router id (ORIGINATOR_ID
/// if present), shortest CLUSTER_LIST, lowest peer address, lowest peer id.
pub fn tie_key(c: &Candidate<'_>) -> (Ipv4Addr, usize, IpAddr, u32) {
    (
        c.attrs.originator_id.unwrap_or(c.source.router_id),
        c.attrs.cluster_list.len(),
        c.source.address,
        c.source.id,
    )
}

/// Run the decision process; `None` if there are no candidates.
pub fn select(c: &[Candidate<'_>], cfg: &DecisionConfig) -> Option<Selection> {
    match c.len() {
        0 => return None,
        1 => {
            return Some(Selection {
                best: 0,
                multipath: vec![0],
            });
        }
        _ => {}
    }
    let mut s: Vec<usize> = (0..c.len()).collect();
    let a = |i: usize| c[i].attrs;
    // a) highest LOCAL_PREF
    keep_min(&mut s, |i| std::cmp::Reverse(a(i).local_pref_or_default()));
    // locally originated routes before learned ones (like FRR/Cisco)
    keep_min(&mut s, |i| !c[i].source.local);
    // b) shortest AS_PATH (AS_SET counts 1, confederation segments 0)
    keep_min(&mut s, |i| a(i).as_path.path_len());
    // c) lowest ORIGIN
    keep_min(&mut s, |i| a(i).origin);
    // d) MED: drop a route if one from the same neighbouring AS has a lower MED (missing = 0)
    let nas = |i: usize| a(i).neighbour_as(c[i].source.local_as);
    let med = |i: usize| a(i).med.unwrap_or(0);
    let snapshot = s.clone();
    s.retain(|&i| {
        !snapshot
            .iter()
            .any(|&j| (cfg.always_compare_med || nas(j) == nas(i)) && med(j) < med(i))
    });
    // e) eBGP over iBGP
    keep_min(&mut s, |i| !c[i].source.ebgp);
    let equal = s.clone();
    // (f: IGP cost to the next hop — no IGP here, all equal)
    // router id / originator id, cluster list, peer address, peer id
    keep_min(&mut s, |i| tie_key(&c[i]));
    let best = *s.first()?;
    let mut multipath: Vec<usize> = equal
        .into_iter()
        .filter(|&i| i != best && (cfg.multipath_relax || nas(i) == nas(best)))
        .collect();
    multipath.sort_by_key(|&i| tie_key(&c[i]));
    multipath.insert(0, best);
    multipath.truncate(cfg.max_paths.max(1));
    Some(Selection { best, multipath })
}
