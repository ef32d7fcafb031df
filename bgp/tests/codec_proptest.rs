//! Property tests: generated message reprs survive encode -> decode ->
//! encode unchanged; arbitrary and mutated bytes never make decode panic;
//! packing never exceeds the maximum size and splits at the boundary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use flatnet_bgp::wire::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn ctx_strategy() -> impl Strategy<Value = DecodeContext> {
    any::<[bool; 5]>().prop_map(|[a, b, c, d, e]| DecodeContext {
        four_octet_as: a,
        add_path_ipv4: b,
        add_path_ipv6: c,
        extended_message: d,
        extended_next_hop_ipv4: e,
    })
}

fn nlri4(add_path: bool) -> impl Strategy<Value = Nlri4> {
    (any::<u32>(), 0u8..=32, any::<u32>()).prop_map(move |(a, l, id)| Nlri {
        path_id: add_path.then_some(id),
        prefix: Ipv4Prefix::from_bits(a, l),
    })
}

fn nlri6(add_path: bool) -> impl Strategy<Value = Nlri6> {
    (any::<u128>(), 0u8..=128, any::<u32>()).prop_map(move |(a, l, id)| Nlri {
        path_id: add_path.then_some(id),
        prefix: Ipv6Prefix::new(Ipv6Addr::from(a), l).unwrap(),
    })
}

/// AS numbers a path can carry: never 0, which RFC 7607 makes an error
/// (treat-as-withdraw in AS_PATH, the attribute discarded in AGGREGATOR),
/// so it would not round-trip.
fn asn(four: bool) -> BoxedStrategy<u32> {
    if four {
        (1..=u32::MAX).boxed()
    } else {
        (1..=u16::MAX).prop_map(u32::from).boxed()
    }
}

fn as_path(four: bool) -> impl Strategy<Value = AsPath> {
    let seg = (
        prop_oneof![
            Just(SegmentType::Set),
            Just(SegmentType::Sequence),
            Just(SegmentType::ConfedSequence),
            Just(SegmentType::ConfedSet)
        ],
        vec(asn(four), 1..8),
    )
        .prop_map(|(kind, asns)| AsSegment { kind, asns });
    vec(seg, 0..4).prop_map(|segments| AsPath { segments })
}

/// A unicast address (a next hop must be one, RFC 7606 7.3).
fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    (1u32..224, any::<u32>()).prop_map(|(a, x)| Ipv4Addr::from(a << 24 | x & 0xff_ffff))
}

/// Attribute with standard flags, sometimes with the extended-length bit.
fn with_flags(value: AttrValue, ext: bool) -> PathAttribute {
    let mut a = PathAttribute::new(value);
    if ext {
        a.flags |= flags::EXTENDED_LENGTH;
    }
    a
}

