//! ToR daemons of a kept lab, started from the config file next to the
//! topology and queried through their own CLIs. They run in their own
//! session (`setsid`) so they outlive `flatnet-lab up`; `down` ends them
//! through the namespace.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::router::{Family, NeighborStatus, RibEntry};
use crate::topology::RouterKind;
use crate::{LabError, Netns, wait_for};

const ZEBRA: &str = "/usr/lib/frr/zebra";
const BGPD: &str = "/usr/lib/frr/bgpd";

fn d(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

/// Starts `program args` in `ns` detached from this process, output to
/// `dir/log`.
pub(super) fn spawn_detached(
    ns: &Netns,
    dir: &Path,
    log: &str,
    program: &Path,
    args: &[String],
) -> Result<(), LabError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(log))?;
    let mut c = ns.command("setsid");
    c.arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(f.try_clone()?))
        .stderr(Stdio::from(f));
    // The child is not waited for: it outlives us and `down` ends it.
    c.spawn()
        .map(drop)
        .map_err(|e| LabError::Spawn(program.display().to_string(), e))
}

fn chown_frr(p: &Path) -> Result<(), LabError> {
    let user = nix::unistd::User::from_name("frr")
        .map_err(|e| LabError::Other(format!("looking up user frr: {e}")))?
        .ok_or_else(|| LabError::Other("user frr does not exist (is FRR installed?)".into()))?;
    nix::unistd::chown(p, Some(user.uid), Some(user.gid))
        .map_err(|e| LabError::Other(format!("chown {}: {e}", p.display())))
}

/// Starts the ToR's daemon with its config copied into `dir`.
pub(super) fn start(
    kind: RouterKind,
    ns: &Netns,
    dir: &Path,
    config: &Path,
) -> Result<(), LabError> {
    match kind {
        RouterKind::Frr => start_frr(ns, dir, config),
        RouterKind::Bird => {
            std::fs::copy(config, dir.join("bird.conf"))?;
            let s = d(dir);
            spawn_detached(
                ns,
                dir,
                "bird.out",
                Path::new("bird"),
                &[
                    "-f".into(),
                    "-c".into(),
                    format!("{s}/bird.conf"),
                    "-s".into(),
                    format!("{s}/bird.ctl"),
                ],
            )?;
            wait_for("bird control socket", Duration::from_secs(10), || {
                Ok(birdc(ns, dir, &["show", "status"]).ok().map(drop))
            })
        }
        RouterKind::Gobgp => {
            std::fs::copy(config, dir.join("gobgp.toml"))?;
            let s = d(dir);
            spawn_detached(
                ns,
                dir,
                "gobgpd.log",
                Path::new("gobgpd"),
                &[
                    "-f".into(),
                    format!("{s}/gobgp.toml"),
                    "--api-hosts".into(),
                    format!("unix://{s}/api.sock"),
                    "-p".into(),
                    "--pprof-disable".into(),
                ],
            )?;
            wait_for("gobgpd API", Duration::from_secs(10), || {
                Ok(gobgp(ns, dir, &["global"]).ok().map(drop))
            })
        }
    }
}

fn start_frr(ns: &Netns, dir: &Path, config: &Path) -> Result<(), LabError> {
    let s = d(dir);
    chown_frr(dir)?;
    std::fs::copy(config, dir.join("frr.conf"))?;
    // Log to the daemon's .out file, so a failure report can show it.
    std::fs::write(dir.join("zebra.conf"), "log stdout informational\n")?;
    std::fs::write(dir.join("bgpd.conf"), "log stdout informational\n")?;
    std::fs::write(dir.join("vtysh.conf"), "")?;
    for f in ["frr.conf", "zebra.conf", "bgpd.conf", "vtysh.conf"] {
        chown_frr(&dir.join(f))?;
    }
    let zserv = format!("{s}/zserv.api");
    for (bin, name) in [(ZEBRA, "zebra"), (BGPD, "bgpd")] {
        spawn_detached(
            ns,
            dir,
            &format!("{name}.out"),
            Path::new(bin),
            &[
                "-u".into(),
                "frr".into(),
                "-g".into(),
                "frr".into(),
                "-f".into(),
                format!("{s}/{name}.conf"),
                "-i".into(),
                format!("{s}/{name}.pid"),
                "--vty_socket".into(),
                s.clone(),
                "-z".into(),
                zserv.clone(),
            ],
        )?;
        if name == "zebra" {
            let z = dir.join("zserv.api");
            wait_for("zebra zserv socket", Duration::from_secs(10), || {
                Ok(z.exists().then_some(()))
            })?;
        }
    }
    wait_for("bgpd vty", Duration::from_secs(10), || {
        Ok(vtysh(ns, dir, &["show bgp summary json"]).ok().map(drop))
    })?;
    // Apply frr.conf to the running daemons, as FRR's own startup does.
    crate::run(
        ns.command("vtysh")
            .args(["--vty_socket", &s, "--config_dir", &s, "-b"]),
    )?;
    Ok(())
}

