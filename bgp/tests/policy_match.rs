//! Policy: prefix lists with ge/le (edge cases), community / large
//! community / AS path matches, set actions, term order and defaults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use flatnet_bgp::policy::{
    Action, Direction, Disposition, Match, Policy, PrefixList, PrefixListEntry, Term,
    rfc8212_reason,
};
use flatnet_bgp::rib::Attrs;
use flatnet_bgp::wire::{AsPath, Community, Ipv4Prefix, Ipv6Prefix, LargeCommunity, Prefix};

fn p(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    let l: u8 = l.parse().unwrap();
    if a.contains(':') {
        Prefix::V6(Ipv6Prefix::new(a.parse().unwrap(), l).unwrap())
    } else {
        Prefix::V4(Ipv4Prefix::new(a.parse().unwrap(), l).unwrap())
    }
}

fn e(s: &str, ge: Option<u8>, le: Option<u8>) -> PrefixListEntry {
    PrefixListEntry::new(p(s), ge, le).unwrap()
}

#[test]
fn exact_match_without_ge_le() {
    let x = e("10.0.0.0/8", None, None);
    assert!(x.matches(&p("10.0.0.0/8")));
    assert!(!x.matches(&p("10.1.0.0/16")));
    assert!(!x.matches(&p("0.0.0.0/0")));
    assert!(!x.matches(&p("11.0.0.0/8")));
}

#[test]
fn le_covers_len_through_le() {
    let x = e("10.0.0.0/8", None, Some(24));
    assert!(x.matches(&p("10.0.0.0/8")));
    assert!(x.matches(&p("10.200.3.0/24")));
    assert!(!x.matches(&p("10.200.3.0/25")));
    assert!(!x.matches(&p("11.0.0.0/24")));
    assert!(!x.matches(&p("8.0.0.0/6")), "shorter than the list prefix");
}

#[test]
fn ge_alone_runs_to_the_family_maximum() {
    let x = e("10.0.0.0/8", Some(24), None);
    assert!(!x.matches(&p("10.0.0.0/23")));
    assert!(x.matches(&p("10.0.0.0/24")));
    assert!(x.matches(&p("10.9.9.9/32")));
    let y = e("2001:db8::/32", Some(48), None);
    assert!(y.matches(&p("2001:db8:1::/48")));
    assert!(y.matches(&p("2001:db8::1/128")));
    assert!(!y.matches(&p("2001:db9::/48")));
    assert!(!y.matches(&p("10.0.0.0/24")), "family mismatch");
}

#[test]
fn ge_and_le_bound_both_sides_inclusive() {
    let x = e("192.168.0.0/16", Some(20), Some(24));
    for (s, want) in [
        ("192.168.0.0/19", false),
        ("192.168.16.0/20", true),
        ("192.168.1.0/24", true),
        ("192.168.1.0/25", false),
        ("192.169.0.0/20", false),
    ] {
        assert_eq!(x.matches(&p(s)), want, "{s}");
    }
    // ge == le == len is the exact prefix only; /0 le 32 is "any IPv4".
    assert!(e("10.0.0.0/8", Some(8), Some(8)).matches(&p("10.0.0.0/8")));
    let any = e("0.0.0.0/0", None, Some(32));
    assert!(any.matches(&p("0.0.0.0/0")) && any.matches(&p("1.2.3.4/32")));
    assert!(!any.matches(&p("::/0")));
}

#[test]
fn invalid_ge_le_are_rejected() {
    assert!(
        PrefixListEntry::new(p("10.0.0.0/16"), Some(8), None).is_err(),
        "ge < len"
    );
    assert!(
        PrefixListEntry::new(p("10.0.0.0/16"), Some(24), Some(20)).is_err(),
        "le < ge"
    );
    assert!(
        PrefixListEntry::new(p("10.0.0.0/16"), None, Some(33)).is_err(),
        "le > 32"
    );
    assert!(
        PrefixListEntry::new(p("10.0.0.0/16"), None, Some(8)).is_err(),
        "le < len"
    );
    assert!(PrefixListEntry::new(p("::/0"), None, Some(128)).is_ok());
    let msg = PrefixListEntry::new(p("10.0.0.0/16"), Some(24), Some(20))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("10.0.0.0/16") && msg.contains("ge"), "{msg}");
}

fn attrs() -> Attrs {
    Attrs {
        as_path: AsPath::sequence(vec![65010, 65020, 65030]),
        communities: vec![Community::new(65010, 1), Community::new(65010, 2)],
        large_communities: vec![LargeCommunity {
            global_admin: 65010,
            local1: 1,
            local2: 2,
        }],
        ..Attrs::default()
    }
}

