//! The full-table feed benchmark of issue 3: one eBGP peer sends N IPv4
//! prefixes (mixed /24 and /32, a few thousand attribute sets) to a receiver
//! (flatnet's speaker, BIRD 2, FRR, GoBGP), and we measure the wall time until
//! the last prefix is in the receiver's Loc-RIB and its peak RSS.
//!
//! The feed is built once and pre-encoded with flatnet's codec, so every
//! receiver gets byte-identical UPDATEs. The feeder is a minimal BGP speaker on
//! a thread inside its own namespace; receivers are separate processes, so
//! their RSS is their own (the feed buffer lives in the benchmark process).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flatnet_bgp::wire::{
    AsPath, AttrValue, Capability, Community, DecodeContext, ErrorCode, Family, Ipv4Prefix,
    LargeCommunity, Message, Nlri4, Notification, Open, Origin, PathAttribute, Update, frame,
    pack_ipv4,
};

use crate::bird::Bird;
use crate::gobgp::Gobgp;
use crate::router::{NeighborConfig, RouterConfig, Timers, WorkDir};
use crate::{Daemon, LabError, Netns, veth, wait_for};

/// Errors of the feed benchmark.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("encoding the feed: {0}")]
    Encode(String),
    #[error("feed spec: {0}")]
    Spec(String),
    #[error("BGP session with the receiver: {0}")]
    Session(String),
    #[error("{0}")]
    Receiver(String),
}

/// AS of the feeding peer.
pub const FEEDER_AS: u32 = 65001;
/// AS of every receiver.
pub const RECEIVER_AS: u32 = 65002;
/// Feeder address on the veth link.
pub const FEEDER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Receiver address on the veth link.
pub const RECEIVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Hold time on both sides: long, so a receiver busy with the table never
/// drops the session for timer reasons.
pub const HOLD_TIME: u16 = 180;

/// What to feed.
#[derive(Debug, Clone, Copy)]
pub struct FeedSpec {
    pub prefixes: usize,
    /// Distinct attribute sets (AS path, MED, communities).
    pub attr_sets: usize,
    /// Share of /24s in percent; the rest are /32s.
    pub percent_24: u8,
    pub seed: u64,
    /// If set, each attribute set's prefixes go out in runs of 1..=N
    /// prefixes per UPDATE (like a table where prefixes with equal
    /// attributes are rarely adjacent) instead of fully packed UPDATEs.
    pub max_per_update: Option<usize>,
}

impl Default for FeedSpec {
    fn default() -> Self {
        FeedSpec {
            prefixes: 1_000_000,
            attr_sets: 3_000,
            percent_24: 70,
            seed: 0x5eed_f1a7,
            max_per_update: None,
        }
    }
}

/// The pre-encoded feed.
#[derive(Debug)]
pub struct Feed {
    /// Every UPDATE, encoded back to back (End-of-RIB not included).
    pub wire: Vec<u8>,
    /// End offsets into `wire` of write chunks made of whole messages.
    pub chunks: Vec<usize>,
    pub updates: usize,
    pub prefixes: usize,
    pub v24: usize,
    pub v32: usize,
    /// Attribute sets that got at least one prefix.
    pub attr_sets_used: usize,
    /// The last prefix sent: when it is in the receiver's Loc-RIB, every
    /// earlier UPDATE has been processed (each receiver handles one peer's
    /// messages in order).
    pub last_prefix: Ipv4Prefix,
}

/// splitmix64: a small deterministic generator, so every run feeds the same table.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Transit ASes that appear in the middle of paths (some 4-octet).
const TRANSIT: [u32; 14] = [
    174,
    1299,
    2914,
    3257,
    3356,
    6453,
    6461,
    6762,
    6939,
    7018,
    9002,
    212_000,
    4_200_000_100,
    4_200_000_200,
];

