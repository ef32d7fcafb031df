//! Import and export policy: ordered terms, each a conjunction of matches
//! with set actions and a final accept/reject; the first matching term
//! decides, else the policy's default. Pure data + evaluation, no I/O.
//!
//! RFC 8212: an eBGP peer with no explicit policy in a direction accepts
//! (sends) nothing; [`rfc8212_reason`] is the log line that says so.

use std::fmt;
use std::net::IpAddr;

use crate::rib::Attrs;
use crate::wire::{Community, LargeCommunity, Prefix};

/// What a term (or the default) does with a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Take the route (with the term's actions applied).
    Accept,
    /// Drop the route.
    Reject,
}

/// One prefix-list line: `prefix [ge G] [le L]` (Cisco/FRR semantics).
/// Without ge/le only the exact prefix matches; `ge` alone means
/// `G..=max`, `le` alone `len..=L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixListEntry {
    /// The covering prefix.
    pub prefix: Prefix,
    /// Minimum length of a matching prefix.
    pub ge: Option<u8>,
    /// Maximum length of a matching prefix.
    pub le: Option<u8>,
}

/// A prefix-list entry whose ge/le do not satisfy `len <= ge <= le <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("prefix-list entry {prefix}: need len <= ge <= le <= {max} (ge {ge:?}, le {le:?})")]
pub struct PrefixListError {
    /// The entry's prefix.
    pub prefix: Prefix,
    /// Given ge.
    pub ge: Option<u8>,
    /// Given le.
    pub le: Option<u8>,
    /// Maximum length of the family.
    pub max: u8,
}

fn plen(p: &Prefix) -> u8 {
    match p {
        Prefix::V4(p) => p.len(),
        Prefix::V6(p) => p.len(),
    }
}

fn pmax(p: &Prefix) -> u8 {
    match p {
        Prefix::V4(_) => 32,
        Prefix::V6(_) => 128,
    }
}

/// Whether `inner` lies within `outer` (same family, first `outer.len` bits equal).
fn covers(outer: &Prefix, inner: &Prefix) -> bool {
    match (outer, inner) {
        (Prefix::V4(o), Prefix::V4(i)) => i.len() >= o.len() && o.contains(i.addr()),
        (Prefix::V6(o), Prefix::V6(i)) => {
            if i.len() < o.len() {
                return false;
            }
            let l = u32::from(o.len());
            let m = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            (o.addr().to_bits() & m) == (i.addr().to_bits() & m)
        }
        _ => false,
    }
}

impl PrefixListEntry {
    /// A checked entry.
    pub fn new(
        prefix: Prefix,
        ge: Option<u8>,
        le: Option<u8>,
    ) -> Result<PrefixListEntry, PrefixListError> {
        let (len, max) = (plen(&prefix), pmax(&prefix));
        let lo = ge.unwrap_or(len);
        let hi = le.unwrap_or(if ge.is_some() { max } else { len });
        if lo < len || hi < lo || hi > max {
            return Err(PrefixListError {
                prefix,
                ge,
                le,
                max,
            });
        }
        Ok(PrefixListEntry { prefix, ge, le })
    }

    /// Whether `p` matches this line.
    pub fn matches(&self, p: &Prefix) -> bool {
        let (len, max) = (plen(&self.prefix), pmax(&self.prefix));
        let lo = self.ge.unwrap_or(len);
        let hi = self.le.unwrap_or(if self.ge.is_some() { max } else { len });
        let l = plen(p);
        (lo..=hi).contains(&l) && covers(&self.prefix, p)
    }
}

/// A prefix list: matches if any line matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PrefixList {
    /// Lines, any order.
    pub entries: Vec<PrefixListEntry>,
}

impl PrefixList {
    /// Whether any line matches `p`.
    pub fn matches(&self, p: &Prefix) -> bool {
        self.entries.iter().any(|e| e.matches(p))
    }
}

/// One condition of a term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    /// The prefix is in the list.
    Prefix(PrefixList),
    /// The route carries this community.
    Community(Community),
    /// The route carries this large community.
    LargeCommunity(LargeCommunity),
    /// The AS_PATH contains this AS anywhere.
    AsPathContains(u32),
    /// The AS_PATH is at most this long (RFC 4271 counting).
    AsPathLenAtMost(usize),
}

impl Match {
    /// Whether the route matches.
    pub fn matches(&self, prefix: &Prefix, a: &Attrs) -> bool {
        match self {
            Match::Prefix(l) => l.matches(prefix),
            Match::Community(c) => a.communities.contains(c),
            Match::LargeCommunity(c) => a.large_communities.contains(c),
            Match::AsPathContains(asn) => a.as_path_contains(*asn),
            Match::AsPathLenAtMost(n) => a.as_path.path_len() <= *n,
        }
    }
}

