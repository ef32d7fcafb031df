//! Grouping of allow edges: the edges to one app that share a service
//! become one rule over a `list:set` of their source apps' sets, named
//! after its content. Pure, part of [`super::compile`].

use std::collections::BTreeMap;

use super::compile::{AddrMatch, Origin, Rule, Target, edge, fam_digit};
use super::model::{Allow, Policy, Service};
use crate::netfilter::Family;

/// One member of a `list:set`: an app's set and the edge it stands for.
/// The kernel tests members in order and counts the first that matches,
/// so the member's counters are its edge's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMember {
    pub set: String,
    pub origin: Origin,
}

fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The `list:set` of `members` (app set names, in order) for edges to
/// `app` on `service`: the app's first 8 characters and a 64-bit hash of the
/// whole content (29 bytes at most, like the app sets).
pub fn list_set(f: Family, app: &str, service: &Service, members: &[String]) -> String {
    let key = format!("{app}|{service:?}|{}", members.join(","));
    let short: String = app.chars().take(8).collect();
    format!("fl{}-{short}-{:016x}", fam_digit(f), fnv64(&key))
}

/// The allow rules of one destination app. Edges that share a service
/// become one rule over a `list:set` of their source apps' sets (at 100
/// apps that talk to each other, 100 rules instead of 10,000; the kernel
/// restores and walks far fewer rules, and the list's per-member counters
/// keep the per-edge counts). An edge alone on its service keeps its own
/// rule. Every allow rule accepts, so grouping changes no verdict; a
/// packet that two edges of different services allow is counted for the
/// group listed first, and `policy trace` names the same edge.
pub(super) fn allow_rules(
    f: Family,
    app: &str,
    edges: &[(&Policy, usize, &Allow)],
    set_of: &dyn Fn(&str) -> String,
    lists: &mut BTreeMap<String, Vec<ListMember>>,
) -> Vec<Rule> {
    // Services in order of first appearance, each with its members (a
    // source app counted once: a later edge from it would never match).
    let mut groups: Vec<(&Service, Vec<ListMember>)> = Vec::new();
    for (p, i, a) in edges {
        let member = ListMember {
            set: set_of(&a.from),
            origin: edge(p, "allow", *i),
        };
        match groups.iter_mut().find(|(s, _)| **s == a.service) {
            Some((_, ms)) => {
                if !ms.iter().any(|m| m.set == member.set) {
                    ms.push(member);
                }
            }
            None => groups.push((&a.service, vec![member])),
        }
    }
    let mut rules = Vec::new();
    for (service, members) in groups {
        let names: Vec<String> = members.iter().map(|m| m.set.clone()).collect();
        let name = list_set(f, app, service, &names);
        // A name already taken by another content (a hash collision) must
        // not merge two lists: such a group keeps one rule per edge.
        let taken = lists.get(&name).is_some_and(|l| *l != members);
        if members.len() < 2 || taken {
            for m in members {
                rules.push(
                    Rule::to(Target::Accept)
                        .src(AddrMatch::Set(m.set))
                        .service(service)
                        .origin(m.origin),
                );
            }
            continue;
        }
        rules.push(
            Rule::to(Target::Accept)
                .src(AddrMatch::AnyOf(name.clone()))
                .service(service),
        );
        lists.insert(name, members);
    }
    rules
}
