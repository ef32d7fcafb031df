//! The control API server: one JSON request line, one JSON response line
//! per connection on flatnetd's root-only unix socket (the wire protocol of
//! [`crate::api`], spoken by the CLI and flatnet-cni). It owns nothing: it
//! parses, calls [`Agent::handle`] and answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::api::{API_VERSION, ApiError, ErrorKind, MAX_LINE, Outcome, Request, Response};
use crate::handlers::Agent;

/// Creates the socket (mode 0600, parent directory 0700 when we create it).
pub fn bind_socket(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        // A live flatnetd answers; a dead one left its socket behind.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use: is another flatnetd running?", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accepts control connections forever.
pub async fn serve_api(agent: Arc<Agent>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let agent = agent.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(agent, stream).await {
                        tracing::debug!(error = %e, "control connection");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on control socket");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(agent: Arc<Agent>, stream: UnixStream) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r).take(MAX_LINE as u64);
    let mut line = String::new();
    // A client that connects and says nothing must not pin a task forever.
    match tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut line)).await {
        Ok(res) => {
            res?;
        }
        Err(_) => return Ok(()),
    }
    let result = match Request::parse(&line) {
        Err(e) => {
            // Tell an old/new client apart from garbage.
            let v = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("version").and_then(|x| x.as_u64()));
            match v {
                Some(v) if v != u64::from(API_VERSION) => Outcome::Error(ApiError::new(
                    ErrorKind::UnsupportedVersion,
                    format!("flatnetd speaks API version {API_VERSION}, request has {v}"),
                )),
                _ => Outcome::Error(ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!("cannot parse request: {e}"),
                )),
            }
        }
        Ok(req) if req.version != API_VERSION => Outcome::Error(ApiError::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "flatnetd speaks API version {API_VERSION}, request has {}",
                req.version
            ),
        )),
        Ok(req) => match agent.handle(req.op).await {
            Ok(a) => Outcome::Ok(a),
            Err(e) => Outcome::Error(e),
        },
    };
    let resp = Response {
        version: API_VERSION,
        result,
    };
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}
