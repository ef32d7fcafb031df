//! The feeder: a scripted BGP peer on a thread inside the feeder namespace
//! that brings the session up, writes the pre-encoded feed on `go`, and
//! keeps the session alive until dropped.

use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flatnet_bgp::wire::{Capability, ErrorCode, Family, Message, Notification, Open, Update};

use super::generate::{Feed, session_ctx};
use super::{FEEDER_ADDR, FEEDER_AS, FeedError, HOLD_TIME, RECEIVER_ADDR};
use crate::Netns;
use crate::scripted::{PeerError, ScriptedPeer};

/// What the feeder thread reports.
#[derive(Debug)]
enum FeedEvent {
    Established,
    Started(Instant),
    Sent(Instant),
}

enum Ctl {
    Go,
    Stop,
}

/// A running feeder: a minimal BGP speaker on a thread in the feeder namespace.
pub struct Feeder {
    ctl: Sender<Ctl>,
    events: Receiver<Result<FeedEvent, FeedError>>,
    handle: Option<JoinHandle<()>>,
    notification: Arc<Mutex<Option<String>>>,
}

impl Feeder {
    /// Connects from inside `ns` to the receiver and brings the session up.
    /// The feed starts on [`Feeder::go`].
    pub fn start(ns: &Netns, feed: Arc<Feed>) -> Result<Feeder, FeedError> {
        let (ctl_tx, ctl_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let notification = Arc::new(Mutex::new(None));
        let path = ns.path();
        let note = notification.clone();
        let handle = std::thread::Builder::new()
            .name("feeder".into())
            .spawn(move || {
                let r = feeder_main(&path, &feed, &ev_tx, &ctl_rx, note);
                if let Err(e) = r {
                    let _ = ev_tx.send(Err(e));
                }
            })?;
        let f = Feeder {
            ctl: ctl_tx,
            events: ev_rx,
            handle: Some(handle),
            notification,
        };
        match f.next_event(Duration::from_secs(60))? {
            FeedEvent::Established => Ok(f),
            e => Err(FeedError::Session(format!("unexpected feeder event {e:?}"))),
        }
    }

    fn next_event(&self, t: Duration) -> Result<FeedEvent, FeedError> {
        match self.events.recv_timeout(t) {
            Ok(r) => r,
            Err(_) => Err(FeedError::Session(format!(
                "feeder silent for {t:?}{}",
                self.notification_text()
                    .map(|n| format!(" (receiver sent NOTIFICATION {n})"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// Starts writing; returns the instant just before the first UPDATE byte.
    pub fn go(&self) -> Result<Instant, FeedError> {
        self.ctl
            .send(Ctl::Go)
            .map_err(|_| FeedError::Session("feeder thread gone".into()))?;
        match self.next_event(Duration::from_secs(10))? {
            FeedEvent::Started(t) => Ok(t),
            e => Err(FeedError::Session(format!("unexpected feeder event {e:?}"))),
        }
    }

    /// The instant the End-of-RIB was written, if it was yet.
    pub fn sent(&self) -> Option<Result<Instant, FeedError>> {
        match self.events.try_recv() {
            Ok(Ok(FeedEvent::Sent(t))) => Some(Ok(t)),
            Ok(Ok(e)) => Some(Err(FeedError::Session(format!(
                "unexpected feeder event {e:?}"
            )))),
            Ok(Err(e)) => Some(Err(e)),
            Err(_) => None,
        }
    }

    /// A NOTIFICATION the receiver sent, if any.
    pub fn notification_text(&self) -> Option<String> {
        self.notification.lock().ok().and_then(|n| n.clone())
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        let _ = self.ctl.send(Ctl::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn feeder_main(
    ns_path: &str,
    feed: &Feed,
    ev: &Sender<Result<FeedEvent, FeedError>>,
    ctl: &Receiver<Ctl>,
    note: Arc<Mutex<Option<String>>>,
) -> Result<(), FeedError> {
    crate::netns::enter(ns_path)?;
    let peer = SocketAddr::V4(SocketAddrV4::new(RECEIVER_ADDR, 179));
    let mut s = ScriptedPeer::connect(peer, Duration::from_secs(30), session_ctx())?;
    s.stream().set_read_timeout(Some(Duration::from_secs(30)))?;
    let open = Open::new(
        FEEDER_AS,
        HOLD_TIME,
        FEEDER_ADDR,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(FEEDER_AS),
        ],
    );
    let hold = s.establish(open)?;
    // Drain whatever the receiver sends from now on (KEEPALIVEs, its EoR).
    let mut r = s.reader()?;
    let reader = std::thread::spawn(move || {
        loop {
            match r.read_msg() {
                Ok(Message::Notification(no)) => {
                    if let Ok(mut g) = note.lock() {
                        *g = Some(no.to_string());
                    }
                }
                Ok(_) | Err(PeerError::Decode(_)) => {}
                Err(_) => break,
            }
        }
    });
    let _ = ev.send(Ok(FeedEvent::Established));
    let keepalive = Duration::from_secs(u64::from((hold / 3).max(1)));
    let mut stopped = false;
    match ctl.recv() {
        Ok(Ctl::Go) => {
            let t0 = Instant::now();
            let _ = ev.send(Ok(FeedEvent::Started(t0)));
            let mut from = 0;
            for &end in &feed.chunks {
                s.send_raw(&feed.wire[from..end])?;
                from = end;
            }
            s.send(&Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)))?;
            let _ = ev.send(Ok(FeedEvent::Sent(Instant::now())));
        }
        Ok(Ctl::Stop) | Err(_) => stopped = true,
    }
    while !stopped {
        match ctl.recv_timeout(keepalive) {
            Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => stopped = true,
            Ok(Ctl::Go) => {}
            Err(RecvTimeoutError::Timeout) => {
                if s.send(&Message::Keepalive).is_err() {
                    stopped = true;
                }
            }
        }
    }
    let cease = Notification::new(ErrorCode::CEASE, 2, Vec::new());
    let _ = s.send(&Message::Notification(cease));
    let _ = s.stream().shutdown(Shutdown::Both);
    let _ = reader.join();
    Ok(())
}