/// Attribute set `k`: a distinct origin AS per set (4-octet, so never a
/// receiver's AS), 0-3 transit hops, sometimes prepended, MED on half, 0-4
/// communities, a large community on a tenth.
fn attr_set(k: usize, rng: &mut Rng, next_hop: Ipv4Addr) -> Vec<PathAttribute> {
    let origin_as = 131_072 + k as u32;
    let mut path = vec![FEEDER_AS];
    for _ in 0..rng.below(4) {
        path.push(TRANSIT[rng.below(TRANSIT.len() as u64) as usize]);
    }
    path.push(origin_as);
    if rng.below(5) == 0 {
        for _ in 0..=rng.below(2) {
            path.push(origin_as);
        }
    }
    let mut attrs = vec![
        PathAttribute::new(AttrValue::Origin(Origin::Igp)),
        PathAttribute::new(AttrValue::AsPath(AsPath::sequence(path))),
        PathAttribute::new(AttrValue::NextHop(next_hop)),
    ];
    if rng.below(2) == 0 {
        attrs.push(PathAttribute::new(AttrValue::Med(rng.below(1000) as u32)));
    }
    let n = rng.below(5);
    if n > 0 {
        let mut cs: Vec<Community> = (0..n)
            .map(|_| Community::new(FEEDER_AS as u16, rng.below(2000) as u16))
            .collect();
        cs.sort();
        cs.dedup();
        attrs.push(PathAttribute::new(AttrValue::Communities(cs)));
    }
    if rng.below(10) == 0 {
        attrs.push(PathAttribute::new(AttrValue::LargeCommunities(vec![
            LargeCommunity {
                global_admin: FEEDER_AS,
                local1: k as u32,
                local2: rng.below(100) as u32,
            },
        ])));
    }
    attrs
}

/// Encoding context of the feed session: 4-octet AS, no ADD-PATH, 4096-byte messages.
pub fn session_ctx() -> DecodeContext {
    DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    }
}

const CHUNK: usize = 256 * 1024;
/// First /8 of the /24s; /24s use up to 20 /8s (20.0.0.0-39.255.255.0).
const V24_BASE: u32 = 20 << 24;
const V24_MAX_SLASH8: u64 = 20;
/// The /32s all lie in 40.0.0.0/8.
const V32_BASE: u32 = 40 << 24;

