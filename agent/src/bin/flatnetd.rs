//! flatnetd: the flatnet host agent.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use flatnet_agent::config::{Config, LogFormat};
use flatnet_agent::handlers::Agent;
use flatnet_agent::server::{bind_socket, serve_api, serve_metrics};

#[derive(Parser)]
#[command(version, about = "flatnet host agent")]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/flatnet/flatnetd.toml")]
    config: PathBuf,
    /// Validate FILE and exit (0 when valid).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Log as JSON lines (overrides log.format).
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(f) = args.check_config {
        return match Config::load(&f) {
            Ok(_) => {
                println!("{}: ok", f.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // hickory's server logs every TCP DNS query at info: quiet unless
    // the operator names it.
    let level = if cfg.log.level.contains("hickory") {
        cfg.log.level.clone()
    } else {
        format!("{},hickory_server=warn", cfg.log.level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if args.log_json || cfg.log.format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
    raise_open_files();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flatnetd: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg, args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "flatnetd stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    // Before anything else: a SIGHUP during start must not kill flatnetd.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let socket = cfg.api.socket.clone();
    let metrics_addr = cfg.metrics.listen;
    let limits = flatnet_agent::server::ApiLimits::from(&cfg.api);
    let agent = Agent::new(cfg).await?;
    agent.set_config_path(path);
    agent.reconcile().await?;
    // The Docker plugin socket before the API's: whoever waits for the API
    // (a service manager, the tests) then finds the plugin there too.
    flatnet_agent::docker::start(&agent)?;
    // DNS too: its sockets are bound before the API answers.
    flatnet_agent::dns::start(&agent).await?;
    let listener = bind_socket(&socket)?;
    if let Some(addr) = metrics_addr {
        let l = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "metrics and /healthz listening");
        tokio::spawn(serve_metrics(agent.clone(), l));
    }
    tracing::info!(socket = %socket.display(), "flatnetd ready");
    let mut api = tokio::spawn(serve_api(agent.clone(), listener, limits));
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: exiting (containers keep their network)");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT: exiting");
                break;
            }
            _ = hup.recv() => {
                // A bad file is logged and changes nothing.
                if let Err(e) = agent.reload().await {
                    tracing::error!(error = %e, "SIGHUP: reload failed, running config kept");
                }
            }
            r = &mut api => {
                r?;
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Lifts the soft open-files limit to the hard one (capped): every control
/// client, BGP session and netlink socket is a descriptor, and the usual
/// soft 1,024 is what a burst of clients exhausts first.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const WANT: u64 = 1 << 20;
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            let target = hard.min(WANT).max(soft);
            if target > soft {
                match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
                    Ok(()) => tracing::debug!(from = soft, to = target, "raised open-files limit"),
                    Err(e) => tracing::warn!(error = %e, soft, "cannot raise open-files limit"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read open-files limit"),
    }
}
