//! The embedded BGP speaker: advertises exactly what this host owns (its
//! blocks as aggregates, borrowed addresses as /32 or /128, with the pool's
//! and the peer's communities) to the configured `[[bgp.peer]]`s, filters
//! what they send (never a route inside this host's own blocks, never one
//! longer than the configured maximum), and reports whether any session is
//! up, which STATUS uses for readiness. The learned routes go into the
//! kernel through [`crate::fib`].
//! Config reloads are applied to the peers by [`reload`]; the BGP queries of
//! the control API are answered here too.

pub mod reload;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flatnet_bgp::fsm::State;
use flatnet_bgp::policy::{Action, Disposition, Match, Policy, PrefixList, PrefixListEntry, Term};
use flatnet_bgp::session::{GracefulRestartConfig, PeerConfig};
use flatnet_bgp::speaker::{OriginAttrs, Speaker, SpeakerConfig};
use flatnet_bgp::wire::{Community, Ipv4Prefix, Ipv6Prefix, LargeCommunity, Prefix};

use crate::api::PeerState;
use crate::config::{Config, parse_community, parse_large_community};

/// Prefix of the per-peer export policies: exactly what this host
/// advertises, plus the peer's communities. RFC 8212 would otherwise send
/// nothing to eBGP peers, and a host must never become transit for routes
/// it learned from one ToR.
const EXPORT: &str = "flatnet-export";
/// Import: everything but this host's own address space and over-long
/// prefixes (hijack protection).
const IMPORT: &str = "flatnet-import";

/// Default RFC 4724 §4.1 selection deferral limit.
const DEFAULT_SELECTION_DEFERRAL: Duration = Duration::from_secs(120);
/// Default restart time announced.
const DEFAULT_RESTART_TIME: u16 = 120;
/// Default helper stale time.
const DEFAULT_STALE_TIME: Duration = Duration::from_secs(360);

/// One peer's export additions.
#[derive(Clone, Default)]
struct PeerExport {
    communities: Vec<Community>,
    large: Vec<LargeCommunity>,
}

/// What was last handed to the speaker.
#[derive(Default)]
struct Originated {
    prefixes: BTreeMap<Prefix, OriginAttrs>,
    /// Inputs of the import policy last set.
    import: Option<(BTreeSet<Prefix>, BTreeSet<Prefix>)>,
}

/// The running speaker plus the last peer states seen.
pub struct BgpRouting {
    speaker: Speaker,
    /// The `[[bgp.peer]]`s running now (what a reload diffs against).
    configured: tokio::sync::Mutex<Vec<crate::config::BgpPeer>>,
    peers: Mutex<Vec<PeerState>>,
    originated: tokio::sync::Mutex<Originated>,
    /// Each peer's export additions (communities); a reload adds and removes
    /// entries, and every peer's export policy follows the originated set.
    exports: Mutex<BTreeMap<IpAddr, PeerExport>>,
    max_v4: u8,
    max_v6: u8,
    /// Whether the speaker started as the restarting side.
    restarting: bool,
}

fn export_name(peer: IpAddr) -> String {
    format!("{EXPORT}-{peer}")
}

/// The import policy: reject this host's own prefixes (the blocks and
/// everything inside them, but the `lent` host routes: other hosts'
/// addresses borrowed from our blocks) and anything longer than the maximum.
fn import_policy(
    own: &BTreeSet<Prefix>,
    lent: &BTreeSet<Prefix>,
    max_v4: u8,
    max_v6: u8,
) -> Policy {
    let mut terms = Vec::new();
    let lent: Vec<PrefixListEntry> = lent
        .iter()
        .filter_map(|p| PrefixListEntry::new(*p, None, None).ok())
        .collect();
    if !lent.is_empty() {
        terms.push(Term {
            name: "lent-addresses".into(),
            matches: vec![Match::Prefix(PrefixList { entries: lent })],
            actions: Vec::new(),
            disposition: Disposition::Accept,
        });
    }
    let mut entries: Vec<PrefixListEntry> = own
        .iter()
        .filter_map(|p| {
            let max = if matches!(p, Prefix::V4(_)) { 32 } else { 128 };
            PrefixListEntry::new(*p, None, Some(max)).ok()
        })
        .collect();
    if max_v4 < 32 {
        entries.extend(
            PrefixListEntry::new(
                Prefix::V4(Ipv4Prefix::default()),
                Some(max_v4 + 1),
                Some(32),
            )
            .ok(),
        );
    }
    if max_v6 < 128 {
        entries.extend(
            PrefixListEntry::new(
                Prefix::V6(Ipv6Prefix::default()),
                Some(max_v6 + 1),
                Some(128),
            )
            .ok(),
        );
    }
    if !entries.is_empty() {
        terms.push(Term {
            name: "own-space-or-too-long".into(),
            matches: vec![Match::Prefix(PrefixList { entries })],
            actions: Vec::new(),
            disposition: Disposition::Reject,
        });
    }
    Policy {
        name: IMPORT.into(),
        terms,
        default: Disposition::Accept,
    }
}

