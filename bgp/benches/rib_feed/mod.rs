//! The shared benchmark feed: 1,000,000 IPv4 prefixes (70% /24, 30% /32)
//! in a few thousand attribute sets, as pre-encoded UPDATE messages.

use std::net::Ipv4Addr;

use flatnet_bgp::wire::{
    AsPath, AttrValue, Community, DecodeContext, Ipv4Prefix, Message, Nlri4, Origin, PathAttribute,
    pack_ipv4,
};

/// The feeding peer's AS.
pub const PEER_AS: u32 = 65010;

/// The feed: pre-encoded UPDATE messages (as the wire would carry them).
pub fn feed(n: u32, sets: u32, next_hop: Ipv4Addr) -> Vec<Vec<u8>> {
    let ctx = DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    };
    // Runs of 1..=40 consecutive prefixes share one attribute set (one
    // UPDATE per run, ~20 prefixes per UPDATE on average, as in a table dump).
    let mut runs: Vec<(u32, Vec<Nlri4>)> = Vec::new();
    let mut k = 0u32;
    let mut r = 0u32;
    while k < n {
        let len = (r.wrapping_mul(2_654_435_761) >> 7) % 40 + 1;
        let set = r.wrapping_mul(40_503) % sets;
        let nlri = (k..(k + len).min(n))
            .map(|k| {
                Nlri4::new(if k % 10 < 3 {
                    Ipv4Prefix::from_bits(0xC000_0000 + k, 32)
                } else {
                    Ipv4Prefix::from_bits(0x0100_0000 + (k << 8), 24)
                })
            })
            .collect();
        runs.push((set, nlri));
        k += len;
        r += 1;
    }
    let mut out = Vec::new();
    for (s, nlri) in &runs {
        let s = *s;
        let path: Vec<u32> = [PEER_AS]
            .into_iter()
            .chain((0..(s % 5)).map(|i| 64700 + (s * 7 + i) % 200))
            .chain([100_000 + s])
            .collect();
        let mut attrs = vec![
            PathAttribute::new(AttrValue::Origin(if s % 3 == 0 {
                Origin::Incomplete
            } else {
                Origin::Igp
            })),
            PathAttribute::new(AttrValue::AsPath(AsPath::sequence(path))),
            PathAttribute::new(AttrValue::NextHop(next_hop)),
            PathAttribute::new(AttrValue::Med(s % 11)),
        ];
        if s % 2 == 0 {
            attrs.push(PathAttribute::new(AttrValue::Communities(vec![
                Community::new(65010, (s % 100) as u16),
                Community::new(65010, 1000),
            ])));
        }
        for u in pack_ipv4(&attrs, nlri, &ctx).unwrap() {
            out.push(Message::Update(u).to_bytes(&ctx).unwrap());
        }
    }
    out
}
