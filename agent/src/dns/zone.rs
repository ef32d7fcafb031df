//! The discovery zone, pure: endpoint records of the whole cluster in,
//! answers out. No I/O, no clock, no DNS wire types (the server maps
//! [`Lookup`] onto hickory's records).
//!
//! Names, relative to the zone (default `apps.internal`):
//! - `<app>`: every address of the app's endpoints, on any host;
//! - `<container-id>.<app>`: the addresses of one container (an id longer
//!   than a DNS label may be given by a unique prefix of at least
//!   [`MIN_ID_PREFIX`] characters, like Docker's short ids);
//! - the zone's apex and the names above an app with dots in its id
//!   (`shop` for `cart.shop`) exist without addresses.
//!
//! A name that exists gets its addresses of the asked family, possibly none
//! (NOERROR, empty); any other name inside the zone is NXDOMAIN; names
//! outside it are not the zone's to answer. Comparisons ignore ASCII case.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The default zone.
pub const DEFAULT_ZONE: &str = "apps.internal";
/// The default TTL of answers, seconds.
pub const DEFAULT_TTL: u32 = 5;
/// The shortest container-id prefix that names one instance.
pub const MIN_ID_PREFIX: usize = 12;

/// One endpoint as the zone sees it (any host's record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    pub app: Option<String>,
    pub container_id: String,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// The host it runs on (for logs and tests; answers do not depend on it).
    pub node: String,
}

impl From<&crate::api::Endpoint> for EndpointRecord {
    fn from(ep: &crate::api::Endpoint) -> Self {
        EndpointRecord {
            app: ep.app.clone(),
            container_id: ep.container_id.clone(),
            v4: ep.v4,
            v6: ep.v6,
            node: ep.node.clone(),
        }
    }
}

/// The record types the zone distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    A,
    Aaaa,
    /// ANY: both families.
    Any,
    Soa,
    /// Any other type: exists or not, never data.
    Other,
}

/// What the zone says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name exists; its addresses of the asked family (may be empty:
    /// NOERROR without answers).
    Addrs(Vec<IpAddr>),
    /// The apex SOA was asked for.
    Soa,
    /// Inside the zone, no such name.
    NxDomain,
    /// Not inside the zone.
    OutOfZone,
}

#[derive(Debug, Default, Clone)]
struct Addrs {
    v4: BTreeSet<Ipv4Addr>,
    v6: BTreeSet<Ipv6Addr>,
}

impl Addrs {
    fn add(&mut self, r: &EndpointRecord) {
        self.v4.extend(r.v4);
        self.v6.extend(r.v6);
    }

    fn select(&self, q: QueryType) -> Vec<IpAddr> {
        let v4 = self.v4.iter().map(|a| IpAddr::V4(*a));
        let v6 = self.v6.iter().map(|a| IpAddr::V6(*a));
        match q {
            QueryType::A => v4.collect(),
            QueryType::Aaaa => v6.collect(),
            QueryType::Any => v4.chain(v6).collect(),
            QueryType::Soa | QueryType::Other => Vec::new(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct App {
    all: Addrs,
    /// Lowercased container id → its addresses (every interface).
    instances: BTreeMap<String, Addrs>,
}

/// A normalised zone name: lowercase, no trailing dot. `None` when it is
/// not a DNS name of at most 253 characters with labels of 1..=63 of
/// `[a-z0-9_-]`.
pub fn normalize_zone(name: &str) -> Option<String> {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        });
    ok.then_some(n)
}

/// The zone at one moment: built whole from the records, then read-only.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: String,
    ttl: u32,
    apps: HashMap<String, App>,
    /// Relative names that exist only as ancestors of an app's name.
    empty_nonterminals: HashSet<String>,
    /// Bumped by the follower on each rebuild: the SOA serial.
    serial: u32,
}

impl Zone {
    /// An empty zone; `origin` must be normalised ([`normalize_zone`]).
    pub fn new(origin: &str, ttl: u32) -> Zone {
        Zone {
            origin: origin.to_string(),
            ttl,
            apps: HashMap::new(),
            empty_nonterminals: HashSet::new(),
            serial: 0,
        }
    }

    /// The zone of these records. Records without an app have no name; an
    /// app id that is not a DNS name (cannot happen through flatnet's
    /// checks, but records are input) is left out.
    pub fn build<'a>(
        origin: &str,
        ttl: u32,
        serial: u32,
        records: impl IntoIterator<Item = &'a EndpointRecord>,
    ) -> Zone {
        let mut z = Zone::new(origin, ttl);
        z.serial = serial;
        for r in records {
            let Some(app) = r.app.as_deref().and_then(app_name) else {
                continue;
            };
            let e = z.apps.entry(app).or_default();
            e.all.add(r);
            e.instances
                .entry(r.container_id.to_ascii_lowercase())
                .or_default()
                .add(r);
        }
        for app in z.apps.keys() {
            let mut rest = app.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                z.empty_nonterminals.insert(parent.to_string());
                rest = parent;
            }
        }
        z
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Apps with at least one endpoint.
    pub fn apps(&self) -> usize {
        self.apps.len()
    }