fn policy(name: &str, terms: Vec<Term>) -> Policy {
    Policy {
        name: name.into(),
        terms,
        default: Disposition::Reject,
    }
}

#[cfg(test)]
fn export_policy(blocks: &BTreeSet<Prefix>) -> Policy {
    export_policy_for(EXPORT, blocks, &PeerExport::default())
}

/// Exactly `blocks`, with the peer's communities added.
fn export_policy_for(name: &str, blocks: &BTreeSet<Prefix>, add: &PeerExport) -> Policy {
    let entries: Vec<PrefixListEntry> = blocks
        .iter()
        .filter_map(|p| PrefixListEntry::new(*p, None, None).ok())
        .collect();
    if entries.is_empty() {
        return policy(name, Vec::new());
    }
    let mut actions = Vec::new();
    if !add.communities.is_empty() {
        actions.push(Action::AddCommunities(add.communities.clone()));
    }
    if !add.large.is_empty() {
        actions.push(Action::AddLargeCommunities(add.large.clone()));
    }
    policy(
        name,
        vec![Term {
            name: "own-blocks".into(),
            matches: vec![Match::Prefix(PrefixList { entries })],
            actions,
            disposition: Disposition::Accept,
        }],
    )
}

/// What flatnetd adds to everything it advertises to `p`.
fn peer_export(p: &crate::config::BgpPeer) -> anyhow::Result<PeerExport> {
    Ok(PeerExport {
        communities: p
            .communities
            .iter()
            .map(|c| parse_community(c))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        large: p
            .large_communities
            .iter()
            .map(|c| parse_large_community(c))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
    })
}

/// The speaker's view of one `[[bgp.peer]]`, with flatnetd's policies.
/// The speaker's view of one `[[bgp.peer]]`: the options of
/// [`crate::config::BgpPeer::peer_config`] plus flatnetd's policies, soft
/// reconfiguration and graceful restart. Start and reload both use it, so a
/// reload sees a peer as changed only when its config changed.
pub(crate) fn peer_config(p: &crate::config::BgpPeer) -> PeerConfig {
    let mut c = p.peer_config();
    c.import_policy = Some(IMPORT.into());
    c.export_policy = Some(export_name(p.address));
    // Import policy changes with every claimed block: re-applied from the
    // kept Adj-RIB-In instead of a ROUTE-REFRESH each time.
    c.soft_reconfiguration_inbound = true;
    // A hijack attempt is logged once, with peer and prefix.
    c.log_import_rejects = true;
    if p.graceful_restart {
        c.graceful_restart = Some(GracefulRestartConfig {
            restart_time: p.restart_time.unwrap_or(DEFAULT_RESTART_TIME),
            stale_time: p.stale_time.map_or(DEFAULT_STALE_TIME, Duration::from_secs),
        });
    }
    c
}

