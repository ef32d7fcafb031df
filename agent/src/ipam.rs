//! The agent's view of IPAM: the few calls flatnetd makes on every ADD/DEL/GC.
//!
//! `AddressManager` is the seam between flatnetd and the `flatnet-ipam`
//! crate ([`FlatnetIpam`] adapts it): flatnetd calls it from blocking
//! threads, the adapter drives the async IPAM on flatnetd's runtime.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flatnet_ipam::{AllocRequest, AnyStore, Handle, Ipam, Pool};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, thiserror::Error)]
pub enum IpamError {
    #[error("{0}")]
    Exhausted(String),
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

/// The addresses of one attachment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Assigned {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// An allocation plus the blocks (owned by this host) its addresses are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    pub addrs: Assigned,
    /// Blocks this host owns that the addresses came from (each needs a
    /// blackhole route); borrowed addresses add none.
    pub own_blocks: Vec<IpNetwork>,
}

/// One allocation as listed by `flatnet ipam show`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AllocationInfo {
    pub handle: String,
    pub addr: IpAddr,
    pub block: String,
}

/// One block this host owns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockInfo {
    pub cidr: String,
    pub used: u64,
    pub capacity: u64,
}

/// What flatnetd needs from IPAM. Calls are blocking (they may touch disk or
/// the network); flatnetd runs them on blocking threads.
pub trait AddressManager: Send + Sync {
    /// Addresses for `handle`; the same handle always gets the same answer
    /// until released.
    fn allocate(&self, handle: &str, app: Option<&str>) -> Result<Allocated, IpamError>;
    /// Frees the handle's addresses; `Ok(false)` when it held none.
    fn release(&self, handle: &str) -> Result<bool, IpamError>;
    /// Releases every allocation of this host whose handle is not in `live`;
    /// returns the released handles.
    fn gc(&self, live: &HashSet<String>) -> Result<Vec<String>, IpamError>;
    /// Blocks this host owns (each gets a blackhole route).
    fn blocks(&self) -> Result<Vec<BlockInfo>, IpamError>;
    fn allocations(&self) -> Result<Vec<AllocationInfo>, IpamError>;
    /// Consistency problems found (empty when all is well).
    fn check(&self) -> Result<Vec<String>, IpamError>;
    /// Whether the datastore answers.
    fn reachable(&self) -> bool;
}

/// Splits "<container id>/<ifname>" (the ifname has no '/').
fn split_handle(h: &str) -> Result<Handle, IpamError> {
    let (id, ifn) = h
        .rsplit_once('/')
        .ok_or_else(|| IpamError::Other(format!("bad handle {h:?}")))?;
    Ok(Handle::new(id, ifn))
}

fn map_err(e: flatnet_ipam::IpamError) -> IpamError {
    use flatnet_ipam::IpamError as E;
    match &e {
        E::PoolExhausted { .. } | E::StrictAffinity { .. } => IpamError::Exhausted(e.to_string()),
        _ if e.is_unreachable() => IpamError::Unavailable(e.to_string()),
        E::Contention(_) => IpamError::Unavailable(e.to_string()),
        _ => IpamError::Other(e.to_string()),
    }
}

fn to_net(c: &flatnet_ipam::Cidr) -> Option<IpNetwork> {
    IpNetwork::new(c.network(), c.prefix()).ok()
}

/// Pool name derived from its CIDR ("10.244.0.0-16"): the same on every host
/// that shares the datastore.
pub fn pool_name(cidr: &IpNetwork) -> String {
    format!("{}-{}", cidr.network(), cidr.prefix()).replace(':', ".")
}

/// [`AddressManager`] over `flatnet_ipam::Ipam`.
pub struct FlatnetIpam {
    ipam: Ipam<AnyStore>,
    host: String,
    ipv6: bool,
    rt: tokio::runtime::Handle,
    /// This host's allocations and releases all write its own blocks, so
    /// concurrent ones collide on the same compare-and-swap and retry
    /// (re-reading behind each other's fsync). One at a time, each commits
    /// first try.
    writes: std::sync::Mutex<()>,
    /// Releases waiting for the next commit: whoever takes `writes` next
    /// releases all of them in one transaction (group commit for DELs).
    pending_releases: std::sync::Mutex<Vec<PendingRelease>>,
}

type PendingRelease = (Handle, std::sync::mpsc::Sender<Result<bool, IpamError>>);

