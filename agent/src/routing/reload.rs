//! Config reload for the embedded speaker (SIGHUP, `flatnet reload`): a pure
//! diff of the old and new `[[bgp.peer]]` lists, keyed by peer address, then
//! applied peer by peer so that unchanged peers never notice: an added peer
//! starts, a removed one stops with Cease / Peer De-configured, a changed one
//! is reset alone.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::BgpPeer;

/// What a reload does to the peers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerDiff {
    pub add: Vec<BgpPeer>,
    pub remove: Vec<IpAddr>,
    pub change: Vec<BgpPeer>,
    pub unchanged: usize,
}

/// Old and new peers to the actions, in config order.
pub fn diff(old: &[BgpPeer], new: &[BgpPeer]) -> PeerDiff {
    let mut d = PeerDiff::default();
    for p in new {
        match old.iter().find(|o| o.key() == p.key()) {
            None => d.add.push(p.clone()),
            Some(o) if o != p => d.change.push(p.clone()),
            Some(_) => d.unchanged += 1,
        }
    }
    for o in old {
        if !new.iter().any(|p| p.key() == o.key()) {
            d.remove.push(o.address);
        }
    }
    d
}

/// The answer of a reload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
    pub changed: Vec<IpAddr>,
    pub unchanged: usize,
    /// Sections that differ from the running config but are only read at
    /// start: not applied, restart flatnetd for them.
    #[serde(default)]
    pub restart_needed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, asn: u32) -> BgpPeer {
        toml::from_str(&format!("address = \"{addr}\"\nasn = {asn}\n")).unwrap()
    }

    #[test]
    fn added_removed_changed_and_unchanged() {
        let a = peer("10.0.0.1", 65001);
        let b = peer("10.0.0.5", 65001);
        let c = peer("10.0.0.9", 65001);
        let mut b2 = b.clone();
        b2.hold_time = Some(9);
        let d = peer("10.0.0.13", 65001);
        let got = diff(&[a.clone(), b, c], &[d.clone(), a, b2.clone()]);
        assert_eq!(
            got,
            PeerDiff {
                add: vec![d],
                remove: vec!["10.0.0.9".parse().unwrap()],
                change: vec![b2],
                unchanged: 1,
            }
        );
    }

    #[test]
    fn same_peers_in_another_order_is_no_change() {
        let a = peer("10.0.0.1", 65001);
        let b = peer("fd00::1", 65001);
        let got = diff(&[a.clone(), b.clone()], &[b, a]);
        assert_eq!(got.unchanged, 2);
        assert!(got.add.is_empty() && got.remove.is_empty() && got.change.is_empty());
    }

    #[test]
    fn a_new_asn_is_a_change_of_that_peer_only() {
        let a = peer("10.0.0.1", 65001);
        let b = peer("10.0.0.5", 65001);
        let got = diff(&[a.clone(), b.clone()], &[a, peer("10.0.0.5", 65009)]);
        assert_eq!(got.change.len(), 1);
        assert_eq!(got.change[0].asn, 65009);
        assert_eq!(got.unchanged, 1);
    }
}
