//! Delivery: per-target workers that batch, rate-limit, send, retry and report.
//!
//! Each target has its own queue, concurrency limit (`max_in_flight`), optional rate limit and
//! circuit breaker, and its budget of deliveries held in memory (`max_queued_events`). With
//! `[retry_tiers]`, a delivery still failing after its in-memory phase (`retry.hold`), or new
//! while its target is at its budget or its circuit is open, is parked on a retry tier
//! ([`park`], [`schedule`]) instead of waiting in memory, so a target that is down for hours
//! costs the others nothing. A delivery's ticket is finished once Kafka acknowledged its
//! result event, or its parked record.
//! [`Service::preview`] shows what a target would send, for `event-relay route`.

mod attempt;
mod auth;
mod circuit;
pub mod client;
pub mod gzip;
mod park;
pub mod posthog;
pub mod proxy;
mod rate;
pub mod retry;
pub mod schedule;
mod service;
mod shape;
pub mod signing;
pub mod template;
mod tls;
pub mod webhook;

use crate::ack::Ticket;
use crate::config::{Config, TargetConfig, TargetKind};
use crate::envelope::Envelope;
use crate::metrics::Metrics;
use crate::report::{Journey, Reporter, TargetRef};
use crate::telemetry::{AttemptSpan, Telemetry};
use circuit::Circuit;
use rate::RateLimiter;
use schedule::Schedule;
pub use service::{is_secret_name, Preview, Service};
pub use shape::{dry_run, shape, DryRun, Shaped, Shaping};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// One (event, target) piece of work.
pub struct Delivery {
    pub env: Arc<Envelope>,
    /// The raw bytes the event came from, for `body = "original"` targets; empty for other
    /// targets, so an event waiting for them does not hold a copy it will never send.
    pub raw: Arc<[u8]>,
    /// Size of the raw bytes (batch size limits, body buffer estimates).
    pub size: usize,
    pub ticket: Arc<Ticket>,
    /// Where it is on its way across retry tiers (default for one straight from the source).
    pub journey: Journey,
    /// What the target's transform made of it: set when the target takes it up (again after
    /// each retry tier, so a reloaded program applies); `None` until then or without one.
    pub shaped: Option<Shaped>,
    /// The span of its latest attempt, ended once the attempt's fate is known (nothing when
    /// `[telemetry]` is off or its message is not traced).
    pub span: AttemptSpan,
}

/// Why a target could not be set up (at start-up, or for `event-relay route`).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("target {target}: url {url:?}: {source}")]
    Url {
        target: String,
        url: String,
        source: url::ParseError,
    },
    #[error("target {target}: url {url:?} is not a request URI: {source}")]
    Uri {
        target: String,
        url: String,
        source: http::uri::InvalidUri,
    },
    #[error("target {target}: invalid header name {name:?}")]
    HeaderName { target: String, name: String },
    #[error("target {target}: signing_secret: {source}")]
    SigningSecret {
        target: String,
        source: signing::SecretError,
    },
    #[error("target {target}: proxy: {source}")]
    Proxy {
        target: String,
        source: crate::config::ProxyUrlError,
    },
    /// `tls` settings that cannot be used (each with its key under `tls`).
    #[error("target {target}: {}", .problems.iter().map(|(key, e)| format!("tls.{key}: {e}")).collect::<Vec<_>>().join("; "))]
    Tls {
        target: String,
        problems: crate::config::TlsProblems,
    },
    /// Programs that do not compile, each problem with its key path.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Transform(Vec<crate::config::Problem>),
}

/// Everything one target needs at run time.
pub struct TargetRuntime {
    pub info: Arc<TargetRef>,
    pub kind: TargetKind,
    service: Service,
    /// The target's compiled program, if it has one.
    transform: Option<Arc<crate::transform::Transform>>,
    config: TargetConfig,
    /// Retry phases, tiers and budget.
    schedule: Schedule,
    /// Deliveries held in memory (queued, sending, retrying), against `schedule.budget`.
    queued: AtomicUsize,
    queued_gauge: prometheus::IntGauge,
    /// The last request failed retryably: at its budget, the target parks new deliveries.
    failing: std::sync::atomic::AtomicBool,
    slots: Arc<Semaphore>,
    circuit: Circuit,
    rate: Option<RateLimiter>,
    reporter: Arc<Reporter>,
    metrics: Arc<Metrics>,
    /// This target's metric handles (looked up once).
    own_metrics: crate::metrics::TargetMetrics,
    /// Where attempt spans are made (off: nothing is).
    telemetry: Arc<Telemetry>,
    abort: CancellationToken,
}

