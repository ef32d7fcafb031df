//! The receivers under test (BIRD, GoBGP, FRR without FIB, flatnet's
//! speaker in its own process), each behind a probe the measurement polls,
//! and the `flatnet-receiver` mode that runs flatnet's speaker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flatnet_bgp::wire::Ipv4Prefix;

use super::measure::{FlatnetCmd, pid_in_ns};
use super::{FEEDER_ADDR, FEEDER_AS, FeedError, HOLD_TIME, RECEIVER_ADDR, RECEIVER_AS};
use crate::bird::Bird;
use crate::frr::Frr;
use crate::gobgp::Gobgp;
use crate::router::{NeighborConfig, RouterConfig, Timers, WorkDir};
use crate::{Daemon, Netns, wait_for};

/// What the benchmark asks a running receiver.
pub(super) trait Probe {
    /// Main daemon PID (the one whose RSS is reported).
    fn pid(&self) -> Result<u32, FeedError>;
    fn extra_pids(&self) -> Vec<(String, u32)> {
        Vec::new()
    }
    /// Prefixes from the feeder in the Loc-RIB (or accepted, where that is
    /// the same thing for a single peer).
    fn count(&self) -> Result<u64, FeedError>;
    /// Whether `p` has a best path in the Loc-RIB.
    fn has_best(&self, p: &Ipv4Prefix) -> Result<bool, FeedError>;
    fn logs(&self) -> String {
        String::new()
    }
}

fn neighbor() -> NeighborConfig {
    let mut n = NeighborConfig::new(FEEDER_ADDR.into(), FEEDER_AS);
    n.ipv6_unicast = false;
    n.passive = true;
    n
}

pub(super) fn router_config() -> RouterConfig {
    let mut c = RouterConfig::new(RECEIVER_ADDR, RECEIVER_AS).neighbor(neighbor());
    c.timers = Timers {
        keepalive: HOLD_TIME / 3,
        hold: HOLD_TIME,
        connect_retry: 1,
    };
    c
}

pub(super) struct BirdProbe<'a>(pub(super) Bird<'a>, pub(super) &'a Netns);

impl Probe for BirdProbe<'_> {
    fn pid(&self) -> Result<u32, FeedError> {
        pid_in_ns(self.1, "bird").ok_or_else(|| FeedError::Receiver("bird not running".into()))
    }
    fn count(&self) -> Result<u64, FeedError> {
        let name = self
            .0
            .protocol_name(&FEEDER_ADDR.to_string())
            .unwrap_or_default();
        let s = self.0.birdc(&["show", "protocols", "all", &name])?;
        // "    Routes:         1000000 imported, 0 exported, 1000000 preferred"
        Ok(s.lines()
            .find_map(|l| l.trim().strip_prefix("Routes:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0))
    }
    fn has_best(&self, p: &Ipv4Prefix) -> Result<bool, FeedError> {
        let s = self.0.birdc(&[
            "show",
            "route",
            &format!("{}/{}", p.addr(), p.len()),
            "table",
            "master4",
        ])?;
        Ok(s.contains(&format!("{}/{}", p.addr(), p.len())))
    }
    fn logs(&self) -> String {
        std::fs::read_to_string(self.0.dir().join("bird.out")).unwrap_or_default()
    }
}

pub(super) struct GobgpProbe<'a>(pub(super) Gobgp<'a>, pub(super) &'a Netns);

impl Probe for GobgpProbe<'_> {
    fn pid(&self) -> Result<u32, FeedError> {
        pid_in_ns(self.1, "gobgpd").ok_or_else(|| FeedError::Receiver("gobgpd not running".into()))
    }
    fn count(&self) -> Result<u64, FeedError> {
        // "Table ipv4-unicast\nDestination: 1000000, Path: 1000000"
        let s = self.0.cli(&["global", "rib", "summary", "-a", "ipv4"])?;
        Ok(s.split("Destination:")
            .nth(1)
            .and_then(|v| v.split(',').next()?.trim().parse().ok())
            .unwrap_or(0))
    }
    fn has_best(&self, p: &Ipv4Prefix) -> Result<bool, FeedError> {
        let s = self.0.cli(&[
            "-j",
            "global",
            "rib",
            "-a",
            "ipv4",
            &format!("{}/{}", p.addr(), p.len()),
        ])?;
        Ok(s.contains("\"best\":true"))
    }
    fn logs(&self) -> String {
        std::fs::read_to_string(self.0.dir().join("gobgpd.log")).unwrap_or_default()
    }
}

/// FRR for the benchmark: zebra (next-hop tracking, connected routes) plus
/// bgpd with `-n` (no FIB install), so FRR, like BIRD (no kernel protocol)
/// and GoBGP and flatnet, keeps the table in the control plane only.
pub(super) struct FrrNoFib<'a>(pub(super) Frr<'a>, pub(super) &'a Netns);

impl Probe for FrrNoFib<'_> {
    fn pid(&self) -> Result<u32, FeedError> {
        pid_in_ns(self.1, "bgpd").ok_or_else(|| FeedError::Receiver("bgpd not running".into()))
    }
    fn extra_pids(&self) -> Vec<(String, u32)> {
        pid_in_ns(self.1, "zebra")
            .map(|p| vec![("zebra".to_string(), p)])
            .unwrap_or_default()
    }
    fn count(&self) -> Result<u64, FeedError> {
        let v = self.0.vtysh_json("show bgp ipv4 unicast summary json")?;
        Ok(v["peers"][FEEDER_ADDR.to_string()]["pfxRcd"]
            .as_u64()
            .unwrap_or(0))
    }
    fn has_best(&self, p: &Ipv4Prefix) -> Result<bool, FeedError> {
        let s = self.0.vtysh(&[&format!(
            "show bgp ipv4 unicast {}/{} json",
            p.addr(),
            p.len()
        )])?;
        Ok(s.replace(char::is_whitespace, "")
            .contains("\"overall\":true"))
    }
    fn logs(&self) -> String {
        std::fs::read_to_string(self.0.dir().join("bgpd.out")).unwrap_or_default()
    }
}

