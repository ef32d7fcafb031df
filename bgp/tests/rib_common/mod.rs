//! Shared helpers for the rib_* tests (and the rib bench, via `#[path]`): a
//! RIB, peers, UPDATE builders, and a live-bytes counting allocator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use flatnet_bgp::policy::Policy;
use flatnet_bgp::rib::{Changes, DecisionConfig, PeerId, PeerInfo, Rib, RibConfig};
use flatnet_bgp::wire::{
    AsPath, AsSegment, AttrValue, Community, Ipv4Prefix, LargeCommunity, Nlri4, Origin,
    PathAttribute, Prefix, SegmentType, Update,
};

pub const LOCAL_AS: u32 = 65000;

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn p4(s: &str) -> Ipv4Prefix {
    let (a, l) = s.split_once('/').unwrap();
    Ipv4Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
}

pub fn pfx(s: &str) -> Prefix {
    Prefix::V4(p4(s))
}

pub fn rib_with(decision: DecisionConfig) -> Rib {
    Rib::new(RibConfig {
        local_as: LOCAL_AS,
        router_id: ip("10.255.0.1"),
        decision,
    })
}

pub fn rib() -> Rib {
    rib_with(DecisionConfig::default())
}

/// A peer description for tests: eBGP/iBGP by AS, accept-all policies.
pub fn info(asn: u32, rid: &str, addr: &str) -> PeerInfo {
    let mut i = PeerInfo::new(LOCAL_AS, asn, ip(rid), IpAddr::V4(ip(addr)));
    i.import = Some(Policy::accept_all("all"));
    i.export = Some(Policy::accept_all("all"));
    i.local_v4 = Some(ip("192.0.2.1"));
    i
}

pub fn up(rib: &mut Rib, id: u32, asn: u32, rid: &str, addr: &str) -> Changes {
    rib.peer_up(PeerId(id), info(asn, rid, addr))
}

/// A route description turned into an UPDATE.
#[derive(Clone, Debug)]
pub struct R {
    pub path: AsPath,
    pub lp: Option<u32>,
    pub med: Option<u32>,
    pub origin: Origin,
    pub nh: Ipv4Addr,
    pub originator: Option<Ipv4Addr>,
    pub cluster: Vec<Ipv4Addr>,
    pub communities: Vec<Community>,
    pub large: Vec<LargeCommunity>,
}

impl R {
    pub fn path(asns: &[u32]) -> R {
        R {
            path: AsPath::sequence(asns.to_vec()),
            lp: None,
            med: None,
            origin: Origin::Igp,
            nh: ip("198.51.100.1"),
            originator: None,
            cluster: Vec::new(),
            communities: Vec::new(),
            large: Vec::new(),
        }
    }
    pub fn segments(segs: Vec<(SegmentType, Vec<u32>)>) -> R {
        let mut r = R::path(&[]);
        r.path = AsPath {
            segments: segs
                .into_iter()
                .map(|(kind, asns)| AsSegment { kind, asns })
                .collect(),
        };
        r
    }
    pub fn lp(mut self, v: u32) -> R {
        self.lp = Some(v);
        self
    }
    pub fn med(mut self, v: u32) -> R {
        self.med = Some(v);
        self
    }
    pub fn origin(mut self, o: Origin) -> R {
        self.origin = o;
        self
    }
    pub fn nh(mut self, s: &str) -> R {
        self.nh = ip(s);
        self
    }
    pub fn originator(mut self, s: &str) -> R {
        self.originator = Some(ip(s));
        self
    }
    pub fn cluster(mut self, n: usize) -> R {
        self.cluster = (0..n).map(|i| Ipv4Addr::new(10, 9, 9, i as u8)).collect();
        self
    }
    pub fn community(mut self, c: Community) -> R {
        self.communities.push(c);
        self
    }
    pub fn large(mut self, c: LargeCommunity) -> R {
        self.large.push(c);
        self
    }
    pub fn attrs(&self) -> Vec<PathAttribute> {
        let mut v = vec![
            PathAttribute::new(AttrValue::Origin(self.origin)),
            PathAttribute::new(AttrValue::AsPath(self.path.clone())),
            PathAttribute::new(AttrValue::NextHop(self.nh)),
        ];
        if let Some(m) = self.med {
            v.push(PathAttribute::new(AttrValue::Med(m)));
        }
        if let Some(l) = self.lp {
            v.push(PathAttribute::new(AttrValue::LocalPref(l)));
        }
        if !self.communities.is_empty() {
            v.push(PathAttribute::new(AttrValue::Communities(
                self.communities.clone(),
            )));
        }
        if let Some(o) = self.originator {
            v.push(PathAttribute::new(AttrValue::OriginatorId(o)));
        }
        if !self.cluster.is_empty() {
            v.push(PathAttribute::new(AttrValue::ClusterList(
                self.cluster.clone(),
            )));
        }
        if !self.large.is_empty() {
            v.push(PathAttribute::new(AttrValue::LargeCommunities(
                self.large.clone(),
            )));
        }
        v
    }
    pub fn update(&self, prefixes: &[&str]) -> Update {
        Update {
            withdrawn: Vec::new(),
            attributes: self.attrs(),
            nlri: prefixes.iter().map(|p| Nlri4::new(p4(p))).collect(),
        }
    }
}

pub fn announce(rib: &mut Rib, peer: u32, r: &R, prefixes: &[&str]) -> Changes {
    rib.apply_update(PeerId(peer), &r.update(prefixes)).unwrap()
}

pub fn withdraw(rib: &mut Rib, peer: u32, prefixes: &[&str]) -> Changes {
    let u = Update {
        withdrawn: prefixes.iter().map(|p| Nlri4::new(p4(p))).collect(),
        ..Update::default()
    };
    rib.apply_update(PeerId(peer), &u).unwrap()
}

pub fn best_peer(rib: &Rib, p: &str) -> Option<u32> {
    rib.best(&pfx(p)).map(|x| x.peer.0)
}

pub fn multipath_peers(rib: &Rib, p: &str) -> Vec<u32> {
    let mut v: Vec<u32> = rib.multipath(&pfx(p)).iter().map(|x| x.peer.0).collect();
    v.sort_unstable();
    v
}

/// A global allocator that counts live heap bytes, for the bytes-per-route
/// figures of the rib_memory test and the rib bench. Opt in per binary with
/// `#[global_allocator] static A: Counting = Counting;`.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Bytes allocated through [`Counting`] and not yet freed.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with `l`.
        unsafe { System.realloc(p, l, n) }
    }
}