fn vtysh(ns: &Netns, dir: &Path, cmds: &[&str]) -> Result<String, LabError> {
    let s = d(dir);
    let mut c = ns.command("vtysh");
    c.args(["--vty_socket", &s, "--config_dir", &s]);
    for cmd in cmds {
        c.arg("-c").arg(cmd);
    }
    let out = crate::run(&mut c)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn birdc(ns: &Netns, dir: &Path, args: &[&str]) -> Result<String, LabError> {
    let out = crate::run(
        ns.command("birdc")
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .args(args),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn gobgp(ns: &Netns, dir: &Path, args: &[&str]) -> Result<String, LabError> {
    let mut c: Command = ns.command("gobgp");
    c.arg("--target")
        .arg(format!("unix://{}/api.sock", d(dir)))
        .args(args);
    let out = crate::run(&mut c)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json(s: &str) -> Result<serde_json::Value, LabError> {
    serde_json::from_str(s).map_err(|e| LabError::Other(format!("bad JSON ({e}): {s}")))
}

/// The ToR's BGP sessions.
pub(super) fn neighbors(
    kind: RouterKind,
    ns: &Netns,
    dir: &Path,
) -> Result<Vec<NeighborStatus>, LabError> {
    Ok(match kind {
        RouterKind::Frr => {
            crate::frr::parse_neighbors(&json(&vtysh(ns, dir, &["show bgp neighbors json"])?)?)
        }
        RouterKind::Bird => {
            crate::bird::parse_protocols(&birdc(ns, dir, &["show", "protocols", "all"])?)
        }
        RouterKind::Gobgp => {
            crate::gobgp::parse_neighbors(&json(&gobgp(ns, dir, &["-j", "neighbor"])?)?)
        }
    })
}

/// The ToR's routes of one family.
pub(super) fn rib(
    kind: RouterKind,
    ns: &Netns,
    dir: &Path,
    fam: Family,
) -> Result<Vec<RibEntry>, LabError> {
    let (v, t, g) = match fam {
        Family::Ipv4Unicast => ("ipv4", "master4", "ipv4"),
        Family::Ipv6Unicast => ("ipv6", "master6", "ipv6"),
    };
    Ok(match kind {
        RouterKind::Frr => crate::frr::parse_rib(&json(&vtysh(
            ns,
            dir,
            &[&format!("show bgp {v} unicast json")],
        )?)?),
        RouterKind::Bird => {
            crate::bird::parse_routes(&birdc(ns, dir, &["show", "route", "table", t, "all"])?)
        }
        RouterKind::Gobgp => {
            crate::gobgp::parse_rib(&json(&gobgp(ns, dir, &["-j", "global", "rib", "-a", g])?)?)
        }
    })
}

/// The daemon's log files, for failure reports.
pub(super) fn logs(kind: RouterKind) -> &'static [&'static str] {
    match kind {
        RouterKind::Frr => &["bgpd.out", "zebra.out"],
        RouterKind::Bird => &["bird.out"],
        RouterKind::Gobgp => &["gobgpd.log"],
    }
}

/// An FRR `show ... json` command's output.
pub(super) fn frr_json(ns: &Netns, dir: &Path, cmd: &str) -> Result<serde_json::Value, LabError> {
    json(&vtysh(ns, dir, &[cmd])?)
}