    /// Whether `name` (any case, with or without the final dot) is the
    /// zone or below it.
    pub fn contains(&self, name: &str) -> bool {
        self.relative(&name.to_ascii_lowercase()).is_some()
    }

    /// `name` relative to the origin: `Some("")` for the apex.
    fn relative<'n>(&self, name: &'n str) -> Option<&'n str> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name == self.origin {
            return Some("");
        }
        name.strip_suffix(self.origin.as_str())?.strip_suffix('.')
    }

    /// Answers `name` for `q`.
    pub fn lookup(&self, name: &str, q: QueryType) -> Lookup {
        let lower = name.to_ascii_lowercase();
        let Some(rel) = self.relative(&lower) else {
            return Lookup::OutOfZone;
        };
        if rel.is_empty() {
            return match q {
                QueryType::Soa => Lookup::Soa,
                _ => Lookup::Addrs(Vec::new()),
            };
        }
        if let Some(app) = self.apps.get(rel) {
            return Lookup::Addrs(app.all.select(q));
        }
        if let Some(inst) = self.instance(rel) {
            return Lookup::Addrs(inst.select(q));
        }
        if self.empty_nonterminals.contains(rel) {
            return Lookup::Addrs(Vec::new());
        }
        Lookup::NxDomain
    }

    /// `<container-id>.<app>`: an id may itself hold dots, so every split
    /// whose right side is an app is tried.
    fn instance(&self, rel: &str) -> Option<&Addrs> {
        let mut at = 0;
        while let Some(dot) = rel[at..].find('.') {
            let (id, app) = (&rel[..at + dot], &rel[at + dot + 1..]);
            if let Some(a) = self.apps.get(app) {
                if let Some(i) = a.instances.get(id) {
                    return Some(i);
                }
                if id.len() >= MIN_ID_PREFIX {
                    let mut m = a
                        .instances
                        .range(id.to_string()..)
                        .take_while(|(k, _)| k.starts_with(id));
                    if let (Some((_, i)), None) = (m.next(), m.next()) {
                        return Some(i);
                    }
                }
            }
            at += dot + 1;
        }
        None
    }
}

