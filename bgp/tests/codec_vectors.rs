//! Byte vectors for every message, capability and attribute the codec
//! knows, written by hand from the RFC layouts (never produced by our
//! encoder): decode, check the meaning, re-encode byte-exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod codec_common;

use std::net::{Ipv4Addr, Ipv6Addr};

use codec_common::*;
use flatnet_bgp::wire::*;

fn p4(s: &str) -> Nlri4 {
    let (a, l) = s.split_once('/').unwrap();
    Nlri::new(Ipv4Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap())
}
fn p6(s: &str) -> Nlri6 {
    let (a, l) = s.split_once('/').unwrap();
    Nlri::new(Ipv6Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap())
}

fn as_update(m: Message) -> Update {
    match m {
        Message::Update(u) => u,
        other => panic!("not an update: {other:?}"),
    }
}

#[test]
fn keepalive() {
    // RFC 4271 4.4: header only, length 19.
    let b = hex("ffffffffffffffffffffffffffffffff 0013 04");
    assert_eq!(roundtrip(&b, &CTX2), Message::Keepalive);
    assert_eq!(Message::Keepalive.to_bytes(&CTX2).unwrap(), b);
}

#[test]
fn open_all_capabilities_in_one_parameter() {
    // RFC 4271 4.2 + RFC 5492: one Capabilities parameter holding them all.
    let caps = "01 04 0001 00 01 \
                01 04 0002 00 01 \
                02 00 \
                46 00 \
                41 04 0000fde9 \
                40 06 8078 0001 01 80 \
                05 06 0001 0001 0002 \
                06 00 \
                45 08 0001 01 03 0002 01 01 \
                49 0a 05 686f737431 03 6c6162 \
                80 00";
    let caps_b = hex(caps);
    assert_eq!(caps_b.len(), 0x40);
    let body = hex(&format!("04 fde9 005a 0a000001 42 02 40 {caps}"));
    let b = msg(1, &body);
    let Message::Open(o) = roundtrip(&b, &CTX2) else {
        panic!()
    };
    assert_eq!(
        (o.version, o.my_as, o.hold_time, o.bgp_id),
        (4, 65001, 90, Ipv4Addr::new(10, 0, 0, 1))
    );
    assert!(!o.extended_params);
    let c: Vec<_> = o.capabilities().cloned().collect();
    assert_eq!(
        c,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::FourOctetAs(65001),
            Capability::GracefulRestart(GracefulRestart {
                flags: GracefulRestart::RESTART_STATE,
                restart_time: 120,
                families: vec![GracefulRestartFamily {
                    family: Family::IPV4_UNICAST,
                    flags: GracefulRestartFamily::FORWARDING_STATE
                }],
            }),
            Capability::ExtendedNextHop(vec![ExtendedNextHop {
                nlri_afi: Afi::IPV4,
                nlri_safi: 1,
                next_hop_afi: Afi::IPV6
            }]),
            Capability::ExtendedMessage,
            Capability::AddPath(vec![
                AddPathFamily {
                    family: Family::IPV4_UNICAST,
                    mode: AddPathMode::BOTH
                },
                AddPathFamily {
                    family: Family::IPV6_UNICAST,
                    mode: AddPathMode::RECEIVE
                },
            ]),
            Capability::Fqdn {
                hostname: "host1".into(),
                domain: "lab".into()
            },
            Capability::Unknown {
                code: 0x80,
                value: vec![]
            },
        ]
    );
    assert_eq!(o.asn(), 65001);
}

#[test]
fn open_one_capability_per_parameter_with_as_trans() {
    // FRR style: each capability in its own optional parameter; AS 4200000001 => AS_TRANS.
    let body =
        hex("04 5ba0 00b4 c0a80001 14 02 06 01 04 0001 00 01 02 06 41 04 fa56ea01 02 02 02 00");
    let b = msg(1, &body);
    let Message::Open(o) = roundtrip(&b, &CTX2) else {
        panic!()
    };
    assert_eq!(o.my_as, AS_TRANS);
    assert_eq!(o.asn(), 4_200_000_001);
    assert_eq!(o.params.len(), 3);
    // Building the same OPEN with the constructor groups differently (one parameter): not equal bytes, same meaning.
    let built = Open::new(
        4_200_000_001,
        180,
        Ipv4Addr::new(192, 168, 0, 1),
        o.capabilities().cloned().collect(),
    );
    assert_eq!(built.asn(), o.asn());
    assert_eq!(built.my_as, AS_TRANS);
}

