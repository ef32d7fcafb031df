//! The routing queries and the reload: `bgp neighbors`, `bgp routes`, `fib`
//! (read-only views of the speaker and the kernel) and `reload` (SIGHUP and
//! `flatnet reload`), which re-reads the config file and applies its
//! `[[bgp.peer]]`s through [`crate::routing::BgpRouting::reload`].

use std::path::PathBuf;

use flatnet_bgp::speaker::control::{self, Neighbor, Route, RoutesArgs};

use super::{Agent, dp_err};
use crate::api::{ApiError, ErrorKind, FibRoute};
use crate::config::Config;
use crate::routing::BgpRouting;
use crate::routing::reload::ReloadReport;

fn speaker_err(e: flatnet_bgp::speaker::SpeakerError) -> ApiError {
    let kind = match e {
        flatnet_bgp::speaker::SpeakerError::NoPeer(_) => ErrorKind::NotFound,
        _ => ErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

impl Agent {
    /// Tells flatnetd which file to re-read on reload.
    pub fn set_config_path(&self, path: PathBuf) {
        let _ = self.config_path.set(path);
    }

    fn routing(&self) -> Result<&BgpRouting, ApiError> {
        self.bgp.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                "BGP is not running: no [[bgp.peer]] in the config flatnetd started with",
            )
        })
    }

    pub(super) async fn bgp_neighbors(&self) -> Result<Vec<Neighbor>, ApiError> {
        control::neighbors(self.routing()?.speaker())
            .await
            .map_err(speaker_err)
    }

    pub(super) async fn bgp_routes(&self, args: &RoutesArgs) -> Result<Vec<Route>, ApiError> {
        control::routes(self.routing()?.speaker(), args)
            .await
            .map_err(speaker_err)
    }

    pub(super) async fn fib(&self) -> Result<Vec<FibRoute>, ApiError> {
        self.dp.flatnet_routes().await.map_err(dp_err)
    }

    /// Re-reads the config file; applies the BGP peers; lists the sections
    /// that changed but are only read at start. A bad file changes nothing.
    pub async fn reload(&self) -> Result<ReloadReport, ApiError> {
        let path = self.config_path.get().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                "flatnetd does not know its config file",
            )
        })?;
        let new = Config::load(path)
            .map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e.to_string()))?;
        let mut restart_needed = Vec::new();
        let old = &self.cfg;
        let sections = [
            ("node", old.node != new.node),
            ("api", old.api != new.api),
            ("metrics", old.metrics != new.metrics),
            ("log", old.log != new.log),
            ("dataplane", old.dataplane != new.dataplane),
            ("datastore", old.datastore != new.datastore),
            ("pool", old.pools != new.pools),
            ("dns", old.dns != new.dns),
        ];
        for (name, differs) in sections {
            if differs {
                restart_needed.push(name.to_string());
            }
        }
        if old.bgp.listen != new.bgp.listen {
            restart_needed.push("bgp.listen".into());
        }
        if let Some(f) = &self.fib {
            // Before the sessions change: their new routes use the new interfaces.
            f.set_links(crate::fib::links_of(&new.bgp.peers));
        }
        let mut report = match &self.bgp {
            Some(b) => b
                .reload(&new.bgp.peers)
                .await
                .map_err(|e| ApiError::new(ErrorKind::Internal, format!("{e:#}")))?,
            None if new.bgp.peers.is_empty() => ReloadReport::default(),
            None => {
                restart_needed.push("bgp".into());
                ReloadReport::default()
            }
        };
        report.restart_needed = restart_needed;
        tracing::info!(?report, "config reloaded");
        Ok(report)
    }
}
