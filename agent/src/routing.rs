//! The embedded BGP speaker: advertises the blocks this host owns to the
//! configured `[[bgp.peer]]`s and reports whether any session is up, which
//! STATUS uses for readiness. Learning fabric routes into the kernel is not
//! done here.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flatnet_bgp::fsm::State;
use flatnet_bgp::policy::{Disposition, Match, Policy, PrefixList, PrefixListEntry, Term};
use flatnet_bgp::session::PeerConfig;
use flatnet_bgp::speaker::{OriginAttrs, Speaker, SpeakerConfig};
use flatnet_bgp::wire::Prefix;

use crate::api::PeerState;
use crate::config::Config;

/// Name of the export policy: exactly the blocks this host owns. RFC 8212
/// would otherwise send nothing to eBGP peers, and a host must never become
/// transit for routes it learned from one ToR.
const EXPORT: &str = "flatnet-export";
/// Import: accept everything (kernel programming is the routing issue's).
const IMPORT: &str = "flatnet-import";

/// The running speaker plus the last peer states seen.
pub struct BgpRouting {
    speaker: Speaker,
    peers: Mutex<Vec<PeerState>>,
    originated: tokio::sync::Mutex<BTreeSet<Prefix>>,
}

fn policy(name: &str, terms: Vec<Term>) -> Policy {
    Policy {
        name: name.into(),
        terms,
        default: Disposition::Reject,
    }
}

fn export_policy(blocks: &BTreeSet<Prefix>) -> Policy {
    let entries: Vec<PrefixListEntry> = blocks
        .iter()
        .filter_map(|p| PrefixListEntry::new(*p, None, None).ok())
        .collect();
    if entries.is_empty() {
        return policy(EXPORT, Vec::new());
    }
    policy(
        EXPORT,
        vec![Term {
            name: "own-blocks".into(),
            matches: vec![Match::Prefix(PrefixList { entries })],
            actions: Vec::new(),
            disposition: Disposition::Accept,
        }],
    )
}

impl BgpRouting {
    /// Starts the speaker when peers are configured (`None` otherwise).
    pub async fn start(cfg: &Config) -> anyhow::Result<Option<Arc<BgpRouting>>> {
        if cfg.bgp.peers.is_empty() {
            return Ok(None);
        }
        let (Some(asn), Some(router_id)) = (cfg.node.asn, cfg.node.router_id) else {
            anyhow::bail!("bgp.peer needs node.asn and node.router_id");
        };
        let peers = cfg
            .bgp
            .peers
            .iter()
            .map(|p| {
                let mut c = PeerConfig::new(p.address, p.asn);
                c.port = p.port;
                c.next_hop_ipv6 = p.next_hop_ipv6;
                c.import_policy = Some(IMPORT.into());
                c.export_policy = Some(EXPORT.into());
                c
            })
            .collect();
        let mut policies = std::collections::HashMap::new();
        policies.insert(EXPORT.to_string(), export_policy(&BTreeSet::new()));
        policies.insert(
            IMPORT.to_string(),
            Policy {
                name: IMPORT.into(),
                terms: Vec::new(),
                default: Disposition::Accept,
            },
        );
        let speaker = Speaker::start(SpeakerConfig {
            asn,
            router_id,
            // Outbound only: port 179 on the host may belong to another daemon.
            listen: Vec::new(),
            peers,
            policies,
            originate: Vec::new(),
            restarting: false,
            max_paths: 8,
            multipath_relax: true,
        })
        .await?;
        let initial = cfg
            .bgp
            .peers
            .iter()
            .map(|p| PeerState {
                address: p.address,
                asn: p.asn,
                state: State::Idle,
            })
            .collect();
        Ok(Some(Arc::new(BgpRouting {
            speaker,
            peers: Mutex::new(initial),
            originated: tokio::sync::Mutex::new(BTreeSet::new()),
        })))
    }

    /// Keeps the peer states current, forever. The originated set is the
    /// owned-blocks reconciler's ([`crate::blocks`]), through [`Self::advertise`].
    pub async fn run(self: Arc<Self>) {
        let mut changes = self.speaker.changes();
        loop {
            self.refresh_peers().await;
            tokio::select! {
                r = changes.changed() => if r.is_err() { break },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn refresh_peers(&self) {
        if let Ok(ps) = self.speaker.peers().await {
            let states = ps
                .into_iter()
                .map(|p| PeerState {
                    address: p.address,
                    asn: p.remote_as,
                    state: p.state,
                })
                .collect();
            *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = states;
        }
    }

    /// Makes the originated set equal to `want` (the blocks this host owns).
    pub async fn advertise(&self, want: BTreeSet<Prefix>) -> anyhow::Result<()> {
        let mut have = self.originated.lock().await;
        if *have == want {
            return Ok(());
        }
        // Policy first so a new block is exportable when it is originated;
        // withdrawals go out before the policy narrows.
        let union: BTreeSet<Prefix> = want.union(&have).copied().collect();
        self.speaker.set_policy(EXPORT, export_policy(&union))?;
        for p in want.difference(&have) {
            tracing::info!(block = %p, "originating");
            self.speaker.originate(*p, OriginAttrs::default())?;
        }
        for p in have.difference(&want) {
            tracing::info!(block = %p, "withdrawing");
            self.speaker.withdraw(*p)?;
        }
        self.speaker.set_policy(EXPORT, export_policy(&want))?;
        *have = want;
        Ok(())
    }

    /// Last seen peer states.
    pub fn peers(&self) -> Vec<PeerState> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `None` when at least one peer is Established, else why not.
    pub fn not_ready(&self) -> Option<String> {
        let peers = self.peers();
        if peers.iter().any(|p| p.state == State::Established) {
            return None;
        }
        let list: Vec<String> = peers
            .iter()
            .map(|p| format!("{} {}", p.address, p.state))
            .collect();
        Some(format!(
            "no BGP peer established (peers: {})",
            list.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(s: &str) -> Prefix {
        s.parse::<Prefix>().unwrap()
    }

    fn exports(p: &Policy, prefix: &str) -> bool {
        p.terms.iter().any(|t| {
            t.disposition == Disposition::Accept
                && t.matches.iter().all(|m| match m {
                    Match::Prefix(l) => l.matches(&px(prefix)),
                    _ => false,
                })
        })
    }

    #[test]
    fn export_policy_is_exactly_the_owned_blocks() {
        let empty = export_policy(&BTreeSet::new());
        assert!(empty.terms.is_empty());
        assert_eq!(empty.default, Disposition::Reject);
        let p = export_policy(&[px("10.244.0.0/26"), px("fd00:244::/122")].into());
        assert_eq!(p.default, Disposition::Reject);
        assert!(exports(&p, "10.244.0.0/26"));
        assert!(exports(&p, "fd00:244::/122"));
        assert!(!exports(&p, "10.244.0.0/27"), "more specific");
        assert!(!exports(&p, "10.244.0.0/16"), "covering");
        assert!(!exports(&p, "10.244.0.64/26"), "another host's block");
        assert!(!exports(&p, "0.0.0.0/0"));
    }
}
