//! Interned path attributes.
//!
//! A full table has a million routes but only a few thousand distinct
//! attribute sets, so a route holds an `Arc<Attrs>` (8 bytes) into a
//! hash-consing table instead of its own copy. The table drops sets nobody
//! else holds in amortised sweeps ([`Interner::maybe_gc`]).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::wire::{
    Aggregator, AsPath, AttrValue, Community, EncodeContext, ExtendedCommunity, LargeCommunity,
    MpNextHop, Origin, PathAttribute, SegmentType,
};

/// One route's path attributes, parsed into the fields the decision
/// process and policy use; everything else is kept raw in `other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// ORIGIN (missing is treated as INCOMPLETE, the least preferred).
    pub origin: Origin,
    /// AS_PATH after the RFC 6793 AS4_PATH merge.
    pub as_path: AsPath,
    /// Next hop (NEXT_HOP or MP_REACH next hop); `None` for a local route
    /// originated without one (next-hop-self on export).
    pub next_hop: Option<MpNextHop>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE present.
    pub atomic_aggregate: bool,
    /// AGGREGATOR (after the AS4_AGGREGATOR merge).
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES.
    pub communities: Vec<Community>,
    /// EXTENDED_COMMUNITIES.
    pub extended_communities: Vec<ExtendedCommunity>,
    /// LARGE_COMMUNITY.
    pub large_communities: Vec<LargeCommunity>,
    /// ORIGINATOR_ID (RFC 4456).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456).
    pub cluster_list: Vec<Ipv4Addr>,
    /// Attributes we do not interpret (unknown types), as received.
    pub other: Vec<PathAttribute>,
}

impl Default for Attrs {
    fn default() -> Attrs {
        Attrs {
            origin: Origin::Igp,
            as_path: AsPath::default(),
            next_hop: None,
            med: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            communities: Vec::new(),
            extended_communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            other: Vec::new(),
        }
    }
}

