//! `flatnet-lab`: labs of network namespaces on this machine.
//!
//! `up FILE` builds a containerlab topology file and leaves it running;
//! `status`, `exec NODE -- CMD`, `ping A B` look inside; `down` removes it.
//! Without a subcommand it runs the fixed two-ToR lab once (the earlier
//! main job) and removes it again.

mod bench;
mod classic;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flatnet_lab::deploy::{self, DeployError, LabState, UpOptions};
use flatnet_lab::topology::Topology;

#[derive(Parser)]
#[command(about = "flatnet labs of network namespaces: up, status, exec, ping, down")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    classic: classic::Args,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a topology file's lab and leave it running; print its summary.
    Up {
        file: PathBuf,
        /// Hosts of a topology with a flatnet.scale section (the `scale` topology).
        #[arg(long)]
        hosts: Option<usize>,
        /// Destinations each container tries (default: all up to 16
        /// containers, else 3).
        #[arg(long)]
        sample: Option<usize>,
        /// Directory holding flatnetd, flatnet and flatnet-cni (default:
        /// this executable's).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Seconds to wait for sessions and routes.
        #[arg(long, default_value_t = 90)]
        timeout: u64,
        /// Install missing packages first (quietly; log file printed).
        #[arg(long)]
        install_deps: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check a topology file without creating anything.
    Check {
        file: PathBuf,
        #[arg(long)]
        hosts: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Print a scale topology with its generated hosts (for containerlab).
    Expand {
        file: PathBuf,
        #[arg(long)]
        hosts: Option<usize>,
    },
    /// Summary of a running lab.
    Status {
        /// Lab name or topology file (default: the only lab up).
        lab: Option<String>,
        #[arg(long)]
        sample: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Remove everything a lab created (also after a killed `up`).
    Down {
        /// Lab name or topology file.
        lab: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a node's or container's namespace.
    Exec {
        node: String,
        #[arg(long)]
        lab: Option<String>,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Ping and TCP-connect from container A to container B.
    Ping {
        from: String,
        to: String,
        #[arg(long)]
        lab: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks: bgp, cni, policy, kernel-install, convergence, datapath,
    /// docker, dns (bench-bgp-feed, cargo bench / ignored bench tests, release,
    /// with ARGS), scale and rss (labs); each keeps its report in
    /// target/bench-json/NAME.json (`--json` prints it). `all` runs every
    /// one; `--docs FILE` rewrites FILE's generated section.
    Bench {
        name: String,
        /// Host counts of the scale report.
        #[arg(long, default_value = "10,25,50", value_delimiter = ',')]
        hosts: Vec<usize>,
        #[arg(long, default_value_t = 100)]
        endpoints: usize,
        #[arg(long, default_value_t = 10_000)]
        routes: usize,
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Seconds to wait for each lab.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// With `all`: rewrite the generated section of this Markdown file.
        #[arg(long)]
        docs: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The TCP end of the reachability matrix (run in each container).
    #[command(hide = true)]
    ServeTcp {
        #[arg(long)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(cmd) = cli.cmd else {
        return classic::main(&cli.classic);
    };
    match run(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flatnet-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A lab name from a name or a topology file.
fn lab_name(arg: Option<String>) -> Result<String, DeployError> {
    match arg {
        Some(a) if a.ends_with(".yml") || a.ends_with(".yaml") || Path::new(&a).is_file() => {
            Ok(Topology::load(Path::new(&a))?.name)
        }
        Some(a) => Ok(a),
        None => {
            let labs: Vec<String> = std::fs::read_dir(deploy::RUN_ROOT)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().join("state.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            match labs.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(DeployError::NotUp(
                    "(any)".into(),
                    PathBuf::from(deploy::RUN_ROOT),
                )),
                _ => Err(DeployError::Node {
                    node: "flatnet-lab".into(),
                    what: format!("several labs are up ({}); name one", labs.join(", ")),
                }),
            }
        }
    }
}

/// Every pair in a small lab, 3 destinations per container in a large one.
fn default_sample(state: &LabState) -> Option<usize> {
    (state.containers.len() > 16).then_some(3)
}

fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("flatnet-lab: JSON: {e}"),
    }
}

/// Success iff every session is Established, every ping the policy allows
/// answers and every connect did what the policy says; on failure stderr
/// names what differs (each pair).
fn verdict(s: &deploy::Summary) -> ExitCode {
    let policy_ok = s.policy_as_declared || !s.policy_declared || !s.policy_applied;
    if s.all_established && s.full_reachability && policy_ok {
        return ExitCode::SUCCESS;
    }
    if !s.all_established {
        eprintln!("flatnet-lab: not every BGP session is Established");
    }
    for m in s.mismatches() {
        eprintln!("flatnet-lab: not as the policy declares: {m}");
    }
    ExitCode::FAILURE
}

fn run(cmd: Cmd) -> Result<ExitCode, DeployError> {
    match cmd {
        Cmd::Expand { file, hosts } => {
            print!("{}", Topology::expanded_yaml(&file, hosts)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { file, hosts, json } => {
            let t = match Topology::load_scaled(&file, hosts) {
                Ok(t) => t,
                Err(e) if json => {
                    let problems: Vec<_> = e
                        .problems
                        .iter()
                        .map(|p| serde_json::json!({ "line": p.line, "message": p.message }))
                        .collect();
                    print_json(
                        &serde_json::json!({ "file": e.file, "ok": false, "problems": problems }),
                    );
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                print_json(&serde_json::json!({
                    "file": file, "ok": true, "lab": t.name, "nodes": t.nodes.len(),
                    "links": t.links.len(), "hosts": t.hosts().count(),
                }));
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{}: lab {}: {} nodes, {} links, {} hosts — ok",
                file.display(),
                t.name,
                t.nodes.len(),
                t.links.len(),
                t.hosts().count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Up {
            file,
            hosts,
            sample,
            install_deps,
            bin_dir,
            timeout,
            json,
        } => {
            let topo = Topology::load_scaled(&file, hosts)?;
            let missing = deploy::preflight::missing(&topo);
            if install_deps && !missing.is_empty() {
                let pkgs: Vec<&str> = missing.keys().copied().collect();
                let log = PathBuf::from("/tmp/flatnet-lab-install.log");
                eprint!(
                    "==> installing {} (log: {}) ... ",
                    pkgs.join(" "),
                    log.display()
                );
                deploy::preflight::install(&pkgs, &log).map_err(|what| DeployError::Node {
                    node: "install-deps".into(),
                    what,
                })?;
                eprintln!("ok");
            }
            let exe = std::env::current_exe().map_err(|e| DeployError::Io(file.clone(), e))?;
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => exe.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let opts = UpOptions {
                bin_dir,
                listener: exe,
                timeout: Duration::from_secs(timeout),
            };
            let t0 = std::time::Instant::now();
            let mut progress = |m: &str| {
                eprintln!("==> [{:>5.1} s] {m}", t0.elapsed().as_secs_f64());
                let _ = std::io::stderr().flush();
            };
            let state = match deploy::up(&topo, &opts, &mut progress) {
                Ok(s) => s,
                Err(e @ DeployError::AlreadyUp(_)) => return Err(e),
                Err(e) => {
                    eprintln!(
                        "flatnet-lab: up failed; the lab is left as it is for a look (`flatnet-lab down {}` removes it)",
                        topo.name
                    );
                    return Err(e);
                }
            };
            progress("checking reachability (ping and TCP between every pair of containers)");
            let s = deploy::summarize(&state, sample.or(default_sample(&state)));
            if json {
                print_json(&s);
            } else {
                print!("{}", s.render());
                println!(
                    "\nlab {name} is up ({:.1} s). Look around:\n  flatnet-lab exec host1 -- flatnet ipam show\n  flatnet-lab exec tor1 -- ip route\n  flatnet-lab ping {a} {b}\n  flatnet-lab status {name}\nTake it down:\n  flatnet-lab down {name}",
                    t0.elapsed().as_secs_f64(),
                    name = state.name,
                    a = state
                        .containers
                        .first()
                        .map(|c| c.name.as_str())
                        .unwrap_or("A"),
                    b = state
                        .containers
                        .last()
                        .map(|c| c.name.as_str())
                        .unwrap_or("B"),
                );
            }
            Ok(verdict(&s))
        }
        Cmd::Status { lab, sample, json } => {
            let state = LabState::load(&lab_name(lab)?)?;
            let s = deploy::summarize(&state, sample.or(default_sample(&state)));
            if json {
                print_json(&s);
            } else {
                print!("{}", s.render());
            }
            Ok(verdict(&s))
        }
        Cmd::Down { lab, json } => {
            let name = lab_name(Some(lab))?;
            let removed = deploy::down(&name);
            if json {
                print_json(&serde_json::json!({ "lab": name, "removed_namespaces": removed }));
            } else {
                println!("lab {name}: removed {} namespaces", removed.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { node, lab, cmd } => {
            let state = LabState::load(&lab_name(lab)?)?;
            let ns = state.netns_of(&node)?;
            let (prog, args) = cmd.split_first().ok_or_else(|| DeployError::Node {
                node: node.clone(),
                what: "no command".into(),
            })?;
            // Tools of the lab (flatnet, flatnetd) resolve from its bin dir,
            // and `flatnet` on a host talks to that host's flatnetd.
            let path = format!(
                "{}:{}",
                state.bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let mut c = ns.command("env");
            c.arg(format!("PATH={path}")).arg(prog);
            let socket = state
                .nodes
                .iter()
                .find(|n| n.name == node)
                .and_then(|n| n.socket.clone());
            if let (Some(sock), true) = (socket, prog == "flatnet") {
                c.arg("--socket").arg(sock);
            }
            c.args(args);
            let st = c
                .status()
                .map_err(|e| DeployError::Io(PathBuf::from(prog), e))?;
            Ok(ExitCode::from(st.code().unwrap_or(1).clamp(0, 255) as u8))
        }
        Cmd::Ping {
            from,
            to,
            lab,
            json,
        } => {
            let state = LabState::load(&lab_name(lab)?)?;
            let rows = deploy::summary::pair(&state, &from, &to)?;
            if json {
                print_json(&rows);
            } else {
                for r in &rows {
                    println!(
                        "{} -> {} {}: ping {} (policy {}), tcp {} ({})",
                        r.from,
                        r.to,
                        r.addr,
                        if r.ping { "ok" } else { "no answer" },
                        if r.expected_ping { "allows" } else { "denies" },
                        if r.tcp {
                            "connected"
                        } else {
                            "refused/timed out"
                        },
                        if r.expected_tcp {
                            "policy allows"
                        } else {
                            "policy denies"
                        }
                    );
                }
            }
            Ok(if rows.iter().all(|r| r.as_declared()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Bench {
            name,
            hosts,
            endpoints,
            routes,
            bin_dir,
            timeout,
            docs,
            json,
            args,
        } => {
            let exe = std::env::current_exe().map_err(|e| DeployError::Io(PathBuf::new(), e))?;
            let bin_dir = bin_dir
                .or_else(|| exe.parent().map(Path::to_path_buf))
                .unwrap_or_default();
            let opts = UpOptions {
                bin_dir: bin_dir.clone(),
                listener: exe,
                timeout: Duration::from_secs(timeout),
            };
            bench::run(
                &name,
                &opts,
                &hosts,
                endpoints,
                routes,
                docs.as_deref(),
                json,
                &args,
            )
        }
        Cmd::ServeTcp { port } => {
            serve_tcp(port);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Accepts TCP connections on every address (v4 and v6) and closes them.
fn serve_tcp(port: u16) {
    let v6: SocketAddr = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let Ok(l) = TcpListener::bind(v6) else {
        eprintln!("serve-tcp: cannot bind port {port}");
        return;
    };
    for s in l.incoming() {
        drop(s);
    }
}