impl TargetRuntime {
    pub fn circuit_open_for(&self) -> Option<Duration> {
        self.circuit.open_for()
    }

    /// Counts `n` deliveries taken into memory.
    fn hold(&self, n: usize) {
        let now = self.queued.fetch_add(n, Ordering::Relaxed) + n;
        self.queued_gauge.set(now as i64);
    }

    /// Counts `n` deliveries whose in-memory phase is over.
    fn release(&self, n: usize) {
        let now = self
            .queued
            .fetch_sub(n, Ordering::Relaxed)
            .saturating_sub(n);
        self.queued_gauge.set(now as i64);
    }

    /// Whether a new delivery from the source is parked at once instead of held: the target
    /// has tiers and its circuit is open, or it is at its budget while failing (its last
    /// request failed). A healthy target at its budget takes the delivery: it may use
    /// in-flight room the others leave free (the pipeline's bound still holds), and parking
    /// the excess of a target that keeps up would only send it the long way round, through
    /// Kafka, to the same worker.
    fn parks_at_once(&self, d: &Delivery) -> bool {
        self.schedule.tiered()
            && d.journey.tier.is_none()
            && (self.circuit.is_open()
                || (self.failing.load(Ordering::Relaxed)
                    && self.queued.load(Ordering::Relaxed) >= self.schedule.budget))
    }

    /// Records whether the target's last request failed retryably (see `parks_at_once`).
    fn set_failing(&self, failing: bool) {
        if self.failing.load(Ordering::Relaxed) != failing {
            self.failing.store(failing, Ordering::Relaxed);
        }
    }
}

/// The running targets: submit work by target index.
pub struct Targets {
    pub runtimes: Vec<Arc<TargetRuntime>>,
    queues: Vec<mpsc::UnboundedSender<Delivery>>,
    /// Per target: whether it sends the original bytes (`body = "original"`).
    needs_raw: Vec<bool>,
    /// The `raw` of deliveries to targets that do not send it.
    no_raw: Arc<[u8]>,
}

impl Targets {
    /// Starts one worker per target of `config`. `abort` stops retries at the end of the
    /// drain timeout.
    pub fn start(
        config: &Config,
        reporter: Arc<Reporter>,
        metrics: Arc<Metrics>,
        telemetry: Arc<Telemetry>,
        abort: CancellationToken,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), BuildError> {
        let mut runtimes = Vec::new();
        let mut queues = Vec::new();
        let mut handles = Vec::new();
        let configs = &config.targets;
        let transforms = crate::transform::compile_all(config).map_err(BuildError::Transform)?;
        for ((cfg, budget), transform) in
            configs.iter().zip(config.target_budgets()).zip(transforms)
        {
            let service = Service::build(cfg, Some(&metrics))?;
            let rt = Arc::new(TargetRuntime {
                info: Arc::new(TargetRef {
                    name: cfg.name.clone(),
                    guid: cfg.guid(),
                }),
                kind: cfg.kind,
                service,
                transform,
                config: cfg.clone(),
                schedule: Schedule::new(config, cfg, budget),
                queued: AtomicUsize::new(0),
                failing: std::sync::atomic::AtomicBool::new(false),
                queued_gauge: metrics.target_queued.with_label_values(&[&cfg.name]),
                slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
                circuit: Circuit::new(
                    &cfg.circuit,
                    metrics.circuit_open.with_label_values(&[&cfg.name]),
                ),
                rate: cfg.rate_limit_per_sec.map(RateLimiter::new),
                reporter: reporter.clone(),
                metrics: metrics.clone(),
                own_metrics: crate::metrics::TargetMetrics::new(&metrics, &cfg.name),
                telemetry: telemetry.clone(),
                abort: abort.clone(),
            });
            let (tx, rx) = mpsc::unbounded_channel();
            handles.push(tokio::spawn(worker(rt.clone(), rx)));
            runtimes.push(rt);
            queues.push(tx);
        }
        let needs_raw = configs
            .iter()
            .map(|c| c.kind == TargetKind::Webhook && c.body == crate::config::BodyFormat::Original)
            .collect();
        let no_raw: Arc<[u8]> = Arc::from(Vec::new());
        Ok((
            Self {
                runtimes,
                queues,
                needs_raw,
                no_raw,
            },
            handles,
        ))
    }

