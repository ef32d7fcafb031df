//! The one owner of "the blocks this host owns".
//!
//! Every pass (each tick) returns blocks that stayed empty past their pool's
//! grace to the pool, reads the owned blocks from IPAM, plans ([`plan_blocks`]) and
//! applies: blackhole routes added and removed through [`Kernel`], then the
//! BGP speaker told the same set. So a claimed block gets its blackhole and
//! its advertisement, and a released block loses both, from one place.
//!
//! ADD is the one other writer: a block claimed by an ADD needs its
//! blackhole before the ADD answers, so [`OwnedBlocks::ensure`] installs it
//! at once (the advertisement follows on the nudge).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flatnet_bgp::wire::{Ipv4Prefix, Ipv6Prefix, Prefix};
use ipnetwork::IpNetwork;

use crate::ipam::{FlatnetIpam, to_net};
use crate::kernel::{Dataplane, DpError};
use crate::reconcile::Kernel;
use crate::reconcile::plan::{BlockPlan, plan_blocks};
use crate::routing::BgpRouting;

/// How often the owned set is re-checked even without a nudge (blocks
/// released after their grace, or claimed by another path).
const PASS_EVERY: Duration = Duration::from_secs(2);

/// Generic over the [`Kernel`] so the passes are testable without root;
/// flatnetd uses [`Dataplane`].
pub struct OwnedBlocks<K = Dataplane> {
    ipam: Arc<FlatnetIpam>,
    dp: K,
    bgp: Option<Arc<BgpRouting>>,
    /// The configured pools: only blackholes inside them are ours to adopt
    /// or remove at start.
    pools: Vec<IpNetwork>,
    /// Blackholes installed, with the pass number an ADD last relied on each.
    installed: Mutex<BTreeMap<IpNetwork, u64>>,
    /// Number of the pass in progress (or the next one).
    pass: AtomicU64,
    /// Serialises kernel changes to blackholes (ADD's and the passes').
    apply: tokio::sync::Mutex<()>,
    nudge: tokio::sync::Notify,
}

/// A block as the BGP speaker's prefix type.
pub fn prefix_of(n: &IpNetwork) -> Option<Prefix> {
    match n {
        IpNetwork::V4(v) => Ipv4Prefix::new(v.network(), v.prefix())
            .ok()
            .map(Prefix::V4),
        IpNetwork::V6(v) => Ipv6Prefix::new(v.network(), v.prefix())
            .ok()
            .map(Prefix::V6),
    }
}

impl<K: Kernel> OwnedBlocks<K> {
    pub fn new(
        ipam: Arc<FlatnetIpam>,
        dp: K,
        bgp: Option<Arc<BgpRouting>>,
        pools: Vec<IpNetwork>,
    ) -> OwnedBlocks<K> {
        OwnedBlocks {
            ipam,
            dp,
            bgp,
            pools,
            installed: Mutex::new(BTreeMap::new()),
            pass: AtomicU64::new(1),
            apply: tokio::sync::Mutex::new(()),
            nudge: tokio::sync::Notify::new(),
        }
    }

