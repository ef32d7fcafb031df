//! flatnet: the operator's CLI. Talks to flatnetd over its control socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flatnet_agent::api::{Answer, Op, call};
use flatnet_agent::config::DEFAULT_API_SOCKET;
use flatnet_bgp::speaker::control::RoutesArgs;

#[path = "flatnet/show.rs"]
mod show;

#[derive(Parser)]
#[command(version, about = "flatnet command-line interface")]
struct Cli {
    /// flatnetd's control socket.
    #[arg(long, global = true, default_value = DEFAULT_API_SOCKET)]
    socket: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Daemon health and readiness.
    Status,
    /// Container attachments on this host.
    Endpoints,
    /// Address management.
    Ipam {
        #[command(subcommand)]
        cmd: IpamCmd,
    },
    /// BGP sessions and routes (flatnetd, or flatnet-bgpd with --socket).
    Bgp {
        #[command(subcommand)]
        cmd: BgpCmd,
    },
    /// flatnet's routes in the kernel (route protocol 200).
    Fib,
    /// Re-read the config file, like SIGHUP: peers added, removed, changed.
    Reload,
    /// Application policy.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
}

#[derive(Subcommand)]
enum BgpCmd {
    /// Every neighbour: state, uptime, last error, capabilities, prefixes.
    Neighbors,
    /// The Loc-RIB with best and multipath next hops, or one peer's side.
    Routes {
        /// Routes received from PEER (before import policy).
        #[arg(long, value_name = "PEER", conflicts_with = "advertised_to")]
        received_from: Option<std::net::IpAddr>,
        /// Routes advertised to PEER.
        #[arg(long, value_name = "PEER")]
        advertised_to: Option<std::net::IpAddr>,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Store a policy document (TOML or JSON); validated first, nothing
    /// is stored when a field is wrong.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Store only if the document is still at this revision (0: new).
        #[arg(long)]
        expect_revision: Option<i64>,
    },
    /// Every policy document with its revision.
    List,
    /// One document.
    Show { name: String },
    /// Delete one document.
    Delete { name: String },
    /// Allow or deny for one flow, and the policy or default that decides.
    Trace {
        #[arg(long)]
        from: std::net::IpAddr,
        #[arg(long)]
        to: std::net::IpAddr,
        #[arg(long, default_value = "tcp")]
        proto: String,
        #[arg(long)]
        port: Option<u16>,
    },
    /// Packets and bytes per policy edge on this host.
    Stats,
    /// The cluster defaults (datastore) and what this host enforces.
    Defaults {
        #[command(subcommand)]
        cmd: Option<DefaultsCmd>,
    },
}

#[derive(Subcommand)]
enum DefaultsCmd {
    /// Stored and effective defaults (the default).
    Show,
    /// Set cluster defaults in the datastore (every host follows); a
    /// field not given keeps its stored value.
    Set {
        /// `allow` or `deny`: between apps when no edge matches.
        #[arg(long)]
        between_apps: Option<String>,
        /// `allow` or `deny`: to outside the pools when no egress matches.
        #[arg(long)]
        egress: Option<String>,
    },
}

/// The request of a `policy` subcommand; `Err` is a message for stderr.
fn policy_op(cmd: &PolicyCmd) -> Result<Op, String> {
    use flatnet_agent::api::{PolicyApplyArgs, PolicyName};
    use flatnet_agent::policy::Policy;
    Ok(match cmd {
        PolicyCmd::Apply {
            file,
            expect_revision,
        } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
            let (raw, _) = Policy::parse(&text, &file.display().to_string())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            Op::PolicyApply(PolicyApplyArgs {
                policy: raw,
                expect_revision: *expect_revision,
            })
        }
        PolicyCmd::List => Op::PolicyList,
        PolicyCmd::Show { name } => Op::PolicyShow(PolicyName { name: name.clone() }),
        PolicyCmd::Delete { name } => Op::PolicyDelete(PolicyName { name: name.clone() }),
        PolicyCmd::Trace {
            from,
            to,
            proto,
            port,
        } => Op::PolicyTrace(flatnet_agent::policy::trace::Flow {
            from: *from,
            to: *to,
            proto: proto.parse().map_err(|e| format!("--proto: {e}"))?,
            port: *port,
        }),
        PolicyCmd::Stats => Op::PolicyStats,
        PolicyCmd::Defaults {
            cmd: None | Some(DefaultsCmd::Show),
        } => Op::PolicyDefaultsShow,
        PolicyCmd::Defaults {
            cmd:
                Some(DefaultsCmd::Set {
                    between_apps,
                    egress,
                }),
        } => {
            if between_apps.is_none() && egress.is_none() {
                return Err("policy defaults set: give --between-apps and/or --egress".into());
            }
            Op::PolicyDefaultsSet(flatnet_agent::policy::defaults::DefaultsChange {
                between_apps: between_apps.clone(),
                egress: egress.clone(),
            })
        }
    })
}

