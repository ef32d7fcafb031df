//! The pure part of the FIB: what the kernel should hold (from the
//! speaker's best paths and multipath sets) against what flatnet installed,
//! as the list of changes for one batch. No netlink here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use flatnet_bgp::speaker::{PathInfo, PathSource, RibEvent};
use ipnetwork::IpNetwork;

/// One next hop: the ToR's address on the fabric link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHop {
    /// Gateway address; IPv6 for an IPv4 prefix learned with an extended
    /// next hop (RFC 8950, installed as `via inet6`).
    pub gateway: IpAddr,
    /// Interface of a link-local gateway (it has no meaning without one);
    /// `None` for any other gateway, which the kernel resolves itself.
    pub ifindex: Option<u32>,
}

impl NextHop {
    /// A gateway the kernel resolves by its own routes (not link-local).
    pub fn via(gateway: IpAddr) -> NextHop {
        NextHop {
            gateway,
            ifindex: None,
        }
    }

    /// Whether the gateway only means something with an interface.
    pub fn is_link_local(&self) -> bool {
        matches!(self.gateway, IpAddr::V6(a) if a.is_unicast_link_local())
    }
}

/// The interface of each link-local peer's session (peer address →
/// ifindex), resolved from the peers' `interface` at start and reload: a
/// link-local next hop learned from the peer is installed on it.
pub type PeerLinks = BTreeMap<IpAddr, u32>;

/// The next hops of one route (more than one: ECMP), sorted and without
/// duplicates. A sorted boxed slice, not a `BTreeSet`: a set's first node
/// holds room for 11 next hops (~330 B) where routes have one or two, and
/// the FIB keeps two of these per learned route (desired and installed).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHops(Box<[NextHop]>);

impl NextHops {
    pub fn new() -> NextHops {
        NextHops::default()
    }

    /// Adds `h` unless present (keeps the order).
    pub fn insert(&mut self, h: NextHop) -> bool {
        match self.0.binary_search(&h) {
            Ok(_) => false,
            Err(i) => {
                let mut v = std::mem::take(&mut self.0).into_vec();
                v.insert(i, h);
                self.0 = v.into_boxed_slice();
                true
            }
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, NextHop> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<&NextHop> {
        self.0.first()
    }

    pub fn contains(&self, h: &NextHop) -> bool {
        self.0.binary_search(h).is_ok()
    }
}

impl FromIterator<NextHop> for NextHops {
    fn from_iter<I: IntoIterator<Item = NextHop>>(it: I) -> NextHops {
        let mut v: Vec<NextHop> = it.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        NextHops(v.into_boxed_slice())
    }
}

impl Extend<NextHop> for NextHops {
    fn extend<I: IntoIterator<Item = NextHop>>(&mut self, it: I) {
        *self = std::mem::take(&mut self.0)
            .into_vec()
            .into_iter()
            .chain(it)
            .collect();
    }
}

impl<const N: usize> From<[NextHop; N]> for NextHops {
    fn from(a: [NextHop; N]) -> NextHops {
        a.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a NextHops {
    type Item = &'a NextHop;
    type IntoIter = std::slice::Iter<'a, NextHop>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for NextHops {
    type Item = NextHop;
    type IntoIter = std::vec::IntoIter<NextHop>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_vec().into_iter()
    }
}

/// A route flatnet installed, as it knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Next hops in the kernel.
    pub hops: NextHops,
    /// Found in the kernel at start (a previous run's): kept until the
    /// first full selection after the restart, then removed if nobody wants it.
    pub adopted: bool,
    /// The nexthop object the route uses (none: plain next hops).
    pub nhid: Option<u32>,
}

/// The changes of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FibPlan {
    /// New routes (not installed): created, never replacing a route
    /// flatnet did not install.
    pub add: Vec<(IpNetwork, NextHops)>,
    /// Routes flatnet installed whose next hops changed: replaced.
    pub replace: Vec<(IpNetwork, NextHops)>,
    /// Routes flatnet installed that nobody wants any more.
    pub remove: Vec<IpNetwork>,
}

impl FibPlan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.replace.is_empty() && self.remove.is_empty()
    }
}

/// The kernel's prefix of a BGP prefix.
pub fn network_of(p: &flatnet_bgp::wire::Prefix) -> Option<IpNetwork> {
    use flatnet_bgp::wire::Prefix;
    match p {
        Prefix::V4(v) => IpNetwork::new(IpAddr::V4(v.addr()), v.len()).ok(),
        Prefix::V6(v) => IpNetwork::new(IpAddr::V6(v.addr()), v.len()).ok(),
    }
}

