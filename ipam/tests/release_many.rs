#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Ipam::release_many`: a batch of releases in one transaction behaves like
//! the same releases one by one.

use std::collections::BTreeSet;
use std::sync::Arc;

use flatnet_ipam::{AllocRequest, Datastore, Handle, Ipam, ManualClock, MemStore, Pool};

#[test]
fn release_many_frees_every_listed_handle_in_one_commit() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = ManualClock::new(1_000_000);
    let ipam = Ipam::with_clock(MemStore::new(), "/t/", Arc::new(clock.clone()));
    rt.block_on(async {
        ipam.create_pool(Pool::new("p", "10.0.0.0/24".parse().unwrap()))
            .await
            .unwrap();
        let hs: Vec<Handle> = (0..4)
            .map(|i| Handle::new(format!("c{i}"), "eth0"))
            .collect();
        let mut allocs = Vec::new();
        for h in &hs {
            allocs.push(
                ipam.allocate(&AllocRequest::v4(h.clone(), "h1"))
                    .await
                    .unwrap(),
            );
        }
        let rev = ipam.store().list("/t/").await.unwrap().revision;
        // Two real handles (one listed twice) and an unknown one.
        let batch = vec![
            hs[0].clone(),
            hs[2].clone(),
            hs[2].clone(),
            Handle::new("never", "eth0"),
        ];
        let released = ipam.release_many("h1", &batch).await.unwrap();
        assert_eq!(released, vec![allocs[0].clone(), allocs[2].clone()]);
        assert_eq!(
            ipam.store().list("/t/").await.unwrap().revision,
            rev + 1,
            "one transaction"
        );
        let left: BTreeSet<String> = ipam
            .host_allocations("h1")
            .await
            .unwrap()
            .iter()
            .map(|a| a.handle.container_id.clone())
            .collect();
        assert_eq!(left, ["c1".to_string(), "c3".to_string()].into());
        // Freed addresses are allocatable again; nothing is inconsistent.
        let again = ipam
            .allocate(&AllocRequest::v4(Handle::new("n", "eth0"), "h1"))
            .await
            .unwrap();
        assert_eq!(again.addrs[0].ip, allocs[0].addrs[0].ip);
        let live: BTreeSet<String> = ["h1".to_string()].into();
        assert!(ipam.check(&live).await.unwrap().is_empty());
        // Idempotent: releasing them again does nothing.
        assert!(
            ipam.release_many("h1", &batch[1..])
                .await
                .unwrap()
                .is_empty()
        );
    });
}
