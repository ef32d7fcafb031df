//! `/metrics` (OpenMetrics) and `/healthz` over HTTP/1.1 with axum: keep-alive,
//! 404 for unknown paths and 405 for methods other than GET (and HEAD).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::handlers::Agent;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    agent.refresh_gauges().await;
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        agent.metrics().encode(),
    )
}

async fn healthz(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    let text = [(header::CONTENT_TYPE, "text/plain")];
    if agent.status().await.ready {
        (StatusCode::OK, text, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "datastore unreachable\n",
        )
    }
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "not found\n",
    )
}

/// The routes, separate from the listener so they are testable in-process.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(agent)
}

/// Serves `/metrics` and `/healthz` until the listener fails.
pub async fn serve_metrics(agent: Arc<Agent>, listener: TcpListener) {
    if let Err(e) = axum::serve(listener, router(agent)).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}
