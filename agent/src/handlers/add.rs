//! ADD: allocate, program the kernel, record; roll back on any failure.

use std::sync::Arc;
use std::time::Instant;

use super::{Agent, attachment, dp_err, ipam_err, store_err};
use crate::api::{AddArgs, ApiError, AttachmentRef, Endpoint};

impl Agent {
    pub(super) async fn add(self: &Arc<Self>, a: AddArgs) -> Result<Endpoint, ApiError> {
        let r = &a.attachment;
        Self::validate_ref(r)?;
        if let Some(app) = a.app.as_deref() {
            crate::names::check_app(app)
                .map_err(|e| ApiError::new(crate::api::ErrorKind::InvalidRequest, e))?;
        }
        // Lock order everywhere: gc_lock, then the attachment's lock.
        let _gc = self.gc_lock.read().await;
        let lock = self.lock_for(r);
        let _g = lock.lock().await;
        crate::kernel::container_netns(std::path::Path::new(&a.netns)).map_err(dp_err)?;
        // A second ADD while the interface exists is an error (CNI 1.1:
        // the plugin MUST fail); it changes nothing. A runtime that retries
        // calls DEL first.
        if let Some(stored) = self
            .store
            .get(&r.container_id, &r.ifname)
            .await
            .map_err(store_err)?
        {
            let ep = stored.ep;
            if ep.netns == a.netns
                && self
                    .dp
                    .container_has_link(std::path::Path::new(&a.netns), &r.ifname)
                    .await
                    .map_err(dp_err)?
            {
                return Err(ApiError::new(
                    crate::api::ErrorKind::IfnameTaken,
                    format!(
                        "{r} is attached already: interface {} exists in {} (DEL it first)",
                        r.ifname, a.netns
                    ),
                ));
            }
            // The container lost its interface, or this is another
            // namespace: rebuild from scratch, keeping the address.
            self.dp.del(&ep.host_ifname).await.map_err(dp_err)?;
            self.store
                .remove_at(&r.container_id, &r.ifname, stored.rev)
                .await
                .map_err(store_err)?;
        }
        self.add_fresh(&a).await
    }

    /// Gives the allocation back after a failed ADD.
    async fn rollback_release(&self, handle: &AttachmentRef) {
        if let Err(e) = self.ipam.release(handle).await {
            tracing::error!(%handle, error = %e, "rollback: release failed");
        }
    }

    /// Writes the record of a built endpoint and puts its addresses in its
    /// app's policy sets; on failure removes the veth, the record and (with
    /// `release`) the allocation.
    pub(crate) async fn commit_endpoint(
        &self,
        ep: &Endpoint,
        release: bool,
    ) -> Result<(), ApiError> {
        let r = &super::ref_of(ep);
        if let Err(e) = self.store.put(ep, None).await {
            let _ = self.dp.del(&ep.host_ifname).await;
            if release {
                self.rollback_release(r).await;
            }
            return Err(store_err(e));
        }
        // Fail closed: the container's addresses are dropped as
        // unprogrammed until they are in its app's sets; ADD answers only
        // after that, and fails (rolled back) when it cannot be done.
        if let Some(p) = &self.policy {
            let key = crate::store::endpoint_key(&ep.node, &ep.container_id, &ep.ifname);
            if let Err(e) = p.endpoint_up(&key, ep).await {
                let _ = self.store.remove(&r.container_id, &r.ifname).await;
                let _ = p.endpoint_down(&key).await;
                let _ = self.dp.del(&ep.host_ifname).await;
                if release {
                    self.rollback_release(r).await;
                }
                return Err(ApiError::new(
                    crate::api::ErrorKind::Internal,
                    format!("policy rules for {r}: {e}"),
                ));
            }
        }
        Ok(())
    }

    async fn add_fresh(self: &Arc<Self>, a: &AddArgs) -> Result<Endpoint, ApiError> {
        let r = &a.attachment;
        let t0 = Instant::now();
        let alloc = self
            .ipam
            .allocate(r, a.app.as_deref())
            .await
            .map_err(ipam_err)?;
        let t_alloc = t0.elapsed();
        let addrs = alloc.addrs;
        // A block claimed just now gets its blackhole before any address
        // in it is reachable; advertising follows on the nudge.
        if let Err(e) = self.blocks.ensure(&alloc.own_blocks).await {
            self.rollback_release(r).await;
            return Err(dp_err(e));
        }
        if alloc.borrowed {
            // Advertised as a /32 (/128) on the next pass: ask for it now.
            self.blocks.nudge();
        }
        let att = attachment(&r.container_id, &r.ifname, &a.netns, addrs.v4, addrs.v6);
        let t1 = Instant::now();
        let built = match self.dp.add(&att).await {
            Ok(b) => b,
            Err(e) => {
                self.rollback_release(r).await;
                return Err(dp_err(e));
            }
        };
        let ep = Endpoint {
            node: self.cfg.node.name.clone(),
            container_id: r.container_id.clone(),
            ifname: r.ifname.clone(),
            netns: a.netns.clone(),
            host_ifname: built.host_ifname,
            host_mac: built.host_mac,
            container_mac: built.container_mac,
            v4: addrs.v4,
            v6: addrs.v6,
            app: a.app.clone(),
            network: a.network.clone(),
            mtu: Some(built.mtu),
            dns: None,
        };
        let t_kernel = t1.elapsed();
        self.commit_endpoint(&ep, true).await?;
        tracing::info!(
            handle = %r, v4 = ?ep.v4, v6 = ?ep.v6, host_if = %ep.host_ifname, app = ?ep.app,
            ipam_ms = t_alloc.as_secs_f64() * 1e3, kernel_ms = t_kernel.as_secs_f64() * 1e3,
            "endpoint added"
        );
        Ok(ep)
    }
}
