//! Codec throughput: decode and encode of UPDATEs packed with IPv4 /24s,
//! IPv4 /32s and IPv6 /64s sharing one attribute set, in prefixes per
//! second on one core. Before the criterion groups, a side-by-side run
//! prints our decode rate next to the reference: a minimal bounds-checked
//! prefix walk over the same bytes (no allocation, no reprs), and the ratio.
//!
//! Run: `cargo bench -p flatnet-bgp --bench codec -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use flatnet_bgp::wire::*;

const CTX: DecodeContext = DecodeContext {
    four_octet_as: true,
    add_path_ipv4: false,
    add_path_ipv6: false,
    extended_message: false,
    extended_next_hop_ipv4: false,
};

const PREFIXES: u32 = 100_000;

struct Workload {
    name: &'static str,
    updates: Vec<Update>,
    bytes: Vec<Vec<u8>>,
    prefixes: u64,
}

fn shared_attrs() -> Vec<PathAttribute> {
    vec![
        PathAttribute::new(AttrValue::Origin(Origin::Igp)),
        PathAttribute::new(AttrValue::AsPath(AsPath::sequence(vec![65001, 65002]))),
        PathAttribute::new(AttrValue::Med(10)),
        PathAttribute::new(AttrValue::Communities(vec![Community::new(65001, 100)])),
        PathAttribute::new(AttrValue::LargeCommunities(vec![LargeCommunity {
            global_admin: 65001,
            local1: 1,
            local2: 2,
        }])),
    ]
}

fn workload(name: &'static str, updates: Vec<Update>) -> Workload {
    let bytes: Vec<Vec<u8>> = updates
        .iter()
        .map(|u| Message::Update(u.clone()).to_bytes(&CTX).unwrap())
        .collect();
    let prefixes = updates
        .iter()
        .map(|u| {
            u.nlri.len()
                + match u.mp_reach().map(|m| &m.nlri) {
                    Some(MpNlri::Ipv6(v)) => v.len(),
                    _ => 0,
                }
        })
        .sum::<usize>() as u64;
    Workload {
        name,
        updates,
        bytes,
        prefixes,
    }
}

fn workloads() -> Vec<Workload> {
    let mut v4 = shared_attrs();
    v4.push(PathAttribute::new(AttrValue::NextHop(Ipv4Addr::new(
        10, 0, 0, 1,
    ))));
    let p24: Vec<Nlri4> = (0..PREFIXES)
        .map(|i| Nlri::new(Ipv4Prefix::from_bits(0x0a00_0000 | (i << 8), 24)))
        .collect();
    let p32: Vec<Nlri4> = (0..PREFIXES)
        .map(|i| Nlri::new(Ipv4Prefix::from_bits(0x0a00_0000 | i, 32)))
        .collect();
    let p64: Vec<Nlri6> = (0..u128::from(PREFIXES))
        .map(|i| {
            Nlri::new(
                Ipv6Prefix::new(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64)), 64).unwrap(),
            )
        })
        .collect();
    let nh = MpNextHop::Ipv6 {
        global: "2001:db8::1".parse().unwrap(),
        link_local: Some("fe80::1".parse().unwrap()),
    };
    vec![
        workload("ipv4_24", pack_ipv4(&v4, &p24, &CTX).unwrap()),
        workload("ipv4_32", pack_ipv4(&v4, &p32, &CTX).unwrap()),
        workload(
            "ipv6_64",
            pack_ipv6(&shared_attrs(), &nh, &p64, &CTX).unwrap(),
        ),
    ]
}

fn decode_all(w: &Workload) -> usize {
    let mut n = 0;
    for b in &w.bytes {
        if let Ok(Decoded {
            message: Message::Update(u),
            ..
        }) = decode(black_box(b), &CTX)
        {
            n += u.nlri.len();
            if let Some(MpNlri::Ipv6(v)) = u.mp_reach().map(|m| &m.nlri) {
                n += v.len();
            }
        }
    }
    n
}