fn term(matches: Vec<Match>, actions: Vec<Action>, d: Disposition) -> Term {
    Term {
        name: "t".into(),
        matches,
        actions,
        disposition: d,
    }
}

#[test]
fn community_large_community_and_as_path_matches() {
    let a = attrs();
    let x = p("10.0.0.0/24");
    assert!(Match::Community(Community::new(65010, 2)).matches(&x, &a));
    assert!(!Match::Community(Community::new(65010, 3)).matches(&x, &a));
    assert!(
        Match::LargeCommunity(LargeCommunity {
            global_admin: 65010,
            local1: 1,
            local2: 2
        })
        .matches(&x, &a)
    );
    assert!(
        !Match::LargeCommunity(LargeCommunity {
            global_admin: 65010,
            local1: 2,
            local2: 1
        })
        .matches(&x, &a)
    );
    assert!(Match::AsPathContains(65020).matches(&x, &a));
    assert!(!Match::AsPathContains(65040).matches(&x, &a));
    assert!(Match::AsPathLenAtMost(3).matches(&x, &a));
    assert!(!Match::AsPathLenAtMost(2).matches(&x, &a));
}

#[test]
fn set_actions_modify_a_copy() {
    let a = attrs();
    let mut b = a.clone();
    Action::AddCommunities(vec![Community::new(65010, 2), Community::new(65010, 9)])
        .apply(&mut b, 65000);
    assert_eq!(
        b.communities,
        vec![
            Community::new(65010, 1),
            Community::new(65010, 2),
            Community::new(65010, 9)
        ]
    );
    Action::RemoveCommunities(vec![Community::new(65010, 1)]).apply(&mut b, 65000);
    assert_eq!(
        b.communities,
        vec![Community::new(65010, 2), Community::new(65010, 9)]
    );
    Action::SetCommunities(vec![]).apply(&mut b, 65000);
    assert!(b.communities.is_empty());
    let l = LargeCommunity {
        global_admin: 65000,
        local1: 7,
        local2: 7,
    };
    Action::AddLargeCommunities(vec![l]).apply(&mut b, 65000);
    assert_eq!(b.large_communities.len(), 2);
    Action::RemoveLargeCommunities(vec![a.large_communities[0]]).apply(&mut b, 65000);
    assert_eq!(b.large_communities, vec![l]);
    Action::SetLargeCommunities(vec![]).apply(&mut b, 65000);
    assert!(b.large_communities.is_empty());
    Action::SetLocalPref(250).apply(&mut b, 65000);
    Action::SetMed(9).apply(&mut b, 65000);
    Action::Prepend {
        asn: None,
        count: 2,
    }
    .apply(&mut b, 65000);
    Action::Prepend {
        asn: Some(1),
        count: 1,
    }
    .apply(&mut b, 65000);
    assert_eq!((b.local_pref, b.med), (Some(250), Some(9)));
    assert_eq!(
        b.as_path,
        AsPath::sequence(vec![1, 65000, 65000, 65010, 65020, 65030])
    );
}

#[test]
fn first_matching_term_decides_then_default() {
    let pol = Policy {
        name: "p".into(),
        terms: vec![
            term(
                vec![Match::Community(Community::new(65010, 1))],
                vec![Action::SetLocalPref(50)],
                Disposition::Accept,
            ),
            term(vec![], vec![], Disposition::Reject),
        ],
        default: Disposition::Accept,
    };
    let x = p("10.0.0.0/24");
    let out = pol.apply(&x, &attrs(), 65000).unwrap();
    assert_eq!(out.local_pref, Some(50));
    let plain = Attrs::default();
    assert!(
        pol.apply(&x, &plain, 65000).is_none(),
        "second term rejects before the default"
    );
    // All matches of a term must hold.
    let both = Policy {
        name: "and".into(),
        terms: vec![term(
            vec![
                Match::Prefix(PrefixList {
                    entries: vec![e("10.0.0.0/8", None, Some(24))],
                }),
                Match::AsPathContains(65099),
            ],
            vec![],
            Disposition::Accept,
        )],
        default: Disposition::Reject,
    };
    assert!(both.apply(&x, &attrs(), 65000).is_none());
    assert!(Policy::accept_all("a").apply(&x, &plain, 1).is_some());
    assert!(Policy::reject_all("r").apply(&x, &plain, 1).is_none());
}

#[test]
fn rfc8212_reason_names_peer_and_fix() {
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let s = rfc8212_reason(ip, Direction::Import);
    assert_eq!(
        s,
        "eBGP peer 192.0.2.7 has no import policy: RFC 8212 rejects all routes from it; configure `import = ...`"
    );
    assert!(rfc8212_reason(ip, Direction::Export).contains("configure `export = ...`"));
}
