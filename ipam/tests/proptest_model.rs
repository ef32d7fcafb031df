#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: random sequences of allocate / release / GC / empty-block
//! release / time steps from several simulated hosts, checked against a
//! simple model (a map from handle to address) and the invariants:
//! no address twice, every allocation inside a block of its pool, affinity
//! respected, strict mode never borrows, limits held.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use flatnet_ipam::{
    AllocRequest, Block, Cidr, Handle, Ipam, IpamError, ManualClock, MemStore, Pool,
};
use proptest::prelude::*;

const HOSTS: [&str; 3] = ["h0", "h1", "h2"];
const GRACE: u64 = 10_000;

#[derive(Clone, Debug)]
enum Step {
    Alloc { host: usize, c: u8 },
    Release { host: usize, c: u8 },
    Gc { host: usize, live: u16 },
    ReleaseEmpty { host: usize },
    Advance { ms: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..3usize, 0..12u8).prop_map(|(host, c)| Step::Alloc { host, c }),
        3 => (0..3usize, 0..12u8).prop_map(|(host, c)| Step::Release { host, c }),
        1 => (0..3usize, any::<u16>()).prop_map(|(host, live)| Step::Gc { host, live }),
        1 => (0..3usize).prop_map(|host| Step::ReleaseEmpty { host }),
        1 => (0..3u64).prop_map(|k| Step::Advance { ms: k * GRACE / 2 + 1 }),
    ]
}

fn handle(c: u8) -> Handle {
    Handle::new(format!("c{c}"), "eth0")
}

struct Setup {
    strict: bool,
    max_blocks: Option<u32>,
    reserved_low: u32,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<bool>(),
        prop_oneof![Just(None), (1..3u32).prop_map(Some)],
        0..2u32,
    )
        .prop_map(|(strict, max_blocks, reserved_low)| Setup {
            strict,
            max_blocks,
            reserved_low,
        })
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "strict={} max_blocks={:?} reserved_low={}",
            self.strict, self.max_blocks, self.reserved_low
        )
    }
}

fn free_in(b: &Block, pool: &Pool) -> u64 {
    b.free(pool.reserved_low, pool.reserved_high)
}

