//! Protocol checks end to end: a `Speaker` against scripted peers on
//! loopback (no root needed). An OPEN with an unsupported optional
//! parameter is refused with NOTIFICATION 2/4 (RFC 4271 6.2); LOCAL_PREF,
//! ORIGINATOR_ID and CLUSTER_LIST from an eBGP peer are not passed on to an
//! iBGP peer (RFC 4271 5.1.5, RFC 7606 7.5/7.9/7.10).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use flatnet_bgp::session::PeerConfig;
use flatnet_bgp::speaker::{Speaker, SpeakerConfig};
use flatnet_bgp::wire::{
    AsPath, AttrValue, Capability, DecodeContext, Family, Ipv4Prefix, Message, Nlri4, Open,
    OptionalParameter, Origin, PathAttribute, Update, attr_type,
};
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
    let speaker = start_speaker(me, vec![p]).await;

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

/// A speaker of AS 65000 on `me` with `peers`, no policies or origins.
async fn start_speaker(me: Ipv4Addr, peers: Vec<PeerConfig>) -> Speaker {
    Speaker::start(SpeakerConfig {
        asn: 65000,
        router_id: me,
        listen: vec![SocketAddr::new(IpAddr::V4(me), 0)],
        peers,
        policies: HashMap::new(),
        originate: Vec::new(),
        restarting: false,
        max_paths: 8,
        multipath_relax: true,
    })
    .await
    .unwrap()
}

fn ctx() -> DecodeContext {
    DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    }
}

/// Accept and establish as `asn`; the session is up once its KEEPALIVE is seen.
fn establish(l: &TcpListener, asn: u32, id: u8) -> ScriptedPeer {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut s = ScriptedPeer::new(s, ctx());
    assert!(matches!(s.read_msg().unwrap(), Message::Open(_)));
    let caps = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::FourOctetAs(asn),
    ];
    s.send(&Message::Open(Open::new(
        asn,
        9,
        Ipv4Addr::new(10, 0, 0, id),
        caps,
    )))
    .unwrap();
    s.send(&Message::Keepalive).unwrap();
    while !matches!(s.read_msg().unwrap(), Message::Keepalive) {}
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebgp_local_pref_and_reflection_attributes_are_not_passed_on() {
    let me = Ipv4Addr::new(127, 0, 0, 1);
    let (ebgp_ip, ibgp_ip) = (Ipv4Addr::new(127, 0, 0, 6), Ipv4Addr::new(127, 0, 0, 7));
    let le = TcpListener::bind((ebgp_ip, 0)).unwrap();
    let li = TcpListener::bind((ibgp_ip, 0)).unwrap();
    let (pe, pi) = (
        le.local_addr().unwrap().port(),
        li.local_addr().unwrap().port(),
    );

    // eBGP peer: one route with LOCAL_PREF 500, ORIGINATOR_ID and CLUSTER_LIST.
    let ebgp = std::thread::spawn(move || {
        let mut s = establish(&le, PEER_AS, 6);
        let u = Update {
            withdrawn: Vec::new(),
            attributes: vec![
                PathAttribute::new(AttrValue::Origin(Origin::Igp)),
                PathAttribute::new(AttrValue::AsPath(AsPath::sequence(vec![PEER_AS]))),
                PathAttribute::new(AttrValue::NextHop(ebgp_ip)),
                PathAttribute::new(AttrValue::LocalPref(500)),
                PathAttribute::new(AttrValue::OriginatorId(Ipv4Addr::new(1, 1, 1, 1))),
                PathAttribute::new(AttrValue::ClusterList(vec![Ipv4Addr::new(2, 2, 2, 2)])),
            ],
            nlri: vec![Nlri4::new(
                Ipv4Prefix::new("10.9.0.0".parse().unwrap(), 24).unwrap(),
            )],
        };
        s.send(&Message::Update(u)).unwrap();
        s
    });
    // iBGP peer: report the first UPDATE with NLRI.
    let ibgp = std::thread::spawn(move || {
        let mut s = establish(&li, 65000, 7);
        loop {
            match s.read_msg().unwrap() {
                Message::Update(u) if !u.nlri.is_empty() => break (u, s),
                _ => {}
            }
        }
    });

    let peer = |ip: Ipv4Addr, port: u16, asn: u32| {
        let mut p = PeerConfig::new(IpAddr::V4(ip), asn);
        p.port = port;
        p.hold_time = 9;
        p.connect.local_address = Some(IpAddr::V4(me));
        p.families = vec![Family::IPV4_UNICAST];
        p.import_policy = Some("accept".into());
        p.export_policy = Some("accept".into());
        p
    };
    let speaker = start_speaker(
        me,
        vec![peer(ebgp_ip, pe, PEER_AS), peer(ibgp_ip, pi, 65000)],
    )
    .await;

    let (u, _i) = tokio::task::spawn_blocking(move || ibgp.join().unwrap())
        .await
        .unwrap();
    assert_eq!(u.nlri[0].prefix.to_string(), "10.9.0.0/24");
    assert!(
        matches!(
            u.attribute(attr_type::LOCAL_PREF).map(|a| &a.value),
            Some(AttrValue::LocalPref(100))
        ),
        "LOCAL_PREF 500 from eBGP must not reach iBGP: {u:?}"
    );
    assert!(u.attribute(attr_type::ORIGINATOR_ID).is_none(), "{u:?}");
    assert!(u.attribute(attr_type::CLUSTER_LIST).is_none(), "{u:?}");
    let _ = speaker.shutdown().await;
    let _e = ebgp.join().unwrap();
}

