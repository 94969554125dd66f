//! The operator's HTTP endpoints: `/healthz` (liveness), `/readyz` (readiness, JSON detail),
//! `/metrics` (Prometheus text). It only reads [`Health`] and [`Metrics`]: what the pipeline
//! and the targets report there, never their internals.

use crate::health::Health;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The health and metrics server could not listen.
#[derive(Debug, thiserror::Error)]
#[error("server.listen {listen}: cannot bind: {source}")]
pub struct ServeError {
    listen: String,
    source: std::io::Error,
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let (alive, since) = s.health.alive();
    let code = if alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "alive": alive,
            "last_loop_tick_ms_ago": since,
            "dead_tasks": s.health.dead_tasks(),
        })),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (ready, body) = s.health.readiness();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics_page(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Binds `listen` and serves until `shutdown`. Returns the bound address (port 0 → real port).
pub async fn serve(
    listen: &str,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let bind_error = |source| ServeError {
        listen: listen.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .with_state(AppState { health, metrics });
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok((addr, handle))
}
