//! Import checks that need the session (eBGP or iBGP, our own addresses):
//! attributes only legal inside an AS (RFC 4271 5.1.5, RFC 4456, RFC 5065,
//! RFC 7606 7.2/7.5/7.9/7.10), route reflection loops (RFC 4456 8), and a
//! next hop that is our own address (RFC 4271 6.3, RFC 7606 7.3). Each
//! test runs the eBGP case and the iBGP case side by side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rib_common;

use std::net::IpAddr;

use flatnet_bgp::rib::{PeerId, Rib};
use flatnet_bgp::wire::{
    AsPath, AttrValue, Family, Ipv6Prefix, MpNextHop, MpNlri, MpReach, Nlri, PathAttribute, Prefix,
    SegmentType, Update, attr_type,
};
use rib_common::*;

const P: &str = "10.0.0.0/24";
/// Our BGP identifier in `rib()`.
const OWN_ID: &str = "10.255.0.1";

/// Peer 1 = the sender (eBGP 65010 or iBGP), peer 2 = iBGP, peer 3 = eBGP 65030.
fn three(ebgp: bool) -> Rib {
    let mut rib = rib();
    up(
        &mut rib,
        1,
        if ebgp { 65010 } else { LOCAL_AS },
        "10.0.0.1",
        "10.1.0.1",
    );
    up(&mut rib, 2, LOCAL_AS, "10.0.0.2", "10.1.0.2");
    up(&mut rib, 3, 65030, "10.0.0.3", "10.1.0.3");
    for p in [1, 2, 3] {
        rib.take_updates(PeerId(p)).unwrap();
    }
    rib
}

fn sent(rib: &mut Rib, peer: u32) -> Update {
    let us = rib.take_updates(PeerId(peer)).unwrap();
    assert_eq!(us.len(), 1, "one UPDATE to peer {peer}: {us:?}");
    us.into_iter().next().unwrap()
}

#[test]
fn local_pref_from_ebgp_ignored_and_not_passed_on_ibgp_kept() {
    for ebgp in [true, false] {
        let mut rib = three(ebgp);
        let path: &[u32] = if ebgp { &[65010] } else { &[65099] };
        announce(&mut rib, 1, &R::path(path).lp(300), &[P]);
        let best = rib.best(&pfx(P)).unwrap();
        let want = if ebgp { None } else { Some(300) };
        assert_eq!(best.attrs.local_pref, want, "ebgp={ebgp}");
        if ebgp {
            // To iBGP: our default, never the eBGP peer's 300.
            let u = sent(&mut rib, 2);
            assert!(matches!(
                u.attribute(attr_type::LOCAL_PREF).map(|a| &a.value),
                Some(AttrValue::LocalPref(100))
            ));
        }
        // To eBGP: no LOCAL_PREF at all.
        let u = sent(&mut rib, 3);
        assert!(u.attribute(attr_type::LOCAL_PREF).is_none(), "ebgp={ebgp}");
    }
}

#[test]
fn originator_id_and_cluster_list_discarded_from_ebgp_kept_on_ibgp() {
    for ebgp in [true, false] {
        let mut rib = three(ebgp);
        let path: &[u32] = if ebgp { &[65010] } else { &[65099] };
        let r = R::path(path).originator("1.1.1.1").cluster(2);
        announce(&mut rib, 1, &r, &[P]);
        let best = rib.best(&pfx(P)).unwrap();
        if ebgp {
            assert_eq!(best.attrs.originator_id, None);
            assert!(best.attrs.cluster_list.is_empty());
            // Not passed on to the iBGP peer either.
            let u = sent(&mut rib, 2);
            assert!(u.attribute(attr_type::ORIGINATOR_ID).is_none());
            assert!(u.attribute(attr_type::CLUSTER_LIST).is_none());
        } else {
            assert_eq!(best.attrs.originator_id, Some(ip("1.1.1.1")));
            assert_eq!(best.attrs.cluster_list.len(), 2);
        }
        let u = sent(&mut rib, 3);
        assert!(
            u.attribute(attr_type::ORIGINATOR_ID).is_none(),
            "ebgp={ebgp}"
        );
        assert!(
            u.attribute(attr_type::CLUSTER_LIST).is_none(),
            "ebgp={ebgp}"
        );
    }
}

#[test]
fn own_originator_id_or_cluster_id_is_a_loop_on_ibgp() {
    // RFC 4456 8: our BGP identifier as ORIGINATOR_ID, or our cluster id
    // (= BGP identifier) in CLUSTER_LIST: the route is ignored.
    let mut by_originator = R::path(&[65099]).originator(OWN_ID);
    by_originator.cluster = vec![ip("10.9.9.9")];
    let mut by_cluster = R::path(&[65099]).originator("1.1.1.1");
    by_cluster.cluster = vec![ip("10.9.9.9"), ip(OWN_ID)];
    for r in [by_originator, by_cluster] {
        let mut rib = three(false);
        let ch = announce(&mut rib, 1, &r, &[P]);
        assert!(ch.loc_rib.is_empty());
        assert!(rib.best(&pfx(P)).is_none());
        let c = rib.counts(PeerId(1), Family::IPV4_UNICAST);
        assert_eq!(c.loop_rejected, 1);
        assert!(rib.take_updates(PeerId(3)).unwrap().is_empty());
    }
    // From eBGP the attributes are discarded first, so no loop: accepted.
    let mut rib = three(true);
    announce(&mut rib, 1, &R::path(&[65010]).originator(OWN_ID), &[P]);
    assert!(rib.best(&pfx(P)).is_some());
}

fn confed_path() -> R {
    R::segments(vec![
        (SegmentType::ConfedSequence, vec![65100]),
        (SegmentType::Sequence, vec![65010]),
    ])
}

