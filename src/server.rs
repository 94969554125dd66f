//! The operator's HTTP endpoints: `/healthz` (liveness), `/readyz` (readiness, JSON detail),
//! `/metrics` (Prometheus text), and with `server.tap = true` `/tap` (the events passing each
//! stage, live, as NDJSON). It only reads [`Health`], [`Metrics`] and the [`Tap`]: what the
//! pipeline and the targets report there, never their internals.

use crate::health::Health;
use crate::metrics::Metrics;
use crate::tap::{Request, SubscribeError, Tap};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
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
    tap: Arc<Tap>,
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

/// `GET /tap?stage=...&target=...&event=GLOB&limit=N`: a stream of NDJSON lines until the
/// client leaves, its limit is reached or the relay stops. 404 while `server.tap` is off, 400
/// for a query it cannot serve, 503 when [`crate::tap::MAX_CLIENTS`] are connected.
async fn tap_stream(State(s): State<AppState>, uri: Uri) -> Response {
    let text = |code: StatusCode, message: String| (code, format!("{message}\n")).into_response();
    if !s.tap.enabled() {
        return text(StatusCode::NOT_FOUND, SubscribeError::Off.to_string());
    }
    let request = match Request::parse(uri.query().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s.tap.subscribe(request) {
        Ok(stream) => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Body::new(stream),
        )
            .into_response(),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Binds `listen` and serves until `shutdown`. Returns the bound address (port 0 → real port).
pub async fn serve(
    listen: &str,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    tap: Arc<Tap>,
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
        .route("/tap", get(tap_stream))
        .with_state(AppState {
            health,
            metrics,
            tap,
        });
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok((addr, handle))
}
