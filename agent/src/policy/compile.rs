//! The pure policy compiler: policies + endpoints + cluster defaults → an
//! IR of flatnet's own chains and sets, rendered as an `iptables-restore
//! --noflush` payload and an `ipset restore` payload. No I/O: the same IR
//! feeds the kernel writer ([`super::enforce`]) and `policy trace`
//! ([`super::trace`]), so the trace answers from the rules in the kernel.
//!
//! Shape (per family; the output is the same on every host, each host's
//! rules act only on its own containers through the `flat+` veth match):
//! - `FORWARD -j FLATNET-FORWARD` (one jump, added when missing);
//!   `FLATNET-FORWARD` sends traffic from a local container to
//!   `FLATNET-EGRESS` and traffic to a local container to `FLATNET-INGRESS`.
//! - `FLATNET-EGRESS`: established passes; an unprogrammed source is
//!   dropped; a cluster destination returns (its host decides at ingress);
//!   an unprogrammed pool address is dropped; otherwise the source app's
//!   `FLATNET-OUT-<app>` (egress CIDRs, then the egress default).
//! - `FLATNET-INGRESS`: established passes; the destination app's
//!   `FLATNET-IN-<app>` (same app, allow edges, ingress CIDRs, then the
//!   between-apps default); an unprogrammed destination is dropped.
//! - One `hash:ip` set per app and family (`fa4-<app>`, `fa6-<app>`) and
//!   one of every programmed address (`fn4-all`): a container starting or
//!   stopping changes sets only; chains change with policies and with
//!   the set of apps.
//! - Optional SNAT per pool in `nat`: `POSTROUTING -j FLATNET-POSTROUTING`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::group::allow_rules;
pub use super::group::{ListMember, list_set};
use super::model::{Policy, Proto, Service};
use crate::netfilter::Family;

pub const FORWARD_CHAIN: &str = "FLATNET-FORWARD";
pub const EGRESS_CHAIN: &str = "FLATNET-EGRESS";
pub const INGRESS_CHAIN: &str = "FLATNET-INGRESS";
pub const NAT_CHAIN: &str = "FLATNET-POSTROUTING";
/// Every chain flatnet's policy owns starts with this.
pub const CHAIN_PREFIX: &str = "FLATNET-";
/// The veths of local containers.
pub const VETH_MATCH: &str = "flat+";

/// Allow or deny, for defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Deny,
    Allow,
}

/// Cluster-wide inputs besides the policies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cluster {
    /// Between different apps when no policy opens an edge.
    pub between_apps: DefaultAction,
    /// To destinations outside the pools when no egress CIDR matches.
    pub egress: DefaultAction,
    /// The pools, with whether traffic leaving them is source-NATed.
    pub pools: Vec<(IpNetwork, bool)>,
}

/// An endpoint as the compiler sees it (any host's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointAddr {
    pub app: Option<String>,
    pub addrs: Vec<IpAddr>,
}

/// What decided a packet: an edge of a policy or a default.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Origin {
    /// `policy`'s `allow[i]`, `egress[i]` or `ingress[i]`.
    Edge {
        policy: String,
        edge: String,
    },
    SameApp,
    DefaultBetweenApps,
    DefaultEgress,
    /// An address flatnet has not programmed.
    Unprogrammed,
    /// A reply of a connection already allowed.
    Established,
}

impl Origin {
    /// The iptables comment, also the key of per-edge counters.
    pub fn comment(&self) -> String {
        match self {
            Origin::Edge { policy, edge } => format!("flatnet:{policy}:{edge}"),
            Origin::SameApp => "flatnet:same-app".into(),
            Origin::DefaultBetweenApps => "flatnet:default-between-apps".into(),
            Origin::DefaultEgress => "flatnet:default-egress".into(),
            Origin::Unprogrammed => "flatnet:unprogrammed".into(),
            Origin::Established => "flatnet:established".into(),
        }
    }
}

/// An address match of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrMatch {
    /// In the named set.
    Set(String),
    /// Not in the named set.
    NotSet(String),
    Cidr(IpNetwork),
    /// In one of the member sets of the named `list:set`
    /// ([`FamilyIr::lists`]): the source apps of edges that share a
    /// destination app and a service, matched by one rule.
    AnyOf(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Accept,
    Drop,
    Return,
    Jump(String),
    Masquerade,
}

