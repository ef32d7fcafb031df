#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The etcd backend against a real etcd (Debian's etcd-server) running in a
//! lab namespace. These tests fail, never skip, without root or etcd.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use flatnet_ipam::{
    AllocRequest, Cidr, Datastore, EtcdStore, EventKind, Handle, Ipam, IpamError, Op, Pool,
    StoreError, Txn, WatchItem,
};
use flatnet_lab::etcd::Etcd;
use flatnet_lab::{Netns, require_root};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(endpoint: &str) -> EtcdStore {
    EtcdStore::connect(&[endpoint.to_string()], Duration::from_secs(5))
        .await
        .unwrap()
}

#[test]
fn etcd_store_follows_the_datastore_contract() {
    require_root().unwrap();
    let ns = Netns::new("ipam-etcd-c").unwrap();
    let etcd = Etcd::start(&ns).unwrap();
    let ep = etcd.endpoint();
    ns.run_in(move || {
        rt().block_on(async {
            let s = connect(&ep).await;
            common::exercise_store(&s).await;
        })
    })
    .unwrap();
}

#[test]
fn etcd_unreachable_error_names_the_address() {
    require_root().unwrap();
    // A namespace with nothing listening: the address is refused at once.
    let ns = Netns::new("ipam-etcd-u").unwrap();
    let err = ns
        .run_in(|| {
            rt().block_on(async {
                EtcdStore::connect(
                    &["http://127.0.0.1:2379".to_string()],
                    Duration::from_secs(2),
                )
                .await
                .unwrap_err()
            })
        })
        .unwrap();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("http://127.0.0.1:2379"), "{err}");
    let ipam_err = IpamError::from(err);
    assert!(ipam_err.is_unreachable());
}

#[test]
fn etcd_errors_after_it_goes_away_name_the_address_and_watch_resumes_after_restart() {
    require_root().unwrap();
    let ns = Netns::new("ipam-etcd-r").unwrap();
    let mut etcd = Etcd::start(&ns).unwrap();
    let ep = etcd.endpoint();
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<&'static str>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // The client lives on a thread inside the namespace for the whole test;
    // the main thread restarts etcd when told.
    let client = {
        let path = ns.path();
        std::thread::spawn(move || {
            flatnet_lab::netns::enter(&path).unwrap();
            rt().block_on(async {
                let s = connect(&ep).await;
                let first = s
                    .txn(Txn::new().then(Op::put("/w/a", b"1".to_vec())))
                    .await
                    .unwrap();
                let mut w = s.watch("/w/", first.revision).await.unwrap();
                done_tx.send(()).unwrap();
                assert_eq!(cmd_rx.recv().unwrap(), "stopped");
                let err = s.get("/w/a").await.unwrap_err();
                assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
                assert!(err.to_string().contains("127.0.0.1:2379"), "{err}");
                done_tx.send(()).unwrap();
                assert_eq!(cmd_rx.recv().unwrap(), "started");
                // Writes work again (the client reconnects by itself).
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    match s.txn(Txn::new().then(Op::put("/w/b", b"2".to_vec()))).await {
                        Ok(_) => break,
                        Err(e) => assert!(Instant::now() < deadline, "etcd never came back: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // The same watch delivers the write before and after the restart.
                let mut keys = Vec::new();
                while keys.len() < 2 {
                    let item = tokio::time::timeout(Duration::from_secs(20), w.next())
                        .await
                        .expect("watch went quiet after the restart")
                        .unwrap()
                        .unwrap();
                    if let WatchItem::Events(evs) = item {
                        keys.extend(evs.into_iter().map(|e| e.kv.key));
                    }
                }
                assert_eq!(keys, vec!["/w/a".to_string(), "/w/b".to_string()]);
            })
        })
    };
    done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    etcd.stop();
    cmd_tx.send("stopped").unwrap();
    done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    etcd.restart(&ns).unwrap();
    cmd_tx.send("started").unwrap();
    client.join().expect("client thread failed");
}

/// 50 simulated hosts (concurrent tasks, each with its own host name)
/// allocate and release against one etcd.
#[test]
fn fifty_hosts_against_real_etcd_no_duplicates() {
    require_root().unwrap();
    let ns = Netns::new("ipam-etcd-50").unwrap();
    let etcd = Etcd::start(&ns).unwrap();
    let ep = etcd.endpoint();
    let started = Instant::now();
    ns.run_in(move || {
        rt().block_on(async {
            let store = connect(&ep).await;
            let ipam = Ipam::new(store.clone());
            let mut pool = Pool::new("p", "10.8.0.0/16".parse::<Cidr>().unwrap());
            pool.block_prefix = 28;
            ipam.create_pool(pool).await.unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for host in 0..50 {
                let ipam = ipam.clone();
                tasks.spawn(async move {
                    let host = format!("host{host:02}");
                    let mut kept = BTreeMap::new();
                    for k in 0..24 {
                        let h = Handle::new(format!("{host}-c{k}"), "eth0");
                        let a = ipam
                            .allocate(&AllocRequest::v4(h.clone(), &host))
                            .await
                            .unwrap();
                        let again = ipam
                            .allocate(&AllocRequest::v4(h.clone(), &host))
                            .await
                            .unwrap();
                        assert_eq!(a.addrs, again.addrs);
                        if k % 3 == 0 {
                            ipam.release(&host, &h).await.unwrap().unwrap();
                        } else {
                            kept.insert(h, a.addrs[0].ip);
                        }
                    }
                    (host, kept)
                });
            }
            let mut expect: HashMap<String, IpAddr> = HashMap::new();
            let mut hosts = BTreeSet::new();
            while let Some(r) = tasks.join_next().await {
                let (host, kept) = r.unwrap();
                hosts.insert(host);
                for (h, ip) in kept {
                    expect.insert(h.container_id, ip);
                }
            }
            let all = ipam.all_allocations().await.unwrap();
            let got: HashMap<String, IpAddr> = all
                .iter()
                .map(|a| (a.handle.container_id.clone(), a.addrs[0].ip))
                .collect();
            assert_eq!(got, expect);
            let ips: BTreeSet<IpAddr> = got.values().copied().collect();
            assert_eq!(ips.len(), got.len(), "an address is held twice");
            let issues = ipam.check(&hosts).await.unwrap();
            assert!(issues.is_empty(), "{issues:?}");
            // Affinity: every block belongs to one host and holds only its
            // addresses (there is room for everyone, so nobody borrowed).
            let u = ipam.utilisation().await.unwrap();
            assert!(u.hosts.iter().all(|h| h.borrowed == 0), "{:?}", u.hosts);
            assert_eq!(u.hosts.len(), 50);
            // The whole history: no address ever held by two handles at once.
            let end = store.list("/").await.unwrap().revision;
            let mut w = store.watch("/flatnet/ipam/handles/", 1).await.unwrap();
            let mut holder: HashMap<IpAddr, String> = HashMap::new();
            let mut by_key: HashMap<String, Vec<IpAddr>> = HashMap::new();
            let mut last = 0;
            while last < end {
                let item = match tokio::time::timeout(Duration::from_secs(2), w.next()).await {
                    Ok(i) => i.unwrap().unwrap(),
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
                            for x in &a.addrs {
                                if let Some(o) = holder.insert(x.ip, e.kv.key.clone()) {
                                    assert_eq!(o, e.kv.key, "{} held twice", x.ip);
                                }
                            }
                            by_key.insert(e.kv.key.clone(), a.addrs.iter().map(|x| x.ip).collect());
                        }
                        EventKind::Delete => {
                            for ip in by_key.remove(&e.kv.key).unwrap_or_default() {
                                holder.remove(&ip);
                            }
                        }
                    }
                }
            }
            assert_eq!(by_key.len(), expect.len());
        })
    })
    .unwrap();
    eprintln!(
        "50 hosts x 24 allocations against etcd: {:?}",
        started.elapsed()
    );
}

