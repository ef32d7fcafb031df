//! A speaker refuses an OPEN with an unsupported optional parameter (RFC
//! 4271 6.2): the scripted peer on loopback (no root needed) sends OPEN
//! with a type 1 (authentication) parameter and must get NOTIFICATION
//! OPEN Message Error / Unsupported Optional Parameter (2/4) back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use flatnet_bgp::session::PeerConfig;
use flatnet_bgp::speaker::{Speaker, SpeakerConfig};
use flatnet_bgp::wire::{Capability, DecodeContext, Family, Message, Open, OptionalParameter};
use flatnet_lab::scripted::ScriptedPeer;

const PEER_AS: u32 = 65020;

/// Accept, read the speaker's OPEN, answer with a bad OPEN, report the
/// first NOTIFICATION (code, subcode) or `None` if the connection closed.
fn scripted_peer(l: TcpListener, got: mpsc::Sender<Option<(u8, u8)>>) {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut s = ScriptedPeer::new(
        s,
        DecodeContext {
            four_octet_as: true,
            ..DecodeContext::default()
        },
    );
    assert!(matches!(s.read_msg().unwrap(), Message::Open(_)));
    let open = Open {
        params: vec![
            OptionalParameter::Capabilities(vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::FourOctetAs(PEER_AS),
            ]),
            OptionalParameter::Unknown {
                kind: 1,
                value: vec![0xab, 0xcd],
            },
        ],
        ..Open::new(PEER_AS, 9, Ipv4Addr::new(10, 0, 0, 5), Vec::new())
    };
    s.send(&Message::Open(open)).unwrap();
    let r = loop {
        match s.read_msg() {
            Ok(Message::Notification(n)) => break Some((n.code, n.subcode)),
            Ok(_) => {}
            Err(_) => break None,
        }
    };
    got.send(r).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_optional_parameter_is_refused_with_2_4() {
    let me = Ipv4Addr::new(127, 0, 0, 1);
    let peer_ip = Ipv4Addr::new(127, 0, 0, 5);
    let l = TcpListener::bind((peer_ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let peer = std::thread::spawn(move || scripted_peer(l, tx));

    let mut p = PeerConfig::new(IpAddr::V4(peer_ip), PEER_AS);
    p.port = port;
    p.hold_time = 9;
    p.connect.local_address = Some(IpAddr::V4(me));
    p.families = vec![Family::IPV4_UNICAST];
    let speaker = Speaker::start(SpeakerConfig {
        asn: 65000,
        router_id: me,
        listen: vec![SocketAddr::new(IpAddr::V4(me), 0)],
        peers: vec![p],
        policies: HashMap::new(),
        originate: Vec::new(),
        restarting: false,
        max_paths: 8,
        multipath_relax: true,
    })
    .await
    .unwrap();

    let got = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the scripted peer reports");
    assert_eq!(
        got,
        Some((2, 4)),
        "OPEN Message Error / Unsupported Optional Parameter"
    );
    let _ = speaker.shutdown().await;
    peer.join().unwrap();
}