#[test]
fn open_rfc9072_extended_parameters() {
    // RFC 9072 section 2: Non-Ext OP Len 255, Non-Ext OP Type 255, 2-octet length, 2-octet param lengths.
    let body = hex("04 fde9 005a 0a000001 ff ff 0009 02 0006 01 04 0001 00 01");
    let b = msg(1, &body);
    let Message::Open(o) = roundtrip(&b, &CTX2) else {
        panic!()
    };
    assert!(o.extended_params);
    assert_eq!(o.capabilities().count(), 1);
}

#[test]
fn open_no_parameters_and_unknown_parameter_refused() {
    let b = msg(1, &hex("04 fde9 0000 0a000001 00"));
    let Message::Open(o) = roundtrip(&b, &CTX2) else {
        panic!()
    };
    assert!(o.params.is_empty());
    assert_eq!(o.hold_time, 0);
    // RFC 4271 6.2: an unrecognised optional parameter is refused with
    // OPEN Message Error / Unsupported Optional Parameter; it still encodes.
    let b = msg(1, &hex("04 fde9 005a 0a000001 04 01 02 abcd"));
    let o = Open {
        params: vec![OptionalParameter::Unknown {
            kind: 1,
            value: vec![0xab, 0xcd],
        }],
        ..Open::new(0xfde9, 90, "10.0.0.1".parse().unwrap(), vec![])
    };
    assert_eq!(Message::Open(o).to_bytes(&CTX2).unwrap(), b);
}

/// Every IPv4 attribute type on a 4-octet session.
const ALL_ATTRS_4: &str = "40 01 01 00 \
     40 02 18 02 03 0000fde9 0000fdea 00010000 01 02 00000064 000000c8 \
     40 03 04 0a000001 \
     80 04 04 00000064 \
     40 05 04 000000c8 \
     40 06 00 \
     c0 07 08 0000fde9 0a000001 \
     c0 08 08 fde90001 ffffff01 \
     80 09 04 0a000002 \
     80 0a 04 0a000003 \
     c0 10 08 0002fde900000001 \
     c0 20 0c 00000001 00000000 00000002 \
     e0 63 02 abcd";

