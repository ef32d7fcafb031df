//! Adj-RIB-Out: split horizon, next-hop-self, AS_PATH prepend, loop
//! detection, RFC 8212 defaults, packing, withdrawals and End-of-RIB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rib_common;

use std::net::IpAddr;

use flatnet_bgp::policy::{Action, Disposition, Match, Policy, PrefixList, PrefixListEntry, Term};
use flatnet_bgp::rib::{Attrs, PeerId, PeerInfo};
use flatnet_bgp::wire::{
    AsPath, Community, DecodeContext, Family, Message, MpNextHop, Nlri4, Update,
};
use rib_common::*;

fn nlri_of(us: &[Update]) -> Vec<String> {
    let mut v: Vec<String> = us
        .iter()
        .flat_map(|u| u.nlri.iter().map(|n| n.prefix.to_string()))
        .collect();
    v.sort();
    v
}

fn withdrawn_of(us: &[Update]) -> Vec<String> {
    let mut v: Vec<String> = us
        .iter()
        .flat_map(|u| u.withdrawn.iter().map(|n| n.prefix.to_string()))
        .collect();
    v.sort();
    v
}

/// Drain the initial dump (just End-of-RIB on an empty table).
fn settle(rib: &mut flatnet_bgp::rib::Rib, id: u32) -> Vec<Update> {
    rib.take_updates(PeerId(id)).unwrap()
}

#[test]
fn peer_up_dumps_table_then_end_of_rib() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    announce(
        &mut rib,
        1,
        &R::path(&[65010]),
        &["10.0.0.0/24", "10.0.1.0/24"],
    );
    let ch = up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    assert!(ch.peers_with_updates.contains(&PeerId(2)));
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert_eq!(us.len(), 3, "one packed UPDATE + EoR v4 + EoR v6: {us:?}");
    assert_eq!(nlri_of(&us), vec!["10.0.0.0/24", "10.0.1.0/24"]);
    assert_eq!(us[1].end_of_rib_family(), Some(Family::IPV4_UNICAST));
    assert_eq!(us[2].end_of_rib_family(), Some(Family::IPV6_UNICAST));
    assert!(rib.take_updates(PeerId(2)).unwrap().is_empty(), "drained");
    assert!(!rib.has_updates(PeerId(2)));
}

#[test]
fn ebgp_export_prepends_local_as_and_sets_next_hop_self() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    settle(&mut rib, 2);
    announce(
        &mut rib,
        1,
        &R::path(&[65010, 65011]).med(7).nh("10.1.0.1"),
        &["10.0.0.0/24"],
    );
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert_eq!(us.len(), 1);
    assert_eq!(
        us[0].as_path().unwrap(),
        &AsPath::sequence(vec![LOCAL_AS, 65010, 65011])
    );
    assert_eq!(us[0].next_hop(), Some(ip("192.0.2.1")));
    assert!(
        us[0]
            .attribute(flatnet_bgp::wire::attr_type::LOCAL_PREF)
            .is_none(),
        "no LOCAL_PREF to eBGP"
    );
    assert!(
        us[0].attribute(flatnet_bgp::wire::attr_type::MED).is_none(),
        "MED from eBGP not passed on"
    );
    // It encodes.
    Message::Update(us[0].clone())
        .to_bytes(&DecodeContext {
            four_octet_as: true,
            ..Default::default()
        })
        .unwrap();
}

#[test]
fn ibgp_export_keeps_next_hop_unless_next_hop_self() {
    for (nhs, want) in [(false, "10.1.0.1"), (true, "192.0.2.1")] {
        let mut rib = rib();
        up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
        let mut i = info(LOCAL_AS, "10.0.0.2", "10.1.0.2");
        i.next_hop_self = nhs;
        rib.peer_up(PeerId(2), i);
        settle(&mut rib, 2);
        announce(
            &mut rib,
            1,
            &R::path(&[65010]).nh("10.1.0.1"),
            &["10.0.0.0/24"],
        );
        let us = rib.take_updates(PeerId(2)).unwrap();
        assert_eq!(us[0].next_hop(), Some(ip(want)), "next_hop_self={nhs}");
        assert_eq!(
            us[0].as_path().unwrap(),
            &AsPath::sequence(vec![65010]),
            "no prepend on iBGP"
        );
        assert!(
            us[0]
                .attribute(flatnet_bgp::wire::attr_type::LOCAL_PREF)
                .is_some()
        );
    }
}