/// The kernel next hop of a learned path. Our own originations have none.
/// An IPv6 prefix needs an IPv6 gateway; an IPv4 prefix takes either (an
/// IPv6 one is RFC 8950). A link-local gateway takes the interface of the
/// session it came from, and is dropped when that is unknown (the kernel
/// could not reach it).
fn hop_of(prefix: &IpNetwork, p: &PathInfo, links: &PeerLinks) -> Option<NextHop> {
    let PathSource::Peer(peer) = p.source else {
        return None;
    };
    let gw = p.next_hop?;
    if gw.is_unspecified() || (prefix.is_ipv6() && gw.is_ipv4()) {
        return None;
    }
    let hop = NextHop::via(gw);
    if !hop.is_link_local() {
        return Some(hop);
    }
    let ifindex = links
        .get(&flatnet_bgp::speaker::core::normalize(peer))
        .copied()?;
    Some(NextHop {
        gateway: gw,
        ifindex: Some(ifindex),
    })
}

/// What one speaker event wants in the kernel for its prefix: the
/// multipath set's next hops (or the best path's), `None` when nothing.
pub fn desired_of(e: &RibEvent, links: &PeerLinks) -> Option<(IpNetwork, Option<NextHops>)> {
    let net = network_of(&e.prefix)?;
    let mut hops: NextHops = e
        .multipath
        .iter()
        .filter_map(|p| hop_of(&net, p, links))
        .collect();
    if hops.is_empty()
        && let Some(h) = e.best.as_ref().and_then(|b| hop_of(&net, b, links))
    {
        hops.insert(h);
    }
    Some((net, (!hops.is_empty()).then_some(hops)))
}

/// Desired against installed. `sweep`: adopted routes nobody selected may
/// go (the selection after a restart is complete); routes this run
/// installed go as soon as they are withdrawn.
pub fn plan(
    desired: &BTreeMap<IpNetwork, NextHops>,
    installed: &BTreeMap<IpNetwork, Installed>,
    sweep: bool,
) -> FibPlan {
    let mut out = FibPlan::default();
    for (net, hops) in desired {
        match installed.get(net) {
            None => out.add.push((*net, hops.clone())),
            Some(i) if i.hops != *hops => out.replace.push((*net, hops.clone())),
            Some(_) => {}
        }
    }
    for (net, i) in installed {
        if !desired.contains_key(net) && (sweep || !i.adopted) {
            out.remove.push(*net);
        }
    }
    out
}

