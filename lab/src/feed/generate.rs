//! The feed: a deterministic table of unique IPv4 prefixes spread over a
//! skewed choice of attribute sets, packed into UPDATEs once with flatnet's
//! codec so every receiver gets the same bytes.

use std::net::Ipv4Addr;

use flatnet_bgp::wire::{
    AsPath, AttrValue, Community, DecodeContext, Ipv4Prefix, LargeCommunity, Message, Nlri4,
    Origin, PathAttribute, pack_ipv4,
};

use super::{FEEDER_AS, FeedError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    use flatnet_bgp::wire::frame;

    use crate::feed::FEEDER_ADDR;

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
}