    /// The index of the target named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.runtimes.iter().position(|t| t.info.name == name)
    }

    /// The raw bytes a delivery to target `index` carries: `raw` itself, or nothing.
    pub fn raw_for(&self, index: usize, raw: &Arc<[u8]>) -> Arc<[u8]> {
        if self.needs_raw[index] {
            raw.clone()
        } else {
            self.no_raw.clone()
        }
    }

    /// Queues a delivery for target `index`, or parks it at once (see
    /// [`TargetRuntime::parks_at_once`]).
    pub fn submit(&self, index: usize, d: Delivery) {
        let rt = &self.runtimes[index];
        if rt.parks_at_once(&d) {
            if let Some(tier) = park::untried_tier(rt, &d) {
                park::park_untried(rt.clone(), d, tier);
                return;
            }
        }
        rt.hold(1);
        if self.queues[index].send(d).is_err() {
            rt.release(1);
            tracing::error!(
                target_index = index,
                "target worker is gone; delivery left unfinished"
            );
        }
    }

    /// Closes the queues: workers finish what they hold and exit.
    pub fn close(self) {
        drop(self.queues);
    }
}

/// Collects batches from the queue and sends each under the target's concurrency limit.
async fn worker(rt: Arc<TargetRuntime>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
    let max_events = rt.config.batch_events();
    let max_bytes = rt.config.batch_bytes();
    let linger = rt.config.linger();
    while let Some(first) = rx.recv().await {
        let mut bytes = first.size;
        let mut batch = vec![first];
        if max_events > 1 {
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < max_events && bytes < max_bytes {
                let next = match rx.try_recv() {
                    Ok(d) => Some(d),
                    Err(_) => tokio::select! {
                        d = rx.recv() => d,
                        _ = tokio::time::sleep_until(deadline) => None,
                    },
                };
                match next {
                    Some(d) => {
                        bytes += d.size;
                        batch.push(d);
                    }
                    None => break,
                }
            }
        }
        // Deliveries out of a tier get one attempt, fresh ones a phase in memory: a batch
        // holding both goes out as two.
        let (fresh, parked): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|d| d.journey.tier.is_none());
        for batch in [fresh, parked] {
            if batch.is_empty() {
                continue;
            }
            let Ok(permit) = rt.slots.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(run_batch(rt.clone(), batch, permit));
        }
    }
}

/// Delivers a batch, then settles each delivery (`park::settle`): a result event, or a parked
/// record on a retry tier. The target's request slot is released as soon as the HTTP work is
/// done: waiting for Kafka's acknowledgements must not hold back the next request.
async fn run_batch(
    rt: Arc<TargetRuntime>,
    batch: Vec<Delivery>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let held = batch.len();
    let phase = rt.schedule.phase(&batch[0].journey);
    let batch = shape::shape_batch(&rt, batch);
    // Deliveries whose transforms set different headers or paths go out as separate requests.
    let mut groups = shape::by_request(&rt, batch).into_iter();
    let mut outcomes = match groups.next() {
        Some(group) => attempt::deliver(rt.clone(), group, phase, 0).await,
        None => Vec::new(),
    };
    for group in groups {
        outcomes.extend(attempt::deliver(rt.clone(), group, phase, 0).await);
    }
    drop(slot);
    rt.release(held);
    // Empty when abandoned by an abort (nothing to report), or all skipped or failed.
    if !outcomes.is_empty() {
        park::settle(&rt, outcomes);
    }
}