impl FlatnetIpam {
    /// Connects the datastore and makes sure the configured pools exist
    /// (creating them, or accepting an identical existing definition).
    pub async fn open(
        store: AnyStore,
        host: &str,
        pools: &[(IpNetwork, u8)],
    ) -> Result<FlatnetIpam, IpamError> {
        let ipam = Ipam::new(store);
        let existing = ipam.pools().await.map_err(map_err)?;
        for (cidr, bprefix) in pools {
            let c: flatnet_ipam::Cidr = cidr
                .to_string()
                .parse()
                .map_err(|e| IpamError::Other(format!("pool {cidr}: {e}")))?;
            let name = pool_name(cidr);
            if let Some(p) = existing.iter().find(|p| p.name == name) {
                if p.cidr != c || p.block_prefix != *bprefix {
                    return Err(IpamError::Other(format!(
                        "pool {name} exists in the datastore as {}/{} blocks, config says {c} with /{bprefix} blocks",
                        p.cidr, p.block_prefix
                    )));
                }
                continue;
            }
            let mut pool = Pool::new(name.clone(), c);
            pool.block_prefix = *bprefix;
            match ipam.create_pool(pool).await {
                Ok(()) => {}
                // Another host created it at the same moment.
                Err(flatnet_ipam::IpamError::InvalidPool { reason, .. })
                    if reason.contains("exists") => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(FlatnetIpam {
            ipam,
            host: host.to_string(),
            ipv6: pools.iter().any(|(c, _)| c.is_ipv6()),
            rt: tokio::runtime::Handle::current(),
            writes: std::sync::Mutex::new(()),
            pending_releases: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }
}

impl AddressManager for FlatnetIpam {
    fn allocate(&self, handle: &str, app: Option<&str>) -> Result<Allocated, IpamError> {
        let mut req = AllocRequest::v4(split_handle(handle)?, self.host.clone());
        req.ipv6 = self.ipv6;
        req.app = app.map(String::from);
        let a = {
            let _w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
            self.run(self.ipam.allocate(&req)).map_err(map_err)?
        };
        let mut out = Allocated {
            addrs: Assigned { v4: None, v6: None },
            own_blocks: Vec::new(),
        };
        for ad in &a.addrs {
            match ad.ip {
                IpAddr::V4(v) => out.addrs.v4 = Some(v),
                IpAddr::V6(v) => out.addrs.v6 = Some(v),
            }
            if !ad.borrowed {
                out.own_blocks.extend(to_net(&ad.block));
            }
        }
        Ok(out)
    }

    fn release(&self, handle: &str) -> Result<bool, IpamError> {
        let h = split_handle(handle)?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.pending_releases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((h, tx));
        {
            let _w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
            let batch = std::mem::take(
                &mut *self
                    .pending_releases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            // Empty when an earlier holder already committed ours.
            if !batch.is_empty() {
                let handles: Vec<Handle> = batch.iter().map(|(h, _)| h.clone()).collect();
                match self.run(self.ipam.release_many(&self.host, &handles)) {
                    Ok(released) => {
                        for (h, tx) in batch {
                            let _ = tx.send(Ok(released.iter().any(|a| a.handle == h)));
                        }
                    }
                    Err(e) => {
                        let e = map_err(e);
                        for (_, tx) in batch {
                            let _ = tx.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
        rx.recv()
            .map_err(|_| IpamError::Other("release batch lost".into()))?
    }

    fn gc(&self, live: &HashSet<String>) -> Result<Vec<String>, IpamError> {
        let live: BTreeSet<Handle> = live.iter().filter_map(|h| split_handle(h).ok()).collect();
        // flatnetd passes every handle it may still be setting up, so no
        // grace period: the first pass marks, the second releases.
        let mut released = Vec::new();
        for _ in 0..2 {
            let r = self
                .run(self.ipam.gc(&self.host, &live, 0))
                .map_err(map_err)?;
            released.extend(r.released.iter().map(|h| h.to_string()));
        }
        Ok(released)
    }

    fn blocks(&self) -> Result<Vec<BlockInfo>, IpamError> {
        let u = self.run(self.ipam.utilisation()).map_err(map_err)?;
        Ok(u.blocks
            .iter()
            .filter(|b| b.host.as_deref() == Some(self.host.as_str()))
            .map(|b| BlockInfo {
                cidr: b.cidr.to_string(),
                used: b.allocated,
                capacity: b.capacity,
            })
            .collect())
    }

    fn allocations(&self) -> Result<Vec<AllocationInfo>, IpamError> {
        let allocs = self
            .run(self.ipam.host_allocations(&self.host))
            .map_err(map_err)?;
        Ok(allocs
            .iter()
            .flat_map(|a| {
                a.addrs.iter().map(|ad| AllocationInfo {
                    handle: a.handle.to_string(),
                    addr: ad.ip,
                    block: ad.block.to_string(),
                })
            })
            .collect())
    }

    fn check(&self) -> Result<Vec<String>, IpamError> {
        // Every host that owns a block counts as alive here: this host
        // cannot know which other hosts exist.
        let blocks = self.run(self.ipam.all_blocks()).map_err(map_err)?;
        let mut hosts: BTreeSet<String> = blocks.iter().filter_map(|b| b.host.clone()).collect();
        hosts.insert(self.host.clone());
        let issues = self.run(self.ipam.check(&hosts)).map_err(map_err)?;
        Ok(issues.iter().map(|i| format!("{i:?}")).collect())
    }

    fn reachable(&self) -> bool {
        self.run(self.ipam.pools()).is_ok()
    }
}

/// Opens the datastore named by a config URL.
pub async fn open_store(url: &crate::config::DatastoreUrl) -> Result<AnyStore, IpamError> {
    use crate::config::DatastoreUrl;
    match url {
        DatastoreUrl::File(dir) => {
            let s = flatnet_ipam::FileStore::open(dir)
                .map_err(|e| IpamError::Unavailable(e.to_string()))?;
            Ok(AnyStore::File(std::sync::Arc::new(s)))
        }
        DatastoreUrl::Etcd(eps) => {
            let eps: Vec<String> = eps
                .iter()
                .map(|e| {
                    if e.contains("://") {
                        e.clone()
                    } else {
                        format!("http://{e}")
                    }
                })
                .collect();
            let s = flatnet_ipam::EtcdStore::connect(&eps, std::time::Duration::from_secs(5))
                .await
                .map_err(|e| IpamError::Unavailable(e.to_string()))?;
            Ok(AnyStore::Etcd(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_split_at_the_last_slash() {
        let h = split_handle("abc/def/eth0").unwrap();
        assert_eq!(
            (h.container_id.as_str(), h.ifname.as_str()),
            ("abc/def", "eth0")
        );
        assert!(split_handle("noslash").is_err());
    }

    #[test]
    fn pool_names_are_valid_ipam_names() {
        assert_eq!(
            pool_name(&"10.244.0.0/16".parse().unwrap()),
            "10.244.0.0-16"
        );
        assert_eq!(
            pool_name(&"fd00:244::/56".parse().unwrap()),
            "fd00.244..-56"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adapter_allocates_releases_and_gcs() {
        let d = tempfile::tempdir().unwrap();
        let store = open_store(&crate::config::DatastoreUrl::File(d.path().join("ds")))
            .await
            .unwrap();
        let pools = vec![
            ("10.1.0.0/24".parse().unwrap(), 30),
            ("fd00::/120".parse().unwrap(), 126),
        ];
        let m = std::sync::Arc::new(FlatnetIpam::open(store, "h1", &pools).await.unwrap());
        let m2 = m.clone();
        tokio::task::spawn_blocking(move || {
            let a = m2.allocate("c1/eth0", Some("web")).unwrap();
            assert!(a.addrs.v4.is_some() && a.addrs.v6.is_some());
            assert_eq!(a.own_blocks.len(), 2);
            assert_eq!(m2.allocate("c1/eth0", None).unwrap().addrs, a.addrs);
            m2.allocate("c2/eth0", None).unwrap();
            assert_eq!(m2.allocations().unwrap().len(), 4);
            let live: HashSet<String> = ["c1/eth0".to_string()].into();
            assert_eq!(m2.gc(&live).unwrap(), vec!["c2/eth0".to_string()]);
            assert!(m2.release("c1/eth0").unwrap());
            assert!(!m2.release("c1/eth0").unwrap());
            // Concurrent releases are committed in batches, each answered.
            for i in 0..8 {
                m2.allocate(&format!("b{i}/eth0"), None).unwrap();
            }
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|i| {
                        let m = &m2;
                        s.spawn(move || m.release(&format!("b{i}/eth0")).unwrap())
                    })
                    .collect();
                assert!(hs.into_iter().all(|h| h.join().unwrap()));
            });
            assert!(m2.allocations().unwrap().is_empty());
            assert!(m2.check().unwrap().is_empty());
            assert!(m2.reachable());
        })
        .await
        .unwrap();
    }
}