/// A watch that starts at a revision etcd has compacted away says so
/// (Resync with the compaction's revision) instead of silently skipping
/// history, then follows new changes.
#[test]
fn a_watch_from_a_compacted_revision_asks_for_a_resync_then_follows() {
    require_root().unwrap();
    let ns = Netns::new("ipam-etcd-k").unwrap();
    let etcd = Etcd::start(&ns).unwrap();
    let ep = etcd.endpoint();
    ns.run_in(move || {
        rt().block_on(async {
            let s = connect(&ep).await;
            let mut revs = Vec::new();
            for i in 0..10 {
                let out = s
                    .txn(Txn::new().then(Op::put(format!("/k/{i}"), b"v".to_vec())))
                    .await
                    .unwrap();
                revs.push(out.revision);
            }
            let mut raw = etcd_client::Client::connect([ep.as_str()], None)
                .await
                .unwrap();
            raw.compact(revs[7], None).await.unwrap();
            let mut w = s.watch("/k/", revs[1]).await.unwrap();
            let first = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .expect("no answer from the watch")
                .unwrap()
                .unwrap();
            match first {
                WatchItem::Resync { revision } => assert_eq!(revision, revs[7]),
                other => panic!("expected a resync, got {other:?}"),
            }
            s.txn(Txn::new().then(Op::put("/k/new", b"v".to_vec())))
                .await
                .unwrap();
            // After the resync the watch goes on from the compaction point:
            // the newest put arrives (older replays may come first).
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let item = tokio::time::timeout_at(deadline.into(), w.next())
                    .await
                    .expect("the new put never arrived")
                    .unwrap()
                    .unwrap();
                if let WatchItem::Events(evs) = item
                    && evs.iter().any(|e| e.kv.key == "/k/new")
                {
                    break;
                }
            }
        })
    })
    .unwrap();
}
