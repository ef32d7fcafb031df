//! `Rib::loc_rib_len` is a counter kept by the decision process (stats are
//! polled every few milliseconds, so it must not walk the table); the
//! sharded table must still hold and iterate every prefix. Random
//! sequences of announcements, withdrawals, originations, import policy
//! changes, stale marks, sweeps and peer downs check the counter against
//! a full walk (`loc_rib()`) and against lookups after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rib_common;

use flatnet_bgp::policy::Policy;
use flatnet_bgp::rib::{Attrs, PeerId};
use flatnet_bgp::wire::{Family, Ipv6Prefix, Prefix, Update};
use proptest::prelude::*;
use rib_common::*;

const PEERS: [(u32, u32, &str, &str); 3] = [
    (1, 65010, "10.0.0.1", "10.1.0.1"),
    (2, 65020, "10.0.0.2", "10.1.0.2"),
    (3, LOCAL_AS, "10.0.0.3", "10.1.0.3"),
];

#[derive(Debug, Clone)]
enum Op {
    Announce {
        peer: usize,
        path_len: u8,
        prefixes: Vec<u8>,
    },
    Withdraw {
        peer: usize,
        prefixes: Vec<u8>,
    },
    Originate {
        v6: bool,
        n: u8,
    },
    StopOriginate {
        v6: bool,
        n: u8,
    },
    Down {
        peer: usize,
        keep_stale: bool,
    },
    Up {
        peer: usize,
    },
    MarkStale {
        peer: usize,
    },
    EndOfRib {
        peer: usize,
    },
    RejectAll {
        peer: usize,
        reject: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0..PEERS.len();
    let pfxs = proptest::collection::vec(0u8..40, 1..12);
    prop_oneof![
        4 => (peer.clone(), 1u8..4, pfxs.clone())
            .prop_map(|(peer, path_len, prefixes)| Op::Announce { peer, path_len, prefixes }),
        2 => (peer.clone(), pfxs).prop_map(|(peer, prefixes)| Op::Withdraw { peer, prefixes }),
        1 => (any::<bool>(), 0u8..6).prop_map(|(v6, n)| Op::Originate { v6, n }),
        1 => (any::<bool>(), 0u8..6).prop_map(|(v6, n)| Op::StopOriginate { v6, n }),
        1 => (peer.clone(), any::<bool>()).prop_map(|(peer, keep_stale)| Op::Down { peer, keep_stale }),
        1 => peer.clone().prop_map(|peer| Op::Up { peer }),
        1 => peer.clone().prop_map(|peer| Op::MarkStale { peer }),
        1 => peer.clone().prop_map(|peer| Op::EndOfRib { peer }),
        1 => (peer, any::<bool>()).prop_map(|(peer, reject)| Op::RejectAll { peer, reject }),
    ]
}

fn v4(n: u8) -> String {
    format!("10.{}.{}.0/24", n % 7, n)
}

fn v6(n: u8) -> Prefix {
    Prefix::V6(Ipv6Prefix::new(format!("2001:db8:{n}::").parse().unwrap(), 48).unwrap())
}

fn apply(rib: &mut flatnet_bgp::rib::Rib, up_now: &mut [bool; 3], op: &Op) {
    match op {
        Op::Announce {
            peer,
            path_len,
            prefixes,
        } if up_now[*peer] => {
            let (id, asn, ..) = PEERS[*peer];
            let path: Vec<u32> = (0..u32::from(*path_len)).map(|i| asn + i).collect();
            let ps: Vec<String> = prefixes.iter().map(|&n| v4(n)).collect();
            let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
            announce(rib, id, &R::path(&path), &ps);
        }
        Op::Withdraw { peer, prefixes } if up_now[*peer] => {
            let ps: Vec<String> = prefixes.iter().map(|&n| v4(n)).collect();
            let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
            withdraw(rib, PEERS[*peer].0, &ps);
        }
        Op::Originate { v6: true, n } => {
            rib.originate(v6(*n), Attrs::default());
        }
        Op::Originate { v6: false, n } => {
            rib.originate(pfx(&v4(*n)), Attrs::default());
        }
        Op::StopOriginate { v6: true, n } => {
            rib.withdraw(v6(*n));
        }
        Op::StopOriginate { v6: false, n } => {
            rib.withdraw(pfx(&v4(*n)));
        }
        Op::Down { peer, keep_stale } if up_now[*peer] => {
            let keep: &[Family] = if *keep_stale {
                &[Family::IPV4_UNICAST]
            } else {
                &[]
            };
            rib.peer_down(PeerId(PEERS[*peer].0), keep);
            up_now[*peer] = false;
        }
        Op::Up { peer } if !up_now[*peer] => {
            let (id, asn, rid, addr) = PEERS[*peer];
            up(rib, id, asn, rid, addr);
            up_now[*peer] = true;
        }
        Op::MarkStale { peer } => {
            rib.mark_stale(PeerId(PEERS[*peer].0), Family::IPV4_UNICAST);
        }
        Op::EndOfRib { peer } if up_now[*peer] => {
            rib.apply_update(
                PeerId(PEERS[*peer].0),
                &Update::end_of_rib(Family::IPV4_UNICAST),
            )
            .unwrap();
        }
        Op::RejectAll { peer, reject } if up_now[*peer] => {
            let pol = if *reject {
                Policy::reject_all("none")
            } else {
                Policy::accept_all("all")
            };
            rib.set_import_policy(PeerId(PEERS[*peer].0), Some(pol))
                .unwrap();
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn loc_rib_len_matches_a_full_walk(ops in proptest::collection::vec(op(), 1..60)) {
        let mut rib = rib();
        let mut up_now = [false; 3];
        for o in &ops {
            apply(&mut rib, &mut up_now, o);
            let walk = rib.loc_rib();
            prop_assert_eq!(rib.loc_rib_len(), walk.len(), "after {:?}", o);
            for (p, path) in &walk {
                let best = rib.best(p);
                prop_assert_eq!(best.map(|b| b.peer), Some(path.peer), "lookup of {}", p);
            }
        }
    }
}

#[test]
fn many_prefixes_spread_over_shards_are_all_found() {
    let mut rib = rib();
    up(&mut rib, 1, 65010, "10.0.0.1", "10.1.0.1");
    let ps: Vec<String> = (0..20_000u32)
        .map(|i| format!("10.{}.{}.0/24", i >> 8, i & 255))
        .collect();
    for chunk in ps.chunks(500) {
        let c: Vec<&str> = chunk.iter().map(String::as_str).collect();
        announce(&mut rib, 1, &R::path(&[65010]), &c);
    }
    assert_eq!(rib.loc_rib_len(), 20_000);
    assert_eq!(rib.loc_rib().len(), 20_000);
    assert!(ps.iter().all(|p| best_peer(&rib, p) == Some(1)));
    let half: Vec<&str> = ps.iter().step_by(2).map(String::as_str).collect();
    withdraw(&mut rib, 1, &half);
    assert_eq!(rib.loc_rib_len(), 10_000);
    assert_eq!(rib.loc_rib().len(), 10_000);
    assert!(
        ps.iter()
            .skip(1)
            .step_by(2)
            .all(|p| best_peer(&rib, p) == Some(1))
    );
    assert!(ps.iter().step_by(2).all(|p| best_peer(&rib, p).is_none()));
}
