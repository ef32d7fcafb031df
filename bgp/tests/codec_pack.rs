//! UPDATE packing: many prefixes sharing attributes go into as few UPDATEs
//! as fit the maximum size; the boundaries below are computed by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod codec_common;

use std::net::{Ipv4Addr, Ipv6Addr};

use codec_common::*;
use flatnet_bgp::wire::*;

fn attrs() -> Vec<PathAttribute> {
    vec![
        PathAttribute::new(AttrValue::Origin(Origin::Igp)), // 4 octets
        PathAttribute::new(AttrValue::AsPath(AsPath::sequence(vec![65001]))), // 3 + 2 + 4 = 9 on a 4-octet session
        PathAttribute::new(AttrValue::NextHop(Ipv4Addr::new(10, 0, 0, 1))),   // 7
    ]
}

fn v4_24(n: u32) -> Vec<Nlri4> {
    (0..n)
        .map(|i| Nlri::new(Ipv4Prefix::from_bits((10 << 24) | (i << 8), 24)))
        .collect()
}

fn encoded_len(u: &Update, ctx: &DecodeContext) -> usize {
    Message::Update(u.clone()).to_bytes(ctx).unwrap().len()
}

#[test]
fn ipv4_boundary_is_exact() {
    // Overhead 19 + 2 + 2 + 20 = 43; 4096 - 43 = 4053 octets = 1013 /24s (4 octets each), 1 spare.
    assert_eq!(update_overhead(&attrs(), &CTX4), 43);
    let one = pack_ipv4(&attrs(), &v4_24(1013), &CTX4).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(encoded_len(&one[0], &CTX4), 4095);
    let two = pack_ipv4(&attrs(), &v4_24(1014), &CTX4).unwrap();
    assert_eq!(
        two.iter().map(|u| u.nlri.len()).collect::<Vec<_>>(),
        [1013, 1]
    );
    // Every packed UPDATE decodes back to the same prefixes and attributes.
    for u in &two {
        let bytes = Message::Update(u.clone()).to_bytes(&CTX4).unwrap();
        assert_eq!(
            Message::decode(&bytes, &CTX4).unwrap(),
            Message::Update(u.clone())
        );
    }
}

#[test]
fn ipv4_extended_message_packs_more() {
    let ext = DecodeContext {
        extended_message: true,
        ..CTX4
    };
    // 65535 - 43 = 65492 = 16373 * 4.
    let ups = pack_ipv4(&attrs(), &v4_24(16374), &ext).unwrap();
    assert_eq!(
        ups.iter().map(|u| u.nlri.len()).collect::<Vec<_>>(),
        [16373, 1]
    );
    assert_eq!(encoded_len(&ups[0], &ext), 65535);
}