fn run(setup: Setup, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let clock = ManualClock::new(1_000_000);
    let ipam = Ipam::with_clock(MemStore::new(), "/p/", Arc::new(clock.clone()));
    let mut pool = Pool::new("p", "10.1.0.0/27".parse::<Cidr>().unwrap());
    pool.block_prefix = 29;
    pool.strict_affinity = setup.strict;
    pool.max_blocks_per_host = setup.max_blocks;
    pool.reserved_low = setup.reserved_low;
    pool.empty_block_grace_ms = GRACE;
    rt.block_on(ipam.create_pool(pool.clone())).unwrap();
    let all_hosts: BTreeSet<String> = HOSTS.iter().map(|s| s.to_string()).collect();
    // The model: which handle holds which address.
    let mut model: BTreeMap<(usize, u8), IpAddr> = BTreeMap::new();

    for (i, st) in steps.iter().enumerate() {
        let ctx = format!("step {i} {st:?}");
        let before = rt.block_on(ipam.all_blocks()).unwrap();
        match *st {
            Step::Alloc { host, c } => {
                let hn = HOSTS[host];
                let res = rt.block_on(ipam.allocate(&AllocRequest::v4(handle(c), hn)));
                let own_free = before
                    .iter()
                    .filter(|b| b.host.as_deref() == Some(hn))
                    .any(|b| free_in(b, &pool) > 0);
                let mine = before
                    .iter()
                    .filter(|b| b.host.as_deref() == Some(hn))
                    .count() as u32;
                let can_claim = before.len() < 4 && setup.max_blocks.is_none_or(|m| mine < m);
                let others_free = before
                    .iter()
                    .filter(|b| b.host.as_deref() != Some(hn))
                    .any(|b| free_in(b, &pool) > 0);
                match res {
                    Ok(a) => {
                        let ip = a.addrs[0].ip;
                        if let Some(old) = model.get(&(host, c)) {
                            prop_assert_eq!(*old, ip, "{}: ADD not idempotent", ctx);
                        } else {
                            prop_assert!(
                                !model.values().any(|x| *x == ip),
                                "{}: {} handed out twice",
                                ctx,
                                ip
                            );
                            let in_own = before
                                .iter()
                                .any(|b| b.host.as_deref() == Some(hn) && b.cidr.contains(ip));
                            if own_free {
                                prop_assert!(
                                    in_own,
                                    "{}: ignored a free address in its own block",
                                    ctx
                                );
                            }
                            if a.addrs[0].borrowed {
                                prop_assert!(!setup.strict, "{}: borrowed in strict mode", ctx);
                                prop_assert!(
                                    !own_free && !can_claim,
                                    "{}: borrowed needlessly",
                                    ctx
                                );
                            }
                            model.insert((host, c), ip);
                        }
                    }
                    Err(IpamError::PoolExhausted { .. }) => {
                        prop_assert!(!model.contains_key(&(host, c)), "{}", ctx);
                        prop_assert!(
                            !own_free && !others_free,
                            "{}: exhausted with free addresses",
                            ctx
                        );
                        prop_assert!(!can_claim, "{}: exhausted with a claimable block", ctx);
                    }
                    Err(IpamError::StrictAffinity { .. }) => {
                        prop_assert!(setup.strict, "{}: strict error in a non-strict pool", ctx);
                        prop_assert!(!own_free && !can_claim, "{}", ctx);
                    }
                    Err(e) => prop_assert!(false, "{}: unexpected error {}", ctx, e),
                }
            }
            Step::Release { host, c } => {
                let r = rt.block_on(ipam.release(HOSTS[host], &handle(c))).unwrap();
                let m = model.remove(&(host, c));
                prop_assert_eq!(r.map(|a| a.addrs[0].ip), m, "{}", ctx);
            }
            Step::Gc { host, live } => {
                let live_set: BTreeSet<Handle> = (0..12u8)
                    .filter(|c| live & (1 << c) != 0)
                    .map(handle)
                    .collect();
                let r = rt.block_on(ipam.gc(HOSTS[host], &live_set, GRACE)).unwrap();
                for h in &r.released {
                    prop_assert!(!live_set.contains(h), "{}: released live {}", ctx, h);
                    let c: u8 = h.container_id[1..].parse().unwrap();
                    prop_assert!(model.remove(&(host, c)).is_some(), "{}", ctx);
                }
            }
            Step::ReleaseEmpty { host } => {
                let freed = rt.block_on(ipam.release_empty_blocks(HOSTS[host])).unwrap();
                for b in freed {
                    prop_assert!(
                        !model.values().any(|ip| b.contains(*ip)),
                        "{}: released block {} with an address in use",
                        ctx,
                        b
                    );
                }
            }
            Step::Advance { ms } => clock.advance_ms(ms),
        }

        // Invariants against the store.
        let allocs = rt.block_on(ipam.all_allocations()).unwrap();
        let blocks = rt.block_on(ipam.all_blocks()).unwrap();
        let stored: BTreeMap<(usize, u8), IpAddr> = allocs
            .iter()
            .map(|a| {
                let host = HOSTS.iter().position(|h| *h == a.host).unwrap();
                let c: u8 = a.handle.container_id[1..].parse().unwrap();
                ((host, c), a.addrs[0].ip)
            })
            .collect();
        prop_assert_eq!(&stored, &model, "{}: store and model differ", ctx);
        let ips: BTreeSet<IpAddr> = stored.values().copied().collect();
        prop_assert_eq!(ips.len(), stored.len(), "{}: an address is held twice", ctx);
        for a in &allocs {
            let x = &a.addrs[0];
            let b = blocks
                .iter()
                .find(|b| b.cidr == x.block && b.cidr.contains(x.ip));
            prop_assert!(b.is_some(), "{}: {} outside any block", ctx, x.ip);
            let b = b.unwrap();
            prop_assert!(
                pool.cidr.contains_cidr(&b.cidr) && b.cidr.prefix() == 29,
                "{}",
                ctx
            );
            let off = b.cidr.offset_of(x.ip).unwrap() as u32;
            prop_assert!(
                off >= setup.reserved_low,
                "{}: reserved address {} used",
                ctx,
                x.ip
            );
            if setup.strict {
                prop_assert_eq!(
                    b.host.as_deref(),
                    Some(a.host.as_str()),
                    "{}: strict borrow",
                    ctx
                );
            }
        }
        if let Some(m) = setup.max_blocks {
            for h in HOSTS {
                let n = blocks
                    .iter()
                    .filter(|b| b.host.as_deref() == Some(h))
                    .count() as u32;
                prop_assert!(n <= m, "{}: {} holds {} blocks", ctx, h, n);
            }
        }
        let issues = rt.block_on(ipam.check(&all_hosts)).unwrap();
        prop_assert!(issues.is_empty(), "{}: {:?}", ctx, issues);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_invariants(setup in setup(), steps in prop::collection::vec(step(), 1..80)) {
        run(setup, steps)?;
    }
}
