//! One test per RFC 4271 9.1.2.2 step: each sets up two routes where the
//! step under test picks A and the next step would pick B, so removing
//! the step makes the test fail. Plus multipath with and without relax.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rib_common;

use flatnet_bgp::rib::{Attrs, DecisionConfig};
use flatnet_bgp::wire::{Origin, SegmentType};
use rib_common::*;

const P: &str = "203.0.113.0/24";

#[test]
fn highest_local_pref_wins_over_shorter_path() {
    let mut rib = rib();
    up(&mut rib, 1, LOCAL_AS, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, LOCAL_AS, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010, 65011]).lp(200), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]).lp(100), &[P]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn missing_local_pref_counts_as_100() {
    let mut rib = rib();
    up(&mut rib, 1, LOCAL_AS, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, LOCAL_AS, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]).lp(101), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]), &[P]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn local_pref_from_ebgp_is_ignored() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, 65010, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]).lp(500), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]), &[P]);
    assert_eq!(
        best_peer(&rib, P),
        Some(2),
        "LOCAL_PREF 500 from eBGP must not count"
    );
}

#[test]
fn locally_originated_wins_over_learned() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[]), &[P]);
    // The local route has a longer path: only the "local first" step makes it win.
    let mut a = Attrs::default();
    a.as_path.prepend(LOCAL_AS, 3);
    rib.originate(pfx(P), a);
    assert_eq!(
        rib.best(&pfx(P)).unwrap().peer,
        flatnet_bgp::rib::PeerId::LOCAL
    );
}

#[test]
fn shortest_as_path_wins_over_better_origin() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, 65010, "10.0.0.1", "10.1.0.1");
    announce(
        &mut rib,
        1,
        &R::path(&[65010]).origin(Origin::Incomplete),
        &[P],
    );
    announce(
        &mut rib,
        2,
        &R::path(&[65010, 65011]).origin(Origin::Igp),
        &[P],
    );
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn as_set_counts_one_and_confed_segments_zero() {
    // iBGP peers: confederation segments from eBGP are treat-as-withdraw (RFC 5065 5).
    let mut rib = rib();
    up(&mut rib, 1, LOCAL_AS, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, LOCAL_AS, "10.0.0.1", "10.1.0.1");
    // A: 2 + 1 (set of 3) + 0 (confed of 4) = 3; B: 4.
    let a = R::segments(vec![
        (
            SegmentType::ConfedSequence,
            vec![64512, 64513, 64514, 64515],
        ),
        (SegmentType::Sequence, vec![65010, 65011]),
        (SegmentType::Set, vec![1, 2, 3]),
    ]);
    announce(&mut rib, 1, &a, &[P]);
    announce(&mut rib, 2, &R::path(&[65010, 65011, 65012, 65013]), &[P]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn lowest_origin_wins_over_lower_med() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, 65010, "10.0.0.1", "10.1.0.1");
    announce(
        &mut rib,
        1,
        &R::path(&[65010]).origin(Origin::Igp).med(50),
        &[P],
    );
    announce(
        &mut rib,
        2,
        &R::path(&[65010]).origin(Origin::Egp).med(10),
        &[P],
    );
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn lowest_med_wins_within_same_neighbour_as() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, 65010, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]).med(10), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]).med(20), &[P]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn missing_med_is_lowest() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, 65010, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]).med(5), &[P]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn med_not_compared_across_neighbour_as_unless_always_compare() {
    for (always, want) in [(false, 1), (true, 2)] {
        let mut rib = rib_with(DecisionConfig {
            always_compare_med: always,
            ..DecisionConfig::default()
        });
        up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
        up(&mut rib, 2, 65020, "10.0.0.9", "10.1.0.9");
        announce(&mut rib, 1, &R::path(&[65010]).med(100), &[P]);
        announce(&mut rib, 2, &R::path(&[65020]).med(0), &[P]);
        assert_eq!(
            best_peer(&rib, P),
            Some(want),
            "always_compare_med={always}"
        );
    }
}

#[test]
fn med_is_not_transitive_selection_is_order_independent() {
    // Classic: A(AS1, med 10) beats B(AS1, med 20); C(AS2) only comparable by router id.
    let feeds = [[1u32, 2, 3], [3, 2, 1], [2, 3, 1], [1, 3, 2]];
    let mut winners = Vec::new();
    for order in feeds {
        let mut rib = rib();
        up(&mut rib, 1, 65010, "10.0.0.5", "10.1.0.5");
        up(&mut rib, 2, 65010, "10.0.0.1", "10.1.0.1");
        up(&mut rib, 3, 65020, "10.0.0.3", "10.1.0.3");
        for p in order {
            let r = match p {
                1 => R::path(&[65010]).med(10),
                2 => R::path(&[65010]).med(20),
                _ => R::path(&[65020]).med(0),
            };
            announce(&mut rib, p, &r, &[P]);
        }
        winners.push(best_peer(&rib, P));
    }
    // B is eliminated by A's MED; between A (rid .5) and C (rid .3), C wins.
    assert!(winners.iter().all(|w| *w == Some(3)), "{winners:?}");
}

