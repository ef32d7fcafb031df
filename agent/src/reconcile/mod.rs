//! Restart reconciliation: after a (re)start, adopt what is right, repair
//! what is incomplete on the host side, and remove what belongs to
//! containers that are gone or to ADDs that never finished.
//!
//! It observes (records, links, a check of each recorded link), plans
//! purely ([`plan`]), then applies through [`Kernel`] and the handlers'
//! removal path. The owned blocks are then settled by one pass of
//! [`crate::blocks::OwnedBlocks`], the same reconciler that runs afterwards.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ipnetwork::IpNetwork;

use crate::api::AttachmentRef;
use crate::handlers::{Agent, attachment_of, ref_of};
use crate::kernel::{Attachment, Built, Dataplane, DpError, FoundLink};
use plan::{ObservedLinks, RecordedAttachment, plan_attachments};

/// The kernel operations reconciliation applies a plan with. The real
/// implementation is [`Dataplane`] (rtnetlink in flatnetd's namespace).
#[allow(async_fn_in_trait)]
pub trait Kernel {
    /// Every flatnet host veth.
    async fn links(&self) -> Result<Vec<FoundLink>, DpError>;
    /// Whether an attachment is complete (both sides).
    async fn check(&self, a: &Attachment) -> Result<(), DpError>;
    /// Deletes an attachment's host veth (and so everything hanging off it)
    /// and builds it again with the same addresses.
    async fn rebuild(&self, host_ifname: &str, a: &Attachment) -> Result<Built, DpError>;
    /// Deletes a host veth; idempotent.
    async fn delete_link(&self, name: &str) -> Result<(), DpError>;
    /// The blackhole routes flatnet installed.
    async fn blackholes(&self) -> Result<Vec<IpNetwork>, DpError>;
    async fn add_blackhole(&self, block: IpNetwork) -> Result<(), DpError>;
    async fn remove_blackhole(&self, block: IpNetwork) -> Result<(), DpError>;
}

impl Kernel for Dataplane {
    async fn links(&self) -> Result<Vec<FoundLink>, DpError> {
        self.list_links().await
    }
    async fn check(&self, a: &Attachment) -> Result<(), DpError> {
        Dataplane::check(self, a).await
    }
    async fn rebuild(&self, host_ifname: &str, a: &Attachment) -> Result<Built, DpError> {
        if let Err(e) = self.del(host_ifname).await {
            tracing::warn!(error = %e, "reconcile");
        }
        self.add(a).await
    }
    async fn delete_link(&self, name: &str) -> Result<(), DpError> {
        self.del(name).await
    }
    async fn blackholes(&self) -> Result<Vec<IpNetwork>, DpError> {
        self.list_blackholes().await
    }
    async fn add_blackhole(&self, block: IpNetwork) -> Result<(), DpError> {
        self.ensure_blackhole(block).await
    }
    async fn remove_blackhole(&self, block: IpNetwork) -> Result<(), DpError> {
        Dataplane::remove_blackhole(self, block).await
    }
}

impl Agent {
    /// After a (re)start: observe, plan, apply; then one owned-blocks pass.
    pub async fn reconcile(self: &Arc<Self>) -> anyhow::Result<()> {
        let (stored, bad) = self.store.list().await?;
        for b in bad {
            tracing::warn!(record = %b, "unreadable endpoint record ignored");
            self.metrics.reconcile_errors.inc();
        }
        // A DEL cut off after its release committed but before its record
        // was removed (the two run together) left a record whose address
        // IPAM may hand out again: finish that DEL (veth and record go; the
        // runtime's retry then finds nothing). Adopting or rebuilding it
        // would keep an address, and its app's policy sets, that no
        // allocation holds.
        let allocated: HashSet<AttachmentRef> = self
            .ipam
            .allocations()
            .await?
            .iter()
            .filter_map(|a| a.handle.parse().ok())
            .collect();
        let (stored, unallocated): (Vec<_>, Vec<_>) = stored
            .into_iter()
            .partition(|s| allocated.contains(&ref_of(&s.ep)));
        let mut removed = 0;
        for s in &unallocated {
            let h = ref_of(&s.ep);
            tracing::info!(handle = %h, "record without allocation (an interrupted DEL): removing");
            if let Err(e) = self.remove_attachment(&h, false).await {
                tracing::error!(handle = %h, error = %e, "reconcile: remove failed");
                self.metrics.reconcile_errors.inc();
            }
            removed += 1;
        }
        let by_ref: HashMap<AttachmentRef, &crate::store::Stored> =
            stored.iter().map(|s| (ref_of(&s.ep), s)).collect();
        let records: Vec<RecordedAttachment> = stored
            .iter()
            .map(|s| RecordedAttachment {
                handle: ref_of(&s.ep),
                host_ifname: s.ep.host_ifname.clone(),
            })
            .collect();
        // Observe: the links, and a check of each recorded one present.
        let links = self.dp.links().await?;
        for l in &links {
            tracing::debug!(link = %l.name, owner = ?l.owner, "flatnet veth found");
        }
        let mut seen = ObservedLinks {
            links: links.iter().map(|l| l.name.clone()).collect(),
            incomplete: HashSet::new(),
        };
        for s in &stored {
            if seen.links.contains(&s.ep.host_ifname)
                && let Err(e) = Kernel::check(&self.dp, &attachment_of(&s.ep)).await
            {
                tracing::warn!(handle = %ref_of(&s.ep), error = %e, "adopted endpoint incomplete; rebuilding");
                seen.incomplete.insert(s.ep.host_ifname.clone());
            }
        }
        let plan = plan_attachments(&records, &seen);
        // Apply.
        let mut live: HashSet<AttachmentRef> = plan.adopt.iter().cloned().collect();
        for h in &plan.rebuild {
            let Some(s) = by_ref.get(h) else { continue };
            match self
                .dp
                .rebuild(&s.ep.host_ifname, &attachment_of(&s.ep))
                .await
            {
                Ok(b) => {
                    let mut ep2 = s.ep.clone();
                    ep2.host_mac = b.host_mac;
                    ep2.container_mac = b.container_mac;
                    self.store.put(&ep2, Some(s.rev)).await?;
                    live.insert(h.clone());
                }
                Err(e) => {
                    tracing::error!(handle = %h, error = %e, "cannot rebuild endpoint; removing");
                    self.metrics.reconcile_errors.inc();
                    let _ = self.remove_attachment(h, false).await;
                    removed += 1;
                }
            }
        }
        for h in &plan.remove {
            // The veth dies with its namespace: the container is gone.
            if let Err(e) = self.remove_attachment(h, false).await {
                tracing::error!(handle = %h, error = %e, "reconcile: remove failed");
                self.metrics.reconcile_errors.inc();
            }
            removed += 1;
        }
        for l in &plan.delete_links {
            tracing::info!(link = %l, "removing veth of an unfinished ADD");
            self.dp.delete_link(l).await?;
            removed += 1;
        }
        // Docker's addresses go by ReleaseAddress, attached or not yet.
        live.extend(crate::docker::handles(&self.ipam).await?);
        let released = self.ipam.gc(&live).await?;
        self.blocks.adopt_kernel().await?;
        self.blocks.pass(true).await?;
        tokio::spawn(self.blocks.clone().run());
        tracing::info!(
            adopted = live.len(),
            removed,
            released = released.len(),
            "reconciled after start"
        );
        Ok(())
    }
}
