//! The agent's view of IPAM: the few calls flatnetd makes on every ADD/DEL/GC.
//!
//! [`FlatnetIpam`] adapts the async `flatnet-ipam` crate to flatnetd's needs
//! (typed handles, this host's blocks, batched releases). It is async end to
//! end: handlers await it on the runtime, nothing blocks a thread.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flatnet_ipam::{AllocRequest, AnyStore, Cidr, Handle, Ipam, Pool};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::api::AttachmentRef;

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
    /// Some address was borrowed from another host's block (advertised as
    /// a host route).
    pub borrowed: bool,
}

/// One allocation as listed by `flatnet ipam show`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AllocationInfo {
    /// `<container id>/<ifname>` on the wire.
    pub handle: String,
    pub addr: IpAddr,
    pub block: Cidr,
}

/// One block this host owns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockInfo {
    pub cidr: Cidr,
    pub used: u64,
    pub capacity: u64,
}

impl BlockInfo {
    /// The block as the kernel and BGP see it.
    pub fn network(&self) -> Option<IpNetwork> {
        to_net(&self.cidr)
    }
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

/// An IPAM CIDR as an [`IpNetwork`] (no text round trip).
pub fn to_net(c: &Cidr) -> Option<IpNetwork> {
    IpNetwork::new(c.network(), c.prefix()).ok()
}

/// An [`IpNetwork`] as an IPAM CIDR (no text round trip).
pub fn to_cidr(n: &IpNetwork) -> Result<Cidr, String> {
    Cidr::new(n.network(), n.prefix())
}

/// Pool name derived from its CIDR ("10.244.0.0-16"): the same on every host
/// that shares the datastore.
pub fn pool_name(cidr: &IpNetwork) -> String {
    format!("{}-{}", cidr.network(), cidr.prefix()).replace(':', ".")
}

/// One configured pool as the adapter creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    pub cidr: IpNetwork,
    pub block_prefix: u8,
    /// How long an empty block stays with this host before it returns to
    /// the pool (`None`: the IPAM default).
    pub empty_block_grace_ms: Option<u64>,
}

/// See [`FlatnetIpam::borrowing`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Borrowing {
    pub borrowed: Vec<IpAddr>,
    pub lent: Vec<IpAddr>,
}

/// flatnetd's IPAM: `flatnet_ipam::Ipam` for this host.
pub struct FlatnetIpam {
    ipam: Ipam<AnyStore>,
    host: String,
    ipv6: bool,
    /// This host's allocations and releases all write its own blocks, so
    /// concurrent ones collide on the same compare-and-swap and retry
    /// (re-reading behind each other's fsync). One at a time, each commits
    /// first try.
    writes: tokio::sync::Mutex<()>,
    /// Releases waiting for the next commit: whoever takes `writes` next
    /// releases all of them in one transaction (group commit for DELs).
    pending_releases: std::sync::Mutex<Vec<PendingRelease>>,
}

type PendingRelease = (Handle, oneshot::Sender<Result<bool, IpamError>>);

