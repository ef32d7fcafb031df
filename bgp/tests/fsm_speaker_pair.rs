//! Two `Speaker`s in one process over loopback (127.0.0.1 and 127.0.0.2, no
//! root needed): both sides connect actively at once, so the connection
//! collision path runs; then routes, subscriptions, administrative shutdown
//! with an RFC 8203 message, restart, runtime peer removal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use flatnet_bgp::fsm::State;
use flatnet_bgp::session::PeerConfig;
use flatnet_bgp::speaker::{OriginAttrs, PeerStatus, Speaker, SpeakerConfig};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn cfg(me: Ipv4Addr, asn: u32, peer: Ipv4Addr, peer_as: u32, port: u16) -> SpeakerConfig {
    let mut p = PeerConfig::new(IpAddr::V4(peer), peer_as);
    p.port = port;
    p.hold_time = 9;
    p.connect.local_address = Some(IpAddr::V4(me));
    p.import_policy = Some("accept".into());
    p.export_policy = Some("accept".into());
    SpeakerConfig {
        asn,
        router_id: me,
        listen: vec![SocketAddr::new(IpAddr::V4(me), port)],
        peers: vec![p],
        policies: HashMap::new(),
        originate: Vec::new(),
        restarting: false,
        max_paths: 8,
        multipath_relax: true,
    }
}

