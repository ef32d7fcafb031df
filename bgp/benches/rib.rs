//! RIB ingest benchmark: 1,000,000 IPv4 prefixes (70% /24, 30% /32) in
//! 4,000 distinct attribute sets, encoded as real UPDATE messages by the
//! codec's packer, then decoded and applied to the RIB as one eBGP peer
//! feed. Prints prefixes/s, live heap bytes per route (counting
//! allocator) and VmRSS/VmHWM.
//!
//! Run: `cargo bench -p flatnet-bgp --bench rib` (FLATNET_RIB_BENCH_N to change the size).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use flatnet_bgp::policy::Policy;
use flatnet_bgp::rib::{DecisionConfig, PeerId, PeerInfo, Rib, RibConfig};
use flatnet_bgp::wire::{DecodeContext, Message};

#[path = "../tests/rib_common/mod.rs"]
mod rib_common;

#[global_allocator]
static ALLOC: rib_common::Counting = rib_common::Counting;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

mod rib_feed;

use rib_feed::{PEER_AS, feed};

const LOCAL_AS: u32 = 65000;

fn peer(asn: u32, last: u8, import: bool) -> PeerInfo {
    let mut i = PeerInfo::new(
        LOCAL_AS,
        asn,
        Ipv4Addr::new(10, 0, 0, last),
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, last)),
    );
    if import {
        i.import = Some(Policy::accept_all("all"));
    }
    i.export = Some(Policy::accept_all("all"));
    i.local_v4 = Some(Ipv4Addr::new(10, 1, 0, 1));
    i
}

fn run(msgs: &[Vec<u8>], n: u32, with_out_peer: bool) {
    let ctx = DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    };
    let live0 = rib_common::live_bytes();
    let rss0 = status_kb("VmRSS:");
    let mut rib = Rib::new(RibConfig {
        local_as: LOCAL_AS,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        decision: DecisionConfig::default(),
    });
    rib.peer_up(PeerId(1), peer(PEER_AS, 2, true));
    if with_out_peer {
        rib.peer_up(PeerId(2), peer(65020, 3, false));
    }
    let t = Instant::now();
    let mut changes = 0usize;
    for m in msgs {
        let Message::Update(u) = Message::decode(m, &ctx).unwrap() else {
            panic!("not an UPDATE")
        };
        changes += rib.apply_update(PeerId(1), &u).unwrap().loc_rib.len();
    }
    let ingest = t.elapsed();
    assert_eq!(rib.loc_rib_len(), n as usize);
    assert_eq!(changes, n as usize);
    let mut out_msgs = 0;
    let mut t_out = std::time::Duration::ZERO;
    if with_out_peer {
        let t = Instant::now();
        let us = rib.take_updates(PeerId(2)).unwrap();
        let mut buf = Vec::new();
        for u in us {
            buf.clear();
            Message::Update(u).encode(&ctx, &mut buf).unwrap();
            out_msgs += 1;
        }
        t_out = t.elapsed();
    }
    let live = rib_common::live_bytes() - live0;
    let rss = status_kb("VmRSS:").saturating_sub(rss0);
    let label = if with_out_peer {
        "feed + 1 eBGP out peer"
    } else {
        "feed only (in + Loc-RIB)"
    };
    println!(
        "{label:<26} {n} prefixes in {:.3} s = {:>9.0} prefixes/s | live heap {:.1} B/route | RSS +{:.1} B/route | attr sets {}{}",
        ingest.as_secs_f64(),
        f64::from(n) / ingest.as_secs_f64(),
        live as f64 / f64::from(n),
        rss as f64 * 1024.0 / f64::from(n),
        rib.attr_sets(),
        if with_out_peer {
            format!(
                " | out: {out_msgs} UPDATEs packed+encoded in {:.3} s",
                t_out.as_secs_f64()
            )
        } else {
            String::new()
        }
    );
    drop(rib);
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us too: keep that short.
    let quick = std::env::args().all(|a| a != "--bench");
    let n: u32 = std::env::var("FLATNET_RIB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 1_000_000 });
    let sets = 4_000.min(n / 10).max(1);
    let t = Instant::now();
    let msgs = feed(n, sets, Ipv4Addr::new(10, 1, 0, 2));
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    println!(
        "feed: {n} IPv4 prefixes (70% /24, 30% /32), {sets} attribute sets, {} UPDATEs, {:.1} MB, built in {:.2} s",
        msgs.len(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    run(&msgs, n, false);
    run(&msgs, n, true);
    println!(
        "process VmHWM (peak RSS, incl. the pre-encoded feed): {} MB",
        status_kb("VmHWM:") / 1024
    );
}