/// Builds and encodes the feed. Prefixes are unique and spread over the
/// address space by a fixed permutation; each is assigned an attribute set
/// with a skewed distribution (a few sets carry many prefixes, as with big
/// transit groups), and each set's prefixes are packed with the codec's packer.
pub fn build_feed(spec: &FeedSpec, next_hop: Ipv4Addr) -> Result<Feed, FeedError> {
    if spec.attr_sets == 0 || spec.prefixes == 0 || spec.percent_24 > 100 {
        return Err(FeedError::Spec(
            "need prefixes > 0, attr_sets > 0, percent_24 <= 100".into(),
        ));
    }
    let v24 = spec.prefixes * spec.percent_24 as usize / 100;
    let v32 = spec.prefixes - v24;
    // Slots of /24s: enough /8s for ~3% headroom, so the permutation spreads them.
    let slash8 = ((v24 as u64 * 103 / 100) / 65_536 + 1).min(V24_MAX_SLASH8);
    let slots24 = slash8 * 65_536;
    if v24 as u64 > slots24 || v32 > (1 << 24) {
        return Err(FeedError::Spec(format!(
            "too many prefixes: at most {} /24s and {} /32s",
            V24_MAX_SLASH8 * 65_536,
            1u32 << 24
        )));
    }
    // 1_000_003 is prime and larger than any slot count that is a multiple of
    // it, so i -> i*P mod slots is a bijection; odd P is one modulo 2^24.
    const P24: u64 = 1_000_003;
    const P32: u64 = 2_654_435_761;
    let mut rng = Rng(spec.seed);
    let sets = spec.attr_sets;
    let mut groups: Vec<Vec<Nlri4>> = vec![Vec::new(); sets];
    let mut assign = |p: Ipv4Prefix, rng: &mut Rng| {
        let x = rng.unit();
        let s = ((x * x * sets as f64) as usize).min(sets - 1);
        if let Some(g) = groups.get_mut(s) {
            g.push(Nlri4::new(p));
        }
    };
    // Interleave /24s and /32s so each group mixes both.
    let (mut i24, mut i32) = (0usize, 0usize);
    while i24 < v24 || i32 < v32 {
        let take24 = i32 >= v32 || (i24 < v24 && rng.below(100) < spec.percent_24 as u64);
        if take24 {
            let slot = (i24 as u64 * P24) % slots24;
            let bits = V24_BASE.wrapping_add((slot as u32) << 8);
            assign(Ipv4Prefix::from_bits(bits, 24), &mut rng);
            i24 += 1;
        } else {
            let off = ((i32 as u64 * P32) & 0xff_ffff) as u32;
            assign(Ipv4Prefix::from_bits(V32_BASE | off, 32), &mut rng);
            i32 += 1;
        }
    }
    let ctx = session_ctx();
    let mut wire = Vec::with_capacity(spec.prefixes * 5 + sets * 80);
    let mut chunks = Vec::new();
    let mut updates = 0;
    let mut used = 0;
    let mut last = None;
    let mut attr_rng = Rng(spec.seed ^ 0xa77e);
    let mut run_rng = Rng(spec.seed ^ 0x7275_6e73);
    // (attribute set, prefixes of one UPDATE batch), in sending order.
    let mut batches: Vec<(usize, &[Nlri4])> = Vec::new();
    let mut all_attrs = Vec::with_capacity(sets);
    for (k, g) in groups.iter().enumerate() {
        all_attrs.push(attr_set(k, &mut attr_rng, next_hop));
        if g.is_empty() {
            continue;
        }
        used += 1;
        match spec.max_per_update {
            Some(max) if max > 0 => {
                let mut rest = g.as_slice();
                while !rest.is_empty() {
                    let n = (1 + run_rng.below(max as u64) as usize).min(rest.len());
                    let (a, b) = rest.split_at(n);
                    batches.push((k, a));
                    rest = b;
                }
            }
            _ => batches.push((k, g.as_slice())),
        }
    }
    if spec.max_per_update.is_some() {
        // Small runs of one attribute set are scattered through the table.
        for i in (1..batches.len()).rev() {
            let j = run_rng.below(i as u64 + 1) as usize;
            batches.swap(i, j);
        }
    }
    for (k, run) in batches {
        let attrs = all_attrs
            .get(k)
            .ok_or_else(|| FeedError::Spec("attribute set index".into()))?;
        for u in pack_ipv4(attrs, run, &ctx).map_err(|e| FeedError::Encode(e.to_string()))? {
            if let Some(n) = u.nlri.last() {
                last = Some(n.prefix);
            }
            Message::Update(u)
                .encode(&ctx, &mut wire)
                .map_err(|e| FeedError::Encode(e.to_string()))?;
            updates += 1;
            if wire.len() - chunks.last().copied().unwrap_or(0) >= CHUNK {
                chunks.push(wire.len());
            }
        }
    }
    if chunks.last() != Some(&wire.len()) {
        chunks.push(wire.len());
    }
    let last_prefix = last.ok_or_else(|| FeedError::Spec("empty feed".into()))?;
    Ok(Feed {
        wire,
        chunks,
        updates,
        prefixes: spec.prefixes,
        v24,
        v32,
        attr_sets_used: used,
        last_prefix,
    })
}

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

fn encode(m: &Message) -> Result<Vec<u8>, FeedError> {
    m.to_bytes(&session_ctx())
        .map_err(|e| FeedError::Encode(e.to_string()))
}