#[derive(Subcommand)]
enum IpamCmd {
    /// Blocks and allocations of this host.
    Show,
    /// Consistency check of IPAM and endpoint records.
    Check,
}

/// Left-aligned columns separated by two spaces, like birdc/vtysh.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.len());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<width$}", c, width = w.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let op = match &cli.cmd {
        Cmd::Status => Op::Status,
        Cmd::Endpoints => Op::Endpoints,
        Cmd::Ipam { cmd: IpamCmd::Show } => Op::IpamShow,
        Cmd::Ipam {
            cmd: IpamCmd::Check,
        } => Op::IpamCheck,
        Cmd::Bgp {
            cmd: BgpCmd::Neighbors,
        } => Op::BgpNeighbors,
        Cmd::Bgp {
            cmd:
                BgpCmd::Routes {
                    received_from,
                    advertised_to,
                },
        } => Op::BgpRoutes(RoutesArgs {
            received_from: *received_from,
            advertised_to: *advertised_to,
        }),
        Cmd::Fib => Op::Fib,
        Cmd::Reload => Op::Reload,
        Cmd::Policy { cmd } => match policy_op(cmd) {
            Ok(op) => op,
            Err(e) => {
                eprintln!("flatnet: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let answer = match call(&cli.socket, op, Duration::from_secs(30)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("flatnet: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    let text = if cli.json {
        let v = match &answer {
            Answer::Status(s) => serde_json::to_value(s),
            Answer::Endpoints(e) => serde_json::to_value(e),
            Answer::Ipam(i) => serde_json::to_value(i),
            Answer::BgpNeighbors(n) => serde_json::to_value(n),
            Answer::BgpRoutes(r) => serde_json::to_value(r),
            Answer::Fib(f) => serde_json::to_value(f),
            Answer::Reloaded(r) => serde_json::to_value(r),
            Answer::IpamCheck(p) => {
                failed = !p.is_empty();
                serde_json::to_value(serde_json::json!({"ok": p.is_empty(), "problems": p}))
            }
            Answer::PolicyRevision(r) => serde_json::to_value(serde_json::json!({"revision": r})),
            Answer::Policies(p) => serde_json::to_value(p),
            Answer::Policy(p) => serde_json::to_value(p),
            Answer::Trace(v) => {
                failed = !v.allow;
                serde_json::to_value(v)
            }
            Answer::PolicyStats(s) => serde_json::to_value(s),
            Answer::PolicyDefaults(d) => serde_json::to_value(d),
            other => serde_json::to_value(other),
        };
        v.map(|v| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n")
            .unwrap_or_default()
    } else {
        match &answer {
            Answer::Status(s) => {
                let mut rows = vec![
                    vec!["node".into(), s.node.clone()],
                    vec!["version".into(), s.version.clone()],
                    vec!["ready".into(), s.ready.to_string()],
                    vec!["uptime".into(), format!("{}s", s.uptime_seconds)],
                    vec!["datastore".into(), s.datastore.clone()],
                    vec![
                        "datastore_reachable".into(),
                        s.datastore_reachable.to_string(),
                    ],
                    vec!["routing".into(), s.routing.clone()],
                    vec!["endpoints".into(), s.endpoints.to_string()],
                ];
                if let Some(r) = &s.reason {
                    rows.insert(3, vec!["reason".into(), r.clone()]);
                }
                let mut out = table(&["FIELD", "VALUE"], &rows);
                if !s.peers.is_empty() {
                    out.push('\n');
                    out.push_str(&table(
                        &["PEER", "AS", "STATE"],
                        &s.peers
                            .iter()
                            .map(|p| {
                                vec![
                                    p.address.to_string(),
                                    p.asn.to_string(),
                                    p.state.to_string(),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    ));
                }
                out
            }
            Answer::Endpoints(eps) => table(
                &["CONTAINER", "IFNAME", "IPV4", "IPV6", "HOST-IF", "APP"],
                &eps.iter()
                    .map(|e| {
                        vec![
                            e.container_id.chars().take(16).collect(),
                            e.ifname.clone(),
                            e.v4.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                            e.v6.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                            e.host_ifname.clone(),
                            e.app.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ),
            Answer::Ipam(v) => {
                let mut s = table(
                    &["BLOCK", "USED", "CAPACITY"],
                    &v.blocks
                        .iter()
                        .map(|b| {
                            vec![
                                b.cidr.to_string(),
                                b.used.to_string(),
                                b.capacity.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
                s.push('\n');
                s.push_str(&table(
                    &["ADDRESS", "BLOCK", "HANDLE"],
                    &v.allocations
                        .iter()
                        .map(|a| vec![a.addr.to_string(), a.block.to_string(), a.handle.clone()])
                        .collect::<Vec<_>>(),
                ));
                s
            }
            Answer::BgpNeighbors(n) => show::neighbors(n),
            Answer::BgpRoutes(r) => show::routes(r),
            Answer::Fib(f) => show::fib(f),
            Answer::Reloaded(r) => show::reloaded(r),
            Answer::PolicyRevision(r) => format!("stored at revision {r}\n"),
            Answer::Policies(ps) => table(
                &["NAME", "REVISION", "ALLOW", "EGRESS", "INGRESS"],
                &ps.iter()
                    .map(|p| {
                        vec![
                            p.raw.name.clone(),
                            p.revision.to_string(),
                            p.raw.allow.len().to_string(),
                            p.raw.egress.len().to_string(),
                            p.raw.ingress.len().to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ),
            Answer::Policy(p) => {
                let body = toml::to_string_pretty(&p.raw).unwrap_or_default();
                format!("# revision {}\n{body}", p.revision)
            }
            Answer::Trace(v) => {
                failed = !v.allow;
                let by = v.decided_by.as_ref().map_or(
                    "no flatnet rule (left to the host's other rules)".to_string(),
                    |o| o.comment(),
                );
                format!(
                    "{} by {by}\npath: {}\n",
                    if v.allow { "allow" } else { "deny" },
                    v.path.join(" -> ")
                )
            }
            Answer::PolicyStats(s) => table(
                &["RULE", "PACKETS", "BYTES"],
                &s.iter()
                    .map(|c| vec![c.rule.clone(), c.packets.to_string(), c.bytes.to_string()])
                    .collect::<Vec<_>>(),
            ),
            Answer::PolicyDefaults(d) => show::policy_defaults(d),
            Answer::IpamCheck(p) if p.is_empty() => "ipam: consistent\n".to_string(),
            Answer::IpamCheck(p) => {
                failed = true;
                p.iter().map(|x| format!("problem: {x}\n")).collect()
            }
            other => format!("{other:?}\n"),
        }
    };
    print!("{text}");
    // The list ends with the defaults that apply where no edge matches.
    if !cli.json
        && matches!(
            cli.cmd,
            Cmd::Policy {
                cmd: PolicyCmd::List
            }
        )
        && let Ok(Answer::PolicyDefaults(d)) =
            call(&cli.socket, Op::PolicyDefaultsShow, Duration::from_secs(30))
    {
        print!("\n{}", show::policy_defaults(&d));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
