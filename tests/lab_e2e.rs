//! End to end: the lab (the README's main job) comes up — two FRR ToRs, two
//! hosts running flatnetd (with its embedded BGP speaker), containers added through
//! the real flatnet-cni — and every container reaches every other over IPv4
//! and IPv6 through the ToRs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>` of this test binary (`target/<profile>/deps/lab_e2e-…`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf()
}

#[test]
fn lab_comes_up_and_every_container_reaches_every_other() {
    flatnet_tests::lab::require_root().unwrap();
    let dir = bin_dir();
    for b in [
        "flatnet-lab",
        "flatnetd",
        "flatnet",
        "flatnet-cni",
        "flatnet-bgpd",
    ] {
        assert!(
            dir.join(b).exists(),
            "{} missing: build the workspace binaries first (`cargo build --workspace --bins`; `cargo test --workspace` does it)",
            dir.join(b).display()
        );
    }
    let out = Command::new(dir.join("flatnet-lab"))
        .arg("--bin-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "flatnet-lab failed:\n{stdout}\n{stderr}"
    );
    // Both ToRs see both hosts Established.
    assert_eq!(stdout.matches("Established").count(), 4, "{stdout}");
    // 4 containers: 12 ordered pairs, each reached over v4 and v6.
    assert_eq!(stdout.matches("ok/ok").count(), 12, "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // Each ToR learned both hosts' IPv4 and IPv6 blocks.
    let learned = stdout
        .lines()
        .filter(|l| l.starts_with("tor") && (l.contains("/26 ") || l.contains("/122 ")))
        .count();
    assert_eq!(learned, 8, "{stdout}");
}
