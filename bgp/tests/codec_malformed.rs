//! RFC 7606 (and RFC 4271 / 6793 / 7313 / 8092 where they rule) malformed
//! input table: each row is a hand-built message and the action the RFC
//! requires. The section cited in each row is the rule being checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod codec_common;

use codec_common::*;
use flatnet_bgp::wire::*;

#[derive(Debug)]
enum Want {
    /// Session reset with this (code, subcode).
    Reset(u8, u8),
    /// Treat-as-withdraw of this many IPv4 and IPv6 prefixes.
    Withdraw(usize, usize),
    /// Decoded, with this attribute type discarded.
    Discard(u8),
    /// Decoded cleanly.
    Clean,
}
use Want::*;

const ORIGIN: &str = "40 01 01 00";
const PATH: &str = "40 02 06 02 01 0000fde9";
const NH: &str = "40 03 04 0a000001";
const NLRI: &str = "18 c00002";
const MP6: &str = "80 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001";

fn good(extra: &str) -> String {
    format!("{ORIGIN} {PATH} {NH} {extra}")
}

fn check(name: &str, rfc: &str, bytes: &[u8], ctx: &DecodeContext, want: Want) {
    let got = decode(bytes, ctx);
    let ok = match (&want, &got) {
        (Reset(c, s), Err(DecodeError::SessionReset(n))) => n.code == *c && n.subcode == *s,
        (Withdraw(a, b), Err(DecodeError::TreatAsWithdraw(w))) => {
            w.ipv4.len() == *a && w.ipv6.len() == *b
        }
        (Discard(t), Ok(d)) => d
            .discarded
            .iter()
            .any(|e| e.type_code == *t && e.action == Action::AttributeDiscard),
        (Clean, Ok(d)) => d.discarded.is_empty(),
        _ => false,
    };
    assert!(ok, "{name} ({rfc}): wanted {want:?}, got {got:?}");
}

