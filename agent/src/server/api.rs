//! The control API server: one JSON request line, one JSON response line
//! per connection on flatnetd's root-only unix socket (the wire protocol of
//! [`crate::api`], spoken by the CLI and flatnet-cni). It owns nothing: it
//! parses, calls [`Agent::handle`] and answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::api::{API_VERSION, ApiError, ErrorKind, MAX_REQUEST, Outcome, Request, Response};
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

/// What one client may hold: a connection slot, its request bytes, and
/// time to send the request and to take the answer.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    pub max_connections: usize,
    pub client_timeout: Duration,
}

impl From<&crate::config::Api> for ApiLimits {
    fn from(a: &crate::config::Api) -> Self {
        ApiLimits {
            max_connections: a.max_connections,
            client_timeout: Duration::from_secs(a.client_timeout),
        }
    }
}

/// Accepts control connections forever. Over the connection cap a client
/// is told "busy" and closed at once (never left in the backlog), and
/// accept errors (e.g. out of file descriptors) back off up to a second
/// instead of spinning.
pub async fn serve_api(agent: Arc<Agent>, listener: UnixListener, limits: ApiLimits) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut last_warn: Option<tokio::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let agent = agent.clone();
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        tokio::spawn(async move {
                            let _slot = slot;
                            agent.metrics().api_connections.inc();
                            if let Err(e) = serve_conn(&agent, stream, limits).await {
                                tracing::debug!(error = %e, "control connection");
                            }
                            agent.metrics().api_connections.dec();
                        });
                    }
                    Err(_) => {
                        agent.metrics().api_connections_refused.inc();
                        tokio::spawn(refuse_busy(stream, limits.max_connections));
                    }
                }
            }
            Err(e) => {
                // Rate-limited: at EMFILE this fires on every attempt.
                let now = tokio::time::Instant::now();
                if last_warn.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept on control socket");
                    last_warn = Some(now);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A refused client gets this long to take its "busy" answer.
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

async fn refuse_busy(stream: UnixStream, cap: usize) {
    let resp = Response {
        version: API_VERSION,
        result: Outcome::Error(ApiError::new(
            ErrorKind::Busy,
            format!("flatnetd serves {cap} control connections already (api.max_connections)"),
        )),
    };
    let (mut r, mut w) = stream.into_split();
    let _ = tokio::time::timeout(BUSY_WRITE_TIMEOUT, async {
        write_line(&mut w, &resp).await?;
        // Take (and drop) what the client is still sending, so that it
        // reads the answer instead of a broken pipe.
        let mut sink = [0u8; 4096];
        let mut left = MAX_REQUEST;
        while left > 0 {
            match r.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    })
    .await;
}

async fn write_line(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    resp: &Response,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(resp).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Reads one request line of at most [`MAX_REQUEST`] bytes (empty when the
/// client closed); an error to answer when it was too slow or too long.
async fn read_request(
    r: tokio::net::unix::OwnedReadHalf,
    timeout: Duration,
) -> std::io::Result<Result<String, ApiError>> {
    let deadline = tokio::time::Instant::now() + timeout;
    // No buffer until the client says something: idle clients are what a
    // flood of connections is made of.
    if tokio::time::timeout_at(deadline, r.readable())
        .await
        .is_err()
    {
        return Ok(Err(ApiError::new(
            ErrorKind::InvalidRequest,
            format!("no complete request within {} s", timeout.as_secs()),
        )));
    }
    let mut r = BufReader::with_capacity(1024, r).take(MAX_REQUEST as u64 + 1);
    let mut line = String::new();
    match tokio::time::timeout_at(deadline, r.read_line(&mut line)).await {
        Ok(res) => {
            res?;
        }
        Err(_) => {
            return Ok(Err(ApiError::new(
                ErrorKind::InvalidRequest,
                format!("no complete request within {} s", timeout.as_secs()),
            )));
        }
    }
    if line.len() > MAX_REQUEST {
        return Ok(Err(ApiError::new(
            ErrorKind::InvalidRequest,
            format!("request longer than {MAX_REQUEST} bytes"),
        )));
    }
    Ok(Ok(line))
}

async fn serve_conn(
    agent: &Arc<Agent>,
    stream: UnixStream,
    limits: ApiLimits,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let line = match read_request(r, limits.client_timeout).await? {
        Ok(l) if l.is_empty() => return Ok(()),
        Ok(l) => l,
        Err(e) => {
            let resp = Response {
                version: API_VERSION,
                result: Outcome::Error(e),
            };
            let _ = tokio::time::timeout(BUSY_WRITE_TIMEOUT, write_line(&mut w, &resp)).await;
            return Ok(());
        }
    };
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
        // Boxed: an idle connection's task must not carry the largest
        // handler's state.
        Ok(req) => match Box::pin(agent.handle(req.op)).await {
            Ok(a) => Outcome::Ok(a),
            Err(e) => Outcome::Error(e),
        },
    };
    let resp = Response {
        version: API_VERSION,
        result,
    };
    // A client that never takes its answer must not pin it.
    match tokio::time::timeout(limits.client_timeout, write_line(&mut w, &resp)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client did not take its answer",
        )),
    }
}