#[test]
fn ebgp_wins_over_ibgp() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, LOCAL_AS, "10.0.0.1", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]).lp(100), &[P]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn lowest_router_id_wins_over_lower_address() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.9");
    up(&mut rib, 2, 65010, "10.0.0.9", "10.1.0.1");
    announce(&mut rib, 1, &R::path(&[65010]), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]), &[P]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn originator_id_replaces_router_id() {
    let mut rib = rib();
    up(&mut rib, 1, LOCAL_AS, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, LOCAL_AS, "10.0.0.5", "10.1.0.1");
    announce(
        &mut rib,
        1,
        &R::path(&[65010]).lp(100).originator("1.1.1.1").cluster(1),
        &[P],
    );
    announce(&mut rib, 2, &R::path(&[65010]).lp(100), &[P]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn shorter_cluster_list_wins_over_lower_address() {
    let mut rib = rib();
    up(&mut rib, 1, LOCAL_AS, "10.0.0.9", "10.1.0.9");
    up(&mut rib, 2, LOCAL_AS, "10.0.0.8", "10.1.0.1");
    announce(
        &mut rib,
        1,
        &R::path(&[65010]).lp(100).originator("1.1.1.1").cluster(1),
        &[P],
    );
    announce(
        &mut rib,
        2,
        &R::path(&[65010]).lp(100).originator("1.1.1.1").cluster(2),
        &[P],
    );
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn lowest_peer_address_wins_over_peer_id() {
    let mut rib = rib();
    up(&mut rib, 2, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.2");
    announce(&mut rib, 1, &R::path(&[65010]), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]), &[P]);
    assert_eq!(best_peer(&rib, P), Some(2));
}

#[test]
fn withdrawing_best_promotes_next_and_reports_change() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65010, "10.0.0.2", "10.1.0.2");
    announce(&mut rib, 1, &R::path(&[65010]), &[P]);
    let ch = announce(&mut rib, 2, &R::path(&[65010, 65011]), &[P]);
    assert!(
        ch.loc_rib.is_empty(),
        "a worse route changes nothing: {ch:?}"
    );
    let ch = withdraw(&mut rib, 1, &[P]);
    assert_eq!(ch.loc_rib.len(), 1);
    assert_eq!(ch.loc_rib[0].best.as_ref().unwrap().peer.0, 2);
    let ch = withdraw(&mut rib, 2, &[P]);
    assert_eq!(ch.loc_rib[0].best, None);
    assert!(ch.loc_rib[0].multipath.is_empty());
    assert_eq!(rib.loc_rib_len(), 0);
}

// ------------------------------------------------------------------ multipath

#[test]
fn multipath_holds_equal_routes_from_same_neighbour_as() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65010, "10.0.0.2", "10.1.0.2");
    up(&mut rib, 3, 65010, "10.0.0.3", "10.1.0.3");
    announce(&mut rib, 1, &R::path(&[65010, 65100]).nh("10.1.0.1"), &[P]);
    announce(&mut rib, 2, &R::path(&[65010, 65100]).nh("10.1.0.2"), &[P]);
    let ch = announce(
        &mut rib,
        3,
        &R::path(&[65010, 65100, 65101]).nh("10.1.0.3"),
        &[P],
    );
    assert!(ch.loc_rib.is_empty(), "longer path must not join the set");
    assert_eq!(multipath_peers(&rib, P), vec![1, 2]);
    assert_eq!(best_peer(&rib, P), Some(1));
}

#[test]
fn multipath_change_is_reported_even_if_best_is_unchanged() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65010, "10.0.0.2", "10.1.0.2");
    announce(&mut rib, 1, &R::path(&[65010]), &[P]);
    let ch = announce(&mut rib, 2, &R::path(&[65010]), &[P]);
    assert_eq!(ch.loc_rib.len(), 1);
    assert_eq!(ch.loc_rib[0].best.as_ref().unwrap().peer.0, 1);
    assert_eq!(ch.loc_rib[0].multipath.len(), 2);
    assert!(
        ch.peers_with_updates.is_empty(),
        "best unchanged: nothing to send"
    );
}

#[test]
fn multipath_requires_same_neighbour_as_without_relax() {
    for (relax, want) in [(false, vec![1]), (true, vec![1, 2])] {
        let mut rib = rib_with(DecisionConfig {
            multipath_relax: relax,
            ..DecisionConfig::default()
        });
        up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
        up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
        announce(&mut rib, 1, &R::path(&[65010, 65100]), &[P]);
        announce(&mut rib, 2, &R::path(&[65020, 65100]), &[P]);
        assert_eq!(multipath_peers(&rib, P), want, "relax={relax}");
    }
}

#[test]
fn multipath_excludes_ibgp_when_ebgp_present_and_respects_max_paths() {
    let mut rib = rib_with(DecisionConfig {
        max_paths: 2,
        ..DecisionConfig::default()
    });
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65010, "10.0.0.2", "10.1.0.2");
    up(&mut rib, 3, 65010, "10.0.0.3", "10.1.0.3");
    up(&mut rib, 4, LOCAL_AS, "10.0.0.0", "10.1.0.0");
    for p in 1..=3 {
        announce(&mut rib, p, &R::path(&[65010]), &[P]);
    }
    announce(&mut rib, 4, &R::path(&[65010]).lp(100), &[P]);
    assert_eq!(
        multipath_peers(&rib, P),
        vec![1, 2],
        "max_paths 2, lowest router ids, no iBGP"
    );
    let mut rib1 = rib_with(DecisionConfig {
        max_paths: 1,
        ..DecisionConfig::default()
    });
    up(&mut rib1, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib1, 2, 65010, "10.0.0.2", "10.1.0.2");
    announce(&mut rib1, 1, &R::path(&[65010]), &[P]);
    announce(&mut rib1, 2, &R::path(&[65010]), &[P]);
    assert_eq!(multipath_peers(&rib1, P), vec![1]);
}

#[test]
fn multipath_excludes_different_med_from_same_as() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65010, "10.0.0.2", "10.1.0.2");
    announce(&mut rib, 1, &R::path(&[65010]).med(5), &[P]);
    announce(&mut rib, 2, &R::path(&[65010]).med(6), &[P]);
    assert_eq!(multipath_peers(&rib, P), vec![1]);
}