impl FlatnetIpam {
    /// Connects the datastore and makes sure the configured pools exist
    /// (creating them, or accepting an identical existing definition).
    pub async fn open(
        store: AnyStore,
        host: &str,
        pools: &[PoolSpec],
    ) -> Result<FlatnetIpam, IpamError> {
        let ipam = Ipam::new(store);
        let existing = ipam.pools().await.map_err(map_err)?;
        for spec in pools {
            let cidr = &spec.cidr;
            let bprefix = spec.block_prefix;
            let c = to_cidr(cidr).map_err(|e| IpamError::Other(format!("pool {cidr}: {e}")))?;
            let name = pool_name(cidr);
            if let Some(p) = existing.iter().find(|p| p.name == name) {
                if p.cidr != c || p.block_prefix != bprefix {
                    return Err(IpamError::Other(format!(
                        "pool {name} exists in the datastore as {}/{} blocks, config says {c} with /{bprefix} blocks",
                        p.cidr, p.block_prefix
                    )));
                }
                continue;
            }
            let mut pool = Pool::new(name.clone(), c);
            pool.block_prefix = bprefix;
            if let Some(g) = spec.empty_block_grace_ms {
                pool.empty_block_grace_ms = g;
            }
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
            ipv6: pools.iter().any(|p| p.cidr.is_ipv6()),
            writes: tokio::sync::Mutex::new(()),
            pending_releases: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Addresses for `handle`; the same handle always gets the same answer
    /// until released.
    pub async fn allocate(
        &self,
        handle: &AttachmentRef,
        app: Option<&str>,
    ) -> Result<Allocated, IpamError> {
        let mut req = AllocRequest::v4(handle.into(), self.host.clone());
        req.ipv6 = self.ipv6;
        req.app = app.map(String::from);
        self.allocate_req(&req).await
    }

    /// One address of one family from the pool named `pool`, under its
    /// own handle: Docker asks per pool (and family), not per endpoint.
    pub async fn allocate_from(
        &self,
        handle: &AttachmentRef,
        pool: &str,
        v6: bool,
    ) -> Result<Allocated, IpamError> {
        let mut req = AllocRequest::v4(handle.into(), self.host.clone());
        req.ipv4 = !v6;
        req.ipv6 = v6;
        req.pool = Some(pool.to_string());
        self.allocate_req(&req).await
    }

    async fn allocate_req(&self, req: &AllocRequest) -> Result<Allocated, IpamError> {
        let a = {
            let _w = self.writes.lock().await;
            self.ipam.allocate(req).await.map_err(map_err)?
        };
        let mut out = Allocated {
            addrs: Assigned { v4: None, v6: None },
            own_blocks: Vec::new(),
            borrowed: false,
        };
        for ad in &a.addrs {
            match ad.ip {
                IpAddr::V4(v) => out.addrs.v4 = Some(v),
                IpAddr::V6(v) => out.addrs.v6 = Some(v),
            }
            if ad.borrowed {
                out.borrowed = true;
            } else {
                out.own_blocks.extend(to_net(&ad.block));
            }
        }
        Ok(out)
    }

    /// Frees the handle's addresses; `Ok(false)` when it held none.
    pub async fn release(&self, handle: &AttachmentRef) -> Result<bool, IpamError> {
        let (tx, rx) = oneshot::channel();
        self.pending_releases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((handle.into(), tx));
        {
            let _w = self.writes.lock().await;
            let batch = std::mem::take(
                &mut *self
                    .pending_releases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            // Empty when an earlier holder already committed ours.
            if !batch.is_empty() {
                let handles: Vec<Handle> = batch.iter().map(|(h, _)| h.clone()).collect();
                match self.ipam.release_many(&self.host, &handles).await {
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
        rx.await
            .map_err(|_| IpamError::Other("release batch lost".into()))?
    }

    /// Releases every allocation of this host whose handle is not in `live`;
    /// returns the released handles.
    pub async fn gc(&self, live: &HashSet<AttachmentRef>) -> Result<Vec<AttachmentRef>, IpamError> {
        let live: BTreeSet<Handle> = live.iter().map(Handle::from).collect();
        // flatnetd passes every handle it may still be setting up, so no
        // grace period: the first pass marks, the second releases.
        let mut released = Vec::new();
        for _ in 0..2 {
            let r = self.ipam.gc(&self.host, &live, 0).await.map_err(map_err)?;
            released.extend(r.released.into_iter().map(AttachmentRef::from));
        }
        Ok(released)
    }

    /// Returns this host's blocks that have been empty for their pool's
    /// grace period to the pool; returns the blocks released.
    pub async fn release_empty_blocks(&self) -> Result<Vec<Cidr>, IpamError> {
        let _w = self.writes.lock().await;
        self.ipam
            .release_empty_blocks(&self.host)
            .await
            .map_err(map_err)
    }

    /// Addresses across block owners: `borrowed`, this host's addresses in
    /// other hosts' blocks (advertised as /32 or /128 while they live), and
    /// `lent`, other hosts' addresses in this host's blocks (their /32s are
    /// accepted from the peers although they lie inside an own block).
    pub async fn borrowing(&self) -> Result<Borrowing, IpamError> {
        let mine: Vec<IpNetwork> = self
            .owned_blocks()
            .await?
            .iter()
            .filter_map(to_net)
            .collect();
        let mut out = Borrowing::default();
        for a in self.ipam.all_allocations().await.map_err(map_err)? {
            for x in &a.addrs {
                let in_mine = mine.iter().any(|n| n.contains(x.ip));
                if a.host == self.host && !in_mine {
                    out.borrowed.push(x.ip);
                } else if a.host != self.host && in_mine {
                    out.lent.push(x.ip);
                }
            }
        }
        out.borrowed.sort();
        out.lent.sort();
        Ok(out)
    }

    /// The blocks this host owns, from the block records alone (cheaper
    /// than [`Self::blocks`], which counts every allocation).
    pub async fn owned_blocks(&self) -> Result<Vec<Cidr>, IpamError> {
        let blocks = self.ipam.all_blocks().await.map_err(map_err)?;
        Ok(blocks
            .into_iter()
            .filter(|b| b.host.as_deref() == Some(self.host.as_str()))
            .map(|b| b.cidr)
            .collect())
    }

    /// Blocks this host owns with their use (each gets a blackhole route and
    /// is advertised).
    pub async fn blocks(&self) -> Result<Vec<BlockInfo>, IpamError> {
        let u = self.ipam.utilisation().await.map_err(map_err)?;
        Ok(u.blocks
            .iter()
            .filter(|b| b.host.as_deref() == Some(self.host.as_str()))
            .map(|b| BlockInfo {
                cidr: b.cidr,
                used: b.allocated,
                capacity: b.capacity,
            })
            .collect())
    }

    pub async fn allocations(&self) -> Result<Vec<AllocationInfo>, IpamError> {
        let allocs = self
            .ipam
            .host_allocations(&self.host)
            .await
            .map_err(map_err)?;
        Ok(allocs
            .iter()
            .flat_map(|a| {
                a.addrs.iter().map(|ad| AllocationInfo {
                    handle: a.handle.to_string(),
                    addr: ad.ip,
                    block: ad.block,
                })
            })
            .collect())
    }

    /// Consistency problems found (empty when all is well).
    pub async fn check(&self) -> Result<Vec<String>, IpamError> {
        // Every host that owns a block counts as alive here: this host
        // cannot know which other hosts exist.
        let blocks = self.ipam.all_blocks().await.map_err(map_err)?;
        let mut hosts: BTreeSet<String> = blocks.iter().filter_map(|b| b.host.clone()).collect();
        hosts.insert(self.host.clone());
        let issues = self.ipam.check(&hosts).await.map_err(map_err)?;
        Ok(issues.iter().map(|i| format!("{i:?}")).collect())
    }

    /// Whether the datastore answers.
    pub async fn reachable(&self) -> bool {
        self.ipam.pools().await.is_ok()
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

    fn h(s: &str) -> AttachmentRef {
        s.parse().unwrap()
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

    #[test]
    fn cidrs_convert_both_ways_without_text() {
        for s in ["10.244.0.64/26", "fd00:244::40/122", "0.0.0.0/0"] {
            let n: IpNetwork = s.parse().unwrap();
            let c = to_cidr(&n).unwrap();
            assert_eq!(c.to_string(), s);
            assert_eq!(to_net(&c), Some(n));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adapter_allocates_releases_and_gcs() {
        let d = tempfile::tempdir().unwrap();
        let store = open_store(&crate::config::DatastoreUrl::File(d.path().join("ds")))
            .await
            .unwrap();
        let pools = vec![
            PoolSpec {
                cidr: "10.1.0.0/24".parse().unwrap(),
                block_prefix: 30,
                empty_block_grace_ms: Some(0),
            },
            PoolSpec {
                cidr: "fd00::/120".parse().unwrap(),
                block_prefix: 126,
                empty_block_grace_ms: Some(0),
            },
        ];
        let m2 = std::sync::Arc::new(FlatnetIpam::open(store, "h1", &pools).await.unwrap());
        let a = m2.allocate(&h("c1/eth0"), Some("web")).await.unwrap();
        assert!(a.addrs.v4.is_some() && a.addrs.v6.is_some());
        assert_eq!(a.own_blocks.len(), 2);
        assert_eq!(
            m2.allocate(&h("c1/eth0"), None).await.unwrap().addrs,
            a.addrs
        );
        m2.allocate(&h("c2/eth0"), None).await.unwrap();
        assert_eq!(m2.allocations().await.unwrap().len(), 4);
        let live: HashSet<AttachmentRef> = [h("c1/eth0")].into();
        assert_eq!(m2.gc(&live).await.unwrap(), vec![h("c2/eth0")]);
        assert!(m2.release(&h("c1/eth0")).await.unwrap());
        assert!(!m2.release(&h("c1/eth0")).await.unwrap());
        // Concurrent releases are committed in batches, each answered.
        for i in 0..8 {
            m2.allocate(&h(&format!("b{i}/eth0")), None).await.unwrap();
        }
        let rels = (0..8).map(|i| {
            let m = m2.clone();
            tokio::spawn(async move { m.release(&h(&format!("b{i}/eth0"))).await.unwrap() })
        });
        for r in rels.collect::<Vec<_>>() {
            assert!(r.await.unwrap());
        }
        assert!(m2.allocations().await.unwrap().is_empty());
        assert!(m2.check().await.unwrap().is_empty());
        assert!(m2.reachable().await);
        // With a zero grace, empty blocks go back to the pool: the first
        // pass stamps them empty, a later one releases them.
        let owned: Vec<Cidr> = m2.blocks().await.unwrap().iter().map(|b| b.cidr).collect();
        assert!(!owned.is_empty());
        assert_eq!(m2.owned_blocks().await.unwrap(), owned);
        let mut released = m2.release_empty_blocks().await.unwrap();
        released.extend(m2.release_empty_blocks().await.unwrap());
        assert!(!released.is_empty());
        assert!(m2.blocks().await.unwrap().is_empty());
        assert!(m2.owned_blocks().await.unwrap().is_empty());
    }
}
