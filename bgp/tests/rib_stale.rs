//! Graceful restart (stale mark / refresh / sweep), route refresh (soft
//! reconfiguration inbound, resend), and max-prefix counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rib_common;

use flatnet_bgp::policy::{Action, Disposition, Match, Policy, PrefixList, PrefixListEntry, Term};
use flatnet_bgp::rib::PeerId;
use flatnet_bgp::wire::{Family, Update};
use rib_common::*;

const A: &str = "10.0.0.0/24";
const B: &str = "10.0.1.0/24";
const C: &str = "10.0.2.0/24";

#[test]
fn graceful_restart_keeps_stale_until_refreshed_or_swept_by_end_of_rib() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]), &[A, B, C]);
    // Session lost with GR for IPv4: routes stay, marked stale, no Loc-RIB change.
    let ch = rib.peer_down(PeerId(1), &[Family::IPV4_UNICAST]);
    assert!(ch.loc_rib.is_empty(), "helper keeps forwarding: {ch:?}");
    assert_eq!(rib.loc_rib_len(), 3);
    assert_eq!(rib.counts(PeerId(1), Family::IPV4_UNICAST).stale, 3);
    assert!(rib.routes(&pfx(A))[0].stale, "stale flag set");
    // Peer is back and re-announces A (same attrs) and B (new attrs).
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    let ch = announce(&mut rib, 1, &R::path(&[65010]), &[A]);
    assert!(ch.loc_rib.is_empty(), "same route again: no flap");
    announce(&mut rib, 1, &R::path(&[65010, 65011]), &[B]);
    assert!(!rib.routes(&pfx(A))[0].stale, "refresh clears stale");
    assert_eq!(rib.counts(PeerId(1), Family::IPV4_UNICAST).stale, 1);
    // End-of-RIB sweeps C only.
    let ch = rib
        .apply_update(PeerId(1), &Update::end_of_rib(Family::IPV4_UNICAST))
        .unwrap();
    assert_eq!(ch.end_of_rib, Some(Family::IPV4_UNICAST));
    assert_eq!(ch.loc_rib.len(), 1);
    assert_eq!(ch.loc_rib[0].prefix, pfx(C));
    assert_eq!(ch.loc_rib[0].best, None);
    assert_eq!(rib.loc_rib_len(), 2);
    assert_eq!(rib.counts(PeerId(1), Family::IPV4_UNICAST).stale, 0);
}

#[test]
fn sweep_on_timer_removes_all_stale_and_forgets_the_peer() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    rib.take_updates(PeerId(2)).unwrap();
    announce(&mut rib, 1, &R::path(&[65010]), &[A, B]);
    rib.take_updates(PeerId(2)).unwrap();
    rib.peer_down(PeerId(1), &[Family::IPV4_UNICAST]);
    assert!(!rib.has_updates(PeerId(2)), "nothing withdrawn while stale");
    let ch = rib.sweep_stale(PeerId(1), Family::IPV4_UNICAST);
    assert_eq!(ch.loc_rib.len(), 2);
    assert!(ch.peers_with_updates.contains(&PeerId(2)));
    assert_eq!(rib.loc_rib_len(), 0);
    assert!(rib.peers().iter().all(|(p, _)| *p != PeerId(1)));
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert_eq!(us.iter().map(|u| u.withdrawn.len()).sum::<usize>(), 2);
}

#[test]
fn plain_peer_down_removes_everything() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]), &[A, B]);
    let ch = rib.peer_down(PeerId(1), &[]);
    assert_eq!(ch.loc_rib.len(), 2);
    assert_eq!(rib.loc_rib_len(), 0);
    assert!(rib.peers().is_empty());
    assert!(
        rib.apply_update(PeerId(1), &R::path(&[65010]).update(&[A]))
            .is_err(),
        "down peer rejected"
    );
}

#[test]
fn mark_stale_then_sweep_for_enhanced_route_refresh() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]), &[A, B]);
    assert_eq!(rib.mark_stale(PeerId(1), Family::IPV4_UNICAST), 2);
    announce(&mut rib, 1, &R::path(&[65010]), &[B]);
    let ch = rib.sweep_stale(PeerId(1), Family::IPV4_UNICAST);
    assert_eq!(ch.loc_rib.len(), 1);
    assert_eq!(ch.loc_rib[0].prefix, pfx(A));
    assert_eq!(best_peer(&rib, B), Some(1));
}

fn only(prefix: &str) -> Policy {
    Policy {
        name: format!("only {prefix}"),
        terms: vec![Term {
            name: "t".into(),
            matches: vec![Match::Prefix(PrefixList {
                entries: vec![PrefixListEntry::new(pfx(prefix), None, None).unwrap()],
            })],
            actions: vec![Action::SetLocalPref(300)],
            disposition: Disposition::Accept,
        }],
        default: Disposition::Reject,
    }
}

