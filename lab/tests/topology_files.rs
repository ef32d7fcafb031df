//! Topology files: the shipped ones load, bad ones are rejected with the
//! file and the line of the problem (pure: nothing is created, no root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use flatnet_lab::topology::{Role, RouterKind, Topology};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(name)
        .join(format!("{name}.clab.yml"))
}

/// A scratch dir with `tor1/frr.conf` so binds resolve.
fn scratch() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("tor1")).unwrap();
    std::fs::write(d.path().join("tor1/frr.conf"), "!\n").unwrap();
    d
}

const GOOD: &str = r#"name: t
topology:
  nodes:
    tor1:
      kind: linux
      image: quay.io/frrouting/frr:8.4.1
      labels:
        flatnet.role: tor
      binds:
        - tor1/frr.conf:/etc/frr/frr.conf
    host1:
      kind: linux
      labels:
        flatnet.role: host
  links:
    - endpoints: ["tor1:eth1", "host1:eth0"]
flatnet:
  pools:
    - cidr: 10.244.0.0/16
  hosts:
    host1:
      asn: 64601
      router-id: 10.255.0.11
      peers:
        - { address: 10.255.1.0, asn: 65001 }
      containers:
        - { name: c1 }
"#;

fn parse(text: &str) -> Result<Topology, String> {
    let d = scratch();
    let f = d.path().join("t.clab.yml");
    std::fs::write(&f, text).unwrap();
    Topology::load(&f).map_err(|e| {
        let s = e.to_string();
        assert!(
            s.starts_with(&f.display().to_string()),
            "error names the file: {s}"
        );
        s.replacen(&f.display().to_string(), "t.clab.yml", usize::MAX)
    })
}

#[test]
fn shipped_topologies_load() {
    let t = Topology::load(&shipped("two-tier")).unwrap();
    assert_eq!(t.name, "two-tier");
    assert_eq!(t.tors().count(), 2);
    assert_eq!(t.hosts().count(), 3);
    assert!(t.hosts().all(|(_, h)| h.containers.len() == 2));
    assert_eq!(t.links.len(), 6);
    assert_eq!(t.flatnet.apps, ["web", "api", "db"]);
    assert_eq!(t.flatnet.policies.len(), 2);
    assert!(
        !t.flatnet.static_default,
        "two-tier hosts route by learned routes"
    );
    assert!(
        t.tors()
            .all(|(_, k, c)| k == RouterKind::Frr && c.is_file())
    );

    let u = Topology::load(&shipped("unnumbered")).unwrap();
    assert_eq!((u.tors().count(), u.hosts().count()), (2, 2));
    assert!(u.hosts().all(|(_, h)| {
        h.peers.iter().all(|p| {
            p.interface.is_some() && p.extended_next_hop && p.address.starts_with("fe80::")
        })
    }));

    let sc = Topology::load_scaled(&shipped("scale"), Some(50)).unwrap();
    assert_eq!(
        (sc.tors().count(), sc.hosts().count(), sc.links.len()),
        (2, 50, 100)
    );
    assert!(
        sc.hosts()
            .all(|(_, h)| h.containers.len() == 3 && h.peers.len() == 2)
    );

    let s = Topology::load(&shipped("single-tor")).unwrap();
    assert_eq!(
        (s.tors().count(), s.hosts().count(), s.links.len()),
        (1, 1, 1)
    );
}

#[test]
fn good_file_parses() {
    let t = parse(GOOD).unwrap();
    assert!(matches!(t.node("host1").unwrap().role, Role::Host(_)));
    assert_eq!(t.links[0].a.node, "tor1");
    assert_eq!(t.links[0].b.iface, "eth0");
}

#[test]
fn unknown_node_in_a_link_names_its_line() {
    let bad = GOOD.replace(
        r#"["tor1:eth1", "host1:eth0"]"#,
        r#"["tor1:eth1", "host9:eth0"]"#,
    );
    let e = parse(&bad).unwrap_err();
    assert_eq!(
        e,
        r#"t.clab.yml:16: link endpoint "host9:eth0": unknown node "host9""#
    );
}

#[test]
fn duplicate_interface_names_the_second_use() {
    let bad = GOOD.replace(
        r#"    - endpoints: ["tor1:eth1", "host1:eth0"]"#,
        "    - endpoints: [\"tor1:eth1\", \"host1:eth0\"]\n    - endpoints: [\"tor1:eth1\", \"host1:eth1\"]",
    );
    let e = parse(&bad).unwrap_err();
    assert_eq!(
        e,
        r#"t.clab.yml:17: link endpoint "tor1:eth1": interface used twice"#
    );
}

#[test]
fn missing_config_file_names_the_bind() {
    let bad = GOOD.replace("tor1/frr.conf:", "tor1/nope.conf:");
    let e = parse(&bad).unwrap_err();
    assert!(
        e.starts_with("t.clab.yml:10: ToR tor1: config file "),
        "{e}"
    );
    assert!(e.ends_with("tor1/nope.conf does not exist"), "{e}");
}

#[test]
fn unsupported_kind_names_its_line() {
    let bad = GOOD.replacen("kind: linux", "kind: ceos", 1);
    let e = parse(&bad).unwrap_err();
    assert!(
        e.starts_with(r#"t.clab.yml:5: node tor1: kind "ceos" cannot run in flatnet-lab"#),
        "{e}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let bad = GOOD
        .replacen("kind: linux", "kind: srl", 1)
        .replace("host1:eth0", "nobody:eth0");
    let e = parse(&bad).unwrap_err();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(lines[0].starts_with("t.clab.yml:5:"), "{e}");
    assert!(lines[1].starts_with("t.clab.yml:16:"), "{e}");
}

#[test]
fn yaml_syntax_errors_carry_the_parsers_line() {
    let e = parse("name: t\ntopology:\n  nodes: [\n").unwrap_err();
    assert!(e.starts_with("t.clab.yml:"), "{e}");
    assert!(!e.starts_with("t.clab.yml:0:"), "{e}");
}

#[test]
fn unknown_app_and_host_entries_are_rejected() {
    let bad = GOOD.replace("- { name: c1 }", "- { name: c1, app: web }");
    let e = parse(&bad).unwrap_err();
    assert!(e.contains(r#"app "web" is not in flatnet.apps"#), "{e}");
    let bad = GOOD.replace("flatnet.role: host", "flatnet.role: spine");
    let e = parse(&bad).unwrap_err();
    assert!(
        e.contains(r#"flatnet.role "spine" is not tor or host"#),
        "{e}"
    );
}

#[test]
fn link_local_peer_needs_an_interface() {
    let bad = GOOD.replace(
        "{ address: 10.255.1.0, asn: 65001 }",
        "{ address: \"fe80::1\", asn: 65001 }",
    );
    let e = parse(&bad).unwrap_err();
    assert!(
        e.contains("link-local peer fe80::1 needs an interface"),
        "{e}"
    );
}

#[test]
fn hosts_option_needs_a_scale_section() {
    let d = scratch();
    let f = d.path().join("t.clab.yml");
    std::fs::write(&f, GOOD).unwrap();
    let e = Topology::load_scaled(&f, Some(3)).unwrap_err().to_string();
    assert!(
        e.contains("--hosts needs a topology with a flatnet.scale section"),
        "{e}"
    );
}