impl Attrs {
    /// Build from received attributes (`path_attributes()` of an UPDATE,
    /// i.e. without MP_REACH/MP_UNREACH). `as_path`/`aggregator` come from
    /// `Update::effective_as_path` so 2-octet sessions are merged already.
    pub fn from_received<'a>(
        attrs: impl Iterator<Item = &'a PathAttribute>,
        as_path: AsPath,
        aggregator: Option<Aggregator>,
        next_hop: Option<MpNextHop>,
    ) -> Attrs {
        let mut a = Attrs {
            origin: Origin::Incomplete,
            as_path,
            aggregator,
            next_hop,
            ..Attrs::default()
        };
        for pa in attrs {
            match &pa.value {
                AttrValue::Origin(o) => a.origin = *o,
                AttrValue::Med(m) => a.med = Some(*m),
                AttrValue::LocalPref(l) => a.local_pref = Some(*l),
                AttrValue::AtomicAggregate => a.atomic_aggregate = true,
                AttrValue::Communities(c) => a.communities.clone_from(c),
                AttrValue::ExtendedCommunities(c) => a.extended_communities.clone_from(c),
                AttrValue::LargeCommunities(c) => a.large_communities.clone_from(c),
                AttrValue::OriginatorId(o) => a.originator_id = Some(*o),
                AttrValue::ClusterList(c) => a.cluster_list.clone_from(c),
                // Merged into `as_path`/`aggregator` by the caller; NEXT_HOP is `next_hop`.
                AttrValue::AsPath(_)
                | AttrValue::As4Path(_)
                | AttrValue::Aggregator(_)
                | AttrValue::As4Aggregator(_)
                | AttrValue::NextHop(_)
                | AttrValue::MpReach(_)
                | AttrValue::MpUnreach(_) => {}
                AttrValue::Unknown { .. } => a.other.push(pa.clone()),
            }
        }
        a
    }

    /// The neighbouring AS for the MED comparison: the first AS of the
    /// path, or `local_as` for a route from inside our AS.
    pub fn neighbour_as(&self, local_as: u32) -> u32 {
        self.as_path.first_as().unwrap_or(local_as)
    }

    /// Whether `asn` appears in the AS_PATH (loop detection, RFC 4271 9.1.2).
    pub fn as_path_contains(&self, asn: u32) -> bool {
        self.as_path
            .segments
            .iter()
            .filter(|s| matches!(s.kind, SegmentType::Sequence | SegmentType::Set))
            .any(|s| s.asns.contains(&asn))
    }

    /// LOCAL_PREF with the conventional default of 100 when absent.
    pub fn local_pref_or_default(&self) -> u32 {
        self.local_pref.unwrap_or(100)
    }

    /// Path attributes to send, in type-code order, without next hop (the
    /// packer adds NEXT_HOP for IPv4 or MP_REACH for the others). Adds
    /// AS4_PATH/AS4_AGGREGATOR towards 2-octet speakers (RFC 6793).
    pub fn to_path_attributes(&self, ctx: &EncodeContext) -> Vec<PathAttribute> {
        let mut v = Vec::with_capacity(8 + self.other.len());
        v.push(PathAttribute::new(AttrValue::Origin(self.origin)));
        v.push(PathAttribute::new(AttrValue::AsPath(self.as_path.clone())));
        if let Some(m) = self.med {
            v.push(PathAttribute::new(AttrValue::Med(m)));
        }
        if let Some(l) = self.local_pref {
            v.push(PathAttribute::new(AttrValue::LocalPref(l)));
        }
        if self.atomic_aggregate {
            v.push(PathAttribute::new(AttrValue::AtomicAggregate));
        }
        if let Some(g) = self.aggregator {
            v.push(PathAttribute::new(AttrValue::Aggregator(g)));
        }
        if !self.communities.is_empty() {
            v.push(PathAttribute::new(AttrValue::Communities(
                self.communities.clone(),
            )));
        }
        if let Some(o) = self.originator_id {
            v.push(PathAttribute::new(AttrValue::OriginatorId(o)));
        }
        if !self.cluster_list.is_empty() {
            v.push(PathAttribute::new(AttrValue::ClusterList(
                self.cluster_list.clone(),
            )));
        }
        if !self.extended_communities.is_empty() {
            v.push(PathAttribute::new(AttrValue::ExtendedCommunities(
                self.extended_communities.clone(),
            )));
        }
        if !ctx.four_octet_as && self.as_path.has_four_octet_asn() {
            v.push(PathAttribute::new(AttrValue::As4Path(self.as_path.clone())));
        }
        if !ctx.four_octet_as
            && let Some(g) = self.aggregator
            && g.asn > u32::from(u16::MAX)
        {
            v.push(PathAttribute::new(AttrValue::As4Aggregator(g)));
        }
        if !self.large_communities.is_empty() {
            v.push(PathAttribute::new(AttrValue::LargeCommunities(
                self.large_communities.clone(),
            )));
        }
        v.extend(self.other.iter().filter_map(PathAttribute::readvertised));
        v.sort_by_key(PathAttribute::type_code);
        v
    }
}

/// The hash-consing table: one `Arc<Attrs>` per distinct attribute set.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<Arc<Attrs>>,
    gc_at: usize,
    /// The set interned last: consecutive UPDATEs of a feed usually share
    /// one, and comparing is cheaper than hashing the whole set.
    last: Option<Arc<Attrs>>,
}

impl Interner {
    /// The shared copy of `a` (inserted if new).
    pub fn intern(&mut self, a: Attrs) -> Arc<Attrs> {
        if let Some(l) = &self.last
            && **l == a
        {
            return Arc::clone(l);
        }
        let x = match self.set.get(&a) {
            Some(x) => Arc::clone(x),
            None => {
                let x = Arc::new(a);
                self.set.insert(Arc::clone(&x));
                x
            }
        };
        self.last = Some(Arc::clone(&x));
        x
    }

    /// Drop sets only the table holds, when the table has doubled since the
    /// last sweep (amortised O(1) per insert).
    pub fn maybe_gc(&mut self) {
        if self.set.len() >= self.gc_at.max(1024) {
            self.gc();
        }
    }

    /// Drop every set only the table holds.
    pub fn gc(&mut self) {
        self.last = None;
        self.set.retain(|a| Arc::strong_count(a) > 1);
        self.gc_at = self.set.len() * 2;
    }

    /// Number of distinct attribute sets held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no set is held.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
