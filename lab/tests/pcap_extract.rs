//! The committed capture vectors match their pcaps: re-extracting each
//! `session.pcap` with `flatnet_lab::pcap` yields exactly the stored message
//! files, in order, and the manifest's context flags match the OPENs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::Path;

use flatnet_lab::pcap::{self, Negotiated, OpenCaps, bgp_messages};

#[test]
fn committed_vectors_match_their_pcaps() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bgp/tests/data/captures");
    let v4: Vec<IpAddr> = vec!["10.0.1.1".parse().unwrap(), "10.0.2.1".parse().unwrap()];
    let ll: Vec<IpAddr> = vec!["fe80::1".parse().unwrap(), "fe80::11".parse().unwrap()];
    for peer in ["frr", "bird", "gobgp", "frr-ll"] {
        let dut = if peer.ends_with("-ll") { &ll } else { &v4 };
        let dir = root.join(peer);
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let msgs = bgp_messages(&std::fs::read(dir.join("session.pcap")).unwrap()).unwrap();
        let mut keepalive_seen = Vec::new();
        let sent: Vec<&pcap::BgpMessage> = msgs
            .iter()
            .filter(|m| dut.contains(&m.src.ip()))
            .filter(|m| {
                m.kind() != pcap::KEEPALIVE || {
                    let k = (m.dst, m.connection);
                    let first = !keepalive_seen.contains(&k);
                    keepalive_seen.push(k);
                    first
                }
            })
            .collect();
        let files = manifest["messages"].as_array().unwrap();
        assert_eq!(files.len(), sent.len(), "{peer}: message count");
        for (entry, m) in files.iter().zip(&sent) {
            let f = entry["file"].as_str().unwrap();
            assert_eq!(std::fs::read(dir.join(f)).unwrap(), m.bytes, "{peer}/{f}");
            assert_eq!(entry["type"].as_str().unwrap(), pcap::type_name(m.kind()));
        }
        // Context flags from the first session's two OPENs.
        let mine = sent.iter().find(|m| m.kind() == pcap::OPEN).unwrap();
        let theirs = msgs
            .iter()
            .find(|m| {
                m.kind() == pcap::OPEN && m.src == mine.dst && m.connection == mine.connection
            })
            .unwrap();
        let n = Negotiated::from_opens(
            &OpenCaps::parse(&mine.bytes).unwrap(),
            &OpenCaps::parse(&theirs.bytes).unwrap(),
        );
        assert_eq!(manifest["four_octet_as"], n.four_octet_as, "{peer}");
        assert_eq!(manifest["add_path_ipv4"], n.add_path_ipv4, "{peer}");
        assert_eq!(manifest["add_path_ipv6"], n.add_path_ipv6, "{peer}");
        assert_eq!(manifest["extended_message"], n.extended_message, "{peer}");
        assert_eq!(
            manifest["extended_next_hop_ipv4"], n.extended_next_hop_ipv4,
            "{peer}"
        );
    }
}
