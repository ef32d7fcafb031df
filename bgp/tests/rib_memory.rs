//! Memory per route with interned attributes: a table of many routes with
//! a few thousand distinct attribute sets stays under 100 bytes per route
//! (counted by a global allocator that tracks live bytes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rib_common;

use flatnet_bgp::rib::PeerId;
use flatnet_bgp::wire::{Ipv4Prefix, Nlri4};
use rib_common::*;

#[global_allocator]
static A: Counting = Counting;

#[test]
fn interned_table_costs_under_100_bytes_per_route() {
    // 120k: just past a hash table growth step (worst-case load factor).
    const N: u32 = 120_000;
    const SETS: u32 = 2_000;
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    let routes: Vec<R> = (0..SETS)
        .map(|s| {
            R::path(&[65010, 65100 + s % 50, 66000 + s])
                .med(s % 7)
                .nh("10.1.0.1")
        })
        .collect();
    let before = live_bytes();
    let mut i = 0u32;
    while i < N {
        let set = &routes[(i / 60 % SETS) as usize];
        let mut u = set.update(&[]);
        u.nlri = (i..(i + 60).min(N))
            .map(|k| {
                let p = if k % 4 == 0 {
                    Ipv4Prefix::from_bits(0x6400_0000 + k, 32)
                } else {
                    Ipv4Prefix::from_bits(0x0100_0000 + (k << 8), 24)
                };
                Nlri4::new(p)
            })
            .collect();
        rib.apply_update(PeerId(1), &u).unwrap();
        i += 60;
    }
    assert_eq!(rib.loc_rib_len(), N as usize);
    let sets = rib.attr_sets();
    assert_eq!(
        sets, SETS as usize,
        "one interned set per distinct attribute set"
    );
    let per_route = (live_bytes() - before) as f64 / f64::from(N);
    println!(
        "bytes per route: {per_route:.1} (size_of Paths = {})",
        std::mem::size_of::<flatnet_bgp::rib::table::Paths>()
    );
    assert!(per_route <= 100.0, "{per_route:.1} bytes per route");
}
