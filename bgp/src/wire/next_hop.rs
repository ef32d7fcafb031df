//! Next hop checks the codec can make without knowing the session: a next
//! hop that cannot be a neighbour's unicast address makes the UPDATE
//! treat-as-withdraw (RFC 7606 7.3 revising RFC 4271 6.3 "Invalid
//! NEXT_HOP"; RFC 7606 7.11 for MP_REACH; RFC 2545 3; RFC 8950). The check
//! against our own addresses needs the session, so the RIB makes it
//! (`Rib::apply_update`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::attr::{AttrValue, MpNextHop};
use super::error::{Action, AttrError};
use super::update::Update;

/// Whether `a` can be a neighbour's unicast address: not 0.0.0.0, not
/// multicast (224/4), not reserved/broadcast (240/4). Loopback is allowed
/// (speakers paired over 127/8 in one host).
pub fn ipv4_next_hop_ok(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.octets()[0] >= 240)
}

fn ipv6_unicast(a: &Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast())
}

/// What is wrong with an MP_REACH next hop, if anything. A 16-octet next
/// hop must be a global (a link-local comes only after a global, RFC 2545
/// 3). In the 32-octet form the first may be unspecified or the link-local
/// again (link-local-only sessions: BIRD sends `::`, FRR and flatnet repeat
/// the link-local), and a second that is not link-local is ignored, as
/// BIRD does: FRR sends `global + ::` to a peer whose link-local it has not
/// learned yet (seen at session start with 30 hosts per ToR). Only a next
/// hop with no usable address at all is an error.
pub fn mp_next_hop_problem(nh: &MpNextHop) -> Option<&'static str> {
    match nh {
        MpNextHop::Ipv4(a) if !ipv4_next_hop_ok(*a) => Some("MP_REACH next hop not unicast"),
        MpNextHop::Ipv6 {
            global,
            link_local: None,
        } if !ipv6_unicast(global) => Some("MP_REACH next hop not unicast"),
        MpNextHop::Ipv6 {
            global,
            link_local: None,
        } if global.is_unicast_link_local() => {
            Some("MP_REACH next hop link-local without a global")
        }
        MpNextHop::Ipv6 {
            global,
            link_local: Some(ll),
        } if global.is_multicast() || (global.is_unspecified() && !ll.is_unicast_link_local()) => {
            Some("MP_REACH 32-octet next hop has no usable address")
        }
        _ => None,
    }
}

/// Treat-as-withdraw errors for the next hops of a parsed UPDATE. NEXT_HOP
/// is judged only when the NLRI field uses it (RFC 4760 3: otherwise it is
/// ignored).
pub(super) fn next_hop_errors(u: &Update, errors: &mut Vec<AttrError>) {
    for a in &u.attributes {
        let reason = match &a.value {
            AttrValue::NextHop(nh) if !u.nlri.is_empty() && !ipv4_next_hop_ok(*nh) => {
                "NEXT_HOP not a unicast address"
            }
            AttrValue::MpReach(m) if !m.nlri.is_empty() => match mp_next_hop_problem(&m.next_hop) {
                Some(r) => r,
                None => continue,
            },
            _ => continue,
        };
        errors.push(AttrError {
            type_code: a.type_code(),
            action: Action::TreatAsWithdraw,
            reason,
        });
    }
}