async fn wait_peer(s: &Speaker, what: &str, f: impl Fn(&PeerStatus) -> bool) -> PeerStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let peers = s.peers().await.unwrap();
        if let Some(p) = peers.into_iter().find(|p| f(p)) {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_collide_exchange_routes_and_shut_down() {
    let port = free_port();
    let a_ip = Ipv4Addr::new(127, 0, 0, 1);
    let b_ip = Ipv4Addr::new(127, 0, 0, 2);
    let a = Speaker::start(cfg(a_ip, 65001, b_ip, 65002, port))
        .await
        .unwrap();
    let b = Speaker::start(cfg(b_ip, 65002, a_ip, 65001, port))
        .await
        .unwrap();
    let mut events = b.subscribe();

    let pa = wait_peer(&a, "A Established", |p| p.state == State::Established).await;
    let pb = wait_peer(&b, "B Established", |p| p.state == State::Established).await;
    assert!(
        pa.capabilities.contains(&"four-octet-as".to_string()),
        "{pa:?}"
    );
    assert_eq!(pb.hold_time, Some(9));

    // A originates; B learns it as best path and gets an event.
    let prefix = "10.20.0.0/24".parse::<flatnet_bgp::wire::Prefix>().unwrap();
    a.originate(
        prefix,
        OriginAttrs {
            med: Some(7),
            ..OriginAttrs::default()
        },
    )
    .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.prefix.to_string() == "10.20.0.0/24" {
                return e;
            }
        }
    })
    .await
    .expect("best-path event");
    let best = ev.best.expect("best path");
    assert_eq!(best.as_path, vec![65001]);
    assert_eq!(best.next_hop, Some(IpAddr::V4(a_ip)));
    assert_eq!(best.med, 7);
    let rib = b.rib().await.unwrap();
    assert!(
        rib.iter().any(|e| e.prefix.to_string() == "10.20.0.0/24"),
        "{rib:?}"
    );
    wait_peer(&a, "A advertised 1", |p| p.prefixes_advertised == 1).await;
    wait_peer(&b, "B accepted 1", |p| p.prefixes_accepted == 1).await;
    let st = b.stats().await.unwrap();
    assert_eq!(st.loc_rib_len, 1);
    assert_eq!(st.peers.len(), 1);

    // Withdraw: B's event says unreachable.
    a.withdraw(prefix).unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.prefix.to_string() == "10.20.0.0/24" && e.best.is_none() {
                return e;
            }
        }
    })
    .await
    .expect("withdraw event");
    assert!(ev.multipath.is_empty());

    // Administrative shutdown with an RFC 8203 message: B sees it as its last error.
    a.shutdown_peer(IpAddr::V4(b_ip), Some("maintenance until noon"))
        .await
        .unwrap();
    let pb = wait_peer(&b, "B sees the shutdown", |p| {
        p.last_error
            .as_deref()
            .is_some_and(|e| e.contains("maintenance until noon"))
    })
    .await;
    assert_ne!(pb.state, State::Established);
    let pa = wait_peer(&a, "A Idle", |p| p.state == State::Idle).await;
    assert!(
        pa.last_error.is_none(),
        "a manual stop is not an error: {pa:?}"
    );

    // And back.
    a.start_peer(IpAddr::V4(b_ip)).await.unwrap();
    wait_peer(&a, "A Established again", |p| p.state == State::Established).await;
    wait_peer(&b, "B Established again", |p| p.state == State::Established).await;

    // Remove the peer at runtime: B sees Cease/Peer De-configured.
    a.remove_peer(IpAddr::V4(b_ip)).await.unwrap();
    wait_peer(&b, "B sees de-configuration", |p| {
        p.last_error
            .as_deref()
            .is_some_and(|e| e.contains("Peer De-configured"))
    })
    .await;
    assert!(a.peers().await.unwrap().is_empty());
    assert!(a.remove_peer(IpAddr::V4(b_ip)).await.is_err());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_remote_as_is_refused_with_bad_peer_as() {
    let port = free_port();
    let a_ip = Ipv4Addr::new(127, 0, 0, 3);
    let b_ip = Ipv4Addr::new(127, 0, 0, 4);
    // A expects AS 65099 but B is 65002.
    let a = Speaker::start(cfg(a_ip, 65001, b_ip, 65099, port))
        .await
        .unwrap();
    let b = Speaker::start(cfg(b_ip, 65002, a_ip, 65001, port))
        .await
        .unwrap();
    let pb = wait_peer(&b, "B told Bad Peer AS", |p| {
        p.last_error
            .as_deref()
            .is_some_and(|e| e.contains("Bad Peer AS"))
    })
    .await;
    assert_ne!(pb.state, State::Established);
    let pa = wait_peer(&a, "A sent Bad Peer AS", |p| p.last_error.is_some()).await;
    assert!(pa.last_error.unwrap().contains("sent NOTIFICATION"));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

mod fake {
    use flatnet_bgp::wire::{Capability, DecodeContext, Family, Message, Open, decode, frame};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub fn open(asn: u32, id: [u8; 4]) -> Message {
        Message::Open(Open::new(
            asn,
            9,
            id.into(),
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::FourOctetAs(asn),
            ],
        ))
    }

    pub async fn send(s: &mut TcpStream, m: Message) {
        s.write_all(&m.to_bytes(&DecodeContext::legacy()).unwrap())
            .await
            .unwrap();
    }

    /// Reads one message (or None on EOF).
    pub async fn recv(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Message> {
        let ctx = DecodeContext {
            four_octet_as: true,
            ..DecodeContext::legacy()
        };
        loop {
            if let Some(n) = frame(buf, &ctx).unwrap() {
                let m = decode(&buf[..n], &ctx).unwrap().message;
                buf.drain(..n);
                return Some(m);
            }
            let mut tmp = [0u8; 4096];
            let n = s.read(&mut tmp).await.unwrap();
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    }
}

/// RFC 4271 6.8, driven by a scripted peer so the race is deterministic: our
/// outbound connection sits in OpenSent while the peer also connects in;
/// the peer's identifier is higher, so the connection IT opened survives and
/// ours is closed with Cease/7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_collision_keeps_the_higher_ids_connection() {
    use flatnet_bgp::wire::Message;
    let our_ip = Ipv4Addr::new(127, 0, 0, 5);
    let peer_ip = Ipv4Addr::new(127, 0, 0, 6);
    let our_port = free_port();
    let fake_listener = tokio::net::TcpListener::bind((peer_ip, 0)).await.unwrap();
    let fake_port = fake_listener.local_addr().unwrap().port();
    let mut c = cfg(our_ip, 65001, peer_ip, 65009, our_port);
    c.peers[0].port = fake_port;
    c.router_id = Ipv4Addr::new(1, 1, 1, 1);
    let a = Speaker::start(c).await.unwrap();

    // Connection 1: ours (outbound). Read our OPEN, do not answer yet.
    let (mut c1, _) = fake_listener.accept().await.unwrap();
    let mut b1 = Vec::new();
    assert!(matches!(
        fake::recv(&mut c1, &mut b1).await,
        Some(Message::Open(_))
    ));
    // Connection 2: the peer connects in while we are in OpenSent.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(peer_ip), 0)).unwrap();
    let mut c2 = sock
        .connect(SocketAddr::new(IpAddr::V4(our_ip), our_port))
        .await
        .unwrap();
    let mut b2 = Vec::new();
    assert!(
        matches!(fake::recv(&mut c2, &mut b2).await, Some(Message::Open(_))),
        "we answer the inbound connection with an OPEN"
    );
    // The peer (id 9.9.9.9 > 1.1.1.1) sends its OPEN on both.
    fake::send(&mut c2, fake::open(65009, [9, 9, 9, 9])).await;
    assert!(matches!(
        fake::recv(&mut c2, &mut b2).await,
        Some(Message::Keepalive)
    ));
    fake::send(&mut c1, fake::open(65009, [9, 9, 9, 9])).await;
    // Our outbound connection loses: KEEPALIVE (OpenConfirm), then Cease/7, then close.
    let mut got = Vec::new();
    while let Some(m) = fake::recv(&mut c1, &mut b1).await {
        got.push(m);
    }
    let cease = got.iter().find_map(|m| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    });
    assert_eq!(cease, Some((6, 7)), "{got:?}");
    // The inbound connection becomes the session.
    fake::send(&mut c2, Message::Keepalive).await;
    let p = wait_peer(&a, "Established on the peer's connection", |p| {
        p.state == State::Established
    })
    .await;
    assert_eq!(p.address, IpAddr::V4(peer_ip));
    a.shutdown().await.unwrap();
    // The shutdown reaches the surviving connection.
    let mut last = None;
    while let Some(m) = fake::recv(&mut c2, &mut b2).await {
        last = Some(m);
    }
    assert!(matches!(last, Some(Message::Notification(n)) if n.code == 6 && n.subcode == 2));
}