#[test]
fn ibgp_split_horizon() {
    let mut rib = rib();
    up(&mut rib, 1, LOCAL_AS, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, LOCAL_AS, "10.0.0.2", "10.1.0.2");
    up(&mut rib, 3, 65030, "10.0.0.3", "10.1.0.3");
    settle(&mut rib, 2);
    settle(&mut rib, 3);
    let ch = announce(&mut rib, 1, &R::path(&[65010]).lp(100), &["10.0.0.0/24"]);
    assert!(
        !ch.peers_with_updates.contains(&PeerId(2)),
        "iBGP-learned not to iBGP"
    );
    assert!(rib.take_updates(PeerId(2)).unwrap().is_empty());
    assert_eq!(
        nlri_of(&rib.take_updates(PeerId(3)).unwrap()),
        vec!["10.0.0.0/24"],
        "but to eBGP"
    );
    assert!(rib.adj_rib_out(PeerId(2)).is_empty());
    assert_eq!(rib.adj_rib_out(PeerId(3)).len(), 1);
}

#[test]
fn never_sent_back_to_its_source() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    settle(&mut rib, 1);
    let ch = announce(&mut rib, 1, &R::path(&[65010]), &["10.0.0.0/24"]);
    assert!(ch.peers_with_updates.is_empty());
    assert!(rib.adj_rib_out(PeerId(1)).is_empty());
}

#[test]
fn own_as_in_path_is_rejected_and_counted() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    let ch = announce(
        &mut rib,
        1,
        &R::path(&[65010, LOCAL_AS, 65011]),
        &["10.0.0.0/24", "10.0.1.0/24"],
    );
    assert!(ch.loc_rib.is_empty());
    assert_eq!(rib.loc_rib_len(), 0);
    let c = rib.counts(PeerId(1), Family::IPV4_UNICAST);
    assert_eq!((c.received, c.accepted, c.loop_rejected), (2, 0, 2));
    assert_eq!(
        rib.adj_rib_in_pre(PeerId(1)).len(),
        2,
        "kept pre-policy for troubleshooting"
    );
    assert!(rib.adj_rib_in_post(PeerId(1)).is_empty());
    // A later clean announcement replaces it.
    announce(&mut rib, 1, &R::path(&[65010]), &["10.0.0.0/24"]);
    assert_eq!(rib.loc_rib_len(), 1);
}

#[test]
fn rfc8212_ebgp_without_policies_accepts_and_sends_nothing() {
    let mut rib = rib();
    let mut i = PeerInfo::new(LOCAL_AS, 65010, ip("10.0.0.1"), IpAddr::V4(ip("10.1.0.1")));
    i.local_v4 = Some(ip("192.0.2.1"));
    let ch = rib.peer_up(PeerId(1), i);
    assert_eq!(ch.notices.len(), 2);
    assert!(
        ch.notices[0]
            .contains("eBGP peer 10.1.0.1 has no import policy: RFC 8212 rejects all routes")
            && ch.notices[0].contains("configure `import = ...`"),
        "{:?}",
        ch.notices
    );
    assert!(ch.notices[1].contains("no export policy") && ch.notices[1].contains("`export = ...`"));
    let ch = announce(&mut rib, 1, &R::path(&[65010]), &["10.0.0.0/24"]);
    assert!(ch.loc_rib.is_empty());
    assert_eq!(rib.counts(PeerId(1), Family::IPV4_UNICAST).accepted, 0);
    assert_eq!(rib.counts(PeerId(1), Family::IPV4_UNICAST).received, 1);
    rib.originate(pfx("192.0.2.0/24"), Attrs::default());
    let us = rib.take_updates(PeerId(1)).unwrap();
    assert!(nlri_of(&us).is_empty(), "nothing sent: {us:?}");
    // iBGP without policies: accepts and sends all.
    let mut ib = PeerInfo::new(
        LOCAL_AS,
        LOCAL_AS,
        ip("10.0.0.2"),
        IpAddr::V4(ip("10.1.0.2")),
    );
    ib.local_v4 = Some(ip("192.0.2.1"));
    let ch = rib.peer_up(PeerId(2), ib);
    assert!(ch.notices.is_empty());
    assert_eq!(
        nlri_of(&rib.take_updates(PeerId(2)).unwrap()),
        vec!["192.0.2.0/24"]
    );
}

