#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Behaviour of the IPAM model over the in-memory and file stores.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

mod common;
use common::exercise_store;

use flatnet_ipam::{
    AllocRequest, Cidr, Compare, Datastore, FileStore, Handle, Ipam, IpamError, Issue, ManualClock,
    MemStore, Op, Pool, StoreError, Txn,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn setup(pool: Pool) -> (Ipam<MemStore>, ManualClock) {
    let clock = ManualClock::new(1_000_000);
    let ipam = Ipam::with_clock(MemStore::new(), "/t/", Arc::new(clock.clone()));
    rt().block_on(ipam.create_pool(pool)).unwrap();
    (ipam, clock)
}

fn h(c: &str) -> Handle {
    Handle::new(c, "eth0")
}

fn hosts(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn allocate_is_idempotent_and_release_too() {
    let (ipam, _) = setup(Pool::new("p", cidr("10.0.0.0/24")));
    rt().block_on(async {
        let a = ipam
            .allocate(&AllocRequest::v4(h("c1"), "h1"))
            .await
            .unwrap();
        let b = ipam
            .allocate(&AllocRequest::v4(h("c1"), "h1"))
            .await
            .unwrap();
        assert_eq!(a, b);
        let c = ipam
            .allocate(&AllocRequest::v4(h("c2"), "h1"))
            .await
            .unwrap();
        assert_ne!(a.addrs[0].ip, c.addrs[0].ip);
        assert!(!a.addrs[0].borrowed);
        // Same block (affinity): both in the host's one /26.
        assert_eq!(a.addrs[0].block, c.addrs[0].block);
        assert_eq!(ipam.release("h1", &h("c1")).await.unwrap().unwrap(), a);
        assert!(ipam.release("h1", &h("c1")).await.unwrap().is_none());
        assert!(ipam.release("h1", &h("never")).await.unwrap().is_none());
        // The released address is reused.
        let d = ipam
            .allocate(&AllocRequest::v4(h("c3"), "h1"))
            .await
            .unwrap();
        assert_eq!(d.addrs[0].ip, a.addrs[0].ip);
    });
}

#[test]
fn dual_stack_attributes_and_unknown_handle() {
    let (ipam, _) = setup(Pool::new("v4", cidr("10.0.0.0/24")));
    rt().block_on(async {
        ipam.create_pool(Pool::new("v6", cidr("fd00::/120")))
            .await
            .unwrap();
        let mut req = AllocRequest::v4(h("c1"), "h1");
        req.ipv6 = true;
        req.app = Some("web".into());
        req.attrs.insert("ns".into(), "prod".into());
        let a = ipam.allocate(&req).await.unwrap();
        assert_eq!(a.addrs.len(), 2);
        assert!(a.addrs[0].ip.is_ipv4() && a.addrs[1].ip.is_ipv6());
        assert_eq!(a.addrs[1].block.prefix(), 122);
        assert_eq!(
            ipam.get("h1", &h("c1")).await.unwrap().app.as_deref(),
            Some("web")
        );
        let err = ipam.get("h1", &h("nope")).await.unwrap_err();
        assert!(matches!(err, IpamError::UnknownHandle { .. }), "{err}");
        assert!(
            err.to_string().contains("unknown handle nope/eth0"),
            "{err}"
        );
        let err = ipam
            .set_attrs("h1", &h("nope"), None, BTreeMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, IpamError::UnknownHandle { .. }));
        let b = ipam
            .set_attrs("h1", &h("c1"), Some("db".into()), BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(b.app.as_deref(), Some("db"));
        assert_eq!(b.addrs, a.addrs);
    });
}

#[test]
fn pool_exhausted_is_its_own_error() {
    let mut p = Pool::new("tiny", cidr("10.0.0.0/29"));
    p.block_prefix = 30;
    let (ipam, _) = setup(p);
    rt().block_on(async {
        for i in 0..8 {
            ipam.allocate(&AllocRequest::v4(h(&format!("c{i}")), "h1"))
                .await
                .unwrap();
        }
        let err = ipam
            .allocate(&AllocRequest::v4(h("c8"), "h1"))
            .await
            .unwrap_err();
        assert!(matches!(err, IpamError::PoolExhausted { .. }), "{err}");
        assert!(
            err.to_string().contains("tiny (10.0.0.0/29) are exhausted"),
            "{err}"
        );
        // Another host: still exhausted (nothing to borrow), not strict.
        let err = ipam
            .allocate(&AllocRequest::v4(h("c9"), "h2"))
            .await
            .unwrap_err();
        assert!(matches!(err, IpamError::PoolExhausted { .. }), "{err}");
    });
}

#[test]
fn borrowing_and_strict_affinity() {
    let mut p = Pool::new("p", cidr("10.0.0.0/29"));
    p.block_prefix = 30; // two blocks of 4
    let (ipam, _) = setup(p.clone());
    rt().block_on(async {
        // h1 takes one block, h2 the other, then h2 fills its block.
        ipam.allocate(&AllocRequest::v4(h("a0"), "h1"))
            .await
            .unwrap();
        for i in 0..4 {
            let a = ipam
                .allocate(&AllocRequest::v4(h(&format!("b{i}")), "h2"))
                .await
                .unwrap();
            assert!(!a.addrs[0].borrowed);
        }
        // h2 has no free affine address and no block is left: it borrows from h1.
        let b = ipam
            .allocate(&AllocRequest::v4(h("b4"), "h2"))
            .await
            .unwrap();
        assert!(b.addrs[0].borrowed);
        let routes = ipam.host_routes("h2").await.unwrap();
        assert_eq!(routes.borrowed, vec![b.addrs[0].ip]);
        assert_eq!(routes.blocks.len(), 1);
        let u = ipam.utilisation().await.unwrap();
        let h2 = u.hosts.iter().find(|x| x.host == "h2").unwrap();
        assert_eq!((h2.blocks, h2.allocated, h2.borrowed), (1, 5, 1));
        assert_eq!(u.pools[0].allocated, 6);
        assert_eq!(u.pools[0].blocks_claimed, 2);

        // Now strict: the same situation is an error that says so.
        let mut strict = p.clone();
        strict.strict_affinity = true;
        ipam.update_pool(strict).await.unwrap();
        let err = ipam
            .allocate(&AllocRequest::v4(h("b5"), "h2"))
            .await
            .unwrap_err();
        assert!(matches!(err, IpamError::StrictAffinity { .. }), "{err}");
        assert!(err.to_string().contains("strict-affinity mode"), "{err}");
        // h1 still allocates from its own block.
        let a = ipam
            .allocate(&AllocRequest::v4(h("a1"), "h1"))
            .await
            .unwrap();
        assert!(!a.addrs[0].borrowed);
    });
}

#[test]
fn max_blocks_per_host_and_reserved_addresses() {
    let mut p = Pool::new("p", cidr("10.0.0.0/24"));
    p.block_prefix = 29;
    p.max_blocks_per_host = Some(1);
    p.reserved_low = 1;
    p.reserved_high = 1;
    p.strict_affinity = true;
    let (ipam, _) = setup(p);
    rt().block_on(async {
        let mut ips = Vec::new();
        for i in 0..6 {
            let a = ipam
                .allocate(&AllocRequest::v4(h(&format!("c{i}")), "h1"))
                .await
                .unwrap();
            ips.push(a.addrs[0].ip);
        }
        // First and last of the /29 are never handed out.
        for ip in &ips {
            let IpAddr::V4(v4) = ip else { panic!("{ip}") };
            let off = v4.octets()[3] % 8;
            assert!(off != 0 && off != 7, "{ip} is a reserved address");
        }
        assert_eq!(ips.iter().collect::<BTreeSet<_>>().len(), 6);
        let err = ipam
            .allocate(&AllocRequest::v4(h("c6"), "h1"))
            .await
            .unwrap_err();
        assert!(matches!(err, IpamError::StrictAffinity { .. }), "{err}");
        assert!(err.to_string().contains("max_blocks_per_host"), "{err}");
    });
}

#[test]
fn empty_blocks_return_after_grace_never_with_allocations() {
    let mut p = Pool::new("p", cidr("10.0.0.0/24"));
    p.empty_block_grace_ms = 60_000;
    let (ipam, clock) = setup(p);
    rt().block_on(async {
        ipam.allocate(&AllocRequest::v4(h("c1"), "h1"))
            .await
            .unwrap();
        ipam.allocate(&AllocRequest::v4(h("c2"), "h1"))
            .await
            .unwrap();
        clock.advance_ms(120_000);
        assert!(
            ipam.release_empty_blocks("h1").await.unwrap().is_empty(),
            "in use"
        );
        ipam.release("h1", &h("c1")).await.unwrap();
        ipam.release("h1", &h("c2")).await.unwrap();
        clock.advance_ms(59_999);
        assert!(
            ipam.release_empty_blocks("h1").await.unwrap().is_empty(),
            "grace"
        );
        clock.advance_ms(1);
        // Another host's call does not touch h1's block.
        assert!(ipam.release_empty_blocks("h2").await.unwrap().is_empty());
        let freed = ipam.release_empty_blocks("h1").await.unwrap();
        assert_eq!(freed.len(), 1);
        assert!(ipam.all_blocks().await.unwrap().is_empty());
        // A block reused during its grace period is kept.
        ipam.allocate(&AllocRequest::v4(h("c3"), "h1"))
            .await
            .unwrap();
        ipam.release("h1", &h("c3")).await.unwrap();
        clock.advance_ms(30_000);
        ipam.allocate(&AllocRequest::v4(h("c4"), "h1"))
            .await
            .unwrap();
        clock.advance_ms(120_000);
        assert!(ipam.release_empty_blocks("h1").await.unwrap().is_empty());
        assert_eq!(ipam.all_blocks().await.unwrap().len(), 1);
    });
}

#[test]
fn gc_releases_only_after_grace_and_keeps_in_flight() {
    let (ipam, clock) = setup(Pool::new("p", cidr("10.0.0.0/24")));
    let grace = 30_000;
    rt().block_on(async {
        for c in ["live", "dead", "back"] {
            ipam.allocate(&AllocRequest::v4(h(c), "h1")).await.unwrap();
        }
        ipam.allocate(&AllocRequest::v4(h("other-host"), "h2"))
            .await
            .unwrap();
        clock.advance_ms(grace);
        // In flight: created just now, not yet in the runtime's list.
        ipam.allocate(&AllocRequest::v4(h("new"), "h1"))
            .await
            .unwrap();
        let live: BTreeSet<Handle> = [h("live")].into();
        let r = ipam.gc("h1", &live, grace).await.unwrap();
        assert!(r.released.is_empty());
        assert_eq!(r.in_flight, vec![h("new")]);
        assert_eq!(r.pending, vec![h("back"), h("dead")]);
        clock.advance_ms(grace - 1);
        let r = ipam.gc("h1", &live, grace).await.unwrap();
        assert!(
            r.released.is_empty(),
            "released before the grace period: {r:?}"
        );
        // "back" shows up in the live set again: its mark is cleared.
        let live2: BTreeSet<Handle> = [h("live"), h("back")].into();
        ipam.gc("h1", &live2, grace).await.unwrap();
        clock.advance_ms(1);
        let r = ipam.gc("h1", &live, grace).await.unwrap();
        assert_eq!(r.released, vec![h("dead")]);
        assert_eq!(r.pending, vec![h("back"), h("new")]);
        assert!(ipam.get("h1", &h("dead")).await.is_err());
        assert!(ipam.get("h1", &h("live")).await.is_ok());
        assert!(
            ipam.get("h2", &h("other-host")).await.is_ok(),
            "GC is per host"
        );
        assert!(ipam.check(&hosts(&["h1", "h2"])).await.unwrap().is_empty());
    });
}

#[test]
fn check_finds_and_repair_fixes_leaks_duplicates_orphans() {
    let (ipam, _) = setup(Pool::new("p", cidr("10.0.0.0/24")));
    rt().block_on(async {
        let a = ipam
            .allocate(&AllocRequest::v4(h("a"), "h1"))
            .await
            .unwrap();
        ipam.allocate(&AllocRequest::v4(h("b"), "h1"))
            .await
            .unwrap();
        ipam.allocate(&AllocRequest::v4(h("gone"), "dead-host"))
            .await
            .unwrap();
        let live = hosts(&["h1"]);
        let issues = ipam.check(&live).await.unwrap();
        assert!(issues.contains(&Issue::LeakedAllocation {
            host: "dead-host".into(),
            handle: h("gone")
        }));
        assert!(
            issues
                .iter()
                .any(|i| matches!(i, Issue::BlockOfDeadHost { .. }))
        );

        // Forge damage by writing records directly: a duplicate of a's address,
        // an orphan bit, and an unmarked address.
        let store = ipam.store();
        let mut dup = a.clone();
        dup.handle = h("dup");
        dup.created_at_ms += 1;
        let dkey = ipam.keys().handle("h1", &dup.handle);
        store
            .txn(Txn::new().then(Op::put(&dkey, serde_json::to_vec(&dup).unwrap())))
            .await
            .unwrap();
        let bkey = ipam.keys().block("p", &a.addrs[0].block);
        let bkv = store.get(&bkey).await.unwrap().unwrap();
        let mut block: flatnet_ipam::Block = serde_json::from_slice(&bkv.value).unwrap();
        block.set(40); // orphan
        store
            .txn(
                Txn::new()
                    .when(Compare::unchanged(&bkey, bkv.mod_revision))
                    .then(Op::put(&bkey, serde_json::to_vec(&block).unwrap())),
            )
            .await
            .unwrap();
        let issues = ipam.check(&live).await.unwrap();
        assert!(
            issues
                .iter()
                .any(|i| matches!(i, Issue::Duplicate { ip, .. } if *ip == a.addrs[0].ip)),
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| matches!(i, Issue::OrphanAddress { .. })),
            "{issues:?}"
        );

        let left = ipam.repair(&live).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        assert!(ipam.check(&live).await.unwrap().is_empty());
        // The oldest holder kept the address; the leak is gone; b untouched.
        assert_eq!(ipam.get("h1", &h("a")).await.unwrap().addrs, a.addrs);
        assert!(ipam.get("h1", &h("dup")).await.is_err());
        assert!(ipam.get("dead-host", &h("gone")).await.is_err());
        assert!(ipam.get("h1", &h("b")).await.is_ok());
    });
}

#[test]
fn pools_are_validated() {
    let (ipam, _) = setup(Pool::new("p", cidr("10.0.0.0/16")));
    rt().block_on(async {
        let err = ipam
            .create_pool(Pool::new("q", cidr("10.0.5.0/24")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("overlaps pool p"), "{err}");
        let mut big = Pool::new("big", cidr("10.1.0.0/16"));
        big.block_prefix = 16;
        assert!(ipam.create_pool(big).await.is_err());
        assert!(
            ipam.create_pool(Pool::new("p", cidr("10.2.0.0/16")))
                .await
                .is_err()
        );
        let mut other = Pool::new("only-h9", cidr("10.3.0.0/16"));
        other.allowed_hosts = Some(vec!["h9".into()]);
        ipam.create_pool(other).await.unwrap();
        let mut req = AllocRequest::v4(h("c"), "h1");
        req.pool = Some("only-h9".into());
        let err = ipam.allocate(&req).await.unwrap_err();
        assert!(matches!(err, IpamError::NoPool { .. }), "{err}");
        ipam.allocate(&AllocRequest::v4(h("c"), "h1"))
            .await
            .unwrap();
        assert!(ipam.delete_pool("p").await.is_err(), "blocks in use");
        ipam.delete_pool("only-h9").await.unwrap();
    });
}

#[test]
fn file_store_unreachable_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = FileStore::open(file.join("store")).unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

#[test]
fn mem_and_file_store_follow_the_datastore_contract() {
    let tmp = tempfile::tempdir().unwrap();
    rt().block_on(async {
        exercise_store(&MemStore::new()).await;
        exercise_store(&FileStore::open(tmp.path()).unwrap()).await;
    });
    // Reopening replays the same state.
    let s = FileStore::open(tmp.path()).unwrap();
    rt().block_on(async {
        assert_eq!(s.get("/k/a").await.unwrap().unwrap().value, b"3");
        assert!(s.get("/k/b").await.unwrap().is_none());
    });
}

#[test]
fn file_store_recovers_from_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = FileStore::open(tmp.path()).unwrap();
        s.txn(Txn::new().then(Op::put("/a", b"1".to_vec())))
            .await
            .unwrap();
        let log = tmp.path().join("flatnet.log");
        let good = std::fs::metadata(&log).unwrap().len();
        // Simulate a crash half-way through the next record.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b"FNL1\x20\x00\x00\x00garbage").unwrap();
        let s2 = FileStore::open(tmp.path()).unwrap();
        assert_eq!(s2.get("/a").await.unwrap().unwrap().value, b"1");
        let t = s2
            .txn(Txn::new().then(Op::put("/b", b"2".to_vec())))
            .await
            .unwrap();
        assert!(t.succeeded);
        assert_eq!(t.revision, 2);
        assert!(std::fs::metadata(&log).unwrap().len() > good);
        // Both the old handle (which saw the torn tail) and a new one agree.
        assert_eq!(s.get("/b").await.unwrap().unwrap().value, b"2");
        let s3 = FileStore::open(tmp.path()).unwrap();
        assert_eq!(s3.list("/").await.unwrap().kvs.len(), 2);
    });
}