/// Only the prefixes in `dirty` (a burst of events): the same plan as
/// [`plan`] restricted to them, without walking the whole table.
pub fn plan_dirty(
    dirty: &BTreeSet<IpNetwork>,
    desired: &BTreeMap<IpNetwork, NextHops>,
    installed: &BTreeMap<IpNetwork, Installed>,
) -> FibPlan {
    let mut out = FibPlan::default();
    for net in dirty {
        match (desired.get(net), installed.get(net)) {
            (Some(h), None) => out.add.push((*net, h.clone())),
            (Some(h), Some(i)) if i.hops != *h => out.replace.push((*net, h.clone())),
            // Still wanted and right (an adopted route re-selected as it was: left alone).
            (Some(_), Some(_)) => {}
            (None, Some(i)) if !i.adopted => out.remove.push(*net),
            (None, _) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use flatnet_bgp::wire::Prefix;

    #[test]
    fn next_hops_stay_sorted_and_unique() {
        let a = NextHop::via("10.0.0.2".parse().unwrap());
        let b = NextHop::via("10.0.0.1".parse().unwrap());
        let mut h: NextHops = [a, b, a].into();
        assert_eq!(h.iter().copied().collect::<Vec<_>>(), vec![b, a]);
        assert!(!h.insert(a));
        let c = NextHop::via("10.0.0.3".parse().unwrap());
        assert!(h.insert(c));
        assert_eq!(h.len(), 3);
        assert_eq!(h.first(), Some(&b));
        assert!(h.contains(&c));
        h.extend([c, NextHop::via("10.0.0.0".parse().unwrap())]);
        assert_eq!(h.len(), 4);
        assert_eq!(
            h,
            [a, b, c, NextHop::via("10.0.0.0".parse().unwrap())].into()
        );
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn hops(gws: &[&str]) -> NextHops {
        gws.iter()
            .map(|g| NextHop::via(g.parse().unwrap()))
            .collect()
    }

    fn none() -> PeerLinks {
        PeerLinks::new()
    }

    fn path(src: Option<&str>, nh: Option<&str>) -> PathInfo {
        PathInfo {
            source: match src {
                Some(a) => PathSource::Peer(a.parse().unwrap()),
                None => PathSource::Local,
            },
            next_hop: nh.map(|n| n.parse().unwrap()),
            as_path: vec![65001],
            local_pref: 100,
            med: 0,
            stale: false,
            best: true,
            multipath: true,
        }
    }

    fn event(prefix: &str, best: Option<PathInfo>, mp: Vec<PathInfo>) -> RibEvent {
        RibEvent {
            prefix: prefix.parse::<Prefix>().unwrap(),
            best,
            multipath: mp,
        }
    }

    #[test]
    fn multipath_set_becomes_ecmp_next_hops() {
        let e = event(
            "10.244.1.0/26",
            Some(path(Some("10.0.1.1"), Some("10.0.1.1"))),
            vec![
                path(Some("10.0.1.1"), Some("10.0.1.1")),
                path(Some("10.0.2.1"), Some("10.0.2.1")),
            ],
        );
        assert_eq!(
            desired_of(&e, &none()),
            Some((net("10.244.1.0/26"), Some(hops(&["10.0.1.1", "10.0.2.1"]))))
        );
    }

    #[test]
    fn best_alone_when_no_multipath_and_nothing_when_withdrawn_or_local() {
        let e = event(
            "10.1.0.0/24",
            Some(path(Some("10.0.1.1"), Some("10.0.1.1"))),
            vec![],
        );
        assert_eq!(
            desired_of(&e, &none()).unwrap().1,
            Some(hops(&["10.0.1.1"]))
        );
        let w = event("10.1.0.0/24", None, vec![]);
        assert_eq!(desired_of(&w, &none()), Some((net("10.1.0.0/24"), None)));
        // Our own block: originated here, never a kernel route.
        let l = event(
            "10.244.0.0/26",
            Some(path(None, None)),
            vec![path(None, None)],
        );
        assert_eq!(desired_of(&l, &none()).unwrap().1, None);
        // An IPv6 prefix never goes via an IPv4 gateway.
        let x = event(
            "2001:db8:1::/64",
            Some(path(Some("10.0.1.1"), Some("10.0.1.1"))),
            vec![],
        );
        assert_eq!(desired_of(&x, &none()).unwrap().1, None);
    }

    fn ll(gw: &str, ifindex: u32) -> NextHop {
        NextHop {
            gateway: gw.parse().unwrap(),
            ifindex: Some(ifindex),
        }
    }

    #[test]
    fn link_local_next_hops_take_their_sessions_interface() {
        let links: PeerLinks = [
            ("fe80::1".parse().unwrap(), 7),
            ("fe80::2".parse().unwrap(), 9),
        ]
        .into();
        // RFC 8950: an IPv4 prefix via an IPv6 link-local next hop, on the
        // interface of the peer it was learned from.
        let e = event(
            "10.244.1.0/26",
            Some(path(Some("fe80::1"), Some("fe80::1"))),
            vec![],
        );
        assert_eq!(
            desired_of(&e, &links).unwrap().1,
            Some([ll("fe80::1", 7)].into())
        );
        // ECMP over two unnumbered links; the next hop need not be the peer's
        // own address, the interface is the session's.
        let e = event(
            "10.244.1.0/26",
            None,
            vec![
                path(Some("fe80::1"), Some("fe80::a")),
                path(Some("fe80::2"), Some("fe80::a")),
            ],
        );
        assert_eq!(
            desired_of(&e, &links).unwrap().1,
            Some([ll("fe80::a", 7), ll("fe80::a", 9)].into())
        );
        // IPv6 prefixes too.
        let e = event(
            "2001:db8:1::/64",
            Some(path(Some("fe80::2"), Some("fe80::2"))),
            vec![],
        );
        assert_eq!(
            desired_of(&e, &links).unwrap().1,
            Some([ll("fe80::2", 9)].into())
        );
        // A global IPv6 next hop for an IPv4 prefix: the kernel resolves it.
        let e = event(
            "10.244.1.0/26",
            Some(path(Some("2001:db8::1"), Some("2001:db8::1"))),
            vec![],
        );
        assert_eq!(
            desired_of(&e, &links).unwrap().1,
            Some(hops(&["2001:db8::1"]))
        );
        // A link-local next hop from a peer of unknown interface cannot be
        // installed: the path is left out, the others stay.
        let e = event(
            "10.244.1.0/26",
            None,
            vec![
                path(Some("fe80::3"), Some("fe80::3")),
                path(Some("fe80::1"), Some("fe80::1")),
            ],
        );
        assert_eq!(
            desired_of(&e, &links).unwrap().1,
            Some([ll("fe80::1", 7)].into())
        );
        let e = event(
            "10.244.1.0/26",
            Some(path(Some("fe80::3"), Some("fe80::3"))),
            vec![],
        );
        assert_eq!(desired_of(&e, &links).unwrap().1, None);
    }

    #[test]
    fn a_moved_interface_is_a_replace() {
        let desired: BTreeMap<_, _> = [(net("10.1.0.0/24"), [ll("fe80::1", 8)].into())].into();
        let installed: BTreeMap<_, _> = [(
            net("10.1.0.0/24"),
            Installed {
                hops: [ll("fe80::1", 7)].into(),
                adopted: false,
                nhid: None,
            },
        )]
        .into();
        let p = plan(&desired, &installed, false);
        assert_eq!(
            p.replace,
            vec![(net("10.1.0.0/24"), [ll("fe80::1", 8)].into())]
        );
    }

    fn inst(gws: &[&str], adopted: bool) -> Installed {
        Installed {
            hops: hops(gws),
            adopted,
            nhid: None,
        }
    }

    #[test]
    fn plan_adds_replaces_and_removes_only_what_it_must() {
        let desired: BTreeMap<_, _> = [
            (net("10.1.0.0/24"), hops(&["10.0.1.1"])),
            (net("10.2.0.0/24"), hops(&["10.0.1.1", "10.0.2.1"])),
            (net("10.3.0.0/24"), hops(&["10.0.1.1"])),
        ]
        .into();
        let installed: BTreeMap<_, _> = [
            (net("10.2.0.0/24"), inst(&["10.0.1.1"], false)),
            (net("10.3.0.0/24"), inst(&["10.0.1.1"], true)),
            (net("10.4.0.0/24"), inst(&["10.0.1.1"], false)),
            (net("10.5.0.0/24"), inst(&["10.0.1.1"], true)),
        ]
        .into();
        let p = plan(&desired, &installed, false);
        assert_eq!(p.add, vec![(net("10.1.0.0/24"), hops(&["10.0.1.1"]))]);
        assert_eq!(
            p.replace,
            vec![(net("10.2.0.0/24"), hops(&["10.0.1.1", "10.0.2.1"]))]
        );
        // 10.3 is adopted and right: left alone. 10.5 is adopted and stale:
        // kept until the sweep.
        assert_eq!(p.remove, vec![net("10.4.0.0/24")]);
        let p = plan(&desired, &installed, true);
        assert_eq!(p.remove, vec![net("10.4.0.0/24"), net("10.5.0.0/24")]);
        assert!(plan(&BTreeMap::new(), &BTreeMap::new(), true).is_empty());
    }

    #[test]
    fn dirty_plan_matches_the_full_plan_on_its_prefixes() {
        let desired: BTreeMap<_, _> = [
            (net("10.1.0.0/24"), hops(&["10.0.1.1"])),
            (net("10.2.0.0/24"), hops(&["10.0.2.1"])),
        ]
        .into();
        let installed: BTreeMap<_, _> = [
            (net("10.2.0.0/24"), inst(&["10.0.1.1"], true)),
            (net("10.3.0.0/24"), inst(&["10.0.1.1"], false)),
            (net("10.4.0.0/24"), inst(&["10.0.1.1"], true)),
        ]
        .into();
        let all: BTreeSet<_> = [
            net("10.1.0.0/24"),
            net("10.2.0.0/24"),
            net("10.3.0.0/24"),
            net("10.4.0.0/24"),
        ]
        .into();
        assert_eq!(
            plan_dirty(&all, &desired, &installed),
            plan(&desired, &installed, false)
        );
        let one: BTreeSet<_> = [net("10.3.0.0/24")].into();
        let p = plan_dirty(&one, &desired, &installed);
        assert_eq!((p.add.len(), p.replace.len()), (0, 0));
        assert_eq!(p.remove, vec![net("10.3.0.0/24")]);
    }
}