#[test]
fn packing_groups_prefixes_by_shared_attributes() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    settle(&mut rib, 2);
    let a: Vec<String> = (0..200)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let b: Vec<String> = (0..50).map(|i| format!("11.0.{i}.0/24")).collect();
    announce(
        &mut rib,
        1,
        &R::path(&[65010]),
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    announce(
        &mut rib,
        1,
        &R::path(&[65010, 65011]),
        &b.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert_eq!(us.len(), 2, "two attribute sets -> two UPDATEs");
    assert_eq!(us.iter().map(|u| u.nlri.len()).sum::<usize>(), 250);
    // Many prefixes: split at the 4096-octet limit, every piece encodes.
    let many: Vec<String> = (0..3000)
        .map(|i| format!("12.{}.{}.0/24", i / 256, i % 256))
        .collect();
    announce(
        &mut rib,
        1,
        &R::path(&[65010, 65012]),
        &many.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert!(us.len() >= 3);
    let ctx = DecodeContext {
        four_octet_as: true,
        ..Default::default()
    };
    for u in &us {
        assert!(Message::Update(u.clone()).to_bytes(&ctx).unwrap().len() <= 4096);
    }
    assert_eq!(us.iter().map(|u| u.nlri.len()).sum::<usize>(), 3000);
}

#[test]
fn withdrawals_and_coalescing() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    settle(&mut rib, 2);
    announce(
        &mut rib,
        1,
        &R::path(&[65010]),
        &["10.0.0.0/24", "10.0.1.0/24"],
    );
    rib.take_updates(PeerId(2)).unwrap();
    withdraw(&mut rib, 1, &["10.0.0.0/24"]);
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert_eq!(withdrawn_of(&us), vec!["10.0.0.0/24"]);
    assert!(nlri_of(&us).is_empty());
    // Announce then withdraw before taking: nothing to send (never sent).
    announce(&mut rib, 1, &R::path(&[65010]), &["10.0.9.0/24"]);
    withdraw(&mut rib, 1, &["10.0.9.0/24"]);
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert!(nlri_of(&us).is_empty());
    // A withdraw of a never-sent prefix may go out; harmless, but the Adj-RIB-Out is right.
    assert_eq!(rib.adj_rib_out(PeerId(2)).len(), 1);
}

#[test]
fn no_export_and_no_advertise_communities() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    up(&mut rib, 3, LOCAL_AS, "10.0.0.3", "10.1.0.3");
    settle(&mut rib, 2);
    settle(&mut rib, 3);
    announce(
        &mut rib,
        1,
        &R::path(&[65010]).community(Community::NO_EXPORT),
        &["10.0.0.0/24"],
    );
    announce(
        &mut rib,
        1,
        &R::path(&[65010]).community(Community::NO_ADVERTISE),
        &["10.0.1.0/24"],
    );
    assert!(nlri_of(&rib.take_updates(PeerId(2)).unwrap()).is_empty());
    assert_eq!(
        nlri_of(&rib.take_updates(PeerId(3)).unwrap()),
        vec!["10.0.0.0/24"]
    );
}

#[test]
fn export_policy_change_is_reevaluated() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    settle(&mut rib, 2);
    announce(
        &mut rib,
        1,
        &R::path(&[65010]),
        &["10.0.0.0/24", "10.0.1.0/24"],
    );
    rib.take_updates(PeerId(2)).unwrap();
    let only0 = Policy {
        name: "only-10.0.0".into(),
        terms: vec![Term {
            name: "t".into(),
            matches: vec![Match::Prefix(PrefixList {
                entries: vec![PrefixListEntry::new(pfx("10.0.0.0/24"), None, None).unwrap()],
            })],
            actions: vec![
                Action::Prepend {
                    asn: None,
                    count: 2,
                },
                Action::SetMed(42),
            ],
            disposition: Disposition::Accept,
        }],
        default: Disposition::Reject,
    };
    let ch = rib.set_export_policy(PeerId(2), Some(only0)).unwrap();
    assert!(ch.peers_with_updates.contains(&PeerId(2)));
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert_eq!(withdrawn_of(&us), vec!["10.0.1.0/24"]);
    assert_eq!(nlri_of(&us), vec!["10.0.0.0/24"]);
    let a = us.iter().find(|u| !u.nlri.is_empty()).unwrap();
    assert_eq!(
        a.as_path().unwrap(),
        &AsPath::sequence(vec![LOCAL_AS, LOCAL_AS, LOCAL_AS, 65010])
    );
    assert!(a.attribute(flatnet_bgp::wire::attr_type::MED).is_some());
}

