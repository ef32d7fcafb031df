//! The kernel's own word that a link is deleted: RTM_DELLINK on the
//! RTNLGRP_LINK multicast group of flatnetd's namespace.
//!
//! Deleting a veth pair returns only after the kernel's teardown, which waits
//! for RCU callbacks (`rcu_barrier` in `netdev_run_todo`, ~20 ms here). The
//! kernel announces the deletion earlier, once the devices are unlisted (the
//! names are free) and their addresses, routes and neighbours are flushed:
//! from then on nothing of the link is visible or reachable, only its memory
//! is still to be freed. A DEL answers at that announcement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::AsyncSocket;
use tokio::sync::oneshot;

/// RTMGRP_LINK (linux/rtnetlink.h), the bind-time group mask of RTNLGRP_LINK.
const RTMGRP_LINK: u32 = 1;

/// Waiters for the deletion of links, by ifindex.
#[derive(Clone, Default)]
pub struct LinkGone {
    waiters: Arc<Mutex<HashMap<u32, Vec<oneshot::Sender<()>>>>>,
    /// False when the monitor socket could not be opened: callers then wait
    /// for their delete request itself.
    live: bool,
}

impl LinkGone {
    /// Opens the monitor socket in the current namespace and follows it.
    pub fn start() -> LinkGone {
        let (mut conn, handle, mut messages) = match rtnetlink::new_connection() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "link monitor unavailable: DEL waits for the kernel's teardown");
                return LinkGone::default();
            }
        };
        // Bound with the group mask (a membership added before the
        // connection binds its socket receives nothing).
        let addr = rtnetlink::sys::SocketAddr::new(0, RTMGRP_LINK);
        if let Err(e) = conn.socket_mut().socket_mut().bind(&addr) {
            tracing::warn!(error = %e, "link monitor unavailable: DEL waits for the kernel's teardown");
            return LinkGone::default();
        }
        tokio::spawn(conn);
        let gone = LinkGone {
            waiters: Arc::default(),
            live: true,
        };
        let w = gone.waiters.clone();
        tokio::spawn(async move {
            // The connection runs as long as a handle to it lives.
            let _handle = handle;
            while let Some((msg, _)) = messages.next().await {
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) = msg.payload
                    && let Ok(mut map) = w.lock()
                    && let Some(list) = map.remove(&l.header.index)
                {
                    for tx in list {
                        let _ = tx.send(());
                    }
                }
            }
            tracing::warn!("link monitor ended: DEL waits for the kernel's teardown");
        });
        gone
    }

    /// A receiver that fires when the kernel announces `index` deleted;
    /// `None` without a monitor. Register before sending the delete.
    pub fn watch(&self, index: u32) -> Option<oneshot::Receiver<()>> {
        if !self.live {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().ok()?.entry(index).or_default().push(tx);
        Some(rx)
    }

    /// Drops the waiters of `indexes` (their delete finished or failed).
    pub fn forget(&self, indexes: &[u32]) {
        if let Ok(mut map) = self.waiters.lock() {
            for i in indexes {
                map.remove(i);
            }
        }
    }
}
