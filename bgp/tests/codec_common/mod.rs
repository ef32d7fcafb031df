// Shared helpers for the codec integration tests (included with `mod`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use flatnet_bgp::wire::{DecodeContext, Message, decode};

/// Parse whitespace-separated hex ("ff 00 0a").
pub fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {s}");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// A whole message: marker, length (computed here, by hand), type, body.
pub fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    let len = 19 + body.len();
    v.extend_from_slice(&[(len >> 8) as u8, len as u8, kind]);
    v.extend_from_slice(body);
    v
}

/// An UPDATE body from hand-written withdrawn, attribute and NLRI octets
/// (the two 2-octet length fields are counted here).
pub fn update_body(withdrawn: &str, attrs: &str, nlri: &str) -> Vec<u8> {
    let (w, a, n) = (hex(withdrawn), hex(attrs), hex(nlri));
    let mut v = vec![(w.len() >> 8) as u8, w.len() as u8];
    v.extend_from_slice(&w);
    v.extend_from_slice(&[(a.len() >> 8) as u8, a.len() as u8]);
    v.extend_from_slice(&a);
    v.extend_from_slice(&n);
    v
}

pub fn update(withdrawn: &str, attrs: &str, nlri: &str) -> Vec<u8> {
    msg(2, &update_body(withdrawn, attrs, nlri))
}

/// Decode, assert nothing was discarded, re-encode and require identical bytes.
pub fn roundtrip(bytes: &[u8], ctx: &DecodeContext) -> Message {
    let d = decode(bytes, ctx).unwrap_or_else(|e| panic!("decode failed: {e:?}"));
    assert!(
        d.discarded.is_empty(),
        "unexpected discards: {:?}",
        d.discarded
    );
    let again = d.message.to_bytes(ctx).expect("encode");
    assert_eq!(again, bytes, "re-encode differs for {:?}", d.message);
    d.message
}

pub const CTX4: DecodeContext = DecodeContext {
    four_octet_as: true,
    add_path_ipv4: false,
    add_path_ipv6: false,
    extended_message: false,
    extended_next_hop_ipv4: false,
};

pub const CTX2: DecodeContext = DecodeContext::legacy();
