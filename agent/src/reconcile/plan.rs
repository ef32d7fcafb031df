//! Reconciliation plans, computed purely from desired and observed state:
//! no kernel, no datastore, no clock. [`super`] gathers the inputs and
//! applies the plan through [`super::Kernel`]; the owned-blocks reconciler
//! ([`crate::blocks`]) uses [`plan_blocks`] on every pass.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ipnetwork::IpNetwork;

use crate::api::AttachmentRef;

/// One endpoint record as reconciliation sees it (desired state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAttachment {
    pub handle: AttachmentRef,
    /// The host veth the record names.
    pub host_ifname: String,
}

/// What the kernel showed about the attachments (observed state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedLinks {
    /// Every flatnet host veth found.
    pub links: BTreeSet<String>,
    /// Host veths whose attachment failed its check (present but
    /// incomplete: a route, address or sysctl missing).
    pub incomplete: HashSet<String>,
}

/// What to do with the attachments after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentPlan {
    /// Recorded, veth present and complete: keep as is.
    pub adopt: Vec<AttachmentRef>,
    /// Recorded, veth present but incomplete: rebuild in place (same
    /// addresses).
    pub rebuild: Vec<AttachmentRef>,
    /// Recorded but the veth is gone (it dies with its namespace, so the
    /// container is gone): remove the record and the allocation.
    pub remove: Vec<AttachmentRef>,
    /// Flatnet veths no record names (an ADD that never finished): delete.
    pub delete_links: Vec<String>,
}

/// Plans the restart reconciliation of attachments.
pub fn plan_attachments(records: &[RecordedAttachment], seen: &ObservedLinks) -> AttachmentPlan {
    let mut plan = AttachmentPlan::default();
    for r in records {
        if !seen.links.contains(&r.host_ifname) {
            plan.remove.push(r.handle.clone());
        } else if seen.incomplete.contains(&r.host_ifname) {
            plan.rebuild.push(r.handle.clone());
        } else {
            plan.adopt.push(r.handle.clone());
        }
    }
    let recorded: HashSet<&str> = records.iter().map(|r| r.host_ifname.as_str()).collect();
    plan.delete_links = seen
        .links
        .iter()
        .filter(|l| !recorded.contains(l.as_str()))
        .cloned()
        .collect();
    plan
}

/// What to change so the kernel's blackholes and the BGP advertisements
/// are exactly the blocks this host owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockPlan {
    pub add_blackholes: Vec<IpNetwork>,
    pub remove_blackholes: Vec<IpNetwork>,
    /// The blocks to advertise after the plan is applied (the speaker
    /// originates what is new and withdraws what is not listed).
    pub advertise: BTreeSet<IpNetwork>,
}

/// Plans one owned-blocks pass.
///
/// `owned`: the blocks IPAM says this host owns, read at pass `pass`.
/// `installed`: the blackholes in the kernel, each with the pass number at
/// which an ADD last relied on it. A blackhole an ADD relied on during this
/// pass (number `>= pass`) may belong to a block claimed after IPAM was
/// read, so it is kept until the next pass decides.
pub fn plan_blocks(
    owned: &BTreeSet<IpNetwork>,
    installed: &BTreeMap<IpNetwork, u64>,
    pass: u64,
) -> BlockPlan {
    let add_blackholes: Vec<IpNetwork> = owned
        .iter()
        .filter(|b| !installed.contains_key(b))
        .copied()
        .collect();
    let mut advertise = owned.clone();
    let mut remove_blackholes = Vec::new();
    for (b, seen) in installed {
        if owned.contains(b) {
            continue;
        }
        if *seen >= pass {
            advertise.insert(*b);
        } else {
            remove_blackholes.push(*b);
        }
    }
    BlockPlan {
        add_blackholes,
        remove_blackholes,
        advertise,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(id: &str, host_if: &str) -> RecordedAttachment {
        RecordedAttachment {
            handle: AttachmentRef::new(id, "eth0"),
            host_ifname: host_if.into(),
        }
    }

    fn h(id: &str) -> AttachmentRef {
        AttachmentRef::new(id, "eth0")
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn restart_adopts_rebuilds_removes_and_deletes_strays() {
        let records = [
            rec("alive", "flatA"),
            rec("broken", "flatB"),
            rec("gone", "flatC"),
        ];
        let seen = ObservedLinks {
            links: ["flatA", "flatB", "flatStray"].map(String::from).into(),
            incomplete: ["flatB".to_string()].into(),
        };
        let p = plan_attachments(&records, &seen);
        assert_eq!(p.adopt, vec![h("alive")]);
        assert_eq!(p.rebuild, vec![h("broken")]);
        assert_eq!(p.remove, vec![h("gone")]);
        assert_eq!(p.delete_links, vec!["flatStray".to_string()]);
    }

    #[test]
    fn restart_with_nothing_recorded_deletes_every_flatnet_veth() {
        let seen = ObservedLinks {
            links: ["flat1", "flat2"].map(String::from).into(),
            incomplete: HashSet::new(),
        };
        let p = plan_attachments(&[], &seen);
        assert!(p.adopt.is_empty() && p.rebuild.is_empty() && p.remove.is_empty());
        assert_eq!(
            p.delete_links,
            vec!["flat1".to_string(), "flat2".to_string()]
        );
        // And nothing in the kernel with records present: all removed.
        let p = plan_attachments(&[rec("a", "flat1")], &ObservedLinks::default());
        assert_eq!(p.remove, vec![h("a")]);
        assert!(p.delete_links.is_empty());
    }

    #[test]
    fn blocks_new_get_a_blackhole_and_released_lose_it_and_the_advertisement() {
        let owned: BTreeSet<IpNetwork> = [net("10.244.0.0/26"), net("fd00::/122")].into();
        let installed: BTreeMap<IpNetwork, u64> =
            [(net("10.244.0.0/26"), 1), (net("10.244.0.64/26"), 1)].into();
        let p = plan_blocks(&owned, &installed, 2);
        assert_eq!(p.add_blackholes, vec![net("fd00::/122")]);
        assert_eq!(p.remove_blackholes, vec![net("10.244.0.64/26")]);
        assert_eq!(p.advertise, owned);
    }

    #[test]
    fn blocks_a_blackhole_an_add_relied_on_during_the_pass_is_kept() {
        // Claimed by an ADD after this pass read IPAM: not in `owned` yet.
        let owned = BTreeSet::new();
        let installed: BTreeMap<IpNetwork, u64> = [(net("10.244.0.0/26"), 5)].into();
        let p = plan_blocks(&owned, &installed, 5);
        assert!(p.remove_blackholes.is_empty());
        assert_eq!(p.advertise, [net("10.244.0.0/26")].into());
        // The next pass, with IPAM still not owning it, removes it.
        let p = plan_blocks(&owned, &installed, 6);
        assert_eq!(p.remove_blackholes, vec![net("10.244.0.0/26")]);
        assert!(p.advertise.is_empty());
    }

    #[test]
    fn blocks_in_sync_plan_nothing() {
        let owned: BTreeSet<IpNetwork> = [net("10.244.0.0/26")].into();
        let installed: BTreeMap<IpNetwork, u64> = [(net("10.244.0.0/26"), 0)].into();
        let p = plan_blocks(&owned, &installed, 9);
        assert!(p.add_blackholes.is_empty() && p.remove_blackholes.is_empty());
        assert_eq!(p.advertise, owned);
    }
}
