//! DEL, and the removal of one attachment that DEL, GC and restart share.

use std::sync::Arc;
use std::time::Instant;

use super::{Agent, dp_err, ipam_err, store_err};
use crate::api::{ApiError, AttachmentRef, DelArgs, ErrorKind};
use crate::kernel::host_ifname;

impl Agent {
    pub(super) async fn del(self: &Arc<Self>, a: DelArgs) -> Result<(), ApiError> {
        let r = &a.attachment;
        if r.container_id.is_empty() {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                "container id is empty",
            ));
        }
        let lock = self.lock_for(r);
        let _g = lock.lock().await;
        self.remove_attachment(r, true).await?;
        Ok(())
    }

    /// Removes kernel state, the allocation and the record; idempotent.
    /// With `batch_veth` (DEL) a recorded attachment is made inert (host
    /// routes gone) and its veth goes in the reaper's next batch, while the
    /// allocation and record are removed; it returns once all are gone.
    /// Otherwise (GC, restart, no record) the veth is deleted first.
    pub(crate) async fn remove_attachment(
        &self,
        r: &AttachmentRef,
        batch_veth: bool,
    ) -> Result<(), ApiError> {
        self.remove_attachment_with(r, batch_veth, true).await
    }

    /// [`Agent::remove_attachment`]; without `release` the allocation
    /// stays (Docker's DeleteEndpoint: its ReleaseAddress follows, and the
    /// address must not be handed out again before it).
    pub(crate) async fn remove_attachment_with(
        &self,
        r: &AttachmentRef,
        batch_veth: bool,
        release: bool,
    ) -> Result<(), ApiError> {
        let (id, ifname) = (r.container_id.as_str(), r.ifname.as_str());
        let stored = self.store.get(id, ifname).await.map_err(store_err)?;
        let host_if = match &stored {
            Some(s) => s.ep.host_ifname.clone(),
            None => host_ifname(id, ifname),
        };
        let t0 = Instant::now();
        let mut veth_gone = None;
        match &stored {
            Some(s) if batch_veth => {
                let idx = self
                    .dp
                    .detach(&host_if, s.ep.v4, s.ep.v6)
                    .await
                    .map_err(dp_err)?;
                if let Some(i) = idx {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    if self.reap.send((i, host_if.clone(), tx)).is_ok() {
                        veth_gone = Some(rx);
                    }
                }
            }
            _ => self.dp.del(&host_if).await.map_err(dp_err)?,
        }
        let t_kernel = t0.elapsed();
        let t1 = Instant::now();
        // The kernel side is gone: the allocation and the record can go in
        // either order (a crash between them leaves a record without veth or
        // an allocation without record; restart reconciliation removes
        // both), so do both at once.
        let rec = async {
            match &stored {
                Some(s) => self.store.remove_at(id, ifname, s.rev).await,
                None => Ok(()),
            }
        };
        let veth = async {
            match veth_gone {
                Some(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err("veth reaper stopped".into())),
                None => Ok(()),
            }
        };
        let rel = async {
            if release {
                self.ipam.release(r).await
            } else {
                Ok(false)
            }
        };
        let (rel, rec, veth) = tokio::join!(rel, rec, veth);
        let released = rel.map_err(ipam_err)?;
        rec.map_err(store_err)?;
        // A runtime that retries the DEL finds no record and deletes the
        // veth by its name.
        veth.map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("deleting host veth {host_if}: {e}"),
            )
        })?;
        if let Some(s) = stored.as_ref().filter(|_| release) {
            // A borrowed address's /32 is withdrawn at once, not on the next tick.
            let ips: Vec<std::net::IpAddr> = [s.ep.v4.map(Into::into), s.ep.v6.map(Into::into)]
                .into_iter()
                .flatten()
                .collect();
            self.blocks.released(&ips);
        }
        // The address leaves its app's sets now, before it can be reused.
        if let (Some(p), Some(s)) = (&self.policy, &stored) {
            let key = crate::store::endpoint_key(&s.ep.node, id, ifname);
            if let Err(e) = p.endpoint_down(&key).await {
                tracing::warn!(container_id = %id, error = %e, "policy: removing members failed");
            }
        }
        let t_ipam = t1.elapsed();
        if stored.is_none() && !released {
            tracing::info!(container_id = %id, %ifname, "DEL: no such attachment, nothing to remove");
            return Ok(());
        }
        tracing::info!(
            container_id = %id, %ifname,
            detach_ms = t_kernel.as_secs_f64() * 1e3, rest_ms = t_ipam.as_secs_f64() * 1e3,
            "endpoint removed"
        );
        Ok(())
    }
}