    fn installed(&self) -> std::sync::MutexGuard<'_, BTreeMap<IpNetwork, u64>> {
        self.installed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a pass soon (an ADD claimed a block).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// ADD's path: blackholes for the blocks its addresses came from. Known
    /// blocks cost a map lookup; a new one one netlink request.
    pub async fn ensure(&self, blocks: &[IpNetwork]) -> Result<(), DpError> {
        let pass = self.pass.load(Ordering::SeqCst);
        let missing: Vec<IpNetwork> = {
            let mut m = self.installed();
            blocks
                .iter()
                .filter(|b| match m.get_mut(b) {
                    Some(seen) => {
                        *seen = (*seen).max(pass);
                        false
                    }
                    None => true,
                })
                .copied()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let _a = self.apply.lock().await;
        for b in missing {
            self.dp.add_blackhole(b).await?;
            self.installed().insert(b, pass);
        }
        // A block new to this host: advertise it without waiting for a tick.
        self.nudge();
        Ok(())
    }

    /// At start: the blackholes a previous run left (inside our pools) are
    /// known as installed, so the first pass keeps, or removes, them.
    pub async fn adopt_kernel(&self) -> Result<(), DpError> {
        let found = self.dp.blackholes().await?;
        let mut m = self.installed();
        for b in found {
            if self
                .pools
                .iter()
                .any(|p| p.contains(b.network()) && p.prefix() <= b.prefix())
            {
                m.entry(b).or_insert(0);
            }
        }
        Ok(())
    }

    /// One pass: with `release`, return expired empty blocks to the pool
    /// first; then make blackholes and advertisements equal to the owned set.
    pub async fn pass(&self, release: bool) -> anyhow::Result<BlockPlan> {
        let pass = self.pass.fetch_add(1, Ordering::SeqCst) + 1;
        if release {
            for b in self.ipam.release_empty_blocks().await? {
                tracing::info!(block = %b, "empty block returned to the pool");
            }
        }
        let owned: BTreeSet<IpNetwork> = self
            .ipam
            .owned_blocks()
            .await?
            .iter()
            .filter_map(to_net)
            .collect();
        let _a = self.apply.lock().await;
        // Planned and un-recorded in one critical section: an ADD that
        // relies on a block after this finds it missing and waits for
        // `apply` to install it again.
        let plan = {
            let mut m = self.installed();
            let plan = plan_blocks(&owned, &m, pass);
            for b in &plan.remove_blackholes {
                m.remove(b);
            }
            plan
        };
        let mut failed = None;
        for b in &plan.add_blackholes {
            match self.dp.add_blackhole(*b).await {
                Ok(()) => {
                    self.installed().entry(*b).or_insert(0);
                }
                Err(e) => failed = Some(e),
            }
        }
        for b in &plan.remove_blackholes {
            tracing::info!(block = %b, "block released: removing its blackhole");
            if let Err(e) = self.dp.remove_blackhole(*b).await {
                // Still there: the next pass tries again.
                self.installed().entry(*b).or_insert(0);
                failed = Some(e);
            }
        }
        if let Some(bgp) = &self.bgp {
            bgp.advertise(plan.advertise.iter().filter_map(prefix_of).collect())
                .await?;
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(plan),
        }
    }
}

impl OwnedBlocks<Dataplane> {
    /// Runs passes forever: every [`PASS_EVERY`] (releasing expired empty
    /// blocks), and at once when an ADD claimed a block (to advertise it).
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PASS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let release = tokio::select! {
                _ = self.nudge.notified() => false,
                _ = tick.tick() => true,
            };
            if let Err(e) = self.pass(release).await {
                tracing::warn!(error = %e, "owned blocks pass");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::AttachmentRef;
    use crate::ipam::{PoolSpec, open_store};
    use crate::kernel::{Attachment, Built, FoundLink};

    /// Blackholes in memory; the rest of the kernel is not used here.
    #[derive(Default)]
    struct FakeKernel {
        blackholes: Mutex<BTreeSet<IpNetwork>>,
    }

    impl FakeKernel {
        fn now(&self) -> BTreeSet<IpNetwork> {
            self.blackholes.lock().unwrap().clone()
        }
    }

    impl Kernel for FakeKernel {
        async fn links(&self) -> Result<Vec<FoundLink>, DpError> {
            Ok(Vec::new())
        }
        async fn check(&self, _: &Attachment) -> Result<(), DpError> {
            Ok(())
        }
        async fn rebuild(&self, _: &str, _: &Attachment) -> Result<Built, DpError> {
            Err(DpError::Io("not in this fake".into()))
        }
        async fn delete_link(&self, _: &str) -> Result<(), DpError> {
            Ok(())
        }
        async fn blackholes(&self) -> Result<Vec<IpNetwork>, DpError> {
            Ok(self.now().into_iter().collect())
        }
        async fn add_blackhole(&self, b: IpNetwork) -> Result<(), DpError> {
            self.blackholes.lock().unwrap().insert(b);
            Ok(())
        }
        async fn remove_blackhole(&self, b: IpNetwork) -> Result<(), DpError> {
            self.blackholes.lock().unwrap().remove(&b);
            Ok(())
        }
    }

    /// Claim (ADD), empty (DEL), release after the grace: the blackhole
    /// follows the owned set in both directions; a leftover blackhole of a
    /// block this host no longer owns is removed at start, one outside the
    /// pools is left alone.
    #[tokio::test]
    async fn pass_follows_owned_blocks_both_ways() {
        let d = tempfile::tempdir().unwrap();
        let store = open_store(&crate::config::DatastoreUrl::File(d.path().join("ds")))
            .await
            .unwrap();
        let pool: IpNetwork = "10.9.0.0/24".parse().unwrap();
        let spec = PoolSpec {
            cidr: pool,
            block_prefix: 28,
            empty_block_grace_ms: Some(0),
        };
        let ipam = Arc::new(FlatnetIpam::open(store, "h1", &[spec]).await.unwrap());
        let k = FakeKernel::default();
        let stale: IpNetwork = "10.9.0.240/28".parse().unwrap();
        let foreign: IpNetwork = "192.168.0.0/24".parse().unwrap();
        k.add_blackhole(stale).await.unwrap();
        k.add_blackhole(foreign).await.unwrap();
        let blocks = OwnedBlocks::new(ipam.clone(), k, None, vec![pool]);
        blocks.adopt_kernel().await.unwrap();
        let p = blocks.pass(true).await.unwrap();
        assert_eq!(p.remove_blackholes, vec![stale]);
        assert_eq!(blocks.dp.now(), [foreign].into());

        let h: AttachmentRef = "c1/eth0".parse().unwrap();
        let a = ipam.allocate(&h, None).await.unwrap();
        assert_eq!(a.own_blocks.len(), 1);
        let block = a.own_blocks[0];
        blocks.ensure(&a.own_blocks).await.unwrap();
        assert!(blocks.dp.now().contains(&block));
        let p = blocks.pass(true).await.unwrap();
        assert!(p.remove_blackholes.is_empty());
        assert_eq!(p.advertise, [block].into());

        assert!(ipam.release(&h).await.unwrap());
        // Zero grace: stamped empty by one pass (or the release), returned
        // to the pool by the next; the blackhole goes in the same pass.
        let mut passes = 0;
        while blocks.dp.now().contains(&block) {
            let p = blocks.pass(true).await.unwrap();
            passes += 1;
            assert!(
                passes <= 2,
                "block still owned after {passes} passes: {p:?}"
            );
        }
        assert!(ipam.owned_blocks().await.unwrap().is_empty());
        assert_eq!(blocks.dp.now(), [foreign].into());
    }

    #[test]
    fn blocks_become_bgp_prefixes_without_text() {
        let n: IpNetwork = "10.244.0.64/26".parse().unwrap();
        assert_eq!(prefix_of(&n).unwrap().to_string(), "10.244.0.64/26");
        let n: IpNetwork = "fd00:244::40/122".parse().unwrap();
        assert_eq!(prefix_of(&n).unwrap().to_string(), "fd00:244::40/122");
    }
}