/// Reads one whole BGP message (blocking, with the socket's read timeout).
fn read_msg(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Message, FeedError> {
    let ctx = session_ctx();
    loop {
        match frame(buf, &ctx) {
            Ok(Some(n)) => {
                let m = Message::decode(&buf[..n], &ctx)
                    .map_err(|e| FeedError::Session(format!("undecodable message: {e:?}")))?;
                buf.drain(..n);
                return Ok(m);
            }
            Ok(None) => {}
            Err(n) => return Err(FeedError::Session(format!("bad framing: {n}"))),
        }
        let mut tmp = [0u8; 4096];
        let r = s.read(&mut tmp)?;
        if r == 0 {
            return Err(FeedError::Session("receiver closed the connection".into()));
        }
        buf.extend_from_slice(&tmp[..r]);
    }
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
    let mut s = wait_for(
        "receiver accepting BGP on port 179",
        Duration::from_secs(30),
        || Ok(TcpStream::connect_timeout(&peer, Duration::from_secs(1)).ok()),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
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
    s.write_all(&encode(&Message::Open(open))?)?;
    let mut buf = Vec::new();
    let mut hold = HOLD_TIME;
    loop {
        match read_msg(&mut s, &mut buf)? {
            Message::Open(o) => {
                hold = hold.min(o.hold_time);
                s.write_all(&encode(&Message::Keepalive)?)?;
            }
            Message::Keepalive => break,
            Message::Notification(n) => {
                return Err(FeedError::Session(format!("NOTIFICATION during OPEN: {n}")));
            }
            _ => {}
        }
    }
    // Drain whatever the receiver sends from now on (KEEPALIVEs, its EoR).
    let mut r = s.try_clone()?;
    let reader = std::thread::spawn(move || {
        let ctx = session_ctx();
        let mut tmp = vec![0u8; 65_536];
        loop {
            match r.read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            while let Ok(Some(n)) = frame(&buf, &ctx) {
                if let Ok(Message::Notification(no)) = Message::decode(&buf[..n], &ctx)
                    && let Ok(mut g) = note.lock()
                {
                    *g = Some(no.to_string());
                }
                buf.drain(..n);
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
                s.write_all(&feed.wire[from..end])?;
                from = end;
            }
            s.write_all(&encode(&Message::Update(Update::end_of_rib(
                Family::IPV4_UNICAST,
            )))?)?;
            let _ = ev.send(Ok(FeedEvent::Sent(Instant::now())));
        }
        Ok(Ctl::Stop) | Err(_) => stopped = true,
    }
    while !stopped {
        match ctl.recv_timeout(keepalive) {
            Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => stopped = true,
            Ok(Ctl::Go) => {}
            Err(RecvTimeoutError::Timeout) => {
                if s.write_all(&encode(&Message::Keepalive)?).is_err() {
                    stopped = true;
                }
            }
        }
    }
    let cease = Notification::new(ErrorCode::CEASE, 2, Vec::new());
    let _ = s.write_all(&encode(&Message::Notification(cease))?);
    let _ = s.shutdown(Shutdown::Both);
    let _ = reader.join();
    Ok(())
}

/// Memory figures of one process from /proc/PID/status, in KiB.
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// PID of the process named `comm` inside `ns`.
pub fn pid_in_ns(ns: &Netns, comm: &str) -> Option<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == comm)
                .unwrap_or(false)
        })
}

/// Which receiver to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flatnet,
    Bird,
    Frr,
    Gobgp,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Flatnet => "flatnet",
            Kind::Bird => "BIRD 2",
            Kind::Frr => "FRR bgpd",
            Kind::Gobgp => "GoBGP",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flatnet" => Some(Kind::Flatnet),
            "bird" => Some(Kind::Bird),
            "frr" => Some(Kind::Frr),
            "gobgp" => Some(Kind::Gobgp),
            _ => None,
        }
    }
}

/// How to start flatnet's speaker as a receiver.
#[derive(Debug, Clone)]
pub enum FlatnetCmd {
    /// A program that takes `--config TOML --stats-file JSON` (the bench
    /// binary's `flatnet-receiver` mode, or flatnet-bgpd once it has a cheap
    /// stats file). `args` go first (e.g. the subcommand name).
    Program { program: PathBuf, args: Vec<String> },
}

