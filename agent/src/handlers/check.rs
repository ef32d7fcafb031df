//! CHECK: the record exists, matches the request, and the kernel agrees.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Agent, attachment_of, dp_err, store_err};
use crate::api::{ApiError, CheckArgs, ErrorKind};

impl Agent {
    pub(super) async fn check(self: &Arc<Self>, a: CheckArgs) -> Result<(), ApiError> {
        let r = &a.attachment;
        // Any recorded id may be checked; ADD is where names are limited.
        if r.container_id.is_empty() || !crate::kernel::valid_ifname(&r.ifname) {
            return Err(ApiError::new(
                ErrorKind::InvalidEnvironment,
                format!("invalid attachment {r}"),
            ));
        }
        let lock = self.lock_for(r);
        let _g = lock.lock().await;
        let ep = self
            .store
            .get(&r.container_id, &r.ifname)
            .await
            .map_err(store_err)?
            .map(|s| s.ep)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("no attachment {r} on this host"),
                )
            })?;
        if ep.netns != a.netns {
            return Err(ApiError::new(
                ErrorKind::CheckFailed,
                format!("attachment lives in {}, not {}", ep.netns, a.netns),
            ));
        }
        let mine: HashSet<std::net::IpAddr> = [ep.v4.map(Into::into), ep.v6.map(Into::into)]
            .into_iter()
            .flatten()
            .collect();
        let expected: HashSet<std::net::IpAddr> = a.expect_ips.iter().copied().collect();
        if !a.expect_ips.is_empty() && expected != mine {
            return Err(ApiError::new(
                ErrorKind::CheckFailed,
                format!("prevResult addresses {expected:?} differ from the attachment's {mine:?}"),
            ));
        }
        self.dp.check(&attachment_of(&ep)).await.map_err(dp_err)
    }
}
