//! What a topology needs on this machine, named as Debian packages, and
//! installing them quietly (`--install-deps`): one progress line, the
//! package manager's output in a log file whose path is printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::topology::{RouterKind, Topology};

/// (program, Debian package) pairs every lab needs.
const BASE: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("setsid", "util-linux"),
    ("sysctl", "procps"),
    ("iptables-restore", "iptables"),
];

fn router_needs(k: RouterKind) -> &'static [(&'static str, &'static str)] {
    match k {
        RouterKind::Frr => &[
            ("/usr/lib/frr/zebra", "frr"),
            ("/usr/lib/frr/bgpd", "frr"),
            ("vtysh", "frr"),
        ],
        RouterKind::Bird => &[("bird", "bird2"), ("birdc", "bird2")],
        RouterKind::Gobgp => &[("gobgpd", "gobgpd"), ("gobgp", "gobgpd")],
    }
}

fn found(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(Into::into))
        .any(|d| d.join(program).is_file())
}

/// Missing packages, each with the programs it would provide.
pub fn missing(topo: &Topology) -> BTreeMap<&'static str, Vec<&'static str>> {
    let mut need: Vec<(&str, &str)> = BASE.to_vec();
    for (_, k, _) in topo.tors() {
        need.extend_from_slice(router_needs(k));
    }
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (prog, pkg) in need {
        if !found(prog) {
            let v = out.entry(pkg).or_default();
            if !v.contains(&prog) {
                v.push(prog);
            }
        }
    }
    out
}

/// `apt-get install` of `pkgs`, output to `log`; keeps package scripts from
/// starting daemons in the machine's own namespace.
pub fn install(pkgs: &[&str], log: &Path) -> Result<(), String> {
    let f = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let created = !policy.exists()
        && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok()
        && Command::new("chmod")
            .args(["+x", "/usr/sbin/policy-rc.d"])
            .status()
            .is_ok_and(|s| s.success());
    let run = |args: &[&str]| -> Result<(), String> {
        let out = f.try_clone().map_err(|e| e.to_string())?;
        let err = f.try_clone().map_err(|e| e.to_string())?;
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| format!("apt-get: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!(
                "apt-get {} failed; log: {}",
                args.join(" "),
                log.display()
            ))
        }
    };
    let r = run(&["update", "-q"]).and_then(|()| {
        let mut a = vec!["install", "-y", "-q"];
        a.extend_from_slice(pkgs);
        run(&a)
    });
    if created {
        let _ = std::fs::remove_file(policy);
    }
    r
}