/// Options of one measurement.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub poll: Duration,
    pub timeout: Duration,
    pub flatnet: Option<FlatnetCmd>,
}

/// Result of one receiver run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub kind: Kind,
    /// Row label (which program ran flatnet's speaker).
    pub label: String,
    /// From the first UPDATE byte written to the last prefix seen in the Loc-RIB.
    pub seconds: f64,
    /// From the first UPDATE byte to End-of-RIB written (the receiver's TCP
    /// window lets the feeder run ahead only a little).
    pub send_seconds: Option<f64>,
    pub prefixes: u64,
    pub baseline_kib: u64,
    pub peak_kib: u64,
    pub end_kib: u64,
    /// Other processes of the receiver (FRR zebra): name, peak KiB.
    pub extra: Vec<(String, u64)>,
    /// How many polls it took (granularity = poll interval + query time).
    pub polls: u32,
    /// Times of every repetition when several runs were folded into this
    /// one (the median is reported).
    pub all_seconds: Vec<f64>,
}

impl RunResult {
    pub fn rate(&self) -> f64 {
        self.prefixes as f64 / self.seconds.max(1e-9)
    }

    /// Peak RSS growth over the established-session baseline, per route.
    pub fn bytes_per_route(&self) -> f64 {
        self.peak_kib.saturating_sub(self.baseline_kib) as f64 * 1024.0
            / (self.prefixes.max(1) as f64)
    }

    /// RSS growth once the last prefix is in, per route (transient buffers
    /// and rehash peaks excluded).
    pub fn settled_bytes_per_route(&self) -> f64 {
        self.end_kib.saturating_sub(self.baseline_kib) as f64 * 1024.0
            / (self.prefixes.max(1) as f64)
    }
}

/// What the benchmark asks a running receiver.
trait Probe {
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

fn router_config() -> RouterConfig {
    let mut c = RouterConfig::new(RECEIVER_ADDR, RECEIVER_AS).neighbor(neighbor());
    c.timers = Timers {
        keepalive: HOLD_TIME / 3,
        hold: HOLD_TIME,
        connect_retry: 1,
    };
    c
}

struct BirdProbe<'a>(Bird<'a>, &'a Netns);

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

struct GobgpProbe<'a>(Gobgp<'a>, &'a Netns);

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
struct FrrNoFib<'a> {
    ns: &'a Netns,
    dir: WorkDir,
    _zebra: Daemon,
    _bgpd: Daemon,
}

fn chown_frr(p: &Path) -> Result<(), FeedError> {
    let user = nix::unistd::User::from_name("frr")
        .map_err(|e| FeedError::Receiver(format!("looking up user frr: {e}")))?
        .ok_or_else(|| FeedError::Receiver("user frr does not exist (is FRR installed?)".into()))?;
    nix::unistd::chown(p, Some(user.uid), Some(user.gid))
        .map_err(|e| FeedError::Receiver(format!("chown {}: {e}", p.display())))?;
    Ok(())
}