/// The reference: the least a decoder must do. Check the header and the
/// two length fields, skip the attributes (finding MP_REACH for IPv6), then
/// walk the NLRI with a bounds check per prefix, folding each prefix into a
/// checksum instead of building anything.
fn reference_walk(msg: &[u8]) -> (usize, u64) {
    fn walk(mut b: &[u8], max_len: u8, count: &mut usize, sum: &mut u64) -> Option<()> {
        while let Some((&len, rest)) = b.split_first() {
            if len > max_len {
                return None;
            }
            let n = usize::from(len).div_ceil(8);
            let (bytes, rest) = rest.split_at_checked(n)?;
            let mut acc = u64::from(len);
            for &x in bytes.iter().take(8) {
                acc = (acc << 8) | u64::from(x);
            }
            *sum = sum.wrapping_add(acc);
            *count += 1;
            b = rest;
        }
        Some(())
    }
    let mut count = 0;
    let mut sum = 0;
    let body = msg.get(19..).unwrap_or_default();
    let Some((w, rest)) = body.split_first_chunk::<2>() else {
        return (0, 0);
    };
    let Some((_, rest)) = rest.split_at_checked(usize::from(u16::from_be_bytes(*w))) else {
        return (0, 0);
    };
    let Some((a, rest)) = rest.split_first_chunk::<2>() else {
        return (0, 0);
    };
    let Some((mut attrs, nlri)) = rest.split_at_checked(usize::from(u16::from_be_bytes(*a))) else {
        return (0, 0);
    };
    while let Some((&[fl, code], rest)) = attrs.split_first_chunk::<2>() {
        let (len, rest) = if fl & 0x10 != 0 {
            let Some((l, r)) = rest.split_first_chunk::<2>() else {
                break;
            };
            (usize::from(u16::from_be_bytes(*l)), r)
        } else {
            let Some((&l, r)) = rest.split_first() else {
                break;
            };
            (usize::from(l), r)
        };
        let Some((v, rest)) = rest.split_at_checked(len) else {
            break;
        };
        if code == 14 {
            // AFI(2) SAFI(1) NH-len(1) NH reserved(1) NLRI
            if let Some(n) = v.get(3).and_then(|&nhl| v.get(5 + usize::from(nhl)..)) {
                walk(n, 128, &mut count, &mut sum);
            }
        }
        attrs = rest;
    }
    walk(nlri, 32, &mut count, &mut sum);
    (count, sum)
}

fn reference_all(w: &Workload) -> usize {
    let mut n = 0;
    for b in &w.bytes {
        let (c, s) = reference_walk(black_box(b));
        black_box(s);
        n += c;
    }
    n
}

fn encode_all(w: &Workload, out: &mut Vec<u8>) -> usize {
    out.clear();
    for u in &w.updates {
        // Whole messages (header, add-path check, length check), appended to one buffer.
        u.encode(&CTX, out).unwrap();
    }
    out.len()
}

/// Time `f` for about `dur`, returning seconds per call.
fn time_per_call(dur: Duration, mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < dur {
        black_box(f());
        calls += 1;
    }
    start.elapsed().as_secs_f64() / calls as f64
}

fn side_by_side(ws: &[Workload]) {
    println!("codec side-by-side (one core, {PREFIXES} prefixes per workload):");
    println!(
        "{:<8} {:>9} {:>13} {:>10} {:>16} {:>10} {:>7} {:>13}",
        "workload",
        "updates",
        "decode Mp/s",
        "ns/prefix",
        "reference Mp/s",
        "ns/prefix",
        "ratio",
        "encode Mp/s"
    );
    let mut out = Vec::with_capacity(1 << 20);
    for w in ws {
        assert_eq!(decode_all(w) as u64, w.prefixes);
        assert_eq!(reference_all(w) as u64, w.prefixes);
        let d = time_per_call(Duration::from_millis(700), || decode_all(w));
        let r = time_per_call(Duration::from_millis(700), || reference_all(w));
        let e = time_per_call(Duration::from_millis(700), || encode_all(w, &mut out));
        let p = w.prefixes as f64;
        println!(
            "{:<8} {:>9} {:>13.1} {:>10.2} {:>16.1} {:>10.2} {:>7.2} {:>13.1}",
            w.name,
            w.updates.len(),
            p / d / 1e6,
            d * 1e9 / p,
            p / r / 1e6,
            r * 1e9 / p,
            d / r,
            p / e / 1e6,
        );
    }
    println!(
        "(ratio = our decode time / reference walk time; target: >= 50 M IPv4 prefixes/s decode)"
    );
}

fn main() {
    let ws = workloads();
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    if !quick {
        side_by_side(&ws);
    }
    let mut c = Criterion::default().configure_from_args();
    let mut out = Vec::with_capacity(1 << 20);
    for w in &ws {
        let mut g = c.benchmark_group(format!("codec/{}", w.name));
        g.throughput(Throughput::Elements(w.prefixes));
        g.bench_function("decode", |b| b.iter(|| decode_all(w)));
        g.bench_function("reference_walk", |b| b.iter(|| reference_all(w)));
        g.bench_function("encode", |b| b.iter(|| encode_all(w, &mut out)));
        g.finish();
    }
    c.final_summary();
}