/// One modification of an accepted route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Replace all communities.
    SetCommunities(Vec<Community>),
    /// Add communities (no duplicates).
    AddCommunities(Vec<Community>),
    /// Remove these communities.
    RemoveCommunities(Vec<Community>),
    /// Replace all large communities.
    SetLargeCommunities(Vec<LargeCommunity>),
    /// Add large communities (no duplicates).
    AddLargeCommunities(Vec<LargeCommunity>),
    /// Remove these large communities.
    RemoveLargeCommunities(Vec<LargeCommunity>),
    /// Set LOCAL_PREF.
    SetLocalPref(u32),
    /// Set MULTI_EXIT_DISC.
    SetMed(u32),
    /// Prepend `asn` (the local AS when `None`) `count` times.
    Prepend {
        /// AS to prepend; `None` = the session's local AS.
        asn: Option<u32>,
        /// How many times.
        count: u8,
    },
}

impl Action {
    /// Apply to `a`; `local_as` fills in a prepend without an explicit AS.
    pub fn apply(&self, a: &mut Attrs, local_as: u32) {
        fn add<T: PartialEq + Copy>(v: &mut Vec<T>, xs: &[T]) {
            for x in xs {
                if !v.contains(x) {
                    v.push(*x);
                }
            }
        }
        match self {
            Action::SetCommunities(c) => a.communities.clone_from(c),
            Action::AddCommunities(c) => add(&mut a.communities, c),
            Action::RemoveCommunities(c) => a.communities.retain(|x| !c.contains(x)),
            Action::SetLargeCommunities(c) => a.large_communities.clone_from(c),
            Action::AddLargeCommunities(c) => add(&mut a.large_communities, c),
            Action::RemoveLargeCommunities(c) => a.large_communities.retain(|x| !c.contains(x)),
            Action::SetLocalPref(l) => a.local_pref = Some(*l),
            Action::SetMed(m) => a.med = Some(*m),
            Action::Prepend { asn, count } => a
                .as_path
                .prepend(asn.unwrap_or(local_as), usize::from(*count)),
        }
    }
}

/// An ordered policy term: if all `matches` hold, apply `actions` and
/// end with `disposition`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Term {
    /// Name for logs and `show` output.
    pub name: String,
    /// All must match (empty: always matches).
    pub matches: Vec<Match>,
    /// Applied in order when the term accepts.
    pub actions: Vec<Action>,
    /// Final verdict of the term.
    pub disposition: Disposition,
}

/// A named import or export policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Name for logs.
    pub name: String,
    /// Evaluated in order; the first matching term decides.
    pub terms: Vec<Term>,
    /// Verdict when no term matches.
    pub default: Disposition,
}

/// The outcome of evaluating a policy on one route: which term decided
/// (`None` = the default). Results with the same verdict on the same
/// input attributes are identical, which lets the RIB cache them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// Index of the deciding term, `None` for the default.
    pub term: Option<usize>,
    /// Accept or reject.
    pub disposition: Disposition,
}

impl Policy {
    /// A policy that accepts everything unchanged.
    pub fn accept_all(name: &str) -> Policy {
        Policy {
            name: name.to_string(),
            terms: Vec::new(),
            default: Disposition::Accept,
        }
    }

    /// A policy that rejects everything.
    pub fn reject_all(name: &str) -> Policy {
        Policy {
            name: name.to_string(),
            terms: Vec::new(),
            default: Disposition::Reject,
        }
    }

    /// Which term decides for this route.
    pub fn evaluate(&self, prefix: &Prefix, a: &Attrs) -> Verdict {
        for (i, t) in self.terms.iter().enumerate() {
            if t.matches.iter().all(|m| m.matches(prefix, a)) {
                return Verdict {
                    term: Some(i),
                    disposition: t.disposition,
                };
            }
        }
        Verdict {
            term: None,
            disposition: self.default,
        }
    }

    /// Apply the deciding term's actions to a copy of `a`; `None` if the
    /// verdict rejects or the term changes nothing.
    pub fn modified(&self, v: Verdict, a: &Attrs, local_as: u32) -> Option<Attrs> {
        if v.disposition == Disposition::Reject {
            return None;
        }
        let t = self.terms.get(v.term?)?;
        if t.actions.is_empty() {
            return None;
        }
        let mut out = a.clone();
        for act in &t.actions {
            act.apply(&mut out, local_as);
        }
        Some(out)
    }

    /// Evaluate and apply: `None` = rejected, `Some(a)` = the route as accepted.
    pub fn apply(&self, prefix: &Prefix, a: &Attrs, local_as: u32) -> Option<Attrs> {
        let v = self.evaluate(prefix, a);
        match v.disposition {
            Disposition::Reject => None,
            Disposition::Accept => Some(self.modified(v, a, local_as).unwrap_or_else(|| a.clone())),
        }
    }
}

/// Direction of a policy, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Routes received from the peer.
    Import,
    /// Routes sent to the peer.
    Export,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Import => "import",
            Direction::Export => "export",
        })
    }
}

/// The log line for an eBGP peer without an explicit policy (RFC 8212).
pub fn rfc8212_reason(peer: IpAddr, dir: Direction) -> String {
    match dir {
        Direction::Import => format!(
            "eBGP peer {peer} has no import policy: RFC 8212 rejects all routes from it; configure `import = ...`"
        ),
        Direction::Export => format!(
            "eBGP peer {peer} has no export policy: RFC 8212 sends it no routes; configure `export = ...`"
        ),
    }
}
