#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use flatnet_ipam::{
    Cidr, Compare, Datastore, EventKind, FileStore, Ipam, Op, Pool, Txn, WatchItem,
};

/// The datastore contract every backend must meet: CAS creates, guarded
/// multi-key writes, prefix listing with revisions, watch from a revision.
pub async fn exercise_store<S: Datastore>(s: &S) {
    let t = s
        .txn(
            Txn::new()
                .when(Compare::absent("/k/a"))
                .then(Op::put("/k/a", b"1".to_vec())),
        )
        .await
        .unwrap();
    assert!(t.succeeded);
    let rev = t.revision;
    // The same create again loses.
    let t2 = s
        .txn(
            Txn::new()
                .when(Compare::absent("/k/a"))
                .then(Op::put("/k/a", b"2".to_vec())),
        )
        .await
        .unwrap();
    assert!(!t2.succeeded);
    assert_eq!(s.get("/k/a").await.unwrap().unwrap().value, b"1");
    let mut w = s.watch("/k/", rev + 1).await.unwrap();
    let t3 = s
        .txn(
            Txn::new()
                .when(Compare::unchanged("/k/a", rev))
                .then(Op::put("/k/a", b"3".to_vec()))
                .then(Op::put("/k/b", b"4".to_vec()))
                .then(Op::put("/other", b"x".to_vec())),
        )
        .await
        .unwrap();
    assert!(t3.succeeded);
    s.txn(Txn::new().then(Op::delete("/k/b"))).await.unwrap();
    let l = s.list("/k/").await.unwrap();
    assert_eq!(l.kvs.len(), 1);
    assert_eq!(l.kvs[0].mod_revision, t3.revision);
    assert!(l.revision > t3.revision);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let item = tokio::time::timeout(std::time::Duration::from_secs(10), w.next())
            .await
            .expect("watch delivered nothing within 10 s")
            .unwrap()
            .unwrap();
        match item {
            WatchItem::Events(evs) => seen.extend(evs),
            WatchItem::Resync { .. } => panic!("unexpected resync"),
        }
    }
    assert_eq!(
        seen.iter()
            .map(|e| (e.kind, e.kv.key.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (EventKind::Put, "/k/a"),
            (EventKind::Put, "/k/b"),
            (EventKind::Delete, "/k/b")
        ]
    );
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn create_pool(dir: &Path) {
    let ipam = Ipam::new(FileStore::open(dir).unwrap());
    let cidr: Cidr = "10.0.0.0/16".parse().unwrap();
    rt().block_on(ipam.create_pool(Pool::new("p", cidr)))
        .unwrap();
}

/// Replays the whole history of allocation records and fails if an address
/// was ever held by two handles at once.
pub fn assert_history_has_no_duplicates(dir: &Path) -> usize {
    let store = FileStore::open(dir).unwrap();
    let prefix = "/flatnet/ipam/handles/";
    rt().block_on(async {
        let end = store.list("/").await.unwrap().revision;
        let mut w = store.watch(prefix, 1).await.unwrap();
        let mut holder: HashMap<IpAddr, String> = HashMap::new();
        let mut by_key: HashMap<String, Vec<IpAddr>> = HashMap::new();
        let mut last = 0;
        let mut puts = 0;
        while last < end {
            let item = match tokio::time::timeout(Duration::from_millis(500), w.next()).await {
                Ok(i) => i.unwrap().unwrap(),
                // Trailing revisions that touched no allocation record.
                Err(_) => break,
            };
            let WatchItem::Events(evs) = item else {
                panic!("resync")
            };
            for e in evs {
                last = e.kv.mod_revision;
                match e.kind {
                    EventKind::Put => {
                        let a: flatnet_ipam::Allocation =
                            serde_json::from_slice(&e.kv.value).unwrap();
                        let ips: Vec<IpAddr> = a.addrs.iter().map(|x| x.ip).collect();
                        if by_key.contains_key(&e.kv.key) {
                            continue; // attribute / GC-mark rewrite of the same record
                        }
                        puts += 1;
                        for ip in &ips {
                            if let Some(other) = holder.insert(*ip, e.kv.key.clone()) {
                                panic!(
                                    "{ip} given to {} while {other} held it (rev {last})",
                                    e.kv.key
                                );
                            }
                        }
                        by_key.insert(e.kv.key.clone(), ips);
                    }
                    EventKind::Delete => {
                        for ip in by_key.remove(&e.kv.key).unwrap_or_default() {
                            holder.remove(&ip);
                        }
                    }
                }
            }
        }
        puts
    })
}