#[test]
fn confed_segments_from_ebgp_treat_as_withdraw_ibgp_kept_and_stripped_to_ebgp() {
    // eBGP: flatnet is in no confederation, so the sender is outside it.
    let mut rib = three(true);
    announce(&mut rib, 1, &R::path(&[65010]), &[P, "10.0.1.0/24"]);
    assert!(rib.best(&pfx(P)).is_some());
    rib.take_updates(PeerId(3)).unwrap();
    let ch = announce(&mut rib, 1, &confed_path(), &[P, "10.0.1.0/24"]);
    assert!(rib.best(&pfx(P)).is_none(), "earlier route withdrawn");
    assert!(rib.best(&pfx("10.0.1.0/24")).is_none());
    assert!(
        ch.notices.iter().any(|n| n.contains("AS_CONFED")),
        "{:?}",
        ch.notices
    );
    let u = sent(&mut rib, 3);
    assert_eq!(u.withdrawn.len(), 2, "withdrawn downstream: {u:?}");

    // iBGP: kept; towards eBGP the confederation segments are removed.
    let mut rib = three(false);
    announce(&mut rib, 1, &confed_path(), &[P]);
    let best = rib.best(&pfx(P)).unwrap();
    assert!(best.attrs.as_path.has_confed_segment());
    let u = sent(&mut rib, 3);
    assert_eq!(
        u.as_path().unwrap(),
        &AsPath::sequence(vec![LOCAL_AS, 65010])
    );
}

fn mp6(nh: &str) -> Update {
    let mut u = R::path(&[65010]).update(&[]);
    u.attributes
        .retain(|a| a.type_code() != attr_type::NEXT_HOP);
    u.attributes
        .push(PathAttribute::new(AttrValue::MpReach(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: MpNextHop::Ipv6 {
                global: nh.parse().unwrap(),
                link_local: None,
            },
            reserved: 0,
            nlri: MpNlri::Ipv6(vec![Nlri::new(
                Ipv6Prefix::new("2001:db8:1::".parse().unwrap(), 48).unwrap(),
            )]),
        })));
    u
}

#[test]
fn next_hop_that_is_our_own_address_treat_as_withdraw_both_session_kinds() {
    let v6 = Prefix::V6(Ipv6Prefix::new("2001:db8:1::".parse().unwrap(), 48).unwrap());
    for ebgp in [true, false] {
        let mut rib = rib();
        let mut i = info(if ebgp { 65010 } else { LOCAL_AS }, "10.0.0.1", "10.1.0.1");
        // `info` sets local_v4 = 192.0.2.1 (next-hop-self); the session's own address differs.
        i.local_address = Some(IpAddr::V4(ip("10.1.0.100")));
        i.local_v6 = Some("2001:db8::100".parse().unwrap());
        rib.peer_up(PeerId(1), i);
        // A clean route first, then the same prefix with our address as next hop.
        announce(&mut rib, 1, &R::path(&[65010]), &[P]);
        assert!(rib.best(&pfx(P)).is_some());
        for own in ["192.0.2.1", "10.1.0.100"] {
            let ch = announce(&mut rib, 1, &R::path(&[65010]).nh(own), &[P]);
            assert!(rib.best(&pfx(P)).is_none(), "ebgp={ebgp} nh={own}");
            assert!(
                ch.notices.iter().any(|n| n.contains("own address")),
                "{:?}",
                ch.notices
            );
            announce(&mut rib, 1, &R::path(&[65010]), &[P]);
        }
        rib.apply_update(PeerId(1), &mp6("2001:db8::1")).unwrap();
        assert!(rib.best(&v6).is_some(), "ebgp={ebgp}");
        let ch = rib.apply_update(PeerId(1), &mp6("2001:db8::100")).unwrap();
        assert!(rib.best(&v6).is_none(), "ebgp={ebgp}");
        assert!(ch.notices.iter().any(|n| n.contains("own address")));
    }
}

/// RFC 4271 6.3 b: from a directly connected eBGP peer (inside a subnet of
/// our interface), an IPv4 NEXT_HOP that is neither the peer nor on one of
/// those subnets is treat-as-withdraw; the peer itself and a third party on
/// the shared subnet are fine. iBGP, and eBGP peers not on our subnets
/// (multihop), are not checked.
#[test]
fn ebgp_next_hop_must_be_the_peer_or_on_a_shared_subnet() {
    let lan = flatnet_bgp::rib::Subnet {
        addr: IpAddr::V4(ip("10.1.0.0")),
        len: 29,
    };
    let cases = [
        // (remote AS, peer address, next hop, accepted)
        (65010, "10.1.0.1", "10.1.0.1", true),
        (65010, "10.1.0.1", "10.1.0.5", true),
        (65010, "10.1.0.1", "192.0.2.9", false),
        (65010, "10.1.0.1", "10.1.0.9", false),
        (LOCAL_AS, "10.1.0.1", "192.0.2.9", true),
        (65010, "10.9.0.1", "192.0.2.9", true),
    ];
    for (asn, peer, nh, accepted) in cases {
        let mut rib = rib();
        let mut i = info(asn, "10.0.0.1", peer);
        i.connected = vec![lan];
        rib.peer_up(PeerId(1), i);
        let ch = announce(&mut rib, 1, &R::path(&[65010]).nh(nh), &[P]);
        assert_eq!(
            rib.best(&pfx(P)).is_some(),
            accepted,
            "AS {asn} peer {peer} next hop {nh}: {:?}",
            ch.notices
        );
        if !accepted {
            assert!(
                ch.notices.iter().any(|n| n.contains("shared")),
                "{:?}",
                ch.notices
            );
        }
    }
}