/// Reads until a NOTIFICATION arrives: (code, subcode); `None` on close.
fn next_notification(s: &mut ScriptedPeer) -> Option<(u8, u8)> {
    loop {
        match s.read_msg() {
            Ok(Message::Notification(n)) => return Some((n.code, n.subcode)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// RFC 4486 Cease subcodes flatnet sends: a soft reset of a peer without
/// route refresh resets it with 6/6 (Other Configuration Change), and a
/// removed peer is told 6/3 (Peer De-configured).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cease_other_configuration_change_and_peer_deconfigured_rfc4486() {
    let me = Ipv4Addr::new(127, 0, 0, 1);
    let peer_ip = Ipv4Addr::new(127, 0, 0, 8);
    let l = TcpListener::bind((peer_ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let (up_tx, up_rx) = mpsc::channel();
    // The scripted peer advertises no route refresh capability.
    let peer = std::thread::spawn(move || {
        let mut s = establish(&l, PEER_AS, 8);
        up_tx.send(()).unwrap();
        tx.send(next_notification(&mut s)).unwrap();
        // flatnet comes back after the 6/6 reset (only errors damp).
        let mut s = establish(&l, PEER_AS, 8);
        up_tx.send(()).unwrap();
        tx.send(next_notification(&mut s)).unwrap();
    });
    let mut p = PeerConfig::new(IpAddr::V4(peer_ip), PEER_AS);
    p.port = port;
    p.hold_time = 9;
    p.connect.local_address = Some(IpAddr::V4(me));
    p.families = vec![Family::IPV4_UNICAST];
    p.connect_retry = Duration::from_secs(1);
    let speaker = start_speaker(me, vec![p]).await;
    let wait = |rx: &mpsc::Receiver<()>| rx.recv_timeout(Duration::from_secs(30));
    let up_rx = tokio::task::spawn_blocking(move || {
        wait(&up_rx).unwrap();
        up_rx
    })
    .await
    .unwrap();
    speaker.soft_reset_in(IpAddr::V4(peer_ip)).await.unwrap();
    let (got, rx) = tokio::task::spawn_blocking(move || {
        (rx.recv_timeout(Duration::from_secs(30)).unwrap(), rx)
    })
    .await
    .unwrap();
    assert_eq!(got, Some((6, 6)), "Cease / Other Configuration Change");
    tokio::task::spawn_blocking(move || wait(&up_rx).unwrap())
        .await
        .unwrap();
    speaker.remove_peer(IpAddr::V4(peer_ip)).await.unwrap();
    let got =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .await
            .unwrap();
    assert_eq!(got, Some((6, 3)), "Cease / Peer De-configured");
    let _ = speaker.shutdown().await;
    peer.join().unwrap();
}

/// Connects to `to` from `from` (the peer's own address, so the speaker
/// takes it for that peer) as a blocking scripted peer.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> ScriptedPeer {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    let s = sock.connect(to).await.unwrap().into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    ScriptedPeer::new(s, ctx())
}

/// RFC 4486 Cease 5 (Connection Rejected): while a passive peer is Idle —
/// damped after an error, or administratively stopped — its inbound
/// connection is told why instead of being dropped without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connection_while_damped_or_stopped_gets_cease_5() {
    let me = Ipv4Addr::new(127, 0, 0, 1);
    let peer_ip = Ipv4Addr::new(127, 0, 0, 9);
    // A free port for the speaker's listener (the speaker reports none).
    let port = TcpListener::bind((me, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = SocketAddr::new(IpAddr::V4(me), port);
    let mut p = PeerConfig::new(IpAddr::V4(peer_ip), PEER_AS);
    p.passive = true;
    p.hold_time = 9;
    p.families = vec![Family::IPV4_UNICAST];
    p.damping.initial = Duration::from_secs(60);
    p.damping.max = Duration::from_secs(60);
    let speaker = Speaker::start(SpeakerConfig {
        asn: 65000,
        router_id: me,
        listen: vec![listen],
        peers: vec![p],
        policies: HashMap::new(),
        originate: Vec::new(),
        restarting: false,
        max_paths: 8,
        multipath_relax: true,
    })
    .await
    .unwrap();

    // An OPEN with an unsupported optional parameter: 2/4, and the peer is
    // damped for a minute.
    let mut s = connect_from(peer_ip, listen).await;
    let first = tokio::task::spawn_blocking(move || {
        assert!(matches!(s.read_msg().unwrap(), Message::Open(_)));
        let open = Open {
            params: vec![OptionalParameter::Unknown {
                kind: 1,
                value: vec![0xab],
            }],
            ..Open::new(PEER_AS, 9, peer_ip, Vec::new())
        };
        s.send(&Message::Open(open)).unwrap();
        next_notification(&mut s)
    })
    .await
    .unwrap();
    assert_eq!(first, Some((2, 4)));

    // Damped: the next connection is refused with 6/5 at once.
    let mut s = connect_from(peer_ip, listen).await;
    let damped = tokio::task::spawn_blocking(move || next_notification(&mut s))
        .await
        .unwrap();
    assert_eq!(
        damped,
        Some((6, 5)),
        "Cease / Connection Rejected while damped"
    );
    let n = speaker.peers().await.unwrap();
    assert!(n[0].next_attempt_ms.is_some(), "{n:?}");

    // Administratively stopped: refused the same way.
    speaker
        .shutdown_peer(IpAddr::V4(peer_ip), None)
        .await
        .unwrap();
    let mut s = connect_from(peer_ip, listen).await;
    let stopped = tokio::task::spawn_blocking(move || next_notification(&mut s))
        .await
        .unwrap();
    assert_eq!(
        stopped,
        Some((6, 5)),
        "Cease / Connection Rejected while stopped"
    );
    let _ = speaker.shutdown().await;
}

/// RFC 4271 6.3 b end to end: an eBGP peer on a subnet of our interface
/// (here lo's 127.0.0.0/8, found by the session from the kernel) sends a
/// route whose NEXT_HOP is off that subnet, then one via itself: only the
/// second is in the RIB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebgp_next_hop_off_the_shared_subnet_is_not_used() {
    let me = Ipv4Addr::new(127, 0, 0, 1);
    let peer_ip = Ipv4Addr::new(127, 0, 0, 10);
    let l = TcpListener::bind((peer_ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let route = |prefix: &str, nh: Ipv4Addr| Update {
        withdrawn: Vec::new(),
        attributes: vec![
            PathAttribute::new(AttrValue::Origin(Origin::Igp)),
            PathAttribute::new(AttrValue::AsPath(AsPath::sequence(vec![PEER_AS]))),
            PathAttribute::new(AttrValue::NextHop(nh)),
        ],
        nlri: vec![Nlri4::new(
            Ipv4Prefix::new(prefix.parse().unwrap(), 24).unwrap(),
        )],
    };
    let peer = std::thread::spawn(move || {
        let mut s = establish(&l, PEER_AS, 10);
        s.send(&Message::Update(route(
            "10.9.1.0",
            Ipv4Addr::new(192, 0, 2, 9),
        )))
        .unwrap();
        s.send(&Message::Update(route("10.9.2.0", peer_ip)))
            .unwrap();
        s
    });
    let mut p = PeerConfig::new(IpAddr::V4(peer_ip), PEER_AS);
    p.port = port;
    p.hold_time = 9;
    p.connect.local_address = Some(IpAddr::V4(me));
    p.families = vec![Family::IPV4_UNICAST];
    p.import_policy = Some("accept".into());
    let speaker = start_speaker(me, vec![p]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rib = loop {
        let rib = speaker.rib().await.unwrap();
        if rib.iter().any(|e| e.prefix.to_string() == "10.9.2.0/24") {
            break rib;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no route via the peer: {rib:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        !rib.iter().any(|e| e.prefix.to_string() == "10.9.1.0/24"),
        "next hop 192.0.2.9 is off the shared subnet: {rib:?}"
    );
    let _ = speaker.shutdown().await;
    let _s = peer.join().unwrap();
}
