//! Bad `[[bgp.peer]]` input: flatnetd refuses to start, names file:line:column
//! and creates nothing (no control socket, no datastore, no session). Runs
//! flatnetd inside a namespace of its own in case a config were accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flatnet_lab::Netns;

const FLATNETD: &str = env!("CARGO_BIN_EXE_flatnetd");

fn config(dir: &Path, peers: &str) -> String {
    format!(
        r#"[node]
name = "bad"
router_id = "10.0.0.2"
asn = 65002
[api]
socket = "{d}/flatnetd.sock"
[metrics]
listen = ""
[dataplane]
state_dir = "{d}/state"
[datastore]
url = "file:{d}/datastore"
[[pool]]
cidr = "10.244.0.0/16"
[[bgp.peer]]
address = "10.0.0.1"
asn = 65001
{peers}"#,
        d = dir.display()
    )
}

/// Runs flatnetd on `text`; returns (exit code, stderr). Fails the test if
/// flatnetd is still running after the deadline (it accepted the config).
fn run(ns: &Netns, dir: &Path, text: &str) -> (i32, String) {
    let file = dir.join("flatnetd.toml");
    std::fs::write(&file, text).unwrap();
    let mut child = ns
        .command(FLATNETD)
        .arg("-c")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flatnetd accepted:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

fn check_config(ns: &Netns, file: &Path) -> std::process::Output {
    ns.command(FLATNETD)
        .arg("--check-config")
        .arg(file)
        .output()
        .unwrap()
}

fn assert_refused(ns: &Netns, extra: &str, at: &str, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(ns, dir.path(), &config(dir.path(), extra));
    let file = dir.path().join("flatnetd.toml");
    assert_ne!(code, 0, "{err}");
    let want = format!("{}:{at}: ", file.display());
    assert!(err.starts_with(&want), "expected {want:?}, got {err:?}");
    assert!(err.contains(says), "{err}");
    for left in ["flatnetd.sock", "datastore", "state"] {
        assert!(!dir.path().join(left).exists(), "{left} created; {err}");
    }
    // --check-config says the same and exits non-zero.
    let out = check_config(ns, &file);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&want));
}

#[test]
fn bad_peer_config_is_refused_with_its_position_and_nothing_starts() {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("badcfg").unwrap();
    // An unknown peer option (a misspelt password must not mean "no password").
    assert_refused(
        &ns,
        "md5_password = \"s3cret\"\n",
        "18:1",
        "unknown field `md5_password`",
    );
    // A TCP-MD5 key the kernel cannot sign with (longer than TCP_MD5SIG_MAXKEYLEN).
    assert_refused(
        &ns,
        &format!("password = \"{}\"\n", "k".repeat(81)),
        "18:12",
        "the kernel cannot sign",
    );
    // A duplicate peer: the second one is named.
    assert_refused(
        &ns,
        "[[bgp.peer]]\nasn = 65003\naddress = \"10.0.0.1\"\n",
        "20:11",
        "duplicate peer",
    );
    // A link-local peer without its interface.
    assert_refused(
        &ns,
        "[[bgp.peer]]\naddress = \"fe80::1\"\nasn = 65003\n",
        "19:11",
        "needs `interface`",
    );
}

#[test]
fn good_peer_options_pass_check_config() {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("goodcfg").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flatnetd.toml");
    let text = config(
        dir.path(),
        "password = \"s3cret\"\nttl_security = 1\nhold_time = 9\nkeepalive = 3\n[[bgp.peer.max_prefix]]\nfamily = \"ipv4-unicast\"\nlimit = 100\nwarning_only = true\n",
    );
    std::fs::write(&file, text).unwrap();
    let out = check_config(&ns, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