/// Two handles on one directory (as two processes would be) with a tiny
/// compaction threshold: state stays identical, the log stays short, and a
/// watch that keeps pace sees every change across compactions.
#[test]
fn file_store_compacts_and_watch_follows_across_compactions() {
    use flatnet_ipam::{FileStoreOptions, WatchItem};
    let tmp = tempfile::tempdir().unwrap();
    let opts = FileStoreOptions {
        compact_after_bytes: 512,
    };
    rt().block_on(async {
        let a = FileStore::open_with(tmp.path(), opts).unwrap();
        let b = FileStore::open_with(tmp.path(), opts).unwrap();
        let mut w = b.watch("/c/", 1).await.unwrap();
        let log = tmp.path().join("flatnet.log");
        let mut model = BTreeMap::new();
        for i in 0..120u32 {
            let s = if i % 2 == 0 { &a } else { &b };
            let key = format!("/c/{}", i % 7);
            // Deleting an absent key writes a revision but no event.
            let mut expect_event = true;
            let t = if i % 5 == 4 {
                expect_event = model.remove(&key).is_some();
                s.txn(Txn::new().then(Op::delete(&key))).await.unwrap()
            } else {
                model.insert(key.clone(), i.to_string().into_bytes());
                s.txn(Txn::new().then(Op::put(&key, i.to_string().into_bytes())))
                    .await
                    .unwrap()
            };
            assert!(t.succeeded);
            assert_eq!(
                t.revision,
                i as i64 + 1,
                "revisions continue across compactions"
            );
            // Keep pace with the watch: it must deliver exactly this change.
            if !expect_event {
                continue;
            }
            let mut got = Vec::new();
            while got.is_empty() {
                match tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
                    .await
                    .expect("watch stalled")
                    .unwrap()
                    .unwrap()
                {
                    WatchItem::Events(evs) => got = evs,
                    WatchItem::Resync { revision } => panic!("resync at {revision} at step {i}"),
                }
            }
            assert!(
                got.iter()
                    .all(|e| e.kv.mod_revision == t.revision && e.kv.key == key)
            );
        }
        let n = a.compactions() + b.compactions();
        assert!(n >= 5, "compactions: {n}");
        assert!(std::fs::metadata(&log).unwrap().len() < 4096);
        for s in [&a, &b, &FileStore::open(tmp.path()).unwrap()] {
            let l = s.list("/c/").await.unwrap();
            let got: BTreeMap<String, Vec<u8>> =
                l.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
            assert_eq!(got, model);
            assert_eq!(l.revision, 120);
        }
        // History before the snapshot is gone: a watch from revision 1 is
        // told to resync, then follows.
        let mut late = a.watch("/c/", 1).await.unwrap();
        let first = late.next().await.unwrap().unwrap();
        assert!(matches!(first, WatchItem::Resync { revision } if revision <= 120 && revision > 1));
    });
}

