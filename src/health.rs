//! Health state: what the pipeline, the consumer and the targets report about themselves, read
//! by the `/healthz` and `/readyz` endpoints (`server`). Neutral ground: it imports no stage.
//!
//! Liveness is "the relay is not stuck" (the consume loop ticks, no pipeline task died).
//! Readiness is "the relay can do its job": the consumer group is joined and a broker is
//! reachable. A target that is down is *not* a readiness problem — in a Kubernetes pod an
//! unready sidecar takes the whole application out of service, and a partner's outage must not
//! do that; target health is reported in the readiness body and in metrics and alerts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A read-only view of the targets' circuit breakers: name and how long each has been open.
pub trait CircuitView: Send + Sync {
    /// `(target name, Some(open for) | None when closed)`, in configuration order.
    fn circuits(&self) -> Vec<(String, Option<Duration>)>;
}

/// Health state written by the pipeline, read by the endpoints.
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
    targets: OnceLock<Arc<dyn CircuitView>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new(Duration::from_secs(30), Duration::from_secs(60))
    }
}

impl Health {
    /// `liveness_deadline`: longest allowed gap between consume-loop ticks;
    /// `circuit_threshold`: how long a circuit may be open before `/readyz` lists it as stuck.
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
    pub fn set_targets(&self, t: Arc<dyn CircuitView>) {
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

    /// Readiness with a JSON body naming every part's state. Ready means the relay can do its
    /// job (group joined, a broker reachable); target circuits are listed for the operator
    /// (`"stuck": true` once open longer than `server.circuit_open_threshold`) but never make
    /// the relay unready (see the module doc).
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let joined = self.joined.load(Ordering::Relaxed);
        let broker = self.broker_reachable.load(Ordering::Relaxed);
        let mut circuits = serde_json::Map::new();
        let mut stuck = Vec::new();
        let states = self.targets.get().map(|t| t.circuits()).unwrap_or_default();
        for (name, open_for) in states {
            let state = match open_for {
                Some(d) => {
                    if d > self.circuit_threshold {
                        stuck.push(name.clone());
                    }
                    format!("open for {}s", d.as_secs())
                }
                None => "closed".to_string(),
            };
            circuits.insert(name, state.into());
        }
        let ready = joined && broker;
        let mut not_ready = Vec::new();
        if !joined {
            not_ready.push("consumer group not joined");
        }
        if !broker {
            not_ready.push("broker unreachable");
        }
        (
            ready,
            serde_json::json!({
                "ready": ready,
                "group_joined": joined,
                "broker_reachable": broker,
                "circuits": circuits,
                "circuits_open_too_long": stuck,
                "not_ready": not_ready,
            }),
        )
    }
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

    struct OneOpenCircuit;
    impl CircuitView for OneOpenCircuit {
        fn circuits(&self) -> Vec<(String, Option<Duration>)> {
            vec![
                ("crm".into(), Some(Duration::from_secs(3600))),
                ("posthog".into(), None),
            ]
        }
    }

    #[test]
    fn a_target_down_for_long_does_not_make_the_relay_unready() {
        let h = Health::new(Duration::from_secs(30), Duration::from_secs(60));
        h.set_targets(Arc::new(OneOpenCircuit));
        h.set_joined(true);
        h.set_broker_reachable(true);
        let (ready, body) = h.readiness();
        assert!(ready, "{body}");
        assert_eq!(body["circuits"]["crm"], "open for 3600s");
        assert_eq!(body["circuits"]["posthog"], "closed");
        assert_eq!(body["circuits_open_too_long"][0], "crm");
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
