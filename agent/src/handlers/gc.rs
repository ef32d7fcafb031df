//! GC: remove every attachment the runtime no longer lists.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Agent, ipam_err, ref_of, store_err};
use crate::api::{ApiError, AttachmentRef, GcArgs, GcReport};

impl Agent {
    pub(super) async fn gc(self: &Arc<Self>, a: GcArgs) -> Result<GcReport, ApiError> {
        let _gc = self.gc_lock.write().await;
        let mut valid: HashSet<AttachmentRef> = a.valid.iter().cloned().collect();
        let (eps, _) = self.store.list().await.map_err(store_err)?;
        let mut removed = Vec::new();
        for ep in eps.into_iter().map(|s| s.ep) {
            let h = ref_of(&ep);
            // Docker's endpoints live and die by Docker's calls, not CNI's GC.
            if crate::docker::plan::is_docker_handle(&h) {
                valid.insert(h.clone());
            }
            // Another network's attachment is not this GC's business.
            let other_net = a.network.is_some() && ep.network.is_some() && a.network != ep.network;
            if other_net {
                valid.insert(h.clone());
            }
            if valid.contains(&h) {
                continue;
            }
            let lock = self.lock_for(&h);
            let _g = lock.lock().await;
            self.remove_attachment(&h, false).await?;
            removed.push(h);
        }
        // Docker's addresses (some not attached yet) are released by
        // ReleaseAddress only.
        valid.extend(crate::docker::handles(&self.ipam).await.map_err(ipam_err)?);
        let released = self.ipam.gc(&valid).await.map_err(ipam_err)?;
        for h in released {
            if !removed.contains(&h) {
                removed.push(h);
            }
        }
        Ok(GcReport {
            removed: removed.iter().map(ToString::to_string).collect(),
        })
    }
}
