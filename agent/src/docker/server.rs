//! The plugin API over HTTP/1.1 (axum) on a unix socket: one POST per
//! call, `/<Interface>.<Method>`, JSON both ways. A failed call answers
//! HTTP 500 with `{"Err": "..."}`, which libnetwork's plugin client turns
//! into the error Docker shows.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use super::wire::*;
use super::{Driver, DriverError, plan};

fn answer(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

fn ok<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => answer(StatusCode::OK, b),
        Err(e) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            DriverError(e.to_string()),
        ),
    }
}

fn err(status: StatusCode, e: DriverError) -> Response {
    let body = serde_json::to_vec(&ErrAnswer { err: e.0 }).unwrap_or_default();
    answer(status, body)
}

fn empty() -> Response {
    answer(StatusCode::OK, b"{}".to_vec())
}

fn parse<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, DriverError> {
    serde_json::from_slice(body)
        .map_err(|e| DriverError(format!("{method}: malformed request: {e}")))
}

/// Answers one call (separate from the listener, for in-process tests).
pub async fn call(d: &Driver, method: &str, body: &[u8]) -> Result<Response, DriverError> {
    Ok(match method {
        "Plugin.Activate" => ok(&Activate {
            implements: vec!["NetworkDriver".into(), "IpamDriver".into()],
        }),
        "NetworkDriver.GetCapabilities" => ok(&NetCapabilities {
            scope: "local".into(),
            connectivity_scope: "local".into(),
        }),
        "NetworkDriver.CreateNetwork" => {
            d.create_network(&parse(method, body)?).await?;
            empty()
        }
        "NetworkDriver.DeleteNetwork" => {
            d.delete_network(&parse(method, body)?).await?;
            empty()
        }
        "NetworkDriver.CreateEndpoint" => {
            d.create_endpoint(&parse(method, body)?).await?;
            // No Interface: Docker's address and MAC stand.
            empty()
        }
        "NetworkDriver.EndpointOperInfo" => {
            d.check_endpoint(&parse(method, body)?).await?;
            ok(&serde_json::json!({"Value": {}}))
        }
        "NetworkDriver.DeleteEndpoint" => {
            d.delete_endpoint(&parse(method, body)?).await?;
            empty()
        }
        "NetworkDriver.Join" => ok(&d.join(&parse(method, body)?).await?),
        "NetworkDriver.Leave"
        | "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity" => {
            d.check_endpoint(&parse(method, body)?).await?;
            empty()
        }
        "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => {
            parse::<serde_json::Value>(method, body)?;
            empty()
        }
        "IpamDriver.GetCapabilities" => ok(&IpamCapabilities {
            requires_mac_address: false,
            requires_request_replay: false,
        }),
        "IpamDriver.GetDefaultAddressSpaces" => ok(&plan::address_spaces()),
        "IpamDriver.RequestPool" => ok(&d.request_pool(&parse(method, body)?)?),
        "IpamDriver.ReleasePool" => {
            d.release_pool(&parse(method, body)?)?;
            empty()
        }
        "IpamDriver.RequestAddress" => ok(&d.request_address(&parse(method, body)?).await?),
        "IpamDriver.ReleaseAddress" => {
            d.release_address(&parse(method, body)?).await?;
            empty()
        }
        other => {
            return Ok(err(
                StatusCode::NOT_FOUND,
                DriverError(format!("unknown plugin call {other:?}")),
            ));
        }
    })
}

async fn dispatch(State(d): State<Arc<Driver>>, uri: Uri, body: Bytes) -> Response {
    let method = uri.path().trim_start_matches('/').to_string();
    tracing::debug!(%method, "docker: plugin call");
    match call(&d, &method, &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%method, error = %e, "docker: call refused");
            err(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

pub fn router(d: Arc<Driver>) -> Router {
    Router::new().fallback(dispatch).with_state(d)
}

/// Binds `<plugin_dir>/flatnet.sock` (root only), replacing a stale socket.
pub fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("removing stale {}: {e}", socket.display()),
    }
    let l = UnixListener::bind(socket)
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", socket.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow::anyhow!("chmod {}: {e}", socket.display()))?;
    Ok(l)
}

pub async fn serve(d: Arc<Driver>, l: UnixListener) {
    if let Err(e) = axum::serve(l, router(d)).await {
        tracing::error!(error = %e, "docker plugin server stopped");
    }
}