impl<'a> FrrNoFib<'a> {
    fn start(ns: &'a Netns, cfg: &RouterConfig) -> Result<Self, FeedError> {
        let dir = WorkDir::new("frr-feed")?;
        chown_frr(dir.path())?;
        let d = dir.path().to_string_lossy().into_owned();
        std::fs::write(
            dir.join("zebra.conf"),
            format!("hostname zebra\nlog file {d}/zebra.log\n"),
        )?;
        std::fs::write(dir.join("bgpd.conf"), crate::frr::render_bgpd(cfg, &d))?;
        std::fs::write(dir.join("vtysh.conf"), "")?;
        for name in ["zebra.conf", "bgpd.conf", "vtysh.conf"] {
            chown_frr(&dir.join(name))?;
        }
        let zserv = format!("{d}/zserv.api");
        let out = |n: &str| -> Result<std::process::Stdio, FeedError> {
            Ok(std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(n))?
                .into())
        };
        let zebra = ns.spawn(
            ns.command("/usr/lib/frr/zebra")
                .args(["-u", "frr", "-g", "frr", "-f"])
                .arg(format!("{d}/zebra.conf"))
                .arg("-i")
                .arg(format!("{d}/zebra.pid"))
                .args(["--vty_socket", &d, "-z", &zserv])
                .stdout(out("zebra.out")?)
                .stderr(out("zebra.out")?),
        )?;
        let zpath = dir.join("zserv.api");
        wait_for("zebra zserv socket", Duration::from_secs(10), || {
            Ok(zpath.exists().then_some(()))
        })?;
        let bgpd = ns.spawn(
            ns.command("/usr/lib/frr/bgpd")
                .args(["-n", "-u", "frr", "-g", "frr", "-f"])
                .arg(format!("{d}/bgpd.conf"))
                .arg("-i")
                .arg(format!("{d}/bgpd.pid"))
                .args(["--vty_socket", &d, "-z", &zserv])
                .stdout(out("bgpd.out")?)
                .stderr(out("bgpd.out")?),
        )?;
        let f = FrrNoFib {
            ns,
            dir,
            _zebra: zebra,
            _bgpd: bgpd,
        };
        wait_for("bgpd vty", Duration::from_secs(10), || {
            Ok(f.vtysh("show bgp summary json").ok().map(|_| ()))
        })?;
        Ok(f)
    }

    fn vtysh(&self, cmd: &str) -> Result<String, FeedError> {
        let d = self.dir.path().to_string_lossy().into_owned();
        let out = crate::run(self.ns.command("vtysh").args([
            "--vty_socket",
            &d,
            "--config_dir",
            &d,
            "-c",
            cmd,
        ]))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Probe for FrrNoFib<'_> {
    fn pid(&self) -> Result<u32, FeedError> {
        pid_in_ns(self.ns, "bgpd").ok_or_else(|| FeedError::Receiver("bgpd not running".into()))
    }
    fn extra_pids(&self) -> Vec<(String, u32)> {
        pid_in_ns(self.ns, "zebra")
            .map(|p| vec![("zebra".to_string(), p)])
            .unwrap_or_default()
    }
    fn count(&self) -> Result<u64, FeedError> {
        let s = self.vtysh("show bgp ipv4 unicast summary json")?;
        let v: serde_json::Value = serde_json::from_str(&s)
            .map_err(|e| FeedError::Receiver(format!("bad JSON from vtysh ({e}): {s}")))?;
        Ok(v["peers"][FEEDER_ADDR.to_string()]["pfxRcd"]
            .as_u64()
            .unwrap_or(0))
    }
    fn has_best(&self, p: &Ipv4Prefix) -> Result<bool, FeedError> {
        let s = self.vtysh(&format!(
            "show bgp ipv4 unicast {}/{} json",
            p.addr(),
            p.len()
        ))?;
        Ok(s.replace(char::is_whitespace, "")
            .contains("\"overall\":true"))
    }
    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("bgpd.out")).unwrap_or_default()
    }
}

