//! Containers through the real `flatnet-cni` plugin (the path a runtime
//! takes) and the host's blocks from `flatnet ipam show --json`: shared by
//! the kept lab and the fixed `flatnet-lab` run.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{LabError, Netns};

fn bad<E: std::fmt::Display>(e: E) -> LabError {
    LabError::Other(e.to_string())
}

fn conf(socket: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.1.0","name":"flatnet","type":"flatnet-cni","flatnetd_socket":"{}"}}"#,
        socket.display()
    )
}

/// Runs one CNI command for container `id` (interface eth0 in `ns`) from
/// inside the host's namespace; returns the plugin's stdout. `app` is the
/// container's app id for policy (CNI_ARGS `FLATNET_APP`).
pub fn exec(
    cni: &Path,
    host: &Netns,
    socket: &Path,
    cmd: &str,
    id: &str,
    ns: &Netns,
    app: Option<&str>,
) -> Result<String, LabError> {
    let mut c = host.command(cni);
    if let Some(app) = app {
        c.env("CNI_ARGS", format!("IgnoreUnknown=1;FLATNET_APP={app}"));
    }
    c.env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", ns.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| LabError::Spawn("flatnet-cni".into(), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf(socket).as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(LabError::Other(format!(
            "flatnet-cni {cmd} for {id} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(stdout)
}

/// CNI ADD (of a container of `app`, if any); the container's addresses.
pub fn add(
    cni: &Path,
    host: &Netns,
    socket: &Path,
    id: &str,
    ns: &Netns,
    app: Option<&str>,
) -> Result<Vec<IpAddr>, LabError> {
    let out = exec(cni, host, socket, "ADD", id, ns, app)?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(bad)?;
    let mut addrs = Vec::new();
    for ip in v["ips"].as_array().into_iter().flatten() {
        if let Some(a) = ip["address"].as_str().and_then(|s| s.split('/').next()) {
            addrs.push(a.parse().map_err(bad)?);
        }
    }
    if addrs.is_empty() {
        return Err(LabError::Other(format!(
            "flatnet-cni ADD returned no addresses: {out}"
        )));
    }
    Ok(addrs)
}

/// CNI DEL.
pub fn del(cni: &Path, host: &Netns, socket: &Path, id: &str, ns: &Netns) -> Result<(), LabError> {
    exec(cni, host, socket, "DEL", id, ns, None).map(|_| ())
}

/// The blocks flatnetd claimed for its host, from `flatnet ipam show --json`.
pub fn host_blocks(flatnet: &Path, socket: &Path) -> Result<Vec<String>, LabError> {
    let out = crate::run(
        Command::new(flatnet)
            .arg("--socket")
            .arg(socket)
            .args(["ipam", "show", "--json"]),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(bad)?;
    let mut blocks = Vec::new();
    collect_blocks(&v, &mut blocks);
    blocks.sort();
    blocks.dedup();
    Ok(blocks)
}

fn collect_blocks(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m {
                if k == "blocks" {
                    for b in val.as_array().into_iter().flatten() {
                        let s = b
                            .as_str()
                            .or_else(|| b["cidr"].as_str())
                            .or_else(|| b["block"].as_str());
                        if let Some(s) = s {
                            out.push(s.to_string());
                        }
                    }
                } else {
                    collect_blocks(val, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_blocks(x, out)),
        _ => {}
    }
}
