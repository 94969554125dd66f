//! Reload without restart: a new config, validated as `event-relay check` validates it, becomes
//! the running one in a single swap of the [`Live`] stages (normalizer, source settings,
//! router, targets). The Kafka consumers are not touched: no rebalance, no resubscribe.
//!
//! - Invalid: the running config stays; every problem is logged with its key path.
//! - Changes a key read only at start (`restart.rs`): refused as a whole, every such key
//!   named, so the running config is always exactly one file's (and `event_relay_config_info`
//!   names it truthfully).
//! - Otherwise: a new set of targets starts; the old set's queues close once no message
//!   prepared under it is left, and its workers finish what they hold (deliveries, retries,
//!   parking). Messages already prepared finish under the stages they were prepared with.

use super::live::{Live, LiveCell};
use super::restart::restart_needed;
use super::StartError;
use crate::config::{Config, ConfigError};
use crate::health::{watch_task, Health};
use crate::metrics::Metrics;
use crate::report::Reporter;
use crate::telemetry::Telemetry;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a reload left the running config in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config does not pass `event-relay check`.
    #[error("invalid config; the running one stays:\n{0}")]
    Invalid(#[from] ConfigError),
    /// The new config changes keys only a restart applies.
    #[error("needs a restart, so nothing was applied: {}", keys.join(", "))]
    RestartNeeded { keys: Vec<&'static str> },
    /// The new stages could not be built (e.g. a target's HTTP client).
    #[error("cannot apply the config; the running one stays: {0}")]
    Build(#[source] Box<StartError>),
    /// The relay has stopped.
    #[error("the relay has stopped")]
    Stopped,
}

impl ReloadError {
    /// The `outcome` label: `invalid` when the config does not pass `check`, `failed` when it
    /// does but cannot be applied to the running process.
    pub fn outcome(&self) -> &'static str {
        match self {
            ReloadError::Invalid(_) => "invalid",
            _ => "failed",
        }
    }
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadReport {
    pub targets_added: Vec<String>,
    pub targets_removed: Vec<String>,
    /// Targets of the same name whose settings changed (all targets restart on a reload; these
    /// are the ones that now behave differently).
    pub targets_changed: Vec<String>,
    /// Routes in the new config.
    pub routes: usize,
    /// The new config's hash (`event_relay_config_info`).
    pub hash: String,
}

/// A short hex hash of a config file's bytes (12 hex digits of its SHA-256).
pub fn config_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reloads the config of a running relay; cheap to clone (the signal and file-watch task hold
/// one). Reloads are serialized.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    cell: Weak<LiveCell>,
    reporter: Arc<Reporter>,
    metrics: Arc<Metrics>,
    telemetry: Arc<Telemetry>,
    health: Arc<Health>,
    abort: CancellationToken,
    /// Cancelled at the relay's shutdown (a worker ending then is no failure).
    shutdown: CancellationToken,
    state: Mutex<State>,
}

/// What a reload replaces besides the stages.
struct State {
    /// The running config's hash (`None` until set).
    hash: Option<String>,
    /// Cancelled when the running target set is retired (its workers then end normally).
    set_done: CancellationToken,
    /// Every target worker's watch handle, current and retired sets (awaited at stop).
    workers: Vec<JoinHandle<()>>,
}

/// What the relay passes in to start the first set of targets through [`Reloader::new`].
pub(super) struct Wiring {
    pub reporter: Arc<Reporter>,
    pub metrics: Arc<Metrics>,
    pub telemetry: Arc<Telemetry>,
    pub health: Arc<Health>,
    pub abort: CancellationToken,
    pub shutdown: CancellationToken,
}

impl Reloader {
    /// The reloader of a relay whose first stages are `cell`'s, their workers `workers`.
    pub(super) fn new(cell: &Arc<LiveCell>, workers: Vec<JoinHandle<()>>, w: Wiring) -> Self {
        let set_done = w.shutdown.child_token();
        let live = cell.load();
        let workers = watch_workers(&w.health, &live, workers, &set_done);
        Self {
            inner: Arc::new(Inner {
                cell: Arc::downgrade(cell),
                reporter: w.reporter,
                metrics: w.metrics,
                telemetry: w.telemetry,
                health: w.health,
                abort: w.abort,
                shutdown: w.shutdown,
                state: Mutex::new(State {
                    hash: None,
                    set_done,
                    workers,
                }),
            }),
        }
    }

    /// Shows `hash` as the running config's (`event_relay_config_info`).
    pub fn set_hash(&self, hash: &str) {
        let mut state = self.state();
        self.inner
            .metrics
            .set_config_hash(state.hash.as_deref(), hash);
        state.hash = Some(hash.to_string());
    }

    /// Loads `path` as `event-relay check` does and reloads it (see [`Reloader::reload`]).
    pub fn reload_file(&self, path: &Path) -> Result<ReloadReport, ReloadError> {
        let loaded = crate::config::load(path);
        let hash = std::fs::read(path)
            .map(|b| config_hash(&b))
            .unwrap_or_default();
        match loaded {
            Ok(config) => self.reload(config, &hash),
            Err(e) => Err(self.refused(ReloadError::Invalid(e))),
        }
    }

    /// Validates `new` and, if it is valid and needs no restart, swaps in its stages; logs
    /// the outcome (every problem with its key path, or what changed) and counts it in
    /// `event_relay_config_reloads_total`. `hash` names the new config in
    /// `event_relay_config_info`. Must run inside the relay's Tokio runtime (it starts the
    /// new target workers).
    pub fn reload(&self, new: Config, hash: &str) -> Result<ReloadReport, ReloadError> {
        let mut state = self.state();
        // Exactly what `check` runs: the config, then its catalog files and programs.
        let mut problems = new.validate().err().map(|e| e.problems).unwrap_or_default();
        problems.extend(crate::normalize::catalog_problems(&new));
        problems.extend(crate::transform::problems(&new));
        if !problems.is_empty() {
            let e = crate::config::ConfigError { problems };
            return Err(self.refused(ReloadError::Invalid(e)));
        }
        let Some(cell) = self.inner.cell.upgrade() else {
            return Err(self.refused(ReloadError::Stopped));
        };
        let old = cell.load();
        let keys = restart_needed(&old.config, &new);
        if !keys.is_empty() {
            return Err(self.refused(ReloadError::RestartNeeded { keys }));
        }
        let i = &self.inner;
        let (live, workers) =
            match Live::build(&new, &i.reporter, &i.metrics, &i.telemetry, &i.abort) {
                Ok(built) => built,
                Err(e) => return Err(self.refused(ReloadError::Build(Box::new(e)))),
            };
        let set_done = i.shutdown.child_token();
        let watched = watch_workers(&i.health, &live, workers, &set_done);
        let report = compare(&old.config, &new, hash);
        drop(old);
        let old = cell.swap(Arc::new(live));
        // The old set's workers end once its last message is handed on: no failure.
        std::mem::replace(&mut state.set_done, set_done).cancel();
        let retired = std::mem::replace(&mut state.workers, watched);
        let retire = tokio::spawn(retire(
            retired,
            old,
            Arc::downgrade(&cell),
            i.metrics.clone(),
        ));
        state.workers.push(retire);
        i.metrics.set_config_hash(state.hash.as_deref(), hash);
        state.hash = Some(hash.to_string());
        i.metrics
            .config_reloads
            .with_label_values(&["success"])
            .inc();
        tracing::info!(
            hash,
            targets_added = ?report.targets_added,
            targets_removed = ?report.targets_removed,
            targets_changed = ?report.targets_changed,
            routes = report.routes,
            "config reloaded"
        );
        Ok(report)
    }

    /// Every target worker's watch handle so far (for the relay's stop).
    pub(super) fn take_workers(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.state().workers)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs and counts a refused reload.
    fn refused(&self, e: ReloadError) -> ReloadError {
        self.inner
            .metrics
            .config_reloads
            .with_label_values(&[e.outcome()])
            .inc();
        match &e {
            ReloadError::Invalid(c) => {
                for p in &c.problems {
                    tracing::error!(problem = %p, "config reload: invalid config; the running one stays");
                }
            }
            ReloadError::RestartNeeded { keys } => {
                for key in keys {
                    tracing::warn!(
                        key,
                        "config reload: this key changes only with a restart; nothing was applied"
                    );
                }
            }
            _ => tracing::error!(error = %e, "config reload failed"),
        }
        e
    }
}

/// Watches each worker of a target set: one that ends before `set_done` turns `/healthz` red.
fn watch_workers(
    health: &Arc<Health>,
    live: &Live,
    workers: Vec<JoinHandle<()>>,
    set_done: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    workers
        .into_iter()
        .zip(&live.config.targets)
        .map(|(w, t)| {
            let name = format!("target worker {}", t.name);
            watch_task(health.clone(), name, w, set_done.clone())
        })
        .collect()
}

/// Waits for a retired target set's workers to finish what they hold (its queues close when
/// the last message holding `old` is handed on), then removes the per-target series of
/// targets the running config no longer has.
async fn retire(
    workers: Vec<JoinHandle<()>>,
    old: Arc<Live>,
    cell: Weak<LiveCell>,
    metrics: Arc<Metrics>,
) {
    let names: Vec<String> = old.config.targets.iter().map(|t| t.name.clone()).collect();
    drop(old);
    for w in workers {
        let _ = w.await;
    }
    let Some(cell) = cell.upgrade() else {
        return;
    };
    let current = cell.load();
    for name in names {
        if current.targets.index_of(&name).is_none() {
            let _ = metrics.target_queued.remove_label_values(&[&name]);
            let _ = metrics.circuit_open.remove_label_values(&[&name]);
        }
    }
    tracing::debug!("retired target set finished");
}

/// What `new` changes against `old`.
fn compare(old: &Config, new: &Config, hash: &str) -> ReloadReport {
    let names =
        |c: &Config| -> BTreeSet<String> { c.targets.iter().map(|t| t.name.clone()).collect() };
    let (before, after) = (names(old), names(new));
    let as_json = |c: &Config, name: &str| {
        let t = c.targets.iter().find(|t| t.name == name);
        serde_json::to_value(t).unwrap_or_default()
    };
    ReloadReport {
        targets_added: after.difference(&before).cloned().collect(),
        targets_removed: before.difference(&after).cloned().collect(),
        targets_changed: before
            .intersection(&after)
            .filter(|n| as_json(old, n) != as_json(new, n))
            .cloned()
            .collect(),
        routes: new.routes.len(),
        hash: hash.to_string(),
    }
}
