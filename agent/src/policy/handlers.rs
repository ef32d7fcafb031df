//! The control API's policy operations. Documents go straight to the
//! datastore (any host may store them; every host's engine follows);
//! trace and stats answer from this host's engine.

use std::sync::Arc;

use super::store::{self, PolicyStoreError};
use crate::api::{Answer, ApiError, ErrorKind, Op};
use crate::handlers::Agent;

fn store_err(e: PolicyStoreError) -> ApiError {
    let kind = match &e {
        PolicyStoreError::Unavailable(_) => ErrorKind::DatastoreUnavailable,
        PolicyStoreError::Conflict { .. } => ErrorKind::Conflict,
        PolicyStoreError::NotFound(_) => ErrorKind::NotFound,
        PolicyStoreError::Invalid(_) | PolicyStoreError::BadDefault { .. } => {
            ErrorKind::InvalidRequest
        }
        PolicyStoreError::Corrupt { .. } => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

fn engine_err(e: super::engine::EngineError) -> ApiError {
    let kind = match &e {
        super::engine::EngineError::Trace(_) => ErrorKind::InvalidRequest,
        super::engine::EngineError::Datastore(_) => ErrorKind::DatastoreUnavailable,
        _ => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

impl Agent {
    /// Serves the `policy_*` operations; `None` for any other.
    pub(crate) async fn handle_policy(
        self: &Arc<Self>,
        op: &Op,
    ) -> Option<Result<Answer, ApiError>> {
        let ds = &self.ds;
        let engine = || {
            self.policy.clone().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::PolicyDisabled,
                    "application policy is not enabled on this host ([policy] enabled = true)",
                )
            })
        };
        Some(match op {
            Op::PolicyApply(a) => store::apply(ds, &a.policy, a.expect_revision)
                .await
                .map(Answer::PolicyRevision)
                .map_err(store_err),
            Op::PolicyList => store::list(ds)
                .await
                .map(|(ok, _, _)| Answer::Policies(ok))
                .map_err(store_err),
            Op::PolicyShow(n) => store::get(ds, &n.name)
                .await
                .map(Answer::Policy)
                .map_err(store_err),
            Op::PolicyDelete(n) => store::delete(ds, &n.name, None)
                .await
                .map(|_| Answer::Done)
                .map_err(store_err),
            Op::PolicyDefaultsSet(c) => match super::defaults::set(ds, c).await {
                Ok((d, rev)) => Ok(Answer::PolicyDefaults(super::defaults::DefaultsView::new(
                    d,
                    rev,
                    &self.cfg.policy_cluster(),
                ))),
                Err(e) => Err(store_err(e)),
            },
            Op::PolicyDefaultsShow => match super::defaults::get(ds).await {
                Ok((d, rev)) => Ok(Answer::PolicyDefaults(super::defaults::DefaultsView::new(
                    d,
                    rev,
                    &self.cfg.policy_cluster(),
                ))),
                Err(e) => Err(store_err(e)),
            },
            Op::PolicyTrace(f) => match engine() {
                Ok(e) => e.trace(f).await.map(Answer::Trace).map_err(engine_err),
                Err(e) => Err(e),
            },
            Op::PolicyStats => match engine() {
                Ok(e) => e.stats().await.map(Answer::PolicyStats).map_err(engine_err),
                Err(e) => Err(e),
            },
            _ => return None,
        })
    }
}
