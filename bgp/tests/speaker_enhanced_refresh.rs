//! Enhanced route refresh (RFC 7313) as receiver, against a scripted peer
//! on loopback (no root needed): the peer's BoRR marks its routes stale;
//! if it never sends EoRR, the stale routes are swept after the configured
//! stale time instead of staying forever, and the session stays up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use flatnet_bgp::fsm::State;
use flatnet_bgp::session::{GracefulRestartConfig, PeerConfig};
use flatnet_bgp::speaker::{Speaker, SpeakerConfig};
use flatnet_bgp::wire::{
    AsPath, AttrValue, Capability, DecodeContext, Family, Ipv4Prefix, Message, Nlri4, Open, Origin,
    PathAttribute, RouteRefresh, Update,
};
use flatnet_lab::scripted::ScriptedPeer;

const PEER_AS: u32 = 65020;

fn ctx() -> DecodeContext {
    DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    }
}

/// The scripted peer: OPEN, two routes, then BoRR on `borr` and never EoRR;
/// keepalives every second until `stop`.
fn scripted_peer(l: TcpListener, borr: mpsc::Receiver<()>, stop: Arc<AtomicBool>) {
    let (s, _) = l.accept().unwrap();
    let mut s = ScriptedPeer::new(s, ctx());
    s.read_msg().unwrap(); // its OPEN
    let caps = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::RouteRefresh,
        Capability::EnhancedRouteRefresh,
        Capability::FourOctetAs(PEER_AS),
    ];
    s.send(&Message::Open(Open::new(
        PEER_AS,
        9,
        Ipv4Addr::new(10, 0, 0, 3),
        caps,
    )))
    .unwrap();
    s.send(&Message::Keepalive).unwrap();
    // Like a real peer: UPDATEs only once Established (its KEEPALIVE seen).
    while !matches!(s.read_msg().unwrap(), Message::Keepalive) {}
    let update = Update {
        withdrawn: Vec::new(),
        attributes: vec![
            PathAttribute::new(AttrValue::Origin(Origin::Igp)),
            PathAttribute::new(AttrValue::AsPath(AsPath::sequence(vec![PEER_AS]))),
            PathAttribute::new(AttrValue::NextHop(Ipv4Addr::new(127, 0, 0, 3))),
        ],
        nlri: ["10.9.0.0", "10.9.1.0"]
            .iter()
            .map(|a| Nlri4::new(Ipv4Prefix::new(a.parse().unwrap(), 24).unwrap()))
            .collect(),
    };
    s.send(&Message::Update(update)).unwrap();
    s.stream()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut last_ka = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if borr.try_recv().is_ok() {
            s.send(&Message::RouteRefresh(RouteRefresh {
                family: Family::IPV4_UNICAST,
                subtype: RouteRefresh::BORR,
            }))
            .unwrap();
        }
        if last_ka.elapsed() >= Duration::from_secs(1) {
            s.send(&Message::Keepalive).unwrap();
            last_ka = std::time::Instant::now();
        }
        match s.read_msg() {
            Ok(_) => {}
            Err(e) if e.is_timeout() => {}
            Err(_) => return,
        }
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borr_without_eorr_is_swept_after_the_stale_time() {
    let me = Ipv4Addr::new(127, 0, 0, 1);
    let peer_ip = Ipv4Addr::new(127, 0, 0, 3);
    let l = TcpListener::bind((peer_ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let (borr_tx, borr_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let peer = std::thread::spawn(move || scripted_peer(l, borr_rx, stop2));

    let mut p = PeerConfig::new(IpAddr::V4(peer_ip), PEER_AS);
    p.port = port;
    p.hold_time = 9;
    p.connect.local_address = Some(IpAddr::V4(me));
    p.families = vec![Family::IPV4_UNICAST];
    p.import_policy = Some("accept".into());
    p.export_policy = Some("accept".into());
    p.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        stale_time: Duration::from_secs(2),
    });
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

    let s = &speaker;
    wait_until("both routes in the Loc-RIB", 20, || async move {
        s.stats().await.unwrap().loc_rib_len == 2
    })
    .await;
    borr_tx.send(()).unwrap();
    // Stale routes stay usable until the stale time, then go.
    wait_until("stale routes swept without EoRR", 20, || async move {
        let st = s.stats().await.unwrap();
        st.loc_rib_len == 0 && st.peers[0].prefixes_received == 0 && st.peers[0].stale_paths == 0
    })
    .await;
    let st = speaker.stats().await.unwrap();
    assert_eq!(st.peers[0].state, State::Established, "no session reset");

    stop.store(true, Ordering::Relaxed);
    let _ = speaker.shutdown().await;
    peer.join().unwrap();
}
