//! Cluster policy defaults in the datastore: two hosts (namespaces) share
//! one file datastore; `flatnet policy defaults set` on one host changes
//! what both enforce between apps, with real TCP connections, and a bad
//! value is refused naming the field and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::policy::*;
use common::*;
use flatnet_lab::Netns;

/// Polls until `from` -> `to:port` connects (`want`) or not, on a deadline.
fn wait_tcp(what: &str, from: &Netns, to: &str, port: u16, want: bool) {
    flatnet_lab::wait_for(what, Duration::from_secs(15), || {
        Ok((tcp(from, to, port).is_some() == want).then_some(()))
    })
    .unwrap();
}

#[test]
fn cluster_defaults_in_the_datastore_apply_on_every_host() {
    flatnet_lab::require_root().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", shared.path().display());
    let pools = format!("{POOLS_V4}[policy]\nenabled = true\n");
    let hosts: Vec<Host> = ["da", "db"]
        .into_iter()
        .map(|tag| {
            Host::start_in(
                Netns::new(tag).unwrap(),
                tempfile::tempdir().unwrap(),
                tag,
                &pools,
                &url,
            )
        })
        .collect();
    // On each host a container of "cart" and one of "web" (traffic
    // between them crosses that host's FLATNET chains).
    let mut pairs = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let (c, w) = (
            Netns::new(&format!("cart{i}")).unwrap(),
            Netns::new(&format!("web{i}")).unwrap(),
        );
        let a_cart = add_app(h, &format!("cart{i}"), &c, "cart");
        let a_web = add_app(h, &format!("web{i}"), &w, "web");
        serve(&w, 8080);
        pairs.push((c, w, a_web, a_cart));
    }
    let show = |h: &Host| h.cli_json(&["policy", "defaults"]);
    // No document: the host config (deny) decides.
    for (h, (c, _, a_web, _)) in hosts.iter().zip(&pairs) {
        assert_eq!(tcp(c, a_web, 8080), None, "open before any default");
        let d = show(h);
        assert_eq!(
            (d["revision"].as_i64(), &d["between_apps"]),
            (Some(0), &"deny".into()),
            "{d}"
        );
    }

    // Allow, set through host a only: both hosts open.
    let (code, out, err) = cli(
        &hosts[0],
        &["policy", "defaults", "set", "--between-apps", "allow"],
    );
    assert_eq!(code, 0, "{out}{err}");
    for (i, (c, _, a_web, _)) in pairs.iter().enumerate() {
        wait_tcp(&format!("allow on host {i}"), c, a_web, 8080, true);
    }
    let d = show(&hosts[1]);
    assert_eq!(d["cluster"]["between_apps"], "allow", "{d}");
    assert_eq!(
        (&d["host_between_apps"], &d["between_apps"]),
        (&"deny".into(), &"allow".into())
    );
    // The text list ends with the defaults.
    let (code, out, _) = cli(&hosts[1], &["policy", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["between_apps", "allow", "deny", "allow"]),
        "{out}"
    );
    // The trace names the default that decided.
    for (h, (_, _, a_web, a_cart)) in hosts.iter().zip(&pairs) {
        let t = trace(h, a_cart, a_web, "tcp", 8080);
        assert_eq!(t["allow"], true, "{t}");
    }

    // A bad value: refused naming the field, nothing stored, traffic as
    // it was.
    let rev = show(&hosts[0])["revision"].clone();
    for (flag, field) in [("--between-apps", "between_apps"), ("--egress", "egress")] {
        let (code, out, err) = cli(&hosts[0], &["policy", "defaults", "set", flag, "maybe"]);
        assert_ne!(code, 0, "{out}");
        assert!(
            err.contains(field) && err.contains("maybe"),
            "{field}: {err}"
        );
    }
    let d = show(&hosts[0]);
    assert_eq!(
        (&d["revision"], &d["cluster"]["between_apps"]),
        (&rev, &"allow".into()),
        "{d}"
    );
    for (c, _, a_web, _) in &pairs {
        assert!(
            tcp(c, a_web, 8080).is_some(),
            "a refused value changed traffic"
        );
    }

    // Back to deny, through host b: both close.
    let (code, out, err) = cli(
        &hosts[1],
        &["policy", "defaults", "set", "--between-apps", "deny"],
    );
    assert_eq!(code, 0, "{out}{err}");
    for (i, (c, _, a_web, _)) in pairs.iter().enumerate() {
        wait_tcp(&format!("deny on host {i}"), c, a_web, 8080, false);
    }
    // Same app still talks (the default is between apps only).
    let w0 = &pairs[0].1;
    let w1 = Netns::new("web2").unwrap();
    let a_w1 = add_app(&hosts[0], "web2", &w1, "web");
    serve(&w1, 8081);
    assert!(
        tcp(w0, &a_w1, 8081).is_some(),
        "same app closed by the default"
    );
}
