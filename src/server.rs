//! The operator's HTTP endpoints: `/healthz` (liveness), `/readyz` (readiness, JSON detail),
//! `/metrics` (Prometheus text).

use crate::deliver::TargetRuntime;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Health state written by the pipeline, read by the endpoints.
#[derive(Debug)]
pub struct Health {
    liveness_deadline: Duration,
    circuit_threshold: Duration,
    started: Instant,
    last_tick_ms: AtomicU64,
    joined: AtomicBool,
    broker_reachable: AtomicBool,
    running: AtomicBool,
    /// Pipeline tasks (commit loop, target workers) that ended while the relay was running.
    dead_tasks: std::sync::Mutex<Vec<String>>,
    targets: OnceLock<Vec<Arc<TargetRuntime>>>,
}

impl std::fmt::Debug for TargetRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetRuntime")
            .field("name", &self.info.name)
            .finish()
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new(Duration::from_secs(30), Duration::from_secs(60))
    }
}

impl Health {
    /// `liveness_deadline`: longest allowed gap between consume-loop ticks;
    /// `circuit_threshold`: longest a circuit may be open before readiness turns red.
    pub fn new(liveness_deadline: Duration, circuit_threshold: Duration) -> Self {
        Self {
            liveness_deadline,
            circuit_threshold,
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            joined: AtomicBool::new(false),
            broker_reachable: AtomicBool::new(false),
            running: AtomicBool::new(true),
            dead_tasks: std::sync::Mutex::new(Vec::new()),
            targets: OnceLock::new(),
        }
    }

    pub fn tick(&self) {
        self.last_tick_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    pub fn set_joined(&self, v: bool) {
        self.joined.store(v, Ordering::Relaxed);
    }
    pub fn set_broker_reachable(&self, v: bool) {
        self.broker_reachable.store(v, Ordering::Relaxed);
    }
    pub fn set_running(&self, v: bool) {
        self.running.store(v, Ordering::Relaxed);
    }
    pub fn set_targets(&self, t: Vec<Arc<TargetRuntime>>) {
        let _ = self.targets.set(t);
    }
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    /// Records a pipeline task that ended (returned or panicked) while the relay was running.
    pub fn task_died(&self, name: &str, why: &str) {
        tracing::error!(
            task = name,
            error = why,
            "pipeline task ended unexpectedly; /healthz is now red"
        );
        self.dead_tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_string());
    }

    /// Pipeline tasks that died (see `task_died`).
    pub fn dead_tasks(&self) -> Vec<String> {
        self.dead_tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Alive: the consume loop ticked recently (or is shutting down on purpose) and no other
    /// pipeline task has died.
    pub fn alive(&self) -> (bool, u64) {
        let now = self.started.elapsed().as_millis() as u64;
        let since = now.saturating_sub(self.last_tick_ms.load(Ordering::Relaxed));
        let ticking = !self.running.load(Ordering::Relaxed)
            || since <= self.liveness_deadline.as_millis() as u64;
        (ticking && self.dead_tasks().is_empty(), since)
    }

    /// Readiness with a JSON body naming every part's state.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let joined = self.joined.load(Ordering::Relaxed);
        let broker = self.broker_reachable.load(Ordering::Relaxed);
        let mut circuits = serde_json::Map::new();
        let mut circuits_ok = true;
        for t in self.targets.get().map(Vec::as_slice).unwrap_or_default() {
            let state = match t.circuit_open_for() {
                Some(d) if d > self.circuit_threshold => {
                    circuits_ok = false;
                    format!("open for {}s", d.as_secs())
                }
                Some(d) => format!("open for {}s", d.as_secs()),
                None => "closed".to_string(),
            };
            circuits.insert(t.info.name.clone(), state.into());
        }
        let ready = joined && broker && circuits_ok;
        let mut not_ready = Vec::new();
        if !joined {
            not_ready.push("consumer group not joined");
        }
        if !broker {
            not_ready.push("broker unreachable");
        }
        if !circuits_ok {
            not_ready.push("a target circuit has been open too long");
        }
        (
            ready,
            json!({
                "ready": ready,
                "group_joined": joined,
                "broker_reachable": broker,
                "circuits": circuits,
                "not_ready": not_ready,
            }),
        )
    }
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

/// Watches a pipeline task: if it ends before `shutdown` (a panic, or a loop that returned),
/// liveness turns red so the orchestrator restarts the relay. Returns a handle that completes
/// when the task does.
pub fn watch_task(
    health: Arc<Health>,
    name: String,
    task: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ended = task.await;
        if !shutdown.is_cancelled() {
            let why = match ended {
                Ok(()) => "returned".to_string(),
                Err(e) => e.to_string(),
            };
            health.task_died(&name, &why);
        }
    })
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
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("server.listen {listen}: cannot bind: {e}"))?;
    let addr = listener.local_addr()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_loop_turns_liveness_red() {
        let h = Health::new(Duration::from_millis(20), Duration::from_secs(60));
        h.tick();
        assert!(h.alive().0);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.alive().0, "no tick for longer than the deadline");
        h.tick();
        assert!(h.alive().0);
        h.set_running(false);
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.alive().0, "a deliberate shutdown is not a stuck loop");
    }

    #[tokio::test]
    async fn a_dead_pipeline_task_turns_liveness_red() {
        let h = Arc::new(Health::default());
        h.tick();
        let shutdown = CancellationToken::new();
        let fine = watch_task(
            h.clone(),
            "commit loop".into(),
            tokio::spawn(async {}),
            shutdown.clone(),
        );
        fine.await.unwrap();
        assert!(!h.alive().0, "a loop that returns before shutdown is dead");
        assert_eq!(h.dead_tasks(), vec!["commit loop".to_string()]);

        let h = Arc::new(Health::default());
        h.tick();
        let crashed = watch_task(
            h.clone(),
            "target worker crm".into(),
            tokio::spawn(async { panic!("boom") }),
            shutdown.clone(),
        );
        crashed.await.unwrap();
        assert!(!h.alive().0);

        let h = Arc::new(Health::default());
        h.tick();
        shutdown.cancel();
        watch_task(h.clone(), "x".into(), tokio::spawn(async {}), shutdown)
            .await
            .unwrap();
        assert!(h.alive().0, "ending after shutdown is not a death");
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let h = Health::default();
        let (ready, body) = h.readiness();
        assert!(!ready);
        assert_eq!(body["group_joined"], false);
        h.set_joined(true);
        h.set_broker_reachable(true);
        let (ready, body) = h.readiness();
        assert!(ready, "{body}");
        h.set_broker_reachable(false);
        let (ready, body) = h.readiness();
        assert!(!ready);
        assert_eq!(body["not_ready"][0], "broker unreachable");
    }
}