#[test]
fn import_policy_change_reruns_on_adj_rib_in_pre_without_refresh() {
    let mut rib = rib();
    let mut i = info(65010, "10.0.0.1", "10.1.0.1");
    i.import = Some(only(A));
    rib.peer_up(PeerId(1), i);
    announce(&mut rib, 1, &R::path(&[65010]), &[A, B]);
    assert_eq!(rib.loc_rib_len(), 1);
    assert_eq!(rib.best(&pfx(A)).unwrap().attrs.local_pref, Some(300));
    assert_eq!(rib.adj_rib_in_pre(PeerId(1)).len(), 2);
    assert_eq!(rib.adj_rib_in_post(PeerId(1)).len(), 1);
    let ch = rib.set_import_policy(PeerId(1), Some(only(B))).unwrap();
    assert!(ch.route_refresh_needed.is_empty());
    assert_eq!(ch.loc_rib.len(), 2);
    assert_eq!(best_peer(&rib, A), None);
    assert_eq!(rib.best(&pfx(B)).unwrap().attrs.local_pref, Some(300));
    let c = rib.counts(PeerId(1), Family::IPV4_UNICAST);
    assert_eq!((c.received, c.accepted), (2, 1));
}

#[test]
fn without_soft_reconfiguration_a_route_refresh_is_requested() {
    let mut rib = rib();
    let mut i = info(65010, "10.0.0.1", "10.1.0.1");
    i.import = Some(only(A));
    i.keep_rejected = false;
    i.families = vec![Family::IPV4_UNICAST];
    rib.peer_up(PeerId(1), i);
    announce(&mut rib, 1, &R::path(&[65010]), &[A, B]);
    assert_eq!(
        rib.adj_rib_in_pre(PeerId(1)).len(),
        1,
        "rejected route not kept"
    );
    let ch = rib.set_import_policy(PeerId(1), Some(only(B))).unwrap();
    assert_eq!(
        ch.route_refresh_needed,
        vec![(PeerId(1), Family::IPV4_UNICAST)]
    );
    // The peer answers the refresh by resending: B now accepted.
    announce(&mut rib, 1, &R::path(&[65010]), &[A, B]);
    assert_eq!(best_peer(&rib, B), Some(1));
    assert_eq!(best_peer(&rib, A), None);
}

#[test]
fn resend_requeues_adj_rib_out_and_end_of_rib() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    announce(&mut rib, 1, &R::path(&[65010]), &[A, B]);
    rib.take_updates(PeerId(2)).unwrap();
    rib.resend(PeerId(2), Family::IPV4_UNICAST).unwrap();
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert_eq!(us.iter().map(|u| u.nlri.len()).sum::<usize>(), 2);
    assert_eq!(
        us.last().unwrap().end_of_rib_family(),
        Some(Family::IPV4_UNICAST)
    );
}

#[test]
fn max_prefix_counts_per_family() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    let ps: Vec<String> = (0..100).map(|i| format!("10.1.{i}.0/24")).collect();
    announce(
        &mut rib,
        1,
        &R::path(&[65010]),
        &ps.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    withdraw(&mut rib, 1, &["10.1.0.0/24", "10.1.1.0/24"]);
    // Re-announcing an existing prefix does not count twice.
    announce(&mut rib, 1, &R::path(&[65010, 65011]), &["10.1.5.0/24"]);
    let c = rib.counts(PeerId(1), Family::IPV4_UNICAST);
    assert_eq!((c.received, c.accepted), (98, 98));
    assert_eq!(rib.counts(PeerId(1), Family::IPV6_UNICAST).received, 0);
    assert_eq!(rib.counts(PeerId(2), Family::IPV4_UNICAST).advertised, 98);
}

#[test]
fn an_import_reject_is_reported_once_per_peer_and_prefix() {
    let mut rib = rib();
    let mut i = info(65010, "10.0.0.1", "10.1.0.1");
    i.import = Some(only(A));
    i.log_import_rejects = true;
    rib.peer_up(PeerId(1), i);
    let ch = announce(&mut rib, 1, &R::path(&[65010]), &[A, B]);
    assert_eq!(
        ch.notices,
        vec![format!("import policy rejected {B} from peer 10.1.0.1")]
    );
    // Sent again (a refresh, a changed attribute): still rejected, not reported again.
    let ch = announce(&mut rib, 1, &R::path(&[65010, 65011]), &[A, B]);
    assert!(ch.notices.is_empty(), "{:?}", ch.notices);
    // Without the flag nothing is reported.
    let mut rib2 = rib_common::rib();
    let mut i = info(65010, "10.0.0.1", "10.1.0.1");
    i.import = Some(only(A));
    rib2.peer_up(PeerId(1), i);
    let ch = announce(&mut rib2, 1, &R::path(&[65010]), &[B]);
    assert!(ch.notices.is_empty());
}