#[test]
fn originated_routes_are_exported_with_next_hop_self() {
    let mut rib = rib();
    up(&mut rib, 2, 65020, "10.0.0.2", "10.1.0.2");
    settle(&mut rib, 2);
    let ch = rib.originate(pfx("10.244.3.0/26"), Attrs::default());
    assert_eq!(ch.loc_rib.len(), 1);
    assert_eq!(ch.loc_rib[0].best.as_ref().unwrap().peer, PeerId::LOCAL);
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert_eq!(nlri_of(&us), vec!["10.244.3.0/26"]);
    assert_eq!(us[0].next_hop(), Some(ip("192.0.2.1")));
    assert_eq!(us[0].as_path().unwrap(), &AsPath::sequence(vec![LOCAL_AS]));
    let ch = rib.withdraw(pfx("10.244.3.0/26"));
    assert_eq!(ch.loc_rib[0].best, None);
    assert_eq!(
        withdrawn_of(&rib.take_updates(PeerId(2)).unwrap()),
        vec!["10.244.3.0/26"]
    );
}

#[test]
fn ipv6_routes_round_trip_through_mp_attributes() {
    use flatnet_bgp::wire::{AttrValue, Ipv6Prefix, MpNlri, MpReach, Nlri6, PathAttribute};
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    let mut i = info(65020, "10.0.0.2", "10.1.0.2");
    i.local_v6 = Some("2001:db8::1".parse().unwrap());
    rib.peer_up(PeerId(2), i);
    settle(&mut rib, 2);
    let p6 = Ipv6Prefix::new("2001:db8:1::".parse().unwrap(), 48).unwrap();
    let mut attrs = R::path(&[65010]).attrs();
    attrs.retain(|a| !matches!(a.value, AttrValue::NextHop(_)));
    attrs.insert(
        0,
        PathAttribute::new(AttrValue::MpReach(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: MpNextHop::Ipv6 {
                global: "2001:db8::99".parse().unwrap(),
                link_local: None,
            },
            reserved: 0,
            nlri: MpNlri::Ipv6(vec![Nlri6::new(p6)]),
        })),
    );
    let u = Update {
        attributes: attrs,
        ..Update::default()
    };
    let ch = rib.apply_update(PeerId(1), &u).unwrap();
    assert_eq!(ch.loc_rib.len(), 1);
    let us = rib.take_updates(PeerId(2)).unwrap();
    let r = us[0].mp_reach().unwrap();
    assert_eq!(r.nlri, MpNlri::Ipv6(vec![Nlri6::new(p6)]));
    assert_eq!(
        r.next_hop,
        MpNextHop::Ipv6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None
        }
    );
    // Withdraw via MP_UNREACH.
    let w = flatnet_bgp::wire::pack_withdraw_mp(
        Family::IPV6_UNICAST,
        &MpNlri::Ipv6(vec![Nlri6::new(p6)]),
        &DecodeContext::default(),
    )
    .unwrap();
    let ch = rib.apply_update(PeerId(1), &w[0]).unwrap();
    assert_eq!(ch.loc_rib[0].best, None);
    let us = rib.take_updates(PeerId(2)).unwrap();
    assert!(us[0].mp_unreach().is_some());
    let _ = Nlri4::new(p4("10.0.0.0/8"));
}

#[test]
fn same_originated_attrs_in_both_families_get_family_next_hops() {
    use flatnet_bgp::wire::{Ipv6Prefix, MpNlri, Nlri6, Prefix};
    let mut rib = rib();
    let mut i = info(65020, "10.0.0.2", "10.1.0.2");
    i.local_v6 = Some("2001:db8::1".parse().unwrap());
    rib.peer_up(PeerId(2), i);
    settle(&mut rib, 2);
    let p6 = Ipv6Prefix::new("2001:db8:5::".parse().unwrap(), 48).unwrap();
    rib.originate(pfx("10.244.0.0/26"), Attrs::default());
    rib.originate(Prefix::V6(p6), Attrs::default());
    let us = rib.take_updates(PeerId(2)).unwrap();
    let v4 = us.iter().find(|u| !u.nlri.is_empty()).unwrap();
    assert_eq!(v4.next_hop(), Some(ip("192.0.2.1")));
    let v6 = us.iter().find_map(|u| u.mp_reach()).unwrap();
    assert_eq!(v6.nlri, MpNlri::Ipv6(vec![Nlri6::new(p6)]));
    assert_eq!(
        v6.next_hop,
        MpNextHop::Ipv6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None
        }
    );
}