fn v6_next_hop() -> impl Strategy<Value = MpNextHop> {
    // A global (first octet 01..fd: not ::, not link-local, not multicast),
    // then optionally a link-local (RFC 2545 3).
    (
        1u128..0xfe,
        any::<u128>(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(top, g, l)| MpNextHop::Ipv6 {
            global: Ipv6Addr::from(top << 120 | g & !(0xff << 120)),
            link_local: l.map(|x| Ipv6Addr::from(0xfe80 << 112 | u128::from(x))),
        })
}

fn update(ctx: DecodeContext) -> impl Strategy<Value = Update> {
    let four = ctx.four_octet_as;
    let optional = (
        proptest::option::of(any::<u32>().prop_map(AttrValue::Med)),
        proptest::option::of(any::<u32>().prop_map(AttrValue::LocalPref)),
        proptest::option::of(Just(AttrValue::AtomicAggregate)),
        proptest::option::of(
            (asn(four), ipv4())
                .prop_map(|(asn, addr)| AttrValue::Aggregator(Aggregator { asn, addr })),
        ),
        proptest::option::of(
            vec(any::<u32>().prop_map(Community), 1..6).prop_map(AttrValue::Communities),
        ),
        proptest::option::of(ipv4().prop_map(AttrValue::OriginatorId)),
        proptest::option::of(vec(ipv4(), 1..4).prop_map(AttrValue::ClusterList)),
        proptest::option::of(
            vec(any::<[u8; 8]>().prop_map(ExtendedCommunity), 1..4)
                .prop_map(AttrValue::ExtendedCommunities),
        ),
        proptest::option::of(
            vec((any::<u32>(), any::<u32>(), any::<u32>()), 1..4).prop_map(|v| {
                AttrValue::LargeCommunities(
                    v.into_iter()
                        .map(|(g, a, b)| LargeCommunity {
                            global_admin: g,
                            local1: a,
                            local2: b,
                        })
                        .collect(),
                )
            }),
        ),
    );
    let as4 = if four {
        Just((None, None)).boxed()
    } else {
        (
            proptest::option::of(as_path(true).prop_map(AttrValue::As4Path)),
            proptest::option::of(
                (asn(true), ipv4())
                    .prop_map(|(asn, addr)| AttrValue::As4Aggregator(Aggregator { asn, addr })),
            ),
        )
            .boxed()
    };
    let unknown = vec(
        (
            100u8..=200,
            any::<bool>(),
            any::<bool>(),
            vec(any::<u8>(), 0..20),
        )
            .prop_map(|(t, trans, partial, data)| {
                let mut f = flags::OPTIONAL;
                if trans {
                    f |= flags::TRANSITIVE;
                    if partial {
                        f |= flags::PARTIAL;
                    }
                }
                PathAttribute {
                    flags: f,
                    value: AttrValue::Unknown { type_code: t, data },
                }
            }),
        0..3,
    );
    let mp_reach = proptest::option::of(prop_oneof![
        (v6_next_hop(), vec(nlri6(ctx.add_path_ipv6), 0..20)).prop_map(|(nh, n)| (
            Family::IPV6_UNICAST,
            nh,
            MpNlri::Ipv6(n)
        )),
        (v6_next_hop(), vec(nlri4(ctx.add_path_ipv4), 0..20)).prop_map(|(nh, n)| (
            Family::IPV4_UNICAST,
            nh,
            MpNlri::Ipv4(n)
        )),
    ]);
    let mp_unreach = proptest::option::of(vec(nlri6(ctx.add_path_ipv6), 0..20));
    (
        vec(nlri4(ctx.add_path_ipv4), 0..40),
        vec(nlri4(ctx.add_path_ipv4), 0..40),
        0u8..3,
        as_path(four),
        ipv4(),
        optional,
        as4,
        unknown,
        mp_reach,
        mp_unreach,
        any::<[bool; 4]>(),
    )
        .prop_map(
            move |(
                withdrawn,
                nlri,
                origin,
                path,
                nh,
                opt,
                as4,
                unknown,
                mp_reach,
                mp_unreach,
                ext,
            )| {
                let mut attrs = Vec::new();
                if let Some((family, mut next_hop, n)) = mp_reach {
                    // RFC 8950: IPv4 NLRI take an IPv6 next hop only when negotiated.
                    if family == Family::IPV4_UNICAST && !ctx.extended_next_hop_ipv4 {
                        next_hop = MpNextHop::Ipv4(nh);
                    }
                    attrs.push(with_flags(
                        AttrValue::MpReach(MpReach {
                            family,
                            next_hop,
                            reserved: 0,
                            nlri: n,
                        }),
                        ext[0],
                    ));
                }
                let origin = [Origin::Igp, Origin::Egp, Origin::Incomplete][usize::from(origin)];
                attrs.push(with_flags(AttrValue::Origin(origin), ext[1]));
                attrs.push(with_flags(AttrValue::AsPath(path), ext[2]));
                attrs.push(with_flags(AttrValue::NextHop(nh), false));
                let (a, b, c, d, e, f, g, h, i) = opt;
                for v in [a, b, c, d, e, f, g, h, i].into_iter().flatten() {
                    attrs.push(with_flags(v, ext[3]));
                }
                for v in [as4.0, as4.1].into_iter().flatten() {
                    attrs.push(with_flags(v, false));
                }
                // Unknown type codes must be distinct.
                let mut seen = std::collections::HashSet::new();
                attrs.extend(unknown.into_iter().filter(|u| seen.insert(u.type_code())));
                if let Some(w) = mp_unreach {
                    attrs.push(with_flags(
                        AttrValue::MpUnreach(MpUnreach {
                            family: Family::IPV6_UNICAST,
                            withdrawn: MpNlri::Ipv6(w),
                        }),
                        true,
                    ));
                }
                // A value over 255 octets needs the extended-length bit (the encoder sets it).
                for a in &mut attrs {
                    if a.wire_len(&ctx) > 3 + 255 {
                        a.flags |= flags::EXTENDED_LENGTH;
                    }
                }
                Update {
                    withdrawn,
                    attributes: attrs,
                    nlri,
                }
            },
        )
}

fn capability() -> impl Strategy<Value = Capability> {
    let fam = (any::<u16>(), any::<u8>()).prop_map(|(a, s)| Family {
        afi: Afi(a),
        safi: Safi(s),
    });
    prop_oneof![
        fam.clone().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::EnhancedRouteRefresh),
        Just(Capability::ExtendedMessage),
        any::<u32>().prop_map(Capability::FourOctetAs),
        vec((any::<u16>(), any::<u16>(), any::<u16>()), 0..4).prop_map(|v| {
            Capability::ExtendedNextHop(
                v.into_iter()
                    .map(|(a, s, n)| ExtendedNextHop {
                        nlri_afi: Afi(a),
                        nlri_safi: s,
                        next_hop_afi: Afi(n),
                    })
                    .collect(),
            )
        }),
        (0u8..16, 0u16..4096, vec((fam.clone(), any::<u8>()), 0..4)).prop_map(
            |(flags, restart_time, f)| {
                Capability::GracefulRestart(GracefulRestart {
                    flags,
                    restart_time,
                    families: f
                        .into_iter()
                        .map(|(family, flags)| GracefulRestartFamily { family, flags })
                        .collect(),
                })
            }
        ),
        vec((fam, any::<u8>()), 0..4).prop_map(|v| Capability::AddPath(
            v.into_iter()
                .map(|(family, m)| AddPathFamily {
                    family,
                    mode: AddPathMode(m)
                })
                .collect()
        )),
        ("[a-z0-9.-]{0,30}", "[a-z.]{0,20}")
            .prop_map(|(hostname, domain)| Capability::Fqdn { hostname, domain }),
        (any::<u8>(), vec(any::<u8>(), 0..30))
            .prop_filter("unknown code", |(c, _)| ![1, 2, 5, 6, 64, 65, 69, 70, 73]
                .contains(c))
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    // Only Capabilities: any other parameter type is refused on decode.
    let param = vec(capability(), 0..5).prop_map(OptionalParameter::Capabilities);
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        vec(param, 0..5),
        any::<bool>(),
    )
        .prop_map(|(my_as, hold_time, id, params, extended_params)| Open {
            version: 4,
            my_as,
            hold_time,
            bgp_id: Ipv4Addr::from(id),
            params,
            extended_params,
        })
}

