//! Prefixes and families from text (`FromStr`, typed errors) and back to
//! the same text in JSON (state files, the agent's API).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use flatnet_bgp::speaker::PathSource;
use flatnet_bgp::wire::{Family, FamilyParseError, Prefix, PrefixParseError};

#[test]
fn prefixes_parse_in_both_families() {
    let v4: Prefix = "10.244.3.0/26".parse().unwrap();
    assert!(matches!(v4, Prefix::V4(p) if p.len() == 26));
    assert_eq!(v4.to_string(), "10.244.3.0/26");
    let v6: Prefix = "2001:db8::/32".parse().unwrap();
    assert!(matches!(v6, Prefix::V6(_)));
    assert_eq!(v6.to_string(), "2001:db8::/32");
    assert_eq!(
        "0.0.0.0/0".parse::<Prefix>().unwrap().to_string(),
        "0.0.0.0/0"
    );
}

#[test]
fn prefix_errors_say_what_is_wrong() {
    assert!(matches!(
        "10.0.0.0".parse::<Prefix>(),
        Err(PrefixParseError::NoLength(_))
    ));
    assert!(matches!(
        "10.0.0.0/x".parse::<Prefix>(),
        Err(PrefixParseError::BadLength(_))
    ));
    assert!(matches!(
        "10.0.0/8".parse::<Prefix>(),
        Err(PrefixParseError::BadAddress { .. })
    ));
    assert!(matches!(
        "10.0.0.0/33".parse::<Prefix>(),
        Err(PrefixParseError::OutOfRange { .. })
    ));
    assert!(matches!(
        "::/129".parse::<Prefix>(),
        Err(PrefixParseError::OutOfRange { .. })
    ));
    let e = "10.1.0.1/24".parse::<Prefix>().unwrap_err();
    match &e {
        PrefixParseError::HostBits { canonical, .. } => {
            assert_eq!(canonical.to_string(), "10.1.0.0/24");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("did you mean 10.1.0.0/24"), "{e}");
}

#[test]
fn families_parse_by_name_and_short_name() {
    assert_eq!("ipv4-unicast".parse::<Family>(), Ok(Family::IPV4_UNICAST));
    assert_eq!("ipv6".parse::<Family>(), Ok(Family::IPV6_UNICAST));
    assert_eq!(
        "l2vpn".parse::<Family>(),
        Err(FamilyParseError("l2vpn".into()))
    );
    for f in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
        assert_eq!(f.to_string().parse::<Family>(), Ok(f));
    }
}

#[test]
fn typed_values_serialize_as_their_text() {
    let p: Prefix = "10.0.0.0/8".parse().unwrap();
    assert_eq!(serde_json::to_string(&p).unwrap(), "\"10.0.0.0/8\"");
    assert_eq!(
        serde_json::to_string(&Family::IPV6_UNICAST).unwrap(),
        "\"ipv6-unicast\""
    );
    assert_eq!(
        serde_json::to_string(&PathSource::Local).unwrap(),
        "\"local\""
    );
    let peer = PathSource::Peer("192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(serde_json::to_string(&peer).unwrap(), "\"192.0.2.1\"");
}