#[test]
fn rfc7606_update_table() {
    let c4 = &CTX4;
    let c2 = &CTX2;
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Vec<u8>, &DecodeContext, Want)> = vec![
        ("well-formed baseline", "RFC 4271 4.3", update("", &good(""), NLRI), c4, Clean),
        ("bad ORIGIN value", "RFC 7606 7.1", update("", &format!("40 01 01 03 {PATH} {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("ORIGIN length 2", "RFC 7606 7.1", update("", &format!("40 01 02 0000 {PATH} {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("AS_PATH segment overruns attribute", "RFC 7606 7.2", update("", &format!("{ORIGIN} 40 02 06 02 02 0000fde9 {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("AS_PATH unknown segment type", "RFC 7606 7.2", update("", &format!("{ORIGIN} 40 02 06 05 01 0000fde9 {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("AS_PATH zero-length segment", "RFC 7606 7.2", update("", &format!("{ORIGIN} 40 02 02 02 00 {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("AS_PATH single trailing octet", "RFC 7606 7.2", update("", &format!("{ORIGIN} 40 02 07 02 01 0000fde9 02 {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("AS_PATH 2-octet length on 4-octet session", "RFC 7606 7.2", update("", &format!("{ORIGIN} 40 02 04 02 01 fde9 {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("missing NEXT_HOP with NLRI", "RFC 7606 3(d)", update("", &format!("{ORIGIN} {PATH}"), NLRI), c4, Withdraw(1, 0)),
        ("missing ORIGIN with NLRI", "RFC 7606 3(d)", update("", &format!("{PATH} {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("missing AS_PATH with MP_REACH NLRI", "RFC 7606 3(d)", update("", &format!("{MP6} {ORIGIN}"), ""), c4, Withdraw(0, 1)),
        ("no NLRI, no mandatory attributes needed", "RFC 7606 3(d)", update("10 0a09", "80 04 04 00000001", ""), c4, Clean),
        ("MP_UNREACH alone needs no other attribute", "RFC 7606 5.2", update("", "80 0f 0a 0002 01 30 20010db80001", ""), c4, Clean),
        ("duplicate MED: keep first", "RFC 7606 3(g)", update("", &good("80 04 04 00000001 80 04 04 00000002"), NLRI), c4, Discard(4)),
        ("duplicate MP_REACH", "RFC 7606 3(g)", update("", &good(&format!("{MP6} {MP6}")), ""), c4, Reset(3, 1)),
        ("duplicate MP_UNREACH", "RFC 7606 3(g)", update("", "80 0f 03 0002 01 80 0f 03 0002 01", ""), c4, Reset(3, 1)),
        ("NEXT_HOP length 5", "RFC 7606 7.3", update("", &format!("{ORIGIN} {PATH} 40 03 05 0a00000100"), NLRI), c4, Withdraw(1, 0)),
        ("MED length 3", "RFC 7606 7.4", update("", &good("80 04 03 000001"), NLRI), c4, Withdraw(1, 0)),
        ("LOCAL_PREF length 2", "RFC 7606 7.5", update("", &good("40 05 02 0001"), NLRI), c4, Withdraw(1, 0)),
        ("ATOMIC_AGGREGATE length 1", "RFC 7606 7.6", update("", &good("40 06 01 00"), NLRI), c4, Discard(6)),
        ("AGGREGATOR length 7 on 4-octet session", "RFC 7606 7.7", update("", &good("c0 07 07 0000fde90a0000"), NLRI), c4, Discard(7)),
        ("AGGREGATOR length 8 on 2-octet session", "RFC 7606 7.7", update("", &format!("{ORIGIN} 40 02 04 02 01 fde9 {NH} c0 07 08 0000fde90a000001"), NLRI), c2, Discard(7)),
        ("COMMUNITIES length 6", "RFC 7606 7.8", update("", &good("c0 08 06 fde900010000"), NLRI), c4, Withdraw(1, 0)),
        ("COMMUNITIES length 0", "RFC 7606 7.8", update("", &good("c0 08 00"), NLRI), c4, Withdraw(1, 0)),
        ("ORIGINATOR_ID length 3", "RFC 7606 7.9", update("", &good("80 09 03 0a0000"), NLRI), c4, Withdraw(1, 0)),
        ("CLUSTER_LIST length 5", "RFC 7606 7.10", update("", &good("80 0a 05 0a00000300"), NLRI), c4, Withdraw(1, 0)),
        ("NEXT_HOP 0.0.0.0", "RFC 7606 7.3, RFC 4271 6.3", update("", &format!("{ORIGIN} {PATH} 40 03 04 00000000"), NLRI), c4, Withdraw(1, 0)),
        ("NEXT_HOP multicast 224.0.0.5", "RFC 7606 7.3, RFC 4271 6.3", update("", &format!("{ORIGIN} {PATH} 40 03 04 e0000005"), NLRI), c4, Withdraw(1, 0)),
        ("NEXT_HOP broadcast 255.255.255.255", "RFC 7606 7.3, RFC 4271 6.3", update("", &format!("{ORIGIN} {PATH} 40 03 04 ffffffff"), NLRI), c4, Withdraw(1, 0)),
        ("NEXT_HOP 0.0.0.0 without NLRI is not used", "RFC 4760 3", update("10 0a09", &format!("{ORIGIN} {PATH} 40 03 04 00000000"), ""), c4, Clean),
        ("MP_REACH IPv6 next hop link-local alone", "RFC 2545 3, RFC 7606 7.11", update("", &good("80 0e 1c 0002 01 10 fe800000000000000000000000000001 00 30 20010db80001"), ""), c4, Withdraw(0, 1)),
        ("MP_REACH IPv6 next hop ::", "RFC 7606 7.11", update("", &good("80 0e 1c 0002 01 10 00000000000000000000000000000000 00 30 20010db80001"), ""), c4, Withdraw(0, 1)),
        ("MP_REACH IPv6 next hop multicast", "RFC 7606 7.11", update("", &good("80 0e 1c 0002 01 10 ff020000000000000000000000000001 00 30 20010db80001"), ""), c4, Withdraw(0, 1)),
        ("MP_REACH 32-octet next hop, second not link-local: ignored", "RFC 2545 3", update("", &good("80 0e 2c 0002 01 20 20010db8000000000000000000000001 20010db8000000000000000000000002 00 30 20010db80001"), ""), c4, Clean),
        ("MP_REACH 32-octet next hop global + :: (FRR before it knows our link-local)", "RFC 2545 3", update("", &good("80 0e 2c 0002 01 20 20010db8000000000000000000000001 00000000000000000000000000000000 00 30 20010db80001"), ""), c4, Clean),
        ("MP_REACH 32-octet next hop :: + a global: no usable address", "RFC 2545 3, RFC 7606 7.11", update("", &good("80 0e 2c 0002 01 20 00000000000000000000000000000000 20010db8000000000000000000000002 00 30 20010db80001"), ""), c4, Withdraw(0, 1)),
        ("MP_REACH 32-octet next hop global + link-local", "RFC 2545 3", update("", &good("80 0e 2c 0002 01 20 20010db8000000000000000000000001 fe800000000000000000000000000001 00 30 20010db80001"), ""), c4, Clean),
        ("MP_REACH 32-octet next hop :: + link-local (link-local-only session)", "RFC 2545 3", update("", &good("80 0e 2c 0002 01 20 00000000000000000000000000000000 fe800000000000000000000000000001 00 30 20010db80001"), ""), c4, Clean),
        ("MP_REACH IPv4 next hop multicast", "RFC 7606 7.11, 7.3", update("", &good("80 0e 0d 0001 01 04 e0000001 00 18 c00002"), ""), c4, Withdraw(1, 0)),
        ("MP_REACH IPv4 NLRI with IPv6 next hop, not negotiated", "RFC 8950 4, RFC 7606 7.11", update("", &good("80 0e 19 0001 01 10 20010db8000000000000000000000001 00 18 c00002"), ""), c4, Reset(3, 9)),
        ("MP_REACH IPv4 NLRI with IPv6 next hop, negotiated", "RFC 8950 4", update("", &good("80 0e 19 0001 01 10 20010db8000000000000000000000001 00 18 c00002"), ""), &DecodeContext { extended_next_hop_ipv4: true, ..CTX4 }, Clean),
        ("MP_REACH IPv4 NLRI with IPv6 link-local alone, negotiated", "RFC 8950 4, RFC 2545 3", update("", &good("80 0e 19 0001 01 10 fe800000000000000000000000000001 00 18 c00002"), ""), &DecodeContext { extended_next_hop_ipv4: true, ..CTX4 }, Withdraw(1, 0)),
        ("MP_REACH next hop length 5 for IPv6", "RFC 7606 7.11", update("", &good("80 0e 11 0002 01 05 0102030405 00 30 20010db80001"), ""), c4, Reset(3, 9)),
        ("MP_REACH next hop length 12 for IPv4", "RFC 7606 7.11", update("", &good("80 0e 15 0001 01 0c 000000000000000000000000 00 18 c00002"), ""), c4, Reset(3, 9)),
        ("MP_REACH next hop overruns attribute", "RFC 7606 7.11", update("", &good("80 0e 06 0002 01 10 0102"), ""), c4, Reset(3, 9)),
        ("MP_REACH shorter than AFI/SAFI", "RFC 7606 7.11", update("", &good("80 0e 02 0002"), ""), c4, Reset(3, 9)),
        ("MP_REACH NLRI truncated", "RFC 7606 5.3", update("", &good("80 0e 19 0002 01 10 20010db8000000000000000000000001 00 30 20010d"), ""), c4, Reset(3, 9)),
        ("MP_REACH NLRI prefix length 129", "RFC 7606 5.3", update("", &good("80 0e 17 0002 01 10 20010db8000000000000000000000001 00 81 20"), ""), c4, Reset(3, 9)),
        ("MP_UNREACH NLRI truncated", "RFC 7606 5.3", update("", "80 0f 06 0002 01 40 2001", ""), c4, Reset(3, 9)),
        ("EXTENDED_COMMUNITIES length 7", "RFC 7606 7.14", update("", &good("c0 10 07 00020000000000"), NLRI), c4, Withdraw(1, 0)),
        ("LARGE_COMMUNITY length 11", "RFC 8092 6", update("", &good("c0 20 0b 0000000100000000000000"), NLRI), c4, Withdraw(1, 0)),
        ("ORIGIN flagged optional", "RFC 7606 3(c)", update("", &format!("c0 01 01 00 {PATH} {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("MED flagged well-known", "RFC 7606 3(c)", update("", &good("40 04 04 00000001"), NLRI), c4, Withdraw(1, 0)),
        ("COMMUNITIES flagged non-transitive", "RFC 7606 3(c)", update("", &good("80 08 04 fde90001"), NLRI), c4, Withdraw(1, 0)),
        ("AGGREGATOR flags wrong: its rule is discard", "RFC 7606 3(c), 7.7", update("", &good("40 07 08 0000fde90a000001"), NLRI), c4, Discard(7)),
        ("MP_REACH flags wrong: withdraw its NLRI too", "RFC 7606 3(c)", update("", &format!("{ORIGIN} {PATH} c0 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001"), NLRI), c4, Withdraw(1, 1)),
        ("last attribute length overruns attribute field", "RFC 7606 4", update("", &good("c0 08 08 fde90001"), NLRI), c4, Withdraw(1, 0)),
        ("attribute header truncated", "RFC 7606 4", update("", &good("c0"), NLRI), c4, Withdraw(1, 0)),
        ("treat-as-withdraw covers withdrawn field, NLRI and MP prefixes", "RFC 7606 2", update("10 0a09", &format!("{MP6} 40 01 01 07 {PATH} {NH}"), NLRI), c4, Withdraw(2, 1)),
        ("AS4_PATH malformed on 2-octet session", "RFC 6793 6", update("", &format!("{ORIGIN} 40 02 04 02 01 5ba0 {NH} c0 11 05 02 01 000100"), NLRI), c2, Discard(17)),
        ("AS4_AGGREGATOR length 6", "RFC 6793 6", update("", &format!("{ORIGIN} 40 02 04 02 01 5ba0 {NH} c0 12 06 00010a000001"), NLRI), c2, Discard(18)),
        ("AS4_PATH from a 4-octet speaker", "RFC 6793 6", update("", &good("c0 11 06 02 01 00010000"), NLRI), c4, Discard(17)),
        ("AS 0 in AS_PATH", "RFC 7607 2", update("", &format!("{ORIGIN} 40 02 0a 02 02 0000fde9 00000000 {NH}"), NLRI), c4, Withdraw(1, 0)),
        ("AS 0 in AGGREGATOR", "RFC 7607 2", update("", &good("c0 07 08 00000000 0a000001"), NLRI), c4, Discard(7)),
        ("AS 0 in AS4_PATH", "RFC 7607 2, RFC 6793 6", update("", &format!("{ORIGIN} 40 02 04 02 01 5ba0 {NH} c0 11 06 02 01 00000000"), NLRI), c2, Discard(17)),
        ("AS 0 in AS4_AGGREGATOR", "RFC 7607 2, RFC 6793 6", update("", &format!("{ORIGIN} 40 02 04 02 01 5ba0 {NH} c0 12 08 00000000 0a000001"), NLRI), c2, Discard(18)),
        ("unrecognized well-known attribute", "RFC 4271 6.3", update("", &good("40 63 00"), NLRI), c4, Reset(3, 2)),
        ("unknown optional attribute is fine", "RFC 4271 5", update("", &good("c0 63 01 00"), NLRI), c4, Clean),
        ("withdrawn length overruns message", "RFC 7606 4, RFC 4271 6.3", msg(2, &hex("0010 10 0a09")), c4, Reset(3, 1)),
        ("total attribute length overruns message", "RFC 7606 4, RFC 4271 6.3", msg(2, &hex("0000 0020 40 01 01 00")), c4, Reset(3, 1)),
        ("NLRI truncated", "RFC 7606 5.3", update("", &good(""), "18 c000"), c4, Reset(3, 10)),
        ("NLRI prefix length 33", "RFC 7606 5.3", update("", &good(""), "21 c0000201 00"), c4, Reset(3, 10)),
        ("withdrawn routes truncated", "RFC 7606 5.3", update("18 c0", "", ""), c4, Reset(3, 10)),
        ("add-path NLRI truncated path id", "RFC 7911 3, RFC 7606 5.3", update("", &good(""), "000000"), &DecodeContext { add_path_ipv4: true, ..CTX4 }, Reset(3, 10)),
    ];
    assert!(rows.len() >= 50);
    for (name, rfc, bytes, ctx, want) in rows {
        check(name, rfc, &bytes, ctx, want);
    }
}

#[test]
fn treat_as_withdraw_lists_prefixes_and_reasons() {
    let b = update("10 0a09", &format!("{MP6} 40 01 01 07 {PATH} {NH}"), NLRI);
    let Err(DecodeError::TreatAsWithdraw(w)) = decode(&b, &CTX4) else {
        panic!()
    };
    assert_eq!(
        w.ipv4
            .iter()
            .map(|n| n.prefix.to_string())
            .collect::<Vec<_>>(),
        ["10.9.0.0/16", "192.0.2.0/24"]
    );
    assert_eq!(w.ipv6[0].prefix.to_string(), "2001:db8:1::/48");
    assert_eq!(w.errors[0].type_code, attr_type::ORIGIN);
    assert_eq!(w.errors[0].reason, "undefined ORIGIN value");
    // The remainder kept what parsed.
    assert!(w.remainder.as_path().is_some());
    assert!(w.remainder.origin().is_none());
}

#[test]
fn session_reset_data_is_the_attribute() {
    // RFC 4271 6.3: data is the erroneous attribute (type, length, value).
    let b = update("", &good("40 63 01 aa"), NLRI);
    let Err(DecodeError::SessionReset(n)) = decode(&b, &CTX4) else {
        panic!()
    };
    assert_eq!(n.data, hex("40 63 01 aa"));
}

#[test]
fn header_and_other_messages_table() {
    let c = &CTX4;
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Vec<u8>, Want)> = vec![
        ("marker not all ones", "RFC 4271 6.1", { let mut k = msg(4, &[]); k[3] = 0; k }, Reset(1, 1)),
        ("length below 19", "RFC 4271 6.1", hex("ffffffffffffffffffffffffffffffff 0012 04"), Reset(1, 2)),
        ("KEEPALIVE with a body", "RFC 4271 6.1", msg(4, &[0]), Reset(1, 2)),
        ("unknown message type", "RFC 4271 6.1", msg(9, &[]), Reset(1, 3)),
        ("UPDATE shorter than 23", "RFC 4271 6.1", msg(2, &[0, 0]), Reset(1, 2)),
        ("OPEN shorter than 29", "RFC 4271 6.1", msg(1, &hex("04 fde9 005a 0a0000")), Reset(1, 2)),
        ("NOTIFICATION shorter than 21", "RFC 4271 6.1", msg(3, &[6]), Reset(1, 2)),
        ("length field disagrees with buffer", "RFC 4271 6.1", { let mut k = msg(4, &[]); k.push(0); k }, Reset(1, 2)),
        ("OPEN over 4096 even with extended message", "RFC 8654 4", msg(1, &[0; 4100]), Reset(1, 2)),
        ("OPEN version 3", "RFC 4271 6.2", msg(1, &hex("03 fde9 005a 0a000001 00")), Reset(2, 1)),
        ("OPEN optional parameter length mismatch", "RFC 4271 6.2", msg(1, &hex("04 fde9 005a 0a000001 05 02 02 0200")), Reset(2, 0)),
        ("OPEN capability overruns parameter", "RFC 5492 3", msg(1, &hex("04 fde9 005a 0a000001 04 02 02 4104")), Reset(2, 0)),
        ("OPEN optional parameter type 1 (authentication)", "RFC 4271 6.2", msg(1, &hex("04 fde9 005a 0a000001 04 01 02 abcd")), Reset(2, 4)),
        ("OPEN optional parameter type 255 not as the RFC 9072 marker", "RFC 4271 6.2, RFC 9072 2", msg(1, &hex("04 fde9 005a 0a000001 04 02 00 ff 00")), Reset(2, 4)),
        ("OPEN extended parameters with an unknown type", "RFC 9072 2, RFC 4271 6.2", msg(1, &hex("04 fde9 005a 0a000001 ff ff 0008 02 0000 03 0002 abcd")), Reset(2, 4)),
        ("OPEN extended parameters, capabilities only", "RFC 9072 2", msg(1, &hex("04 fde9 005a 0a000001 ff ff 0009 02 0006 41 04 0000fde9")), Clean),
        ("ROUTE-REFRESH body 3 octets", "RFC 7313 5", msg(5, &hex("0001 00")), Reset(7, 1)),
        ("ROUTE-REFRESH body 5 octets", "RFC 7313 5", msg(5, &hex("0001 00 01 00")), Reset(7, 1)),
    ];
    for (name, rfc, bytes, want) in rows {
        check(name, rfc, &bytes, c, want);
    }
    // RFC 4271 6.1: Bad Message Length carries the length field; Bad Message Type the type.
    let Err(DecodeError::SessionReset(n)) = decode(&msg(4, &[0]), c) else {
        panic!()
    };
    assert_eq!(n.data, vec![0, 20]);
    let Err(DecodeError::SessionReset(n)) = decode(&msg(9, &[]), c) else {
        panic!()
    };
    assert_eq!(n.data, vec![9]);
    // RFC 4271 6.2: Unsupported Version carries the largest supported version.
    let Err(DecodeError::SessionReset(n)) = decode(&msg(1, &hex("03 fde9 005a 0a000001 00")), c)
    else {
        panic!()
    };
    assert_eq!(n.data, vec![0, 4]);
    // RFC 7313 5: the whole ROUTE-REFRESH message is the data.
    let rr = msg(5, &hex("0001 00"));
    let Err(DecodeError::SessionReset(n)) = decode(&rr, c) else {
        panic!()
    };
    assert_eq!(n.data, rr);
}
