use super::*;

fn pools() -> Vec<PoolDesc> {
    vec![
        PoolDesc::new("10.244.0.0/16".parse().unwrap()),
        PoolDesc::new("fd00:244::/48".parse().unwrap()),
    ]
}

fn pool_req(space: &str, pool: &str) -> RequestPool {
    RequestPool {
        address_space: space.into(),
        pool: pool.into(),
        ..Default::default()
    }
}

#[test]
fn a_pool_is_named_by_its_cidr() {
    let p = pools();
    let by_cidr = request_pool(&pool_req("flatnet", "10.244.0.0/16"), &p).unwrap();
    assert_eq!(
        (by_cidr.pool_id.as_str(), by_cidr.pool.as_str()),
        ("10.244.0.0-16", "10.244.0.0/16")
    );
    assert_eq!(
        request_pool(&pool_req("", "10.244.0.0/16"), &p).unwrap(),
        by_cidr
    );
    let mut named = pool_req("flatnet", "10.244.0.0/16");
    named
        .options
        .insert(POOL_OPTION.into(), "10.244.0.0-16".into());
    assert_eq!(request_pool(&named, &p).unwrap(), by_cidr);
    // No subnet: Docker would loop on the overlap with the host's routes.
    let e = request_pool(&pool_req("flatnet", ""), &p).unwrap_err();
    assert!(e.contains("--subnet") && e.contains("10.244.0.0/16"), "{e}");
}

#[test]
fn foreign_pools_and_spaces_are_refused_by_name() {
    let p = pools();
    let e = request_pool(&pool_req("LocalDefault", ""), &p).unwrap_err();
    assert!(
        e.contains("\"LocalDefault\"") && e.contains("not flatnet's"),
        "{e}"
    );
    let e = request_pool(&pool_req("flatnet", "172.18.0.0/16"), &p).unwrap_err();
    assert!(
        e.contains("172.18.0.0/16") && e.contains("10.244.0.0/16"),
        "{e}"
    );
    let e = request_pool(&pool_req("flatnet", "nonsense"), &p).unwrap_err();
    assert!(e.contains("not a CIDR"), "{e}");
    let mut named = pool_req("flatnet", "10.244.0.0/16");
    named.options.insert(POOL_OPTION.into(), "other".into());
    assert!(request_pool(&named, &p).unwrap_err().contains("\"other\""));
    let mut sub = pool_req("flatnet", "10.244.0.0/16");
    sub.sub_pool = "10.244.1.0/24".into();
    assert!(request_pool(&sub, &p).unwrap_err().contains("--ip-range"));
    // The family must match the pool's.
    let v6_as_v4 = pool_req("flatnet", "fd00:244::/48");
    let e = request_pool(&v6_as_v4, &p).unwrap_err();
    assert!(e.contains("is IPv6, the request is for IPv4"), "{e}");
    let mut v4_as_v6 = pool_req("flatnet", "10.244.0.0/16");
    v4_as_v6.v6 = true;
    let e = request_pool(&v4_as_v6, &p).unwrap_err();
    assert!(e.contains("is IPv4, the request is for IPv6"), "{e}");
}

#[test]
fn an_ipv6_pool_serves_docker_ipv6() {
    let p = pools();
    let mut v6 = pool_req("flatnet", "fd00:244::/48");
    v6.v6 = true;
    let a = request_pool(&v6, &p).unwrap();
    assert_eq!(
        (a.pool_id.as_str(), a.pool.as_str()),
        ("fd00.244..-48", "fd00:244::/48")
    );
    let mut gw = RequestAddress {
        pool_id: a.pool_id.clone(),
        ..Default::default()
    };
    assert_eq!(request_address(&gw, &p).unwrap(), AddressPlan::Allocate);
    gw.options
        .insert(REQUEST_ADDRESS_TYPE.into(), GATEWAY_TYPE.into());
    let AddressPlan::Gateway(g) = request_address(&gw, &p).unwrap() else {
        panic!("gateway expected")
    };
    assert_eq!(g.address, "fe80::1/128");
    assert_eq!(
        address_answer("fd00:244::1:7".parse().unwrap()).address,
        "fd00:244::1:7/128"
    );
    assert!(is_gateway("fe80::1/128") && is_gateway("169.254.1.1/32"));
    assert!(!is_gateway("fd00:244::1/128") && !is_gateway("junk"));
    assert_eq!(
        parse_ip("fd00:244::1:7/128").unwrap(),
        "fd00:244::1:7".parse::<IpAddr>().unwrap()
    );
    assert!(parse_v6("10.0.0.1").unwrap_err().contains("not an IPv6"));
}

#[test]
fn the_gateway_is_on_link_and_takes_no_pool_address() {
    let p = pools();
    let mut r = RequestAddress {
        pool_id: "10.244.0.0-16".into(),
        ..Default::default()
    };
    assert_eq!(request_address(&r, &p).unwrap(), AddressPlan::Allocate);
    r.options
        .insert(REQUEST_ADDRESS_TYPE.into(), GATEWAY_TYPE.into());
    let AddressPlan::Gateway(a) = request_address(&r, &p).unwrap() else {
        panic!("gateway expected")
    };
    assert_eq!(a.address, "169.254.1.1/32");
    r.address = "10.244.0.1".into();
    assert!(
        request_address(&r, &p)
            .unwrap_err()
            .contains("on-link gateway 169.254.1.1")
    );
    r.options.clear();
    assert!(request_address(&r, &p).unwrap_err().contains("--ip"));
    r.pool_id = "nope".into();
    assert!(
        request_address(&r, &p)
            .unwrap_err()
            .contains("unknown pool \"nope\"")
    );
    assert_eq!(
        address_answer("10.244.1.7".parse().unwrap()).address,
        "10.244.1.7/32"
    );
}