/// One rule of the IR; absent matches match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub in_veth: bool,
    pub out_veth: bool,
    pub established: bool,
    pub src: Option<AddrMatch>,
    pub dst: Option<AddrMatch>,
    pub service: Option<Service>,
    pub origin: Option<Origin>,
    pub target: Target,
}

impl Rule {
    pub(super) fn to(target: Target) -> Rule {
        Rule {
            in_veth: false,
            out_veth: false,
            established: false,
            src: None,
            dst: None,
            service: None,
            origin: None,
            target,
        }
    }
    pub(super) fn src(mut self, m: AddrMatch) -> Rule {
        self.src = Some(m);
        self
    }
    fn dst(mut self, m: AddrMatch) -> Rule {
        self.dst = Some(m);
        self
    }
    pub(super) fn service(mut self, s: &Service) -> Rule {
        if s.proto != Proto::Any {
            self.service = Some(s.clone());
        }
        self
    }
    pub(super) fn origin(mut self, o: Origin) -> Rule {
        self.origin = Some(o);
        self
    }
}

/// A chain of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub table: &'static str,
    pub name: String,
    pub rules: Vec<Rule>,
}

/// The compiled rules and sets of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyIr {
    pub family: Family,
    /// Set name → members.
    pub sets: BTreeMap<String, BTreeSet<IpAddr>>,
    /// App id → its set's name.
    pub app_sets: BTreeMap<String, String>,
    /// `list:set` name → members, in edge order. Named after their
    /// content, so a list never changes: another content is another list.
    pub lists: BTreeMap<String, Vec<ListMember>>,
    pub chains: Vec<Chain>,
}

/// Both families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub v4: FamilyIr,
    pub v6: FamilyIr,
}