#[test]
fn update_every_attribute_four_octet() {
    let b = update("10 0a09", ALL_ATTRS_4, "18 c00002 20 0a010101 00");
    let u = as_update(roundtrip(&b, &CTX4));
    assert_eq!(u.withdrawn, vec![p4("10.9.0.0/16")]);
    assert_eq!(
        u.nlri,
        vec![p4("192.0.2.0/24"), p4("10.1.1.1/32"), p4("0.0.0.0/0")]
    );
    assert_eq!(u.origin(), Some(Origin::Igp));
    assert_eq!(u.next_hop(), Some(Ipv4Addr::new(10, 0, 0, 1)));
    let path = u.as_path().unwrap();
    assert_eq!(path.to_string(), "65001 65002 65536 {100,200}");
    assert_eq!(path.path_len(), 4);
    let vals: Vec<AttrValue> = u.attributes.iter().map(|a| a.value.clone()).collect();
    assert_eq!(vals[3], AttrValue::Med(100));
    assert_eq!(vals[4], AttrValue::LocalPref(200));
    assert_eq!(vals[5], AttrValue::AtomicAggregate);
    assert_eq!(
        vals[6],
        AttrValue::Aggregator(Aggregator {
            asn: 65001,
            addr: Ipv4Addr::new(10, 0, 0, 1)
        })
    );
    assert_eq!(
        vals[7],
        AttrValue::Communities(vec![Community::new(65001, 1), Community::NO_EXPORT])
    );
    assert_eq!(vals[8], AttrValue::OriginatorId(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(
        vals[9],
        AttrValue::ClusterList(vec![Ipv4Addr::new(10, 0, 0, 3)])
    );
    assert_eq!(
        vals[10],
        AttrValue::ExtendedCommunities(vec![ExtendedCommunity::route_target(65001, 1)])
    );
    assert_eq!(
        vals[11],
        AttrValue::LargeCommunities(vec![LargeCommunity {
            global_admin: 1,
            local1: 0,
            local2: 2
        }])
    );
    assert_eq!(
        vals[12],
        AttrValue::Unknown {
            type_code: 0x63,
            data: vec![0xab, 0xcd]
        }
    );
    assert_eq!(Community::NO_EXPORT.to_string(), "no-export");
    assert_eq!(Community::new(65001, 1).to_string(), "65001:1");
}

#[test]
fn update_two_octet_as4_merge() {
    // RFC 6793 4.2.3: AS_PATH 65010 65001 AS_TRANS, AS4_PATH 65001 65536 => 65010 65001 65536;
    // AGGREGATOR AS_TRANS + AS4_AGGREGATOR 65536 => 65536.
    let attrs = "40 01 01 02 \
                 40 02 08 02 03 fdf2 fde9 5ba0 \
                 40 03 04 0a000001 \
                 c0 07 06 5ba0 0a000001 \
                 c0 11 0a 02 02 0000fde9 00010000 \
                 c0 12 08 00010000 0a000001";
    let b = update("", attrs, "18 c63364");
    let u = as_update(roundtrip(&b, &CTX2));
    assert_eq!(u.origin(), Some(Origin::Incomplete));
    let (path, agg) = u.effective_as_path(&CTX2);
    assert_eq!(path, AsPath::sequence(vec![65010, 65001, 65536]));
    assert_eq!(
        agg,
        Some(Aggregator {
            asn: 65536,
            addr: Ipv4Addr::new(10, 0, 0, 1)
        })
    );
    // An AGGREGATOR that is not AS_TRANS means AS4_* are ignored.
    let attrs2 = attrs.replace("c0 07 06 5ba0", "c0 07 06 fde9");
    let u = as_update(roundtrip(&update("", &attrs2, "18 c63364"), &CTX2));
    let (path, agg) = u.effective_as_path(&CTX2);
    assert_eq!(path.to_string(), "65010 65001 23456");
    assert_eq!(agg.unwrap().asn, 65001);
}

#[test]
fn as4_merge_with_shorter_as4_path_and_sets() {
    let p = AsPath {
        segments: vec![
            AsSegment {
                kind: SegmentType::Sequence,
                asns: vec![1, 2, 23456],
            },
            AsSegment {
                kind: SegmentType::Set,
                asns: vec![23456, 5],
            },
        ],
    };
    let p4 = AsPath {
        segments: vec![
            AsSegment {
                kind: SegmentType::Sequence,
                asns: vec![70000],
            },
            AsSegment {
                kind: SegmentType::Set,
                asns: vec![70001, 5],
            },
        ],
    };
    let (m, _) = merge_as4(&p, Some(&p4), None, None);
    assert_eq!(m.to_string(), "1 2 70000 {70001,5}");
    // AS4_PATH longer than AS_PATH: ignore AS4_PATH.
    let (m, _) = merge_as4(
        &AsPath::sequence(vec![1]),
        Some(&AsPath::sequence(vec![70000, 70001])),
        None,
        None,
    );
    assert_eq!(m, AsPath::sequence(vec![1]));
}

#[test]
fn update_confederation_segments() {
    let attrs = "40 01 01 00 40 02 0c 03 01 0000fde9 04 01 0000fdea 40 03 04 0a000001";
    let u = as_update(roundtrip(&update("", attrs, "18 c00002"), &CTX4));
    assert_eq!(u.as_path().unwrap().to_string(), "(65001) [65002]");
    assert_eq!(u.as_path().unwrap().path_len(), 0);
}

#[test]
fn mp_reach_ipv6_global_and_link_local() {
    // RFC 4760 3 + RFC 2545: next hop length 32 = global + link-local. Extended-length flag as FRR sends it.
    let attrs = "90 0e 0035 0002 01 20 20010db8000000000000000000000001 fe800000000000000000000000000001 00 \
                 30 20010db80001 40 20010db800020003 \
                 40 01 01 00 40 02 06 02 01 0000fde9";
    let b = update("", attrs, "");
    let u = as_update(roundtrip(&b, &CTX4));
    let m = u.mp_reach().unwrap();
    assert_eq!(m.family, Family::IPV6_UNICAST);
    assert_eq!(
        m.next_hop,
        MpNextHop::Ipv6 {
            global: "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            link_local: Some("fe80::1".parse().unwrap())
        }
    );
    assert_eq!(
        m.nlri,
        MpNlri::Ipv6(vec![p6("2001:db8:1::/48"), p6("2001:db8:2:3::/64")])
    );
    assert!(u.attributes[0].flags & flags::EXTENDED_LENGTH != 0);
}

#[test]
fn mp_reach_ipv4_with_ipv6_next_hop_rfc8950() {
    let attrs = "80 0e 19 0001 01 10 20010db8000000000000000000000001 00 18 c63364 \
                 40 01 01 00 40 02 00";
    // Only with the extended next hop capability on both sides (RFC 8950 4).
    let ctx = DecodeContext {
        extended_next_hop_ipv4: true,
        ..CTX4
    };
    let u = as_update(roundtrip(&update("", attrs, ""), &ctx));
    let m = u.mp_reach().unwrap();
    assert_eq!(m.family, Family::IPV4_UNICAST);
    assert!(matches!(
        m.next_hop,
        MpNextHop::Ipv6 {
            link_local: None,
            ..
        }
    ));
    assert_eq!(m.nlri, MpNlri::Ipv4(vec![p4("198.51.100.0/24")]));
    assert_eq!(u.as_path().unwrap(), &AsPath::default());
}

#[test]
fn mp_reach_unknown_family_kept_raw() {
    // AFI 25 (L2VPN) SAFI 70 (EVPN): not interpreted, kept raw.
    let attrs = "80 0e 0e 0019 46 04 0a000001 00 02 03 aabbcc 40 01 01 00 40 02 00";
    let u = as_update(roundtrip(&update("", attrs, ""), &CTX4));
    let m = u.mp_reach().unwrap();
    assert_eq!(m.next_hop, MpNextHop::Raw(vec![10, 0, 0, 1]));
    assert_eq!(m.nlri, MpNlri::Raw(hex("02 03 aabbcc")));
}

#[test]
fn mp_unreach_ipv6() {
    let u = as_update(roundtrip(
        &update("", "80 0f 0c 0002 01 40 20010db800020003", ""),
        &CTX4,
    ));
    assert_eq!(
        u.mp_unreach().unwrap().withdrawn,
        MpNlri::Ipv6(vec![p6("2001:db8:2:3::/64")])
    );
    assert_eq!(u.end_of_rib_family(), None);
}

#[test]
fn end_of_rib_both_families() {
    // RFC 4724 2: IPv4 EoR = empty UPDATE; other families = empty MP_UNREACH_NLRI.
    let v4 = hex("ffffffffffffffffffffffffffffffff 0017 02 0000 0000");
    let u = as_update(roundtrip(&v4, &CTX4));
    assert_eq!(u.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    assert_eq!(
        Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))
            .to_bytes(&CTX4)
            .unwrap(),
        v4
    );
    let v6 = hex("ffffffffffffffffffffffffffffffff 001d 02 0000 0006 80 0f 03 0002 01");
    let u = as_update(roundtrip(&v6, &CTX4));
    assert_eq!(u.end_of_rib_family(), Some(Family::IPV6_UNICAST));
    assert_eq!(
        Message::Update(Update::end_of_rib(Family::IPV6_UNICAST))
            .to_bytes(&CTX4)
            .unwrap(),
        v6
    );
}

#[test]
fn add_path_ipv4_and_ipv6() {
    // RFC 7911 3: a 4-octet path identifier before each prefix.
    let ctx = DecodeContext {
        add_path_ipv4: true,
        add_path_ipv6: true,
        ..CTX4
    };
    let attrs = "40 01 01 00 40 02 06 02 01 0000fde9 40 03 04 0a000001 80 0f 0e 0002 01 00000005 30 20010db80001";
    let b = update(
        "00000007 20 0a000001",
        attrs,
        "00000001 18 c00002 00000002 18 c00002",
    );
    let u = as_update(roundtrip(&b, &ctx));
    assert_eq!(
        u.withdrawn,
        vec![Nlri::with_path_id(7, p4("10.0.0.1/32").prefix)]
    );
    assert_eq!(u.nlri[0].path_id, Some(1));
    assert_eq!(u.nlri[1].path_id, Some(2));
    assert_eq!(u.nlri[1].prefix, p4("192.0.2.0/24").prefix);
    assert_eq!(
        u.mp_unreach().unwrap().withdrawn,
        MpNlri::Ipv6(vec![Nlri::with_path_id(5, p6("2001:db8:1::/48").prefix)])
    );
    // The same bytes without add-path do not parse the same way.
    assert!(decode(&b, &CTX4).is_err() || as_update(decode(&b, &CTX4).unwrap().message) != u);
}

#[test]
fn extended_length_bit_on_short_attribute_preserved() {
    // Some speakers always set Extended Length: the flag and 2-octet length must survive.
    let attrs = "40 01 01 00 50 02 000a 02 02 0000fde9 0000fdea 40 03 04 0a000001";
    let u = as_update(roundtrip(&update("", attrs, "18 c00002"), &CTX4));
    assert_eq!(u.attributes[1].flags, 0x50);
}

#[test]
fn unknown_attributes_partial_bit_on_readvertise() {
    let attrs = "40 01 01 00 40 02 00 40 03 04 0a000001 c0 63 02 abcd 80 64 01 ee";
    let u = as_update(roundtrip(&update("", attrs, "18 c00002"), &CTX4));
    let t = &u.attributes[3];
    let out = t.readvertised().unwrap();
    assert_eq!(out.flags, 0xe0, "optional transitive unknown gets Partial");
    let mut bytes = Vec::new();
    out.emit(&CTX4, &mut bytes);
    assert_eq!(bytes, hex("e0 63 02 abcd"));
    assert_eq!(
        u.attributes[4].readvertised(),
        None,
        "optional non-transitive unknown is dropped"
    );
    assert_eq!(
        u.attributes[0].readvertised().as_ref(),
        Some(&u.attributes[0])
    );
}

#[test]
fn notification_shutdown_communication() {
    // RFC 9003 2: Cease / Administrative Shutdown, length octet + UTF-8.
    let b = msg(3, &hex("06 02 05 6d61696e74"));
    let Message::Notification(n) = roundtrip(&b, &CTX2) else {
        panic!()
    };
    assert_eq!(n.shutdown_message(), Some(Ok("maint")));
    assert_eq!(
        n.to_string(),
        "Cease (6) / Administrative Shutdown (2): \"maint\""
    );
    assert_eq!(
        Message::Notification(Notification::shutdown(2, "maint").unwrap())
            .to_bytes(&CTX2)
            .unwrap(),
        b
    );
    let long = "x".repeat(255);
    assert!(Notification::shutdown(4, &long).is_ok());
    assert_eq!(
        Notification::shutdown(4, &"x".repeat(256)),
        Err(ShutdownMessageError::TooLong)
    );
    let bad = Notification {
        code: 6,
        subcode: 2,
        data: hex("05 6d61"),
    };
    assert_eq!(
        bad.shutdown_message(),
        Some(Err(ShutdownMessageError::BadLength))
    );
    let bad = Notification {
        code: 6,
        subcode: 4,
        data: hex("02 ff fe"),
    };
    assert_eq!(
        bad.shutdown_message(),
        Some(Err(ShutdownMessageError::NotUtf8))
    );
}

#[test]
fn notification_every_code_and_subcode() {
    let table: &[(u8, u8, &str)] = &[
        (
            1,
            1,
            "Message Header Error (1) / Connection Not Synchronized (1)",
        ),
        (1, 2, "Message Header Error (1) / Bad Message Length (2)"),
        (1, 3, "Message Header Error (1) / Bad Message Type (3)"),
        (
            2,
            1,
            "OPEN Message Error (2) / Unsupported Version Number (1)",
        ),
        (2, 2, "OPEN Message Error (2) / Bad Peer AS (2)"),
        (2, 3, "OPEN Message Error (2) / Bad BGP Identifier (3)"),
        (
            2,
            4,
            "OPEN Message Error (2) / Unsupported Optional Parameter (4)",
        ),
        (2, 6, "OPEN Message Error (2) / Unacceptable Hold Time (6)"),
        (2, 7, "OPEN Message Error (2) / Unsupported Capability (7)"),
        (
            3,
            1,
            "UPDATE Message Error (3) / Malformed Attribute List (1)",
        ),
        (
            3,
            2,
            "UPDATE Message Error (3) / Unrecognized Well-known Attribute (2)",
        ),
        (
            3,
            3,
            "UPDATE Message Error (3) / Missing Well-known Attribute (3)",
        ),
        (3, 4, "UPDATE Message Error (3) / Attribute Flags Error (4)"),
        (
            3,
            5,
            "UPDATE Message Error (3) / Attribute Length Error (5)",
        ),
        (
            3,
            6,
            "UPDATE Message Error (3) / Invalid ORIGIN Attribute (6)",
        ),
        (
            3,
            8,
            "UPDATE Message Error (3) / Invalid NEXT_HOP Attribute (8)",
        ),
        (
            3,
            9,
            "UPDATE Message Error (3) / Optional Attribute Error (9)",
        ),
        (
            3,
            10,
            "UPDATE Message Error (3) / Invalid Network Field (10)",
        ),
        (3, 11, "UPDATE Message Error (3) / Malformed AS_PATH (11)"),
        (4, 0, "Hold Timer Expired (4) / Unspecific (0)"),
        (
            5,
            0,
            "Finite State Machine Error (5) / Unspecified Error (0)",
        ),
        (
            5,
            1,
            "Finite State Machine Error (5) / Receive Unexpected Message in OpenSent State (1)",
        ),
        (
            5,
            2,
            "Finite State Machine Error (5) / Receive Unexpected Message in OpenConfirm State (2)",
        ),
        (
            5,
            3,
            "Finite State Machine Error (5) / Receive Unexpected Message in Established State (3)",
        ),
        (6, 1, "Cease (6) / Maximum Number of Prefixes Reached (1)"),
        (6, 3, "Cease (6) / Peer De-configured (3)"),
        (6, 5, "Cease (6) / Connection Rejected (5)"),
        (6, 6, "Cease (6) / Other Configuration Change (6)"),
        (6, 7, "Cease (6) / Connection Collision Resolution (7)"),
        (6, 8, "Cease (6) / Out of Resources (8)"),
        (6, 9, "Cease (6) / Hard Reset (9)"),
        (
            7,
            1,
            "ROUTE-REFRESH Message Error (7) / Invalid Message Length (1)",
        ),
    ];
    for &(code, sub, text) in table {
        let b = msg(3, &[code, sub]);
        let Message::Notification(n) = roundtrip(&b, &CTX2) else {
            panic!()
        };
        assert_eq!(n.to_string(), text);
    }
    // Data is carried and shown.
    let b = msg(3, &hex("01 02 0fff"));
    let Message::Notification(n) = roundtrip(&b, &CTX2) else {
        panic!()
    };
    assert_eq!(n.data, vec![0x0f, 0xff]);
    assert!(n.to_string().ends_with("data 0fff"));
    assert_eq!(ErrorCode::CEASE.to_string(), "Cease");
    assert_eq!(subcode::cease::ADMINISTRATIVE_RESET, 4);
}

#[test]
fn route_refresh_subtypes() {
    // RFC 2918 3 / RFC 7313 3: AFI, subtype (0 request, 1 BoRR, 2 EoRR), SAFI.
    for (sub, body) in [
        (RouteRefresh::REQUEST, "0001 00 01"),
        (RouteRefresh::BORR, "0002 01 01"),
        (RouteRefresh::EORR, "0001 02 01"),
    ] {
        let b = msg(5, &hex(body));
        let Message::RouteRefresh(r) = roundtrip(&b, &CTX2) else {
            panic!()
        };
        assert_eq!(r.subtype, sub);
    }
    let b = msg(5, &hex("0002 00 01"));
    assert_eq!(
        Message::RouteRefresh(RouteRefresh::request(Family::IPV6_UNICAST))
            .to_bytes(&CTX2)
            .unwrap(),
        b
    );
}

#[test]
fn framing_a_byte_stream() {
    let ka = hex("ffffffffffffffffffffffffffffffff 0013 04");
    let rr = msg(5, &hex("0001 00 01"));
    let mut stream = ka.clone();
    stream.extend_from_slice(&rr);
    assert_eq!(frame(&stream, &CTX2), Ok(Some(19)));
    assert_eq!(frame(&stream[19..], &CTX2), Ok(Some(23)));
    assert_eq!(frame(&stream[19..30], &CTX2), Ok(None));
    assert_eq!(frame(&stream[..5], &CTX2), Ok(None));
    assert_eq!(frame(&[], &CTX2), Ok(None));
    // A bad marker is reported before 19 octets arrive.
    let e = frame(&[0xff, 0x00], &CTX2).unwrap_err();
    assert_eq!((e.code, e.subcode), (1, 1));
    let h = Header::peek(&ka).unwrap();
    assert_eq!(h.length.get(), 19);
    assert_eq!(h.kind, 4);
}

#[test]
fn extended_message_limits() {
    // RFC 8654: UPDATE up to 65535 only when negotiated.
    let nlri: String = (0..1200u32).map(|i| format!("20 0a{:06x} ", i)).collect();
    let b = update("", "40 01 01 00 40 02 00 40 03 04 0a000001", &nlri);
    assert!(b.len() > 4096);
    let e = frame(&b, &CTX4).unwrap_err();
    assert_eq!(
        (e.code, e.subcode, e.data.clone()),
        (1, 2, vec![(b.len() >> 8) as u8, b.len() as u8])
    );
    let ext = DecodeContext {
        extended_message: true,
        ..CTX4
    };
    assert_eq!(frame(&b, &ext), Ok(Some(b.len())));
    let u = as_update(roundtrip(&b, &ext));
    assert_eq!(u.nlri.len(), 1200);
    assert!(matches!(
        Message::Update(u).to_bytes(&CTX4),
        Err(EncodeError::TooLong { .. })
    ));
}

#[test]
fn header_layout_and_well_known_communities() {
    assert_eq!(std::mem::size_of::<Header>(), HEADER_LEN);
    assert_eq!(std::mem::align_of::<Header>(), 1);
    let h = Header::new(MessageType::UPDATE, 23);
    assert_eq!(
        zerocopy::IntoBytes::as_bytes(&h),
        hex("ffffffffffffffffffffffffffffffff 0017 02").as_slice()
    );
    let names: Vec<String> = [
        Community::NO_EXPORT,
        Community::NO_ADVERTISE,
        Community::NO_EXPORT_SUBCONFED,
        Community::NOPEER,
        Community::GRACEFUL_SHUTDOWN,
        Community::BLACKHOLE,
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    assert_eq!(
        names,
        [
            "no-export",
            "no-advertise",
            "no-export-subconfed",
            "nopeer",
            "graceful-shutdown",
            "blackhole"
        ]
    );
    // RFC 1997: the well-known values themselves.
    assert_eq!(Community::NO_EXPORT.0, 0xFFFF_FF01);
    assert_eq!(Community::NO_ADVERTISE.0, 0xFFFF_FF02);
    assert_eq!(Community::NO_EXPORT_SUBCONFED.0, 0xFFFF_FF03);
}