/// Records come from a file or the network: malformed ones are errors and
/// check findings, never panics or endless loops.
#[test]
fn malformed_records_are_reported_not_trusted() {
    let (ipam, _) = setup(Pool::new("p", cidr("10.0.0.0/24")));
    rt().block_on(async {
        let store = ipam.store();
        let huge = r#"{"cidr":"::/0","pool":"p","host":"h1","alloc":[],"claimed_at_ms":0}"#;
        let key = format!("{}bad", ipam.keys().pool_blocks("p"));
        store
            .txn(Txn::new().then(Op::put(&key, huge.as_bytes().to_vec())))
            .await
            .unwrap();
        let err = ipam
            .allocate(&AllocRequest::v4(h("c"), "h1"))
            .await
            .unwrap_err();
        assert!(matches!(err, IpamError::BadRecord { .. }), "{err}");
        assert!(err.to_string().contains(&key), "{err}");
        let issues = ipam.check(&hosts(&["h1"])).await.unwrap();
        assert!(
            issues
                .iter()
                .any(|i| matches!(i, Issue::Unreadable { key: k, .. } if *k == key)),
            "{issues:?}"
        );
        let garbage = ipam.keys().handle("h1", &h("x"));
        store
            .txn(Txn::new().then(Op::put(&garbage, b"not json".to_vec())))
            .await
            .unwrap();
        assert!(matches!(
            ipam.get("h1", &h("x")).await.unwrap_err(),
            IpamError::BadRecord { .. }
        ));
    });
}