/// flatnet's speaker in its own process, polled through its small stats file.
pub(super) struct FlatnetProbe {
    daemon: Daemon,
    stats: PathBuf,
    dir: WorkDir,
}

/// The stats file a flatnet receiver writes.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ReceiverStats {
    pub state: String,
    pub received: u64,
    pub accepted: u64,
}

/// Configuration of flatnet's speaker as a receiver: passive eBGP peer with
/// an accept-all import policy (RFC 8212 would reject everything otherwise).
pub fn flatnet_config() -> String {
    format!(
        "router_id = \"{RECEIVER_ADDR}\"\nasn = {RECEIVER_AS}\nlisten = [\"{RECEIVER_ADDR}:179\"]\n\n\
         [[peer]]\naddress = \"{FEEDER_ADDR}\"\nremote_as = {FEEDER_AS}\npassive = true\n\
         hold_time = {HOLD_TIME}\nfamilies = [\"ipv4-unicast\"]\nimport_policy = \"all\"\n\n\
         [[policy]]\nname = \"all\"\ndefault = \"accept\"\n"
    )
}

impl FlatnetProbe {
    pub(super) fn start(ns: &Netns, cmd: &FlatnetCmd) -> Result<Self, FeedError> {
        let dir = WorkDir::new("flatnet-feed")?;
        let cfg = dir.join("receiver.toml");
        std::fs::write(&cfg, flatnet_config())?;
        let stats = dir.join("stats.json");
        let FlatnetCmd::Program { program, args } = cmd;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("receiver.out"))?;
        let err = out.try_clone()?;
        let daemon = ns.spawn(
            ns.command(program)
                .args(args)
                .arg("--config")
                .arg(&cfg)
                .arg("--stats-file")
                .arg(&stats)
                .stdout(out)
                .stderr(err),
        )?;
        let p = FlatnetProbe { daemon, stats, dir };
        wait_for(
            "flatnet receiver stats file",
            Duration::from_secs(10),
            || Ok(p.stats.exists().then_some(())),
        )
        .map_err(|e| FeedError::Receiver(format!("{e}: {}", p.logs())))?;
        Ok(p)
    }

    /// Loc-RIB size from the stats file: flatnet-bgpd's `--stats-file`
    /// (`loc_rib_len`) or the embedded receiver's (`accepted`).
    fn read(&self) -> Result<u64, FeedError> {
        let s = std::fs::read_to_string(&self.stats)?;
        let v: serde_json::Value = serde_json::from_str(&s)
            .map_err(|e| FeedError::Receiver(format!("stats file: {e}")))?;
        v.get("loc_rib_len")
            .or_else(|| v.get("accepted"))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| FeedError::Receiver(format!("stats file without a count: {s}")))
    }
}

impl Probe for FlatnetProbe {
    fn pid(&self) -> Result<u32, FeedError> {
        self.daemon
            .pid()
            .ok_or_else(|| FeedError::Receiver("flatnet receiver not running".into()))
    }
    fn count(&self) -> Result<u64, FeedError> {
        self.read()
    }
    /// flatnet's RIB applies each UPDATE synchronously (Adj-RIB-In, import
    /// policy and best path in one call), so with one peer the accepted
    /// count is the Loc-RIB size; no per-prefix query needed.
    fn has_best(&self, _p: &Ipv4Prefix) -> Result<bool, FeedError> {
        Ok(true)
    }
    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("receiver.out")).unwrap_or_default()
    }
}

/// The `flatnet-receiver` mode: flatnet's [`flatnet_bgp::speaker::Speaker`]
/// from a TOML file (same loader and runtime shape as flatnet-bgpd), writing
/// only the peer counters to `stats` (atomically, every 10 ms when changed)
/// instead of a full Loc-RIB dump.
pub fn run_flatnet_receiver(config: &Path, stats: &Path) -> Result<(), FeedError> {
    let cfg = flatnet_bgpd::config::load(config).map_err(|e| FeedError::Receiver(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let speaker = flatnet_bgp::speaker::Speaker::start(cfg)
            .await
            .map_err(|e| FeedError::Receiver(e.to_string()))?;
        let mut last = None;
        let tmp = stats.with_extension("tmp");
        loop {
            let peers = speaker
                .peers()
                .await
                .map_err(|e| FeedError::Receiver(e.to_string()))?;
            let st = ReceiverStats {
                state: peers
                    .first()
                    .map(|p| p.state.to_string())
                    .unwrap_or_default(),
                received: peers.iter().map(|p| p.prefixes_received as u64).sum(),
                accepted: peers.iter().map(|p| p.prefixes_accepted as u64).sum(),
            };
            let key = (st.state.clone(), st.received, st.accepted);
            if last.as_ref() != Some(&key) {
                let b = serde_json::to_vec(&st)
                    .map_err(|e| FeedError::Receiver(format!("stats: {e}")))?;
                std::fs::write(&tmp, b)?;
                std::fs::rename(&tmp, stats)?;
                last = Some(key);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatnet_receiver_config_parses() {
        let c = flatnet_bgpd::config::parse(&flatnet_config(), "r.toml").unwrap();
        assert_eq!(c.asn, RECEIVER_AS);
        assert_eq!(c.peers.len(), 1);
        assert!(c.peers[0].passive);
    }
}
