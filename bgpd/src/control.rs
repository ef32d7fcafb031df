//! flatnet-bgpd's control socket (`--socket PATH`): the BGP queries of
//! flatnetd's control protocol (one JSON request line, one JSON response
//! line per connection, mode 0600), answered from the running [`Speaker`]
//! through [`flatnet_bgp::speaker::control`], so `flatnet --socket PATH bgp
//! neighbors|routes` reads flatnet-bgpd as it reads flatnetd.

use std::path::Path;
use std::time::Duration;

use flatnet_bgp::speaker::control::{CONTROL_VERSION, Query, answer};
use flatnet_bgp::speaker::{Speaker, SpeakerError};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// Largest request line read.
const MAX_LINE: u64 = 1 << 16;

/// Binds `path` (replacing a stale socket) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves connections until the listener fails.
pub async fn serve(speaker: Speaker, listener: UnixListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let speaker = speaker.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r).take(MAX_LINE);
            let mut line = String::new();
            match tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut line)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let mut out = serve_line(&speaker, &line).await;
            out.push('\n');
            let _ = w.write_all(out.as_bytes()).await;
            let _ = w.shutdown().await;
        });
    }
}

/// One request line to one response line (without the newline): version
/// check, parse, answer. Errors use flatnetd's error kinds
/// (`unsupported_version`, `invalid_request`, `not_found`, `internal`).
pub async fn serve_line(s: &Speaker, line: &str) -> String {
    #[derive(Deserialize)]
    struct Request {
        version: u32,
        #[serde(flatten)]
        query: Query,
    }
    let err = |kind: &str, message: String| serde_json::json!({"version": CONTROL_VERSION, "error": {"kind": kind, "message": message}});
    let v = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) => v,
        Err(e) => return err("invalid_request", format!("cannot parse request: {e}")).to_string(),
    };
    match v.get("version").and_then(serde_json::Value::as_u64) {
        Some(n) if n == u64::from(CONTROL_VERSION) => {}
        other => {
            return err(
                "unsupported_version",
                format!("flatnet-bgpd speaks version {CONTROL_VERSION}, request has {other:?}"),
            )
            .to_string();
        }
    }
    let req: Request = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => {
            return err(
                "invalid_request",
                format!("flatnet-bgpd answers bgp_neighbors and bgp_routes: {e}"),
            )
            .to_string();
        }
    };
    let _ = req.version;
    match answer(s, &req.query).await {
        Ok(r) => serde_json::json!({"version": CONTROL_VERSION, "ok": r}).to_string(),
        Err(SpeakerError::NoPeer(ip)) => err("not_found", format!("no peer {ip}")).to_string(),
        Err(e) => err("internal", e.to_string()).to_string(),
    }
}