impl BgpRouting {
    /// Starts the speaker when peers are configured (`None` otherwise).
    /// `restarting`: learned routes of a previous run are in the kernel;
    /// with graceful restart on any peer, the speaker starts as the
    /// restarting side (R and F bits, selection deferral).
    pub async fn start(cfg: &Config, restarting: bool) -> anyhow::Result<Option<Arc<BgpRouting>>> {
        if cfg.bgp.peers.is_empty() {
            return Ok(None);
        }
        let (Some(asn), Some(router_id)) = (cfg.node.asn, cfg.node.router_id) else {
            anyhow::bail!("bgp.peer needs node.asn and node.router_id");
        };
        let max_v4 = cfg.bgp.import_max_length_v4.unwrap_or(32);
        let max_v6 = cfg.bgp.import_max_length_v6.unwrap_or(128);
        let mut exports = BTreeMap::new();
        let mut policies = std::collections::HashMap::new();
        let mut peers = Vec::new();
        for p in &cfg.bgp.peers {
            let c = peer_config(p);
            let add = peer_export(p)?;
            policies.insert(
                export_name(p.address),
                export_policy_for(&export_name(p.address), &BTreeSet::new(), &add),
            );
            exports.insert(p.address, add);
            peers.push(c);
        }
        policies.insert(
            IMPORT.to_string(),
            import_policy(&BTreeSet::new(), &BTreeSet::new(), max_v4, max_v6),
        );
        let gr = cfg.bgp.peers.iter().any(|p| p.graceful_restart);
        let restarting = restarting && gr;
        let scfg = SpeakerConfig {
            asn,
            router_id,
            // Outbound only unless bgp.listen: port 179 on the host may
            // belong to another daemon.
            listen: cfg.bgp.listen.clone(),
            peers,
            policies,
            originate: Vec::new(),
            restarting: false,
            max_paths: 8,
            multipath_relax: true,
        };
        let speaker = if restarting {
            let limit = cfg
                .bgp
                .selection_deferral
                .map_or(DEFAULT_SELECTION_DEFERRAL, Duration::from_secs);
            tracing::info!(
                ?limit,
                "restarting with learned routes kept: route selection deferred until every End-of-RIB"
            );
            Speaker::start_restarting(scfg, limit).await?
        } else {
            Speaker::start(scfg).await?
        };
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
            configured: tokio::sync::Mutex::new(cfg.bgp.peers.clone()),
            peers: Mutex::new(initial),
            originated: tokio::sync::Mutex::new(Originated::default()),
            exports: Mutex::new(exports),
            max_v4,
            max_v6,
            restarting,
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

    /// The speaker (the FIB's subscription, the control API's queries).
    pub fn speaker(&self) -> &Speaker {
        &self.speaker
    }

    /// Whether the speaker started as the restarting side (selection deferred).
    pub fn restarting(&self) -> bool {
        self.restarting
    }

    fn set_exports(&self, set: &BTreeSet<Prefix>) -> anyhow::Result<()> {
        let exports = self.exports.lock().unwrap_or_else(|p| p.into_inner());
        for (peer, add) in exports.iter() {
            let name = export_name(*peer);
            self.speaker
                .set_policy(&name, export_policy_for(&name, set, add))?;
        }
        Ok(())
    }

    /// Makes the originated set equal to `want` (what this host advertises,
    /// with its attributes); `own` is this host's address space (every
    /// owned block, exported or not), which the import filter rejects but
    /// for the `lent` host routes. Policies change only when their inputs do
    /// (a changed import policy is re-applied to every peer).
    pub async fn advertise(
        &self,
        want: BTreeMap<Prefix, OriginAttrs>,
        own: &BTreeSet<Prefix>,
        lent: &BTreeSet<Prefix>,
    ) -> anyhow::Result<()> {
        let mut o = self.originated.lock().await;
        let import_in = (own.clone(), lent.clone());
        if o.import.as_ref() != Some(&import_in) {
            // Before any origination: a route inside a newly claimed block
            // is rejected by the time the block is advertised.
            self.speaker
                .set_policy(IMPORT, import_policy(own, lent, self.max_v4, self.max_v6))?;
            o.import = Some(import_in);
        }
        let have = &mut o.prefixes;
        if *have == want {
            return Ok(());
        }
        // Policy first so a new prefix is exportable when it is originated;
        // withdrawals go out before the policy narrows.
        let union: BTreeSet<Prefix> = want.keys().chain(have.keys()).copied().collect();
        self.set_exports(&union)?;
        for (p, a) in &want {
            if have.get(p) != Some(a) {
                tracing::info!(prefix = %p, "originating");
                self.speaker.originate(*p, a.clone())?;
            }
        }
        for p in have.keys().filter(|p| !want.contains_key(p)) {
            tracing::info!(prefix = %p, "withdrawing");
            self.speaker.withdraw(*p)?;
        }
        self.set_exports(&want.keys().copied().collect())?;
        *have = want;
        Ok(())
    }

    /// Registers `p`'s export policy over what is advertised now.
    async fn install_export(&self, p: &crate::config::BgpPeer) -> anyhow::Result<()> {
        let add = peer_export(p)?;
        let set: BTreeSet<Prefix> = self
            .originated
            .lock()
            .await
            .prefixes
            .keys()
            .copied()
            .collect();
        let name = export_name(p.address);
        self.speaker
            .set_policy(&name, export_policy_for(&name, &set, &add))?;
        self.exports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(p.address, add);
        Ok(())
    }

    /// Makes the running peers those of `new`, touching only the peers
    /// that were added, removed or changed.
    pub async fn reload(
        &self,
        new: &[crate::config::BgpPeer],
    ) -> anyhow::Result<reload::ReloadReport> {
        let mut cur = self.configured.lock().await;
        let d = reload::diff(&cur, new);
        let mut report = reload::ReloadReport {
            unchanged: d.unchanged,
            ..Default::default()
        };
        for ip in d.remove {
            tracing::info!(peer = %ip, "reload: removing peer (Cease)");
            self.speaker.remove_peer(ip).await?;
            self.exports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&ip);
            report.removed.push(ip);
        }
        for p in d.change {
            tracing::info!(peer = %p.address, "reload: peer changed, resetting it");
            self.install_export(&p).await?;
            self.speaker.change_peer(peer_config(&p)).await?;
            report.changed.push(p.address);
        }
        for p in d.add {
            tracing::info!(peer = %p.address, "reload: adding peer");
            // Its export policy exists before its session does.
            self.install_export(&p).await?;
            self.speaker.add_peer(peer_config(&p)).await?;
            report.added.push(p.address);
        }
        *cur = new.to_vec();
        drop(cur);
        self.refresh_peers().await;
        Ok(report)
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

    fn imports(p: &Policy, prefix: &str) -> bool {
        p.evaluate(&px(prefix), &flatnet_bgp::rib::Attrs::default())
            .disposition
            == Disposition::Accept
    }

    #[test]
    fn import_rejects_own_space_and_long_prefixes_but_lent_addresses() {
        let own: BTreeSet<Prefix> = [px("10.244.0.0/26"), px("fd00:244::/122")].into();
        let lent: BTreeSet<Prefix> = [px("10.244.0.9/32")].into();
        let p = import_policy(&own, &lent, 28, 128);
        assert!(!imports(&p, "10.244.0.0/26"), "our block itself");
        assert!(!imports(&p, "10.244.0.5/32"), "hijack inside our block");
        assert!(!imports(&p, "fd00:244::5/128"), "IPv6 hijack");
        assert!(imports(&p, "10.244.0.9/32"), "lent to another host");
        assert!(imports(&p, "10.244.0.64/26"), "another host's block");
        assert!(imports(&p, "10.244.0.0/16"), "covering route");
        assert!(!imports(&p, "10.1.2.0/29"), "longer than 28");
        assert!(imports(&p, "10.1.2.0/28"));
        assert!(imports(&p, "fd00:1::/64"));
        // Defaults accept every length.
        let p = import_policy(&BTreeSet::new(), &BTreeSet::new(), 32, 128);
        assert!(p.terms.is_empty());
        assert!(imports(&p, "10.1.2.3/32"));
    }

    #[test]
    fn per_peer_export_adds_the_peer_communities() {
        let add = PeerExport {
            communities: vec![Community(1)],
            large: vec![],
        };
        let p = export_policy_for("x", &[px("10.244.0.0/26")].into(), &add);
        assert_eq!(
            p.terms[0].actions,
            vec![Action::AddCommunities(vec![Community(1)])]
        );
        assert!(exports(&p, "10.244.0.0/26"));
        assert!(!exports(&p, "10.244.0.0/27"));
    }
}