#[test]
fn networks_must_use_flatnet_ipam_and_carry_the_app() {
    let p = pools();
    let mut n = CreateNetwork {
        network_id: "n1".into(),
        ipv4_data: vec![IpamData {
            address_space: "flatnet".into(),
            pool: "10.244.0.0/16".into(),
            gateway: "169.254.1.1/32".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    n.options.insert(
        GENERIC_OPTIONS.into(),
        serde_json::json!({ APP_OPTION: "web" }),
    );
    assert_eq!(
        create_network(&n, &p).unwrap(),
        NetworkInfo {
            pool: "10.244.0.0-16".into(),
            pool6: None,
            app: Some("web".into())
        }
    );
    // --ipv6 with a flatnet IPv6 pool.
    let v6 = IpamData {
        address_space: "flatnet".into(),
        pool: "fd00:244::/48".into(),
        gateway: "fe80::1/128".into(),
        ..Default::default()
    };
    let mut dual = n.clone();
    dual.ipv6_data = vec![v6.clone()];
    assert_eq!(
        create_network(&dual, &p).unwrap().pool6.as_deref(),
        Some("fd00.244..-48")
    );
    // An IPv4 pool offered as IPv6 data, a foreign IPv6 pool, two pools.
    dual.ipv6_data = vec![n.ipv4_data[0].clone()];
    let e = create_network(&dual, &p).unwrap_err();
    assert!(e.contains("not a flatnet IPv6 pool"), "{e}");
    dual.ipv6_data = vec![IpamData {
        pool: "fd99::/64".into(),
        ..v6.clone()
    }];
    assert!(create_network(&dual, &p).unwrap_err().contains("fd99::/64"));
    dual.ipv6_data = vec![v6.clone(), v6];
    assert!(
        create_network(&dual, &p)
            .unwrap_err()
            .contains("at most one")
    );
    n.ipv4_data[0].pool = "172.17.0.0/16".into();
    assert!(
        create_network(&n, &p)
            .unwrap_err()
            .contains("--ipam-driver flatnet")
    );
    n.ipv4_data.clear();
    assert!(create_network(&n, &p).is_err());
    let bad_app = BTreeMap::from([(APP_OPTION.to_string(), serde_json::json!(3))]);
    assert!(app_option(&bad_app).is_err());
}

#[test]
fn join_names_the_peer_and_the_on_link_gateway() {
    let j = serde_json::to_value(join_answer("fpr012345678", false)).unwrap();
    assert_eq!(
        j,
        serde_json::json!({
            "InterfaceName": {"SrcName": "fpr012345678", "DstPrefix": "eth"},
            "Gateway": "169.254.1.1",
            "StaticRoutes": [{"Destination": "169.254.1.1/32", "RouteType": 1}],
            "DisableGatewayService": true
        })
    );
    let j = serde_json::to_value(join_answer("fpr012345678", true)).unwrap();
    assert_eq!(
        j,
        serde_json::json!({
            "InterfaceName": {"SrcName": "fpr012345678", "DstPrefix": "eth"},
            "Gateway": "169.254.1.1",
            "GatewayIPv6": "fe80::1",
            "StaticRoutes": [
                {"Destination": "169.254.1.1/32", "RouteType": 1},
                {"Destination": "fe80::1/128", "RouteType": 1}
            ],
            "DisableGatewayService": true
        })
    );
    assert_eq!(peer_name("flat012345678"), "fpr012345678");
    let h = new_handle(7);
    assert!(is_docker_handle(&h) && crate::names::check_container_id(&h.container_id).is_ok());
    assert!(!is_docker_handle(&AttachmentRef::new("abc", "eth0")));
}

#[test]
fn wire_names_are_libnetworks() {
    let r: CreateEndpoint = serde_json::from_str(
        r#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.244.0.5/32","AddressIPv6":"","MacAddress":""},"Options":{"x":1}}"#,
    )
    .unwrap();
    assert_eq!((r.network_id.as_str(), r.endpoint_id.as_str()), ("n", "e"));
    assert_eq!(r.interface.unwrap().address, "10.244.0.5/32");
    let p: RequestPool = serde_json::from_str(
        r#"{"AddressSpace":"flatnet","Pool":"","SubPool":"","Options":{},"V6":false}"#,
    )
    .unwrap();
    assert_eq!(p.address_space, "flatnet");
    // Go writes nil maps and slices as null.
    let a: RequestAddress =
        serde_json::from_str(r#"{"PoolID":"p","Address":"","Options":null}"#).unwrap();
    assert!(a.options.is_empty());
    let n: CreateNetwork =
        serde_json::from_str(r#"{"NetworkID":"n","Options":null,"IPv4Data":null,"IPv6Data":null}"#)
            .unwrap();
    assert!(n.ipv4_data.is_empty() && n.ipv6_data.is_empty());
    let a = serde_json::to_value(address_spaces()).unwrap();
    assert_eq!(a["LocalDefaultAddressSpace"], "flatnet");
    let e = serde_json::to_value(ErrAnswer { err: "x".into() }).unwrap();
    assert_eq!(e, serde_json::json!({"Err": "x"}));
}