/// The mirror case: our identifier is higher, so our outbound connection
/// survives and the peer's inbound one gets Cease/7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_collision_keeps_ours_when_our_id_is_higher() {
    use flatnet_bgp::wire::Message;
    let our_ip = Ipv4Addr::new(127, 0, 0, 7);
    let peer_ip = Ipv4Addr::new(127, 0, 0, 8);
    let our_port = free_port();
    let fake_listener = tokio::net::TcpListener::bind((peer_ip, 0)).await.unwrap();
    let fake_port = fake_listener.local_addr().unwrap().port();
    let mut c = cfg(our_ip, 65001, peer_ip, 65009, our_port);
    c.peers[0].port = fake_port;
    c.router_id = Ipv4Addr::new(9, 9, 9, 9);
    let a = Speaker::start(c).await.unwrap();
    let (mut c1, _) = fake_listener.accept().await.unwrap();
    let mut b1 = Vec::new();
    assert!(matches!(
        fake::recv(&mut c1, &mut b1).await,
        Some(Message::Open(_))
    ));
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(peer_ip), 0)).unwrap();
    let mut c2 = sock
        .connect(SocketAddr::new(IpAddr::V4(our_ip), our_port))
        .await
        .unwrap();
    let mut b2 = Vec::new();
    assert!(matches!(
        fake::recv(&mut c2, &mut b2).await,
        Some(Message::Open(_))
    ));
    fake::send(&mut c2, fake::open(65009, [1, 1, 1, 1])).await;
    assert!(matches!(
        fake::recv(&mut c2, &mut b2).await,
        Some(Message::Keepalive)
    ));
    fake::send(&mut c1, fake::open(65009, [1, 1, 1, 1])).await;
    // The peer's connection loses.
    let mut got = Vec::new();
    while let Some(m) = fake::recv(&mut c2, &mut b2).await {
        got.push(m);
    }
    let cease = got.iter().find_map(|m| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    });
    assert_eq!(cease, Some((6, 7)), "{got:?}");
    // Ours goes on: KEEPALIVE (OpenConfirm) then Established once the peer confirms.
    assert!(matches!(
        fake::recv(&mut c1, &mut b1).await,
        Some(Message::Keepalive)
    ));
    fake::send(&mut c1, Message::Keepalive).await;
    wait_peer(&a, "Established on our connection", |p| {
        p.state == State::Established
    })
    .await;
    a.shutdown().await.unwrap();
}
