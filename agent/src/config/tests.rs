use super::*;

const GOOD: &str = r#"
[node]
name = "host-a"
router_id = "192.0.2.11"
asn = 64512

[api]
socket = "/run/flatnet/flatnetd.sock"

[metrics]
listen = "127.0.0.1:9469"

[log]
format = "json"

[dataplane]
mtu = 9000

[datastore]
url = "etcd://10.0.0.1:2379,10.0.0.2:2379"

[[pool]]
cidr = "10.244.0.0/16"
block_size = 26

[[pool]]
cidr = "fd00:244::/56"

[[bgp.peer]]
address = "192.0.2.1"
asn = 65000
"#;

fn err(text: &str) -> String {
    match Config::parse(text, "t.toml") {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_config_parses() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.node.name, "host-a");
    assert_eq!(c.dataplane.mtu, 9000);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(
        c.datastore.url,
        DatastoreUrl::Etcd(vec!["10.0.0.1:2379".into(), "10.0.0.2:2379".into()])
    );
    assert_eq!(c.pools.len(), 2);
    assert_eq!(c.pools[1].block_prefix(), 122);
    assert_eq!(c.bgp.peers[0].port, 179);
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(
        "[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.api.socket, PathBuf::from(DEFAULT_API_SOCKET));
    assert_eq!(c.metrics.listen, DEFAULT_METRICS_LISTEN.parse().ok());
    assert_eq!(c.dataplane.mtu, 1500);
    assert_eq!(c.log.format, LogFormat::Human);
    assert!(matches!(c.datastore.url, DatastoreUrl::File(_)));
}

#[test]
fn shipped_example_is_valid() {
    let text = include_str!("../../../docs/flatnetd.example.toml");
    Config::parse(text, "docs/flatnetd.example.toml").unwrap();
}

#[test]
fn unknown_key_names_line_and_column() {
    let e = err("[node]\nname = \"h\"\nnmae = \"x\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\n");
    assert!(e.starts_with("t.toml:3:1: "), "{e}");
    assert!(e.contains("unknown field `nmae`"), "{e}");
    assert!(e.contains("expected"), "{e}");
}

#[test]
fn bad_cidr_says_what_was_expected() {
    let e = err("[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.1.0.1/16\"\n");
    assert!(e.starts_with("t.toml:4:8: "), "{e}");
    assert!(e.contains("did you mean \"10.1.0.0/16\""), "{e}");
    let e = err("[node]\nname = \"h\"\n[[pool]]\ncidr = \"banana\"\n");
    assert!(e.contains("expected a CIDR"), "{e}");
}

#[test]
fn wrong_type_and_syntax_errors_are_located() {
    let e =
        err("[node]\nname = \"h\"\n[dataplane]\nmtu = \"big\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\n");
    assert!(e.starts_with("t.toml:4:7: "), "{e}");
    let e = err("[node]\nname = \"h\n");
    assert!(e.starts_with("t.toml:2:"), "{e}");
    let e =
        err("[node]\nname = \"h\"\n[log]\nformat = \"xml\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\n");
    assert!(e.starts_with("t.toml:4:10: "), "{e}");
    assert!(e.contains("human") && e.contains("json"), "{e}");
}

#[test]
fn semantic_errors() {
    let e = err("[node]\nname = \"h\"\n");
    assert!(e.contains("missing field `pool`"), "{e}");
    let e = err("[node]\nname = \"h\"\n[[pool]]\ncidr = \"fd00::/64\"\n");
    assert!(e.contains("at least one IPv4"), "{e}");
    let e = err(
        "[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.0.0.0/8\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\n",
    );
    assert!(e.contains("overlaps"), "{e}");
    let e = err("[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.0.0.0/24\"\nblock_size = 16\n");
    assert!(e.contains("block_size"), "{e}");
    let e = err(
        "[node]\nname = \"h\"\n[datastore]\nurl = \"file:relative\"\n[[pool]]\ncidr = \"10.0.0.0/24\"\n",
    );
    assert!(e.contains("absolute path"), "{e}");
    let e = err(
        "[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.0.0.0/24\"\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 1\n",
    );
    assert!(e.contains("node.asn"), "{e}");
}

#[test]
fn every_semantic_error_names_line_and_column() {
    const H: &str = "[node]\nname = \"h\"\n";
    const P: &str = "[[pool]]\ncidr = \"10.0.0.0/24\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        // (text, "line:col: ", what the message says)
        (format!("[[pool]]\ncidr = \"fd00::/64\"\n{H}"), "1:3: ", "at least one IPv4"),
        (
            format!("{H}{P}[[pool]]\ncidr = \"10.0.0.0/16\"\n"),
            "6:1: ",
            "overlaps pool[0]",
        ),
        (format!("{H}{P}block_size = 16\n"), "5:1: ", "block_size /16"),
        (format!("{H}[dataplane]\nmtu = 40\n{P}"), "4:1: ", "dataplane.mtu"),
        (
            format!("{H}[dataplane]\nstate_dir = \"var/lib\"\n{P}"),
            "4:1: ",
            "state_dir",
        ),
        (format!("{H}[api]\nsocket = \"flatnetd.sock\"\n{P}"), "4:1: ", "absolute path"),
        (format!("{H}[api]\nmax_connections = 0\n{P}"), "4:1: ", "max_connections"),
        (format!("{H}[api]\nclient_timeout = 0\n{P}"), "4:1: ", "client_timeout"),
        (format!("{H}[log]\nlevel = \"verbose\"\n{P}"), "4:1: ", "not a level"),
        (format!("{H}[log]\nlevel = \"flatnet=loud\"\n{P}"), "4:1: ", "not a level"),
        ("[node]\nname = \"a/b\"\n[[pool]]\ncidr = \"10.0.0.0/24\"\n".into(), "2:1: ", "host name"),
        (
            format!("{H}{P}[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 1\n"),
            "1:2: ",
            "node.asn: required",
        ),
        (
            "[node]\nname = \"h\"\nasn = 1\n[[pool]]\ncidr = \"10.0.0.0/24\"\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 2\n".into(),
            "1:2: ",
            "node.router_id: required",
        ),
    ];
    for (text, at, what) in cases {
        let e = err(&text);
        assert!(e.starts_with(&format!("t.toml:{at}")), "{e}\n--\n{text}");
        assert!(e.contains(what), "{e}");
    }
    // log.level forms that work.
    for ok in [
        "info",
        "INFO",
        "info,flatnet_agent=debug",
        "flatnet_bgp::session=trace",
    ] {
        let t = format!("{H}[log]\nlevel = \"{ok}\"\n{P}");
        Config::parse(&t, "t.toml").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn invalid_utf8_is_located() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.toml");
    std::fs::write(&f, b"[node]\nname = \"h\xff\"\n").unwrap();
    let e = Config::load(&f).unwrap_err().to_string();
    assert!(
        e.ends_with("bad.toml:2:10: invalid UTF-8 (TOML files are UTF-8)"),
        "{e}"
    );
}

const PEERS: &str = "[node]\nname = \"h\"\nrouter_id = \"10.0.0.2\"\nasn = 65002\n[[pool]]\ncidr = \"10.1.0.0/16\"\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 65001\n";

#[test]
fn unknown_peer_option_names_line_and_column() {
    let e = err(&format!("{PEERS}ttl_securty = 1\n"));
    assert!(e.starts_with("t.toml:10:1: "), "{e}");
    assert!(e.contains("unknown field `ttl_securty`"), "{e}");
    assert!(e.contains("ttl_security"), "{e}");
}

#[test]
fn duplicate_peer_names_the_second_address() {
    let e = err(&format!(
        "{PEERS}[[bgp.peer]]\nasn = 65003\naddress = \"10.0.0.1\"\n"
    ));
    assert!(e.starts_with("t.toml:12:11: "), "{e}");
    assert!(e.contains("duplicate peer"), "{e}");
}

#[test]
fn bad_peer_values_are_located() {
    let e = err(&format!("{PEERS}hold_time = 2\n"));
    assert!(e.starts_with("t.toml:10:13: "), "{e}");
    let e = err(&format!("{PEERS}password = \"{}\"\n", "k".repeat(81)));
    assert!(e.starts_with("t.toml:10:12: "), "{e}");
    assert!(e.contains("TCP-MD5"), "{e}");
    let e = err(&format!(
        "{PEERS}[[bgp.peer.max_prefix]]\nfamily = \"l2vpn\"\nlimit = 1\n"
    ));
    assert!(e.starts_with("t.toml:11:10: "), "{e}");
}

#[test]
fn passive_peer_needs_a_listener() {
    let e = err(&format!("{PEERS}passive = true\n"));
    assert!(e.contains("passive needs bgp.listen"), "{e}");
    let text = PEERS.replace(
        "[[bgp.peer]]",
        "[bgp]\nlisten = [\"10.0.0.2:179\"]\n[[bgp.peer]]",
    );
    let c = Config::parse(&format!("{text}passive = true\n"), "t.toml").unwrap();
    assert_eq!(c.bgp.listen, vec!["10.0.0.2:179".parse().unwrap()]);
}

#[test]
fn peer_options_parse() {
    let c = Config::parse(
        &format!("{PEERS}password = \"s3cret\"\nttl_security = 1\nhold_time = 9\n[[bgp.peer.max_prefix]]\nfamily = \"ipv4-unicast\"\nlimit = 10\n"),
        "t.toml",
    )
    .unwrap();
    let p = &c.bgp.peers[0];
    assert_eq!(p.password.as_deref(), Some("s3cret"));
    assert_eq!(p.ttl_security, Some(1));
    assert_eq!(p.max_prefix[0].limit, 10);
    assert_eq!(p.max_prefix[0].warning_percent, 75);
}

#[test]
fn graceful_restart_and_community_keys() {
    let c = Config::parse(
        "[node]\nname = \"h\"\nasn = 65101\nrouter_id = \"10.0.0.2\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\ncommunities = [\"65000:1\"]\nexport = false\n[bgp]\nselection_deferral = 30\nimport_max_length_v4 = 28\n[[bgp.peer]]\naddress = \"10.0.0.1\"\nasn = 65001\ngraceful_restart = true\nrestart_time = 60\nstale_time = 90\nlarge_communities = [\"65000:1:2\"]\n",
        "t.toml",
    )
    .unwrap();
    let p = &c.bgp.peers[0];
    assert!(p.graceful_restart);
    assert_eq!((p.restart_time, p.stale_time), (Some(60), Some(90)));
    assert_eq!(c.bgp.selection_deferral, Some(30));
    assert_eq!(c.bgp.import_max_length_v4, Some(28));
    assert!(!c.pools[0].export);
    assert_eq!(
        parse_community(&c.pools[0].communities[0]),
        Ok(flatnet_bgp::wire::Community((65000 << 16) | 1))
    );
    assert_eq!(
        parse_large_community(&p.large_communities[0]),
        Ok(flatnet_bgp::wire::LargeCommunity {
            global_admin: 65000,
            local1: 1,
            local2: 2
        })
    );
    // Defaults: no graceful restart, pools exported.
    let c = Config::parse(
        "[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\n",
        "t.toml",
    )
    .unwrap();
    assert!(c.pools[0].export);
}

#[test]
fn bad_communities_and_lengths_are_refused() {
    let e = err(
        "[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\ncommunities = [\"70000:1\"]\n",
    );
    assert!(
        e.contains("pool[0].communities") && e.contains("70000:1"),
        "{e}"
    );
    let e = err(
        "[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\nlarge_communities = [\"1:2\"]\n",
    );
    assert!(e.contains("GLOBAL:LOCAL1:LOCAL2"), "{e}");
    let e = err(
        "[node]\nname = \"h\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\n[bgp]\nimport_max_length_v4 = 33\n",
    );
    assert!(e.contains("import_max_length_v4"), "{e}");
}
