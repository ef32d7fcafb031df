//! Property tests of the decision process: the RIB's best path and
//! multipath set equal a reference selection written straight from
//! RFC 4271 9.1.2.2 over random candidate sets, whatever the arrival order
//! (with replaced and withdrawn decoys on the way).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod rib_common;

use std::net::Ipv4Addr;

use flatnet_bgp::rib::{DecisionConfig, PeerId};
use flatnet_bgp::wire::Origin;
use proptest::prelude::*;
use rib_common::*;

const P: &str = "203.0.113.0/24";

#[derive(Debug, Clone)]
struct Cand {
    ebgp: bool,
    nas: u32,
    extra: usize,
    lp: u32,
    origin: u8,
    med: Option<u32>,
    rid: u8,
    addr: u8,
    originator: Option<u8>,
    cluster: usize,
    decoy: bool,
}

fn cand() -> impl Strategy<Value = Cand> {
    (
        any::<bool>(),
        prop::sample::select(vec![65010u32, 65020, 65030]),
        0usize..3,
        prop::sample::select(vec![100u32, 200]),
        0u8..3,
        prop::option::of(prop::sample::select(vec![0u32, 10, 20])),
        1u8..4,
        prop::option::of(1u8..4),
        0usize..3,
        any::<bool>(),
    )
        .prop_map(
            |(ebgp, nas, extra, lp, origin, med, rid, originator, cluster, decoy)| Cand {
                ebgp,
                nas,
                extra,
                lp,
                origin,
                med,
                rid,
                addr: 0,
                originator: if ebgp { None } else { originator },
                cluster: if ebgp { 0 } else { cluster },
                decoy,
            },
        )
}

fn origin(o: u8) -> Origin {
    match o {
        0 => Origin::Igp,
        1 => Origin::Egp,
        _ => Origin::Incomplete,
    }
}

fn route(c: &Cand) -> R {
    let mut path = vec![c.nas];
    path.extend((0..c.extra).map(|i| 65100 + i as u32));
    let mut r = R::path(&path).origin(origin(c.origin));
    if let Some(m) = c.med {
        r = r.med(m);
    }
    if !c.ebgp {
        r = r.lp(c.lp);
    }
    if let Some(o) = c.originator {
        r = r.originator(&format!("10.0.0.{o}"));
    }
    r.cluster(c.cluster)
}

/// RFC 4271 9.1.2.2 as literally as possible, plus the multipath rule.
fn reference(c: &[Cand], cfg: &DecisionConfig) -> (usize, Vec<usize>) {
    let lp = |x: &Cand| if x.ebgp { 100 } else { x.lp };
    let mut s: Vec<usize> = (0..c.len()).collect();
    let best_of = |s: &[usize], f: &dyn Fn(&Cand) -> i64| -> Vec<usize> {
        let m = s.iter().map(|&i| f(&c[i])).min().unwrap();
        s.iter().copied().filter(|&i| f(&c[i]) == m).collect()
    };
    s = best_of(&s, &|x| -i64::from(lp(x)));
    s = best_of(&s, &|x| 1 + x.extra as i64);
    s = best_of(&s, &|x| i64::from(x.origin));
    let med = |x: &Cand| x.med.unwrap_or(0);
    let before = s.clone();
    s.retain(|&i| {
        !before
            .iter()
            .any(|&j| (cfg.always_compare_med || c[j].nas == c[i].nas) && med(&c[j]) < med(&c[i]))
    });
    if s.iter().any(|&i| c[i].ebgp) {
        s.retain(|&i| c[i].ebgp);
    }
    let eq = s.clone();
    let key = |i: usize| {
        let x = &c[i];
        (
            Ipv4Addr::new(10, 0, 0, x.originator.unwrap_or(x.rid)),
            x.cluster,
            Ipv4Addr::new(10, 1, 0, x.addr),
            i,
        )
    };
    let best = *s.iter().min_by_key(|&&i| key(i)).unwrap();
    let mut mp: Vec<usize> = eq
        .into_iter()
        .filter(|&i| i != best && (cfg.multipath_relax || c[i].nas == c[best].nas))
        .collect();
    mp.sort_by_key(|&i| key(i));
    mp.insert(0, best);
    mp.truncate(cfg.max_paths);
    (best, mp)
}

fn run(c: &[Cand], order: &[usize], cfg: DecisionConfig) -> (Option<u32>, Vec<u32>) {
    let mut rib = rib_with(cfg);
    for (i, x) in c.iter().enumerate() {
        let asn = if x.ebgp { x.nas } else { LOCAL_AS };
        up(
            &mut rib,
            i as u32,
            asn,
            &format!("10.0.0.{}", x.rid),
            &format!("10.1.0.{}", x.addr),
        );
    }
    // A transient peer whose route is withdrawn again must leave no trace.
    up(&mut rib, 99, 65099, "10.0.0.0", "10.1.0.0");
    announce(&mut rib, 99, &R::path(&[65099]).lp(100), &[P]);
    let mut last = None;
    let mut note = |ch: flatnet_bgp::rib::Changes| {
        if let Some(c) = ch.loc_rib.into_iter().last() {
            last = Some(c);
        }
    };
    for &i in order {
        let x = &c[i];
        if x.decoy {
            // An earlier, different route from the same peer that gets replaced.
            note(announce(
                &mut rib,
                i as u32,
                &R::path(&[x.nas, 1, 2, 3, 4, 5]).med(7),
                &[P],
            ));
        }
        note(announce(&mut rib, i as u32, &route(x), &[P]));
        if i == order[0] {
            note(withdraw(&mut rib, 99, &[P]));
        }
    }
    let best = rib.best(&pfx(P)).map(|p| p.peer.0);
    let mp: Vec<u32> = rib.multipath(&pfx(P)).iter().map(|p| p.peer.0).collect();
    // The last reported change agrees with the queried state.
    let last = last.expect("at least one Loc-RIB change");
    assert_eq!(last.best.map(|p| p.peer.0), best);
    assert_eq!(
        last.multipath.iter().map(|p| p.peer.0).collect::<Vec<_>>(),
        mp
    );
    assert!(rib.routes(&pfx(P)).iter().all(|r| r.peer != PeerId(99)));
    (best, mp)
}

fn cands() -> impl Strategy<Value = (Vec<Cand>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(cand(), 1..7).prop_flat_map(|v| {
        // Unique peer addresses in a random order (so address and peer id disagree).
        let n = v.len();
        let addrs: Vec<u8> = (1..=n as u8).collect();
        (
            Just(addrs).prop_shuffle(),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        )
            .prop_map(move |(a, o1, o2)| {
                let mut v = v.clone();
                for (x, ad) in v.iter_mut().zip(a) {
                    x.addr = ad;
                }
                (v, o1, o2)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn best_and_multipath_match_reference_in_any_order(
        (c, o1, o2) in cands(),
        always in any::<bool>(),
        relax in any::<bool>(),
        max_paths in 1usize..5,
    ) {
        let cfg = DecisionConfig { always_compare_med: always, multipath_relax: relax, max_paths };
        let (rb, rmp) = reference(&c, &cfg);
        let a = run(&c, &o1, cfg);
        let b = run(&c, &o2, cfg);
        prop_assert_eq!(a.0, Some(rb as u32), "best differs from reference");
        let rmp: Vec<u32> = rmp.into_iter().map(|i| i as u32).collect();
        prop_assert_eq!(&a.1, &rmp, "multipath differs from reference");
        prop_assert_eq!(a, b, "arrival order changed the result");
    }
}