/// flatnet's speaker in its own process, polled through its small stats file.
struct FlatnetProbe {
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
    fn start(ns: &Netns, cmd: &FlatnetCmd) -> Result<Self, FeedError> {
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

/// Runs the feed against one receiver in fresh namespaces and measures it.
pub fn run_one(kind: Kind, feed: &Arc<Feed>, opts: &RunOptions) -> Result<RunResult, FeedError> {
    let fns = Netns::new("feed")?;
    let rns = Netns::new("rx")?;
    veth(&fns, "eth0", &rns, "eth0")?;
    fns.addr_add("eth0", &format!("{FEEDER_ADDR}/30"))?;
    rns.addr_add("eth0", &format!("{RECEIVER_ADDR}/30"))?;
    let probe: Box<dyn Probe + '_> = match kind {
        Kind::Bird => Box::new(BirdProbe(Bird::start(&rns, router_config())?, &rns)),
        Kind::Gobgp => Box::new(GobgpProbe(Gobgp::start(&rns, router_config())?, &rns)),
        Kind::Frr => Box::new(FrrNoFib::start(&rns, &router_config())?),
        Kind::Flatnet => {
            let cmd = opts.flatnet.as_ref().ok_or_else(|| {
                FeedError::Receiver("no program given to run flatnet's speaker".into())
            })?;
            Box::new(FlatnetProbe::start(&rns, cmd)?)
        }
    };
    let with_logs = |e: FeedError, p: &dyn Probe| {
        FeedError::Receiver(format!(
            "{}: {e}\n--- receiver log ---\n{}",
            kind.label(),
            p.logs()
        ))
    };
    let feeder = Feeder::start(&fns, feed.clone()).map_err(|e| with_logs(e, probe.as_ref()))?;
    let pid = probe.pid()?;
    let baseline_kib = proc_kib(pid, "VmRSS").unwrap_or(0);
    let t0 = feeder.go()?;
    let want = feed.prefixes as u64;
    let deadline = t0 + opts.timeout;
    let mut sent = None;
    let mut polls = 0u32;
    let mut last_seen = false;
    let mut count = 0;
    let done = loop {
        let now = Instant::now();
        if now > deadline {
            return Err(with_logs(
                FeedError::Receiver(format!(
                    "timed out after {:?} with {count}/{want} prefixes{}",
                    opts.timeout,
                    feeder
                        .notification_text()
                        .map(|n| format!("; receiver sent NOTIFICATION {n}"))
                        .unwrap_or_default()
                )),
                probe.as_ref(),
            ));
        }
        if sent.is_none()
            && let Some(s) = feeder.sent()
        {
            sent = Some(s?);
        }
        polls += 1;
        // Cheap per-prefix lookup first: GoBGP's count walks the table.
        if !last_seen {
            last_seen = probe.has_best(&feed.last_prefix).unwrap_or(false);
        }
        if last_seen {
            count = probe.count().unwrap_or(count);
            if count >= want {
                break Instant::now();
            }
        }
        let next = now + opts.poll;
        let wait = next.saturating_duration_since(Instant::now());
        std::thread::sleep(wait);
    };
    // The feeder may still be writing the End-of-RIB when the count is reached.
    if sent.is_none() {
        let until = Instant::now() + Duration::from_secs(5);
        while sent.is_none() && Instant::now() < until {
            if let Some(s) = feeder.sent() {
                sent = Some(s?);
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let peak_kib = proc_kib(pid, "VmHWM").unwrap_or(0);
    let end_kib = proc_kib(pid, "VmRSS").unwrap_or(0);
    let extra = probe
        .extra_pids()
        .into_iter()
        .map(|(n, p)| (n, proc_kib(p, "VmHWM").unwrap_or(0)))
        .collect();
    drop(feeder);
    let label = match (kind, &opts.flatnet) {
        (Kind::Flatnet, Some(FlatnetCmd::Program { program, args })) => format!(
            "flatnet ({}{})",
            program
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            args.first().map(|a| format!(" {a}")).unwrap_or_default()
        ),
        _ => kind.label().to_string(),
    };
    Ok(RunResult {
        kind,
        label,
        seconds: done.duration_since(t0).as_secs_f64(),
        send_seconds: sent.map(|s| s.duration_since(t0).as_secs_f64()),
        prefixes: count,
        baseline_kib,
        peak_kib,
        end_kib,
        extra,
        polls,
        all_seconds: Vec::new(),
    })
}

/// Folds repetitions of one receiver into the run with the median time
/// (its RSS figures too), remembering every time.
pub fn median(mut runs: Vec<RunResult>) -> Option<RunResult> {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let all: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let mid = runs.len().checked_sub(1)? / 2;
    let mut r = runs.swap_remove(mid);
    if all.len() > 1 {
        r.all_seconds = all;
    }
    Some(r)
}

/// The side-by-side table (Markdown), with ratios against BIRD.
pub fn table(results: &[RunResult]) -> String {
    let bird = results.iter().find(|r| r.kind == Kind::Bird);
    let mut s = String::from(
        "| receiver | seconds to Loc-RIB | prefixes/s | baseline RSS MiB | peak RSS MiB | RSS at end MiB | bytes/route (peak - baseline) | bytes/route (end - baseline) | time vs BIRD | bytes/route vs BIRD (peak) | notes |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in results {
        let (tr, br) = match bird {
            Some(b) => (
                format!("{:.2}x", r.seconds / b.seconds.max(1e-9)),
                format!(
                    "{:.2}x",
                    r.bytes_per_route() / b.bytes_per_route().max(1e-9)
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        let mut notes = Vec::new();
        if !r.all_seconds.is_empty() {
            let v: Vec<String> = r.all_seconds.iter().map(|x| format!("{x:.2}")).collect();
            notes.push(format!("median of {} runs: {} s", v.len(), v.join(" / ")));
        }
        if let Some(ss) = r.send_seconds {
            notes.push(format!("feed written in {ss:.2} s"));
        }
        for (n, k) in &r.extra {
            notes.push(format!("{n} peak {:.1} MiB", *k as f64 / 1024.0));
        }
        s.push_str(&format!(
            "| {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {} | {} |\n",
            r.label,
            r.seconds,
            r.rate(),
            r.baseline_kib as f64 / 1024.0,
            r.peak_kib as f64 / 1024.0,
            r.end_kib as f64 / 1024.0,
            r.bytes_per_route(),
            r.settled_bytes_per_route(),
            tr,
            br,
            notes.join("; ")
        ));
    }
    s
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
    use std::collections::HashSet;

    #[test]
    fn feed_has_unique_prefixes_in_the_requested_mix() {
        let spec = FeedSpec {
            prefixes: 20_000,
            attr_sets: 300,
            ..FeedSpec::default()
        };
        let f = build_feed(&spec, FEEDER_ADDR).unwrap();
        assert_eq!(f.v24 + f.v32, 20_000);
        assert_eq!(f.v24, 14_000);
        let ctx = session_ctx();
        let mut seen = HashSet::new();
        let mut off = 0;
        let mut updates = 0;
        let mut last = None;
        while off < f.wire.len() {
            let n = frame(&f.wire[off..], &ctx).unwrap().unwrap();
            assert!(n <= 4096);
            let Message::Update(u) = Message::decode(&f.wire[off..off + n], &ctx).unwrap() else {
                panic!("not an UPDATE");
            };
            for p in &u.nlri {
                assert!(seen.insert(p.prefix), "duplicate {:?}", p.prefix);
                last = Some(p.prefix);
            }
            updates += 1;
            off += n;
        }
        assert_eq!(seen.len(), 20_000);
        assert_eq!(updates, f.updates);
        assert_eq!(last, Some(f.last_prefix));
        assert!(f.attr_sets_used > 250, "{}", f.attr_sets_used);
        assert_eq!(f.chunks.last(), Some(&f.wire.len()));
    }

    #[test]
    fn small_runs_make_more_updates_with_the_same_prefixes() {
        let packed = FeedSpec {
            prefixes: 5_000,
            attr_sets: 100,
            ..FeedSpec::default()
        };
        let runs = FeedSpec {
            max_per_update: Some(10),
            ..packed
        };
        let a = build_feed(&packed, FEEDER_ADDR).unwrap();
        let b = build_feed(&runs, FEEDER_ADDR).unwrap();
        assert!(b.updates > a.updates * 5, "{} vs {}", b.updates, a.updates);
        assert_eq!(a.attr_sets_used, b.attr_sets_used);
        assert!(b.wire.len() > a.wire.len());
    }

    #[test]
    fn flatnet_receiver_config_parses() {
        let c = flatnet_bgpd::config::parse(&flatnet_config(), "r.toml").unwrap();
        assert_eq!(c.asn, RECEIVER_AS);
        assert_eq!(c.peers.len(), 1);
        assert!(c.peers[0].passive);
    }
}
