//! Read-only figures: utilisation per pool, block and host, and the routes
//! a host advertises.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::{Ipam, IpamError};
use crate::cidr::Cidr;
use crate::model::Block;
use crate::store::Datastore;

/// Addresses and blocks per pool, block and host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Utilisation {
    pub pools: Vec<PoolUsage>,
    pub blocks: Vec<BlockUsage>,
    pub hosts: Vec<HostUsage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    pub name: String,
    pub cidr: Cidr,
    pub blocks_total: u128,
    pub blocks_claimed: u64,
    pub allocated: u64,
    pub capacity: u128,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockUsage {
    pub cidr: Cidr,
    pub pool: String,
    pub host: Option<String>,
    pub allocated: u64,
    pub capacity: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostUsage {
    pub host: String,
    pub blocks: u64,
    pub allocated: u64,
    pub borrowed: u64,
}

/// What a host must advertise: its blocks as aggregates, borrowed
/// addresses as host routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostRoutes {
    pub blocks: Vec<Cidr>,
    pub borrowed: Vec<IpAddr>,
}

impl<S: Datastore> Ipam<S> {
    /// What `host` advertises: its blocks, and its addresses that lie in
    /// blocks it does not own.
    pub async fn host_routes(&self, host: &str) -> Result<HostRoutes, IpamError> {
        let blocks = self.all_blocks().await?;
        let mine: Vec<Cidr> = blocks
            .iter()
            .filter(|b| b.host.as_deref() == Some(host))
            .map(|b| b.cidr)
            .collect();
        let mut borrowed = Vec::new();
        for a in self.host_allocations(host).await? {
            for x in a.addrs {
                if !mine.iter().any(|c| c.contains(x.ip)) {
                    borrowed.push(x.ip);
                }
            }
        }
        borrowed.sort();
        Ok(HostRoutes {
            blocks: mine,
            borrowed,
        })
    }

    /// Figures per pool, block and host.
    pub async fn utilisation(&self) -> Result<Utilisation, IpamError> {
        let pools = self.pools().await?;
        let blocks = self.all_blocks().await?;
        let allocs = self.all_allocations().await?;
        let mut u = Utilisation::default();
        for p in &pools {
            let pb: Vec<&Block> = blocks.iter().filter(|b| b.pool == p.name).collect();
            u.pools.push(PoolUsage {
                name: p.name.clone(),
                cidr: p.cidr,
                blocks_total: p.block_count(),
                blocks_claimed: pb.iter().filter(|b| b.host.is_some()).count() as u64,
                allocated: pb.iter().map(|b| b.used()).sum(),
                capacity: p.cidr.size(),
            });
        }
        let mut hosts: BTreeMap<String, HostUsage> = BTreeMap::new();
        for b in &blocks {
            u.blocks.push(BlockUsage {
                cidr: b.cidr,
                pool: b.pool.clone(),
                host: b.host.clone(),
                allocated: b.used(),
                capacity: b.size(),
            });
            if let Some(h) = &b.host {
                let e = hosts.entry(h.clone()).or_default();
                e.host = h.clone();
                e.blocks += 1;
            }
        }
        for a in &allocs {
            let e = hosts.entry(a.host.clone()).or_default();
            e.host = a.host.clone();
            for x in &a.addrs {
                e.allocated += 1;
                let own = blocks
                    .iter()
                    .any(|b| b.cidr == x.block && b.host.as_deref() == Some(a.host.as_str()));
                if !own {
                    e.borrowed += 1;
                }
            }
        }
        u.hosts = hosts.into_values().collect();
        Ok(u)
    }
}