#[test]
fn ipv6_via_mp_reach_boundary() {
    // Shared attributes 4 + 9 = 13; MP_REACH 4 (ext header) + 3 + 1 + 16 + 1 = 25; 19 + 4 = 23.
    // 4096 - 61 = 4035 octets; a /64 takes 9: 448 per UPDATE (3 spare).
    let shared = &attrs()[..2];
    let nh = MpNextHop::Ipv6 {
        global: "2001:db8::1".parse().unwrap(),
        link_local: None,
    };
    let p: Vec<Nlri6> = (0..449u128)
        .map(|i| {
            Nlri::new(
                Ipv6Prefix::new(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64)), 64).unwrap(),
            )
        })
        .collect();
    let ups = pack_ipv6(shared, &nh, &p, &CTX4).unwrap();
    assert_eq!(ups.len(), 2);
    assert_eq!(encoded_len(&ups[0], &CTX4), 4096 - 3);
    let n: Vec<usize> = ups
        .iter()
        .map(|u| match &u.mp_reach().unwrap().nlri {
            MpNlri::Ipv6(v) => v.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(n, [448, 1]);
    // MP_REACH first (RFC 7606 5.1), then the shared attributes.
    assert_eq!(ups[0].attributes[0].type_code(), attr_type::MP_REACH_NLRI);
    assert_eq!(&ups[0].attributes[1..], shared);
}

#[test]
fn ipv4_with_ipv6_next_hop_rfc8950() {
    let nh = MpNextHop::Ipv6 {
        global: "2001:db8::1".parse().unwrap(),
        link_local: Some("fe80::1".parse().unwrap()),
    };
    let ups = pack_mp(
        &attrs()[..2],
        Family::IPV4_UNICAST,
        &nh,
        &MpNlri::Ipv4(v4_24(3)),
        &CTX4,
    )
    .unwrap();
    assert_eq!(ups.len(), 1);
    let ctx = DecodeContext {
        extended_next_hop_ipv4: true,
        ..CTX4
    };
    let bytes = Message::Update(ups[0].clone()).to_bytes(&ctx).unwrap();
    let u = match Message::decode(&bytes, &ctx).unwrap() {
        Message::Update(u) => u,
        _ => panic!(),
    };
    assert_eq!(u.mp_reach().unwrap().nlri, MpNlri::Ipv4(v4_24(3)));
    // RFC 8950 4 / RFC 7606 7.11: not negotiated, the next hop length is unexpected.
    let Err(DecodeError::SessionReset(n)) = Message::decode(&bytes, &CTX4) else {
        panic!()
    };
    assert_eq!((n.code, n.subcode), (3, 9));
}

#[test]
fn withdrawals_both_families() {
    // IPv4: 4096 - 23 = 4073 octets; a /32 takes 5: 814 per UPDATE.
    let p: Vec<Nlri4> = (0..815u32)
        .map(|i| Nlri::new(Ipv4Prefix::from_bits(i, 32)))
        .collect();
    let ups = pack_withdraw_ipv4(&p, &CTX4).unwrap();
    assert_eq!(
        ups.iter().map(|u| u.withdrawn.len()).collect::<Vec<_>>(),
        [814, 1]
    );
    assert!(
        ups.iter()
            .all(|u| u.attributes.is_empty() && u.nlri.is_empty())
    );
    // IPv6: 4096 - 23 - 7 = 4066; a /128 takes 17: 239 per UPDATE.
    let p: Vec<Nlri6> = (0..240u128)
        .map(|i| Nlri::new(Ipv6Prefix::new(Ipv6Addr::from(i), 128).unwrap()))
        .collect();
    let ups = pack_withdraw_mp(Family::IPV6_UNICAST, &MpNlri::Ipv6(p), &CTX4).unwrap();
    let n: Vec<usize> = ups
        .iter()
        .map(|u| match &u.mp_unreach().unwrap().withdrawn {
            MpNlri::Ipv6(v) => v.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(n, [239, 1]);
    for u in &ups {
        assert!(encoded_len(u, &CTX4) <= 4096);
    }
}

#[test]
fn add_path_ids_are_counted() {
    let ctx = DecodeContext {
        add_path_ipv4: true,
        ..CTX4
    };
    // 4053 octets; a /24 with a path id takes 8: 506 per UPDATE.
    let p: Vec<Nlri4> = v4_24(507)
        .into_iter()
        .enumerate()
        .map(|(i, n)| Nlri::with_path_id(i as u32, n.prefix))
        .collect();
    let ups = pack_ipv4(&attrs(), &p, &ctx).unwrap();
    assert_eq!(
        ups.iter().map(|u| u.nlri.len()).collect::<Vec<_>>(),
        [506, 1]
    );
}

#[test]
fn attributes_too_large_is_an_error_not_a_panic() {
    let mut a = attrs();
    a.push(PathAttribute::new(AttrValue::Communities(
        (0..1100).map(Community).collect(),
    )));
    assert!(matches!(
        pack_ipv4(&a, &v4_24(1), &CTX4),
        Err(EncodeError::AttributesTooLarge(_))
    ));
    assert_eq!(
        pack_ipv4(&attrs(), &[], &CTX4).unwrap(),
        Vec::<Update>::new()
    );
}

#[test]
fn end_of_rib_markers() {
    for f in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
        let u = Update::end_of_rib(f);
        assert_eq!(u.end_of_rib_family(), Some(f));
    }
}

#[test]
fn add_path_mismatch_is_refused() {
    let with_ids = DecodeContext {
        add_path_ipv4: true,
        ..CTX4
    };
    let u = pack_ipv4(&attrs(), &v4_24(2), &CTX4).unwrap().remove(0);
    assert_eq!(
        Message::Update(u.clone()).to_bytes(&with_ids),
        Err(EncodeError::AddPathMismatch(Family::IPV4_UNICAST))
    );
    assert!(Message::Update(u).to_bytes(&CTX4).is_ok());
    let v6 = Update::end_of_rib(Family::IPV6_UNICAST);
    assert!(
        Message::Update(v6)
            .to_bytes(&DecodeContext {
                add_path_ipv6: true,
                ..CTX4
            })
            .is_ok()
    );
}
