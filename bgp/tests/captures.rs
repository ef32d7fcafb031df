//! Real messages captured from FRR, BIRD 2 and GoBGP (see
//! `tests/data/captures/README.md`, written by the lab helper): every one
//! decodes with the session context in its manifest and re-encodes
//! byte-exact.
//!
//! Layout: `tests/data/captures/<peer>/manifest.json` plus one raw message
//! (19-octet header included) per file, e.g.
//! `{"peer":"frr","version":"8.4.4","four_octet_as":true,"add_path_ipv4":false,
//!   "add_path_ipv6":false,"extended_message":false,
//!   "messages":[{"file":"001-open.bin","type":"OPEN"}]}`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flatnet_bgp::wire::{DecodeContext, Message, MessageType, decode};
use serde_json::Value;

const REQUIRED_PEERS: [&str; 3] = ["frr", "bird", "gobgp"];

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/captures")
}

struct Peer {
    name: String,
    ctx: DecodeContext,
    /// (file, declared type, bytes)
    messages: Vec<(String, String, Vec<u8>)>,
}

fn flag(m: &Value, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn load(dir: &Path) -> Peer {
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .unwrap_or_else(|e| panic!("{}: manifest.json: {e}", dir.display()));
    let m: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: bad manifest: {e}", dir.display()));
    let ctx = DecodeContext {
        four_octet_as: flag(&m, "four_octet_as"),
        add_path_ipv4: flag(&m, "add_path_ipv4"),
        add_path_ipv6: flag(&m, "add_path_ipv6"),
        extended_message: flag(&m, "extended_message"),
        extended_next_hop_ipv4: flag(&m, "extended_next_hop_ipv4"),
    };
    let list = m
        .get("messages")
        .and_then(Value::as_array)
        .expect("manifest: messages[]");
    let messages = list
        .iter()
        .map(|e| {
            let file = e
                .get("file")
                .and_then(Value::as_str)
                .expect("messages[].file")
                .to_string();
            let kind = e
                .get("type")
                .and_then(Value::as_str)
                .expect("messages[].type")
                .to_uppercase()
                .replace('_', "-");
            let bytes = std::fs::read(dir.join(&file))
                .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
            (file, kind, bytes)
        })
        .collect();
    let name = m
        .get("peer")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Peer {
        name,
        ctx,
        messages,
    }
}

fn peers() -> BTreeMap<String, Peer> {
    let Ok(rd) = std::fs::read_dir(captures_dir()) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for e in rd {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let dir_name = e.file_name().to_string_lossy().into_owned();
            out.insert(dir_name, load(&e.path()));
        }
    }
    out
}

fn type_name(m: &Message) -> &'static str {
    match m.kind() {
        MessageType::OPEN => "OPEN",
        MessageType::UPDATE => "UPDATE",
        MessageType::NOTIFICATION => "NOTIFICATION",
        MessageType::KEEPALIVE => "KEEPALIVE",
        _ => "ROUTE-REFRESH",
    }
}

#[test]
fn every_capture_decodes_and_reencodes_byte_exact() {
    let mut checked = 0;
    for (dir, peer) in peers() {
        assert_eq!(
            peer.name, dir,
            "manifest peer name must match its directory"
        );
        for (file, kind, bytes) in &peer.messages {
            let d =
                decode(bytes, &peer.ctx).unwrap_or_else(|e| panic!("{dir}/{file}: decode: {e}"));
            assert!(
                d.discarded.is_empty(),
                "{dir}/{file}: discarded {:?}",
                d.discarded
            );
            assert_eq!(type_name(&d.message), kind, "{dir}/{file}: type");
            let again = d.message.to_bytes(&peer.ctx).unwrap();
            assert_eq!(
                &again, bytes,
                "{dir}/{file}: re-encode differs; decoded {:?}",
                d.message
            );
            checked += 1;
        }
    }
    eprintln!("{checked} captured messages round-tripped");
}

#[test]
fn captures_exist_for_frr_bird_and_gobgp() {
    let peers = peers();
    for name in REQUIRED_PEERS {
        let peer = peers.get(name).unwrap_or_else(|| {
            panic!(
                "missing captures for {name} in {}",
                captures_dir().display()
            )
        });
        for kind in ["OPEN", "UPDATE", "KEEPALIVE"] {
            assert!(
                peer.messages.iter().any(|(_, k, _)| k == kind),
                "{name}: no {kind} captured"
            );
        }
        // NOTIFICATION / ROUTE-REFRESH only where the manifest lists one; those are checked above.
    }
}
