//! Policy resolution: a peer names its import/export policies; the names
//! resolve here (built-ins `accept` / `reject`, else the named policies),
//! and a changed policy is applied in place with a route refresh.

use std::net::IpAddr;

use crate::fsm::State;
use crate::policy::Policy;
use crate::rib::Changes;

use super::{Core, CoreError, merge};

impl Core {
    /// The policy a peer's `name` means. An undefined name rejects
    /// everything (and says so) rather than leaking routes.
    pub(super) fn resolve(&self, name: Option<&str>, peer: IpAddr, dir: &str) -> Option<Policy> {
        match name {
            None => None,
            Some("accept") | Some("accept-all") => Some(Policy::accept_all("accept")),
            Some("reject") | Some("reject-all") => Some(Policy::reject_all("reject")),
            Some(n) => Some(self.policies.get(n).cloned().unwrap_or_else(|| {
                tracing::error!(%peer, policy = n, "{dir} policy is not defined: rejecting everything");
                Policy::reject_all(n)
            })),
        }
    }

    pub(super) fn set_policy(&mut self, name: String, pol: Policy) {
        let users: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.cfg.import_policy.as_deref() == Some(&name)
                    || p.cfg.export_policy.as_deref() == Some(&name)
            })
            .map(|(ip, _)| *ip)
            .collect();
        self.policies.insert(name, pol);
        for ip in users {
            self.reapply_policies(ip);
        }
    }

    pub(super) fn set_peer_policy(
        &mut self,
        peer: IpAddr,
        import: Option<String>,
        export: Option<String>,
    ) -> Result<(), CoreError> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return Err(CoreError::NoPeer(peer));
        };
        p.cfg.import_policy = import;
        p.cfg.export_policy = export;
        self.reapply_policies(peer);
        Ok(())
    }

    fn reapply_policies(&mut self, ip: IpAddr) {
        let Some(p) = self.peers.get(&ip) else { return };
        let id = p.id;
        if p.state != State::Established {
            return; // applied at the next peer_up
        }
        let import = self.resolve(p.cfg.import_policy.as_deref(), ip, "import");
        let export = self.resolve(p.cfg.export_policy.as_deref(), ip, "export");
        let mut all = Changes::default();
        match self.rib.set_import_policy(id, import) {
            Ok(ch) => merge(&mut all, ch),
            Err(e) => tracing::error!(peer = %ip, "import policy: {e}"),
        }
        match self.rib.set_export_policy(id, export) {
            Ok(ch) => merge(&mut all, ch),
            Err(e) => tracing::error!(peer = %ip, "export policy: {e}"),
        }
        self.apply(all);
    }
}