/// An app id as a relative name: lowercase labels of 1..=63 characters.
fn app_name(app: &str) -> Option<String> {
    let a = app.to_ascii_lowercase();
    let ok =
        !a.is_empty() && a.len() <= 190 && a.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    ok.then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        app: Option<&str>,
        id: &str,
        v4: Option<&str>,
        v6: Option<&str>,
        node: &str,
    ) -> EndpointRecord {
        EndpointRecord {
            app: app.map(String::from),
            container_id: id.into(),
            v4: v4.map(|a| a.parse().unwrap()),
            v6: v6.map(|a| a.parse().unwrap()),
            node: node.into(),
        }
    }

    fn ips(v: &[&str]) -> Lookup {
        Lookup::Addrs(v.iter().map(|a| a.parse().unwrap()).collect())
    }

    fn cluster() -> Zone {
        let recs = [
            rec(
                Some("cart"),
                "c1",
                Some("10.244.0.2"),
                Some("fd00::2"),
                "ha",
            ),
            rec(Some("cart"), "c2", Some("10.244.1.7"), None, "hb"),
            rec(Some("orders"), "o1", Some("10.244.1.9"), None, "hb"),
            rec(Some("v6only"), "s1", None, Some("fd00::9"), "ha"),
            rec(None, "noapp", Some("10.244.0.3"), None, "ha"),
            rec(Some("cart.shop"), "Web.1", Some("10.244.0.4"), None, "ha"),
            rec(
                Some("long"),
                &"f".repeat(70),
                Some("10.244.0.5"),
                None,
                "hb",
            ),
        ];
        Zone::build(DEFAULT_ZONE, DEFAULT_TTL, 1, &recs)
    }

    #[test]
    fn app_names_answer_every_endpoint_on_every_host() {
        let z = cluster();
        assert_eq!(
            z.lookup("cart.apps.internal.", QueryType::A),
            ips(&["10.244.0.2", "10.244.1.7"])
        );
        assert_eq!(
            z.lookup("cart.apps.internal", QueryType::Aaaa),
            ips(&["fd00::2"])
        );
        assert_eq!(
            z.lookup("cart.apps.internal", QueryType::Any),
            ips(&["10.244.0.2", "10.244.1.7", "fd00::2"])
        );
        assert_eq!(
            z.lookup("orders.apps.internal", QueryType::A),
            ips(&["10.244.1.9"])
        );
    }

    #[test]
    fn one_instance_by_container_id() {
        let z = cluster();
        assert_eq!(
            z.lookup("c2.cart.apps.internal", QueryType::A),
            ips(&["10.244.1.7"])
        );
        assert_eq!(
            z.lookup("c1.cart.apps.internal", QueryType::Aaaa),
            ips(&["fd00::2"])
        );
        // An id of another app is not an instance of this one.
        assert_eq!(
            z.lookup("o1.cart.apps.internal", QueryType::A),
            Lookup::NxDomain
        );
        // Ids with dots and capitals, apps with dots.
        assert_eq!(
            z.lookup("WEB.1.Cart.Shop.apps.internal", QueryType::A),
            ips(&["10.244.0.4"])
        );
        // An id longer than a label: a unique prefix of 12 or more.
        assert_eq!(
            z.lookup(
                &format!("{}.long.apps.internal", "f".repeat(12)),
                QueryType::A
            ),
            ips(&["10.244.0.5"])
        );
        assert_eq!(
            z.lookup(
                &format!("{}.long.apps.internal", "f".repeat(11)),
                QueryType::A
            ),
            Lookup::NxDomain
        );
    }

    #[test]
    fn unknown_names_are_nxdomain_and_the_other_family_is_empty() {
        let z = cluster();
        assert_eq!(
            z.lookup("nope.apps.internal", QueryType::A),
            Lookup::NxDomain
        );
        assert_eq!(
            z.lookup("x.nope.apps.internal", QueryType::A),
            Lookup::NxDomain
        );
        // Endpoints without an app have no name.
        assert_eq!(
            z.lookup("noapp.apps.internal", QueryType::A),
            Lookup::NxDomain
        );
        // Exists, other family only: NOERROR without answers.
        assert_eq!(z.lookup("orders.apps.internal", QueryType::Aaaa), ips(&[]));
        assert_eq!(z.lookup("v6only.apps.internal", QueryType::A), ips(&[]));
        assert_eq!(
            z.lookup("v6only.apps.internal", QueryType::Aaaa),
            ips(&["fd00::9"])
        );
        // Other types at an existing name: no data, not NXDOMAIN.
        assert_eq!(z.lookup("cart.apps.internal", QueryType::Other), ips(&[]));
        // The apex and the names above a dotted app exist.
        assert_eq!(z.lookup("apps.internal", QueryType::A), ips(&[]));
        assert_eq!(z.lookup("APPS.internal.", QueryType::Soa), Lookup::Soa);
        assert_eq!(z.lookup("shop.apps.internal", QueryType::A), ips(&[]));
    }

    #[test]
    fn names_outside_the_zone_are_not_its_own() {
        let z = cluster();
        for n in [
            "example.com.",
            "internal.",
            "xapps.internal",
            "cart.apps.internal.evil",
            ".",
        ] {
            assert_eq!(z.lookup(n, QueryType::A), Lookup::OutOfZone, "{n}");
            assert!(!z.contains(n), "{n}");
        }
        assert!(z.contains("Cart.Apps.Internal."));
    }

    #[test]
    fn an_app_with_no_endpoints_left_is_nxdomain() {
        let recs = [rec(Some("cart"), "c1", Some("10.244.0.2"), None, "ha")];
        let z = Zone::build(DEFAULT_ZONE, 5, 1, &recs);
        assert_eq!(
            z.lookup("cart.apps.internal", QueryType::A),
            ips(&["10.244.0.2"])
        );
        let z = Zone::build(DEFAULT_ZONE, 5, 2, &[]);
        assert_eq!(
            z.lookup("cart.apps.internal", QueryType::A),
            Lookup::NxDomain
        );
        assert_eq!((z.serial(), z.apps()), (2, 0));
    }

    #[test]
    fn another_zone_and_ttl() {
        let z = Zone::build(
            "svc.example",
            30,
            1,
            &[rec(Some("db"), "d", Some("10.0.0.1"), None, "h")],
        );
        assert_eq!(z.ttl(), 30);
        assert_eq!(z.lookup("db.svc.example", QueryType::A), ips(&["10.0.0.1"]));
        assert_eq!(
            z.lookup("db.apps.internal", QueryType::A),
            Lookup::OutOfZone
        );
    }

    #[test]
    fn zone_names_are_checked_and_normalised() {
        assert_eq!(
            normalize_zone("Apps.Internal.").as_deref(),
            Some("apps.internal")
        );
        for bad in ["", ".", "a..b", "a b", &"x".repeat(64), "ä.internal"] {
            assert_eq!(normalize_zone(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_same_address_twice_is_one_answer() {
        let recs = [
            rec(Some("a"), "x", Some("10.0.0.1"), None, "h"),
            rec(Some("a"), "x", Some("10.0.0.1"), None, "h"),
        ];
        let z = Zone::build(DEFAULT_ZONE, 5, 1, &recs);
        assert_eq!(
            z.lookup("a.apps.internal", QueryType::A),
            ips(&["10.0.0.1"])
        );
    }
}