fn message(ctx: DecodeContext) -> impl Strategy<Value = Message> {
    prop_oneof![
        open().prop_map(Message::Open),
        update(ctx).prop_map(Message::Update),
        (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..60)).prop_map(|(code, subcode, data)| {
            Message::Notification(Notification {
                code,
                subcode,
                data,
            })
        }),
        Just(Message::Keepalive),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(a, s, subtype)| Message::RouteRefresh(
            RouteRefresh {
                family: Family {
                    afi: Afi(a),
                    safi: Safi(s)
                },
                subtype
            }
        )),
    ]
}

fn ctx_and_message() -> impl Strategy<Value = (DecodeContext, Message)> {
    ctx_strategy().prop_flat_map(|c| (Just(c), message(c)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_encode_is_identity((ctx, m) in ctx_and_message()) {
        let bytes = m.to_bytes(&ctx).unwrap();
        prop_assert_eq!(frame(&bytes, &ctx), Ok(Some(bytes.len())));
        let d = decode(&bytes, &ctx).unwrap();
        prop_assert!(d.discarded.is_empty());
        prop_assert_eq!(&d.message, &m);
        prop_assert_eq!(d.message.to_bytes(&ctx).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(ctx in ctx_strategy(), kind in 0u8..7, body in vec(any::<u8>(), 0..600)) {
        // With a valid header, so the body parsers see the input.
        let len = 19 + body.len();
        let mut b = vec![0xff; 16];
        b.extend_from_slice(&[(len >> 8) as u8, len as u8, kind]);
        b.extend_from_slice(&body);
        let _ = frame(&b, &ctx);
        if let Ok(d) = decode(&b, &ctx) {
            let _ = d.message.to_bytes(&ctx);
        }
        // And fully raw.
        let _ = frame(&body, &ctx);
        let _ = decode(&body, &ctx);
    }

    #[test]
    fn mutated_messages_never_panic(
        (ctx, m) in ctx_and_message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = m.to_bytes(&ctx).unwrap();
        for (i, v) in flips {
            // Keep the header valid so the body parsers are exercised.
            if bytes.len() > 19 {
                let at = 19 + i.index(bytes.len() - 19);
                bytes[at] = v;
            }
        }
        if let Ok(d) = decode(&bytes, &ctx) {
            let _ = d.message.to_bytes(&ctx);
        }
        let short = &bytes[..cut.index(bytes.len() + 1).min(bytes.len())];
        let _ = decode(short, &ctx);
        let _ = frame(short, &ctx);
    }

    #[test]
    fn pack_ipv4_fits_and_splits_at_the_boundary(
        ctx in ctx_strategy(),
        n in 0usize..3000,
        seed in any::<u32>(),
    ) {
        let attrs = vec![
            PathAttribute::new(AttrValue::Origin(Origin::Igp)),
            PathAttribute::new(AttrValue::AsPath(AsPath::sequence(vec![65001]))),
            PathAttribute::new(AttrValue::NextHop(Ipv4Addr::new(10, 0, 0, 1))),
        ];
        let prefixes: Vec<Nlri4> = (0..n as u32)
            .map(|i| {
                let len = [24u8, 32, 16, 0, 25][(i ^ seed) as usize % 5];
                Nlri { path_id: ctx.add_path_ipv4.then_some(i), prefix: Ipv4Prefix::from_bits(i.wrapping_mul(2654435761) ^ seed, len) }
            })
            .collect();
        let ups = pack_ipv4(&attrs, &prefixes, &ctx).unwrap();
        let max = ctx.max_message_len();
        let mut all = Vec::new();
        let sizes: Vec<usize> = ups.iter().map(|u| Message::Update(u.clone()).to_bytes(&ctx).unwrap().len()).collect();
        for (i, u) in ups.iter().enumerate() {
            prop_assert!(sizes[i] <= max);
            if let Some(next) = ups.get(i + 1) {
                let first = next.nlri[0];
                let extra = 1 + (first.prefix.len() as usize).div_ceil(8) + if first.path_id.is_some() { 4 } else { 0 };
                prop_assert!(sizes[i] + extra > max, "update {} had room for one more prefix", i);
            }
            all.extend_from_slice(&u.nlri);
        }
        prop_assert_eq!(all, prefixes);
    }
}
