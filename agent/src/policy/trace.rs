//! `policy trace`: walks the compiled IR ([`super::compile`]) the way
//! netfilter walks the chains, for the first packet of a new flow. The
//! rules are the same on every host and act on a host's own containers
//! through the veth match, so one walk covers both ends: the source's
//! egress (on its host) and the destination's ingress (on its host).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::compile::{
    AddrMatch, Compiled, FORWARD_CHAIN, FamilyIr, ListMember, Origin, Rule, Target,
};
use super::model::Proto;
use crate::netfilter::Family;

/// A flow to trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub from: IpAddr,
    pub to: IpAddr,
    pub proto: Proto,
    #[serde(default)]
    pub port: Option<u16>,
}

/// The answer: allowed or not, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub allow: bool,
    /// The rule's origin; `None` when no flatnet rule applies (flatnet
    /// leaves the flow to the host's other rules).
    pub decided_by: Option<Origin>,
    /// The chains walked, in order.
    pub path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("--from {0} and --to {1} are of different address families")]
    MixedFamilies(IpAddr, IpAddr),
    #[error("protocol {0} has no ports; drop --port")]
    PortWithoutPorts(Proto),
    #[error("protocol {0} needs --port")]
    PortNeeded(Proto),
}

fn in_set(ir: &FamilyIr, set: &str, a: &IpAddr) -> bool {
    ir.sets.get(set).is_some_and(|m| m.contains(a))
}

/// The first member of list `list` whose set holds `a` (the one the
/// kernel matches and counts).
fn list_member<'a>(ir: &'a FamilyIr, list: &str, a: &IpAddr) -> Option<&'a ListMember> {
    ir.lists.get(list)?.iter().find(|m| in_set(ir, &m.set, a))
}

fn addr_matches(ir: &FamilyIr, m: &AddrMatch, a: &IpAddr) -> bool {
    match m {
        AddrMatch::Set(s) => in_set(ir, s, a),
        AddrMatch::NotSet(s) => !in_set(ir, s, a),
        AddrMatch::Cidr(c) => c.contains(*a),
        AddrMatch::AnyOf(l) => list_member(ir, l, a).is_some(),
    }
}

/// What decided when `r` matched `p`: its own origin, or for a rule over
/// a list the matching member's edge.
fn origin_of(ir: &FamilyIr, r: &Rule, p: &Packet) -> Option<Origin> {
    match (&r.origin, &r.src) {
        (None, Some(AddrMatch::AnyOf(l))) => {
            list_member(ir, l, &p.flow.from).map(|m| m.origin.clone())
        }
        (o, _) => o.clone(),
    }
}

struct Packet<'a> {
    flow: &'a Flow,
    in_veth: bool,
    out_veth: bool,
}

fn rule_matches(ir: &FamilyIr, r: &Rule, p: &Packet) -> bool {
    // A traced flow is always new.
    !r.established
        && (!r.in_veth || p.in_veth)
        && (!r.out_veth || p.out_veth)
        && r.src
            .as_ref()
            .is_none_or(|m| addr_matches(ir, m, &p.flow.from))
        && r.dst
            .as_ref()
            .is_none_or(|m| addr_matches(ir, m, &p.flow.to))
        && r.service
            .as_ref()
            .is_none_or(|s| s.matches(p.flow.proto, p.flow.port))
}

enum Walk {
    Accept(Option<Origin>),
    Drop(Option<Origin>),
    /// Fell off the end, or RETURN.
    Continue,
}

fn walk(ir: &FamilyIr, chain: &str, p: &Packet, path: &mut Vec<String>, depth: usize) -> Walk {
    path.push(chain.to_string());
    let Some(c) = ir
        .chains
        .iter()
        .find(|c| c.table == "filter" && c.name == chain)
    else {
        return Walk::Continue;
    };
    if depth > 8 {
        return Walk::Continue;
    }
    for r in &c.rules {
        if !rule_matches(ir, r, p) {
            continue;
        }
        match &r.target {
            Target::Accept => return Walk::Accept(origin_of(ir, r, p)),
            Target::Drop => return Walk::Drop(origin_of(ir, r, p)),
            Target::Return => return Walk::Continue,
            Target::Jump(sub) => match walk(ir, sub, p, path, depth + 1) {
                Walk::Continue => {}
                done => return done,
            },
            Target::Masquerade => {}
        }
    }
    Walk::Continue
}

/// Traces one flow through the compiled rules.
pub fn trace(c: &Compiled, flow: &Flow) -> Result<Verdict, TraceError> {
    let fam = match (flow.from, flow.to) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Family::V4,
        (IpAddr::V6(_), IpAddr::V6(_)) => Family::V6,
        _ => return Err(TraceError::MixedFamilies(flow.from, flow.to)),
    };
    match (flow.proto.has_ports(), flow.port) {
        (false, Some(_)) => return Err(TraceError::PortWithoutPorts(flow.proto)),
        (true, None) => return Err(TraceError::PortNeeded(flow.proto)),
        _ => {}
    }
    let ir = c.family(fam);
    let all = super::compile::all_set(fam);
    // Programmed addresses sit behind a flatnet veth on their host.
    let p = Packet {
        flow,
        in_veth: in_set(ir, &all, &flow.from),
        out_veth: in_set(ir, &all, &flow.to),
    };
    let mut path = Vec::new();
    // The source host's forward path, then (for a cluster destination) the
    // destination host's: both are in FLATNET-FORWARD, in that order.
    let (allow, decided_by) = match walk(ir, FORWARD_CHAIN, &p, &mut path, 0) {
        Walk::Accept(o) => (true, o),
        Walk::Drop(o) => (false, o),
        Walk::Continue => (true, None),
    };
    Ok(Verdict {
        allow,
        decided_by,
        path,
    })
}