impl Compiled {
    pub fn family(&self, f: Family) -> &FamilyIr {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

fn fnv(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// `prefix + app`, shortened with a hash when longer than `max`
/// (ipset names are at most 31 bytes, chain names 28).
fn bounded(prefix: &str, app: &str, max: usize) -> String {
    let full = format!("{prefix}{app}");
    if full.len() <= max {
        return full;
    }
    let keep = max - prefix.len() - 9;
    format!("{prefix}{}-{:08x}", &app[..keep], fnv(app))
}

pub(super) fn fam_digit(f: Family) -> char {
    match f {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

/// The set of every programmed address of a family.
pub fn all_set(f: Family) -> String {
    format!("fn{}-all", fam_digit(f))
}

/// An app's set; at most 29 bytes, so the temporary name fits too.
pub fn app_set(f: Family, app: &str) -> String {
    bounded(&format!("fa{}-", fam_digit(f)), app, 29)
}

/// The temporary set a full apply fills before swapping it in.
pub fn tmp_set(name: &str) -> String {
    format!("z{}", name.get(1..).unwrap_or_default())
}

/// Whether a set name is one flatnet's policy owns.
pub fn is_flatnet_set(name: &str) -> bool {
    [
        "fn4-", "fn6-", "fa4-", "fa6-", "zn4-", "zn6-", "za4-", "za6-", "fl4-", "fl6-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

pub fn in_chain(app: &str) -> String {
    bounded("FLATNET-IN-", app, 28)
}

pub fn out_chain(app: &str) -> String {
    bounded("FLATNET-OUT-", app, 28)
}

fn same_family(f: Family, n: &IpNetwork) -> bool {
    matches!(
        (f, n),
        (Family::V4, IpNetwork::V4(_)) | (Family::V6, IpNetwork::V6(_))
    )
}

fn addr_family(a: &IpAddr) -> Family {
    if a.is_ipv4() { Family::V4 } else { Family::V6 }
}

/// Every set of a family (the all-set and one per app in `app_sets`)
/// filled from the endpoints; an endpoint of an app not in `app_sets`
/// is in the all-set only.
fn fill_sets(
    f: Family,
    app_sets: &BTreeMap<String, String>,
    endpoints: &[EndpointAddr],
) -> BTreeMap<String, BTreeSet<IpAddr>> {
    let all = all_set(f);
    let mut sets: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    sets.insert(all.clone(), BTreeSet::new());
    for s in app_sets.values() {
        sets.insert(s.clone(), BTreeSet::new());
    }
    for e in endpoints {
        for a in e.addrs.iter().filter(|a| addr_family(a) == f) {
            sets.entry(all.clone()).or_default().insert(*a);
            if let Some(s) = e.app.as_ref().and_then(|app| app_sets.get(app)) {
                sets.entry(s.clone()).or_default().insert(*a);
            }
        }
    }
    sets
}

/// The origin of `p`'s `kind[i]` edge.
pub(super) fn edge(p: &Policy, kind: &str, i: usize) -> Origin {
    Origin::Edge {
        policy: p.name.clone(),
        edge: format!("{kind}[{i}]"),
    }
}

/// The end of an ingress chain: programmed sources pass when the cluster
/// allows between apps; everything else is dropped.
fn between_apps_default(rules: &mut Vec<Rule>, cluster: &Cluster, all: &str) {
    if cluster.between_apps == DefaultAction::Allow {
        rules.push(
            Rule::to(Target::Accept)
                .src(AddrMatch::Set(all.to_string()))
                .origin(Origin::DefaultBetweenApps),
        );
    }
    rules.push(Rule::to(Target::Drop).origin(Origin::DefaultBetweenApps));
}

/// Compiles everything for one family.
fn compile_family(
    f: Family,
    policies: &[Policy],
    endpoints: &[EndpointAddr],
    cluster: &Cluster,
) -> FamilyIr {
    // Apps: every app with an endpoint or named by a policy.
    let mut apps: BTreeSet<String> = endpoints.iter().filter_map(|e| e.app.clone()).collect();
    for p in policies {
        apps.extend(p.allow.iter().flat_map(|a| [a.from.clone(), a.to.clone()]));
        apps.extend(p.egress.iter().map(|e| e.app.clone()));
        apps.extend(p.ingress.iter().map(|e| e.app.clone()));
    }
    let all = all_set(f);
    let app_sets: BTreeMap<String, String> =
        apps.iter().map(|a| (a.clone(), app_set(f, a))).collect();
    let sets = fill_sets(f, &app_sets, endpoints);
    let set_of = |app: &str| app_sets.get(app).cloned().unwrap_or_default();
    let mut lists: BTreeMap<String, Vec<ListMember>> = BTreeMap::new();

    let mut chains = Vec::new();
    let established = || {
        let mut r = Rule::to(Target::Accept).origin(Origin::Established);
        r.established = true;
        r
    };
    let mut fwd_eg = Rule::to(Target::Jump(EGRESS_CHAIN.into()));
    fwd_eg.in_veth = true;
    let mut fwd_in = Rule::to(Target::Jump(INGRESS_CHAIN.into()));
    fwd_in.out_veth = true;
    chains.push(Chain {
        table: "filter",
        name: FORWARD_CHAIN.into(),
        rules: vec![fwd_eg, fwd_in],
    });

    // Egress from local containers.
    let mut eg = vec![];
    let mut est_ret = Rule::to(Target::Return);
    est_ret.established = true;
    eg.push(est_ret);
    eg.push(
        Rule::to(Target::Drop)
            .src(AddrMatch::NotSet(all.clone()))
            .origin(Origin::Unprogrammed),
    );
    eg.push(Rule::to(Target::Return).dst(AddrMatch::Set(all.clone())));
    for (pool, _) in cluster.pools.iter().filter(|(p, _)| same_family(f, p)) {
        eg.push(
            Rule::to(Target::Drop)
                .dst(AddrMatch::Cidr(*pool))
                .origin(Origin::Unprogrammed),
        );
    }
    for app in &apps {
        eg.push(Rule::to(Target::Jump(out_chain(app))).src(AddrMatch::Set(set_of(app))));
    }
    let egress_default = match cluster.egress {
        DefaultAction::Allow => Target::Accept,
        DefaultAction::Deny => Target::Drop,
    };
    eg.push(Rule::to(egress_default.clone()).origin(Origin::DefaultEgress));
    chains.push(Chain {
        table: "filter",
        name: EGRESS_CHAIN.into(),
        rules: eg,
    });

    // Ingress to local containers.
    let mut ing = vec![established()];
    for app in &apps {
        ing.push(Rule::to(Target::Jump(in_chain(app))).dst(AddrMatch::Set(set_of(app))));
    }
    ing.push(
        Rule::to(Target::Drop)
            .dst(AddrMatch::NotSet(all.clone()))
            .origin(Origin::Unprogrammed),
    );
    // A programmed endpoint without an app: only the default applies.
    between_apps_default(&mut ing, cluster, &all);
    chains.push(Chain {
        table: "filter",
        name: INGRESS_CHAIN.into(),
        rules: ing,
    });

    // Edges by destination app, in policy then edge order.
    let mut allows_to: BTreeMap<&str, Vec<(&Policy, usize, &super::model::Allow)>> =
        BTreeMap::new();
    for p in policies {
        for (i, a) in p.allow.iter().enumerate() {
            allows_to.entry(a.to.as_str()).or_default().push((p, i, a));
        }
    }
    for app in &apps {
        let mut rules = vec![
            Rule::to(Target::Accept)
                .src(AddrMatch::Set(set_of(app)))
                .origin(Origin::SameApp),
        ];
        rules.extend(allow_rules(
            f,
            app,
            allows_to
                .get(app.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            &set_of,
            &mut lists,
        ));
        for p in policies {
            for (i, e) in p.ingress.iter().enumerate() {
                if &e.app == app && same_family(f, &e.from_cidr) {
                    rules.push(
                        Rule::to(Target::Accept)
                            .src(AddrMatch::Cidr(e.from_cidr))
                            .service(&e.service)
                            .origin(edge(p, "ingress", i)),
                    );
                }
            }
        }
        between_apps_default(&mut rules, cluster, &all);
        chains.push(Chain {
            table: "filter",
            name: in_chain(app),
            rules,
        });

        let mut rules = vec![];
        for p in policies {
            for (i, e) in p.egress.iter().enumerate() {
                if &e.app == app && same_family(f, &e.to_cidr) {
                    rules.push(
                        Rule::to(Target::Accept)
                            .dst(AddrMatch::Cidr(e.to_cidr))
                            .service(&e.service)
                            .origin(edge(p, "egress", i)),
                    );
                }
            }
        }
        rules.push(Rule::to(egress_default.clone()).origin(Origin::DefaultEgress));
        chains.push(Chain {
            table: "filter",
            name: out_chain(app),
            rules,
        });
    }

    // Source NAT for pools that ask for it, never towards the pools.
    let fam_pools: Vec<&(IpNetwork, bool)> = cluster
        .pools
        .iter()
        .filter(|(p, _)| same_family(f, p))
        .collect();
    let mut nat = vec![];
    for (src, _) in fam_pools.iter().filter(|(_, n)| *n) {
        for (dst, _) in &fam_pools {
            nat.push(
                Rule::to(Target::Return)
                    .src(AddrMatch::Cidr(*src))
                    .dst(AddrMatch::Cidr(*dst)),
            );
        }
        nat.push(Rule::to(Target::Masquerade).src(AddrMatch::Cidr(*src)));
    }
    chains.push(Chain {
        table: "nat",
        name: NAT_CHAIN.into(),
        rules: nat,
    });
    FamilyIr {
        family: f,
        sets,
        app_sets,
        lists,
        chains,
    }
}

/// Compiles policies, endpoints and cluster settings. Deterministic: the
/// same inputs in any order give the same output.
pub fn compile(policies: &[Policy], endpoints: &[EndpointAddr], cluster: &Cluster) -> Compiled {
    let mut ps = policies.to_vec();
    ps.sort_by(|a, b| a.name.cmp(&b.name));
    // A family without pools has no flatnet addresses: no rules at all.
    let fam = |f: Family| {
        if cluster.pools.iter().any(|(p, _)| same_family(f, p)) {
            compile_family(f, &ps, endpoints, cluster)
        } else {
            FamilyIr {
                family: f,
                sets: BTreeMap::new(),
                app_sets: BTreeMap::new(),
                lists: BTreeMap::new(),
                chains: Vec::new(),
            }
        }
    };
    Compiled {
        v4: fam(Family::V4),
        v6: fam(Family::V6),
    }
}

/// One rule in iptables-save syntax (without `-A CHAIN`).
pub fn render_rule(f: Family, r: &Rule) -> String {
    // iptables-save's order: addresses, interfaces, protocol, then the
    // matches as given, so a rendered rule compares equal to a saved one.
    let mut s = String::new();
    if let Some(AddrMatch::Cidr(c)) = &r.src {
        let _ = write!(s, " -s {c}");
    }
    if let Some(AddrMatch::Cidr(c)) = &r.dst {
        let _ = write!(s, " -d {c}");
    }
    if r.in_veth {
        let _ = write!(s, " -i {VETH_MATCH}");
    }
    if r.out_veth {
        let _ = write!(s, " -o {VETH_MATCH}");
    }
    let proto = r.service.as_ref().map(|svc| match (svc.proto, f) {
        (Proto::Icmp, Family::V4) => "icmp",
        (Proto::Icmp, Family::V6) => "ipv6-icmp",
        (Proto::Tcp, _) => "tcp",
        _ => "udp",
    });
    if let Some(p) = proto {
        let _ = write!(s, " -p {p}");
    }
    for (m, dir) in [(&r.src, "src"), (&r.dst, "dst")] {
        match m {
            Some(AddrMatch::Set(n) | AddrMatch::AnyOf(n)) => {
                let _ = write!(s, " -m set --match-set {n} {dir}");
            }
            Some(AddrMatch::NotSet(n)) => {
                let _ = write!(s, " -m set ! --match-set {n} {dir}");
            }
            _ => {}
        }
    }
    if let Some(svc) = r.service.as_ref().filter(|s| !s.ports.is_empty()) {
        let ports: Vec<String> = svc.ports.iter().map(|p| p.to_string()).collect();
        match (&ports[..], proto) {
            // One port or range: the protocol's own match, which
            // iptables-nft turns into a native payload compare (cheaper
            // to load and to evaluate than the multiport extension);
            // written as iptables-save prints it, so reconcile compares.
            ([one], Some(p @ ("tcp" | "udp"))) => {
                let _ = write!(s, " -m {p} --dport {one}");
            }
            _ => {
                let _ = write!(s, " -m multiport --dports {}", ports.join(","));
            }
        }
    }
    if r.established {
        s.push_str(" -m conntrack --ctstate RELATED,ESTABLISHED");
    }
    // Edges carry no comment: at 10,000 edges `-m comment` is a fifth of
    // the restore. Their counters are found by position in the chain
    // (`enforce::counters`); the few default rules keep theirs so
    // `iptables-save` stays readable.
    if let Some(o) = r
        .origin
        .as_ref()
        .filter(|o| !matches!(o, Origin::Edge { .. }))
    {
        let _ = write!(s, " -m comment --comment \"{}\"", o.comment());
    }
    let _ = match &r.target {
        Target::Accept => write!(s, " -j ACCEPT"),
        Target::Drop => write!(s, " -j DROP"),
        Target::Return => write!(s, " -j RETURN"),
        Target::Jump(c) => write!(s, " -j {c}"),
        Target::Masquerade => write!(s, " -j MASQUERADE"),
    };
    s.trim_start().to_string()
}

/// Which built-in jumps the payload must add (they are added only when
/// missing, so a restore never duplicates them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hooks {
    pub forward: bool,
    pub postrouting: bool,
}

/// The built-in chain and jump rule of each hook.
pub const FORWARD_HOOK: (&str, &str, &str) = ("filter", "FORWARD", FORWARD_CHAIN);
pub const NAT_HOOK: (&str, &str, &str) = ("nat", "POSTROUTING", NAT_CHAIN);

impl FamilyIr {
    /// The sets for `endpoints` under this compilation's chains, or `None`
    /// when an endpoint's app has no set here (a new app: chains change).
    pub fn sets_for(
        &self,
        endpoints: &[EndpointAddr],
    ) -> Option<BTreeMap<String, BTreeSet<IpAddr>>> {
        if self.chains.is_empty() {
            return Some(BTreeMap::new());
        }
        let known = |e: &EndpointAddr| e.app.as_ref().is_none_or(|a| self.app_sets.contains_key(a));
        endpoints
            .iter()
            .all(known)
            .then(|| fill_sets(self.family, &self.app_sets, endpoints))
    }

    /// The `iptables-restore --noflush` payload: flatnet's chains declared
    /// (so flushed and refilled atomically per table), the missing hooks,
    /// and `stale` chains (flatnet's, no longer wanted) flushed and deleted.
    /// Only `chains` whose name is in `only` are written when given (a
    /// reconcile rewrites just the chains that differ).
    pub fn iptables_payload(
        &self,
        add_hooks: Hooks,
        stale: &[(String, String)],
        only: Option<&BTreeSet<(String, String)>>,
    ) -> String {
        let mut out = String::new();
        for table in ["filter", "nat"] {
            let chains: Vec<&Chain> = self
                .chains
                .iter()
                .filter(|c| c.table == table)
                .filter(|c| only.is_none_or(|o| o.contains(&(table.to_string(), c.name.clone()))))
                .collect();
            let stale_here: Vec<&String> = stale
                .iter()
                .filter(|(t, _)| t == table)
                .map(|(_, c)| c)
                .collect();
            let hook = match table {
                "filter" => add_hooks.forward.then_some(FORWARD_HOOK),
                _ => add_hooks.postrouting.then_some(NAT_HOOK),
            };
            if chains.is_empty() && stale_here.is_empty() && hook.is_none() {
                continue;
            }
            let _ = writeln!(out, "*{table}");
            for c in &chains {
                let _ = writeln!(out, ":{} - [0:0]", c.name);
            }
            for c in &stale_here {
                let _ = writeln!(out, ":{c} - [0:0]");
            }
            for c in &chains {
                for r in &c.rules {
                    let _ = writeln!(out, "-A {} {}", c.name, render_rule(self.family, r));
                }
            }
            if let Some((_, builtin, target)) = hook {
                let _ = writeln!(out, "-I {builtin} 1 -j {target}");
            }
            for c in &stale_here {
                let _ = writeln!(out, "-X {c}");
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// The full `ipset restore` payload: every set created if missing and
    /// its members replaced atomically (filled under a temporary name,
    /// then swapped in).
    pub fn ipset_payload(&self) -> String {
        let fam = match self.family {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        };
        let mut out = String::new();
        for (name, members) in &self.sets {
            let tmp = tmp_set(name);
            let _ = writeln!(out, "create {name} hash:ip family {fam}");
            let _ = writeln!(out, "create {tmp} hash:ip family {fam}");
            let _ = writeln!(out, "flush {tmp}");
            for m in members {
                let _ = writeln!(out, "add {tmp} {m}");
            }
            let _ = writeln!(out, "swap {tmp} {name}");
            let _ = writeln!(out, "destroy {tmp}");
        }
        // Lists after their member sets; never swapped (a list's name is
        // its content), so `-exist` makes a second write a no-op.
        for (name, members) in &self.lists {
            let _ = writeln!(
                out,
                "create {name} list:set size {} counters",
                members.len()
            );
            for m in members {
                let _ = writeln!(out, "add {name} {}", m.set);
            }
        }
        out
    }

    /// The chains' rules as rendered, keyed by (table, chain): what a
    /// reconcile compares with `iptables-save`.
    pub fn rendered(&self) -> BTreeMap<(String, String), Vec<String>> {
        self.chains
            .iter()
            .map(|c| {
                (
                    (c.table.to_string(), c.name.clone()),
                    c.rules
                        .iter()
                        .map(|r| render_rule(self.family, r))
                        .collect(),
                )
            })
            .collect()
    }
}

/// The incremental `ipset restore` payload from `old` to `new` sets of the
/// same chains: adds and deletes only (a membership change).
pub fn membership_delta(old: &FamilyIr, new: &FamilyIr) -> String {
    sets_delta(&old.sets, &new.sets)
}

/// `add`/`del` lines from `old` to `new` members of the same sets.
pub fn sets_delta(
    old: &BTreeMap<String, BTreeSet<IpAddr>>,
    new: &BTreeMap<String, BTreeSet<IpAddr>>,
) -> String {
    let empty = BTreeSet::new();
    let mut out = String::new();
    for (name, members) in new {
        let before = old.get(name).unwrap_or(&empty);
        for m in before.difference(members) {
            let _ = writeln!(out, "del {name} {m}");
        }
        for m in members.difference(before) {
            let _ = writeln!(out, "add {name} {m}");
        }
    }
    out
}

/// Whether two compilations differ in more than set members.
pub fn chains_differ(old: &FamilyIr, new: &FamilyIr) -> bool {
    old.chains != new.chains || old.sets.keys().ne(new.sets.keys()) || old.lists != new.lists
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
