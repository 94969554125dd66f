//! Delivery: per-target workers that batch, rate-limit, send, retry and report.
//!
//! Each target has its own queue, concurrency limit (`max_in_flight`), optional rate limit and
//! circuit breaker, so one slow or failing target never holds up the others. A delivery becomes
//! final when its result event is acknowledged by Kafka; only then is its ticket finished.

mod attempt;
mod circuit;
pub mod posthog;
pub mod retry;
pub mod signing;
pub mod template;
pub mod webhook;

use crate::ack::Ticket;
use crate::config::{TargetConfig, TargetKind};
use crate::envelope::Envelope;
use crate::metrics::Metrics;
use crate::report::{Reporter, TargetRef};
use circuit::{Circuit, RateLimiter};
use retry::AttemptError;
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
}

/// How a target talks HTTP.
pub enum Service {
    Webhook(webhook::WebhookService),
    Posthog(posthog::PosthogService),
}

impl Service {
    async fn send(&self, batch: &[Delivery]) -> Result<u16, AttemptError> {
        match self {
            Service::Webhook(s) => s.send(batch).await,
            Service::Posthog(s) => s.send(batch).await,
        }
    }
}

/// Reads a short, single-line hint from an error response body (never the whole body).
pub(crate) async fn body_hint(resp: reqwest::Response) -> String {
    let bytes = resp.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Builds the HTTP client of one target.
pub fn http_client(cfg: &TargetConfig) -> Result<reqwest::Client, String> {
    if cfg.tls_insecure_skip_verify {
        tracing::warn!(target_name = %cfg.name, "TLS certificate verification is DISABLED for this target (tls_insecure_skip_verify = true)");
    }
    reqwest::Client::builder()
        .timeout(cfg.timeout.get())
        .connect_timeout(cfg.timeout.get().min(Duration::from_secs(10)))
        .pool_max_idle_per_host(cfg.max_in_flight)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(cfg.tls_insecure_skip_verify)
        .user_agent(concat!("event-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("target {}: cannot build HTTP client: {e}", cfg.name))
}

/// Everything one target needs at run time.
pub struct TargetRuntime {
    pub info: Arc<TargetRef>,
    pub kind: TargetKind,
    service: Service,
    config: TargetConfig,
    slots: Arc<Semaphore>,
    circuit: Circuit,
    rate: Option<RateLimiter>,
    reporter: Arc<Reporter>,
    metrics: Arc<Metrics>,
    abort: CancellationToken,
}

impl TargetRuntime {
    pub fn circuit_open_for(&self) -> Option<Duration> {
        self.circuit.open_for()
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
    /// Starts one worker per target. `abort` stops retries at the end of the drain timeout.
    pub fn start(
        configs: &[TargetConfig],
        reporter: Arc<Reporter>,
        metrics: Arc<Metrics>,
        abort: CancellationToken,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), String> {
        let mut runtimes = Vec::new();
        let mut queues = Vec::new();
        let mut handles = Vec::new();
        for cfg in configs {
            let client = http_client(cfg)?;
            let service = match cfg.kind {
                TargetKind::Webhook => Service::Webhook(webhook::WebhookService::new(cfg, client)?),
                TargetKind::Posthog => Service::Posthog(posthog::PosthogService::new(cfg, client)?),
            };
            let rt = Arc::new(TargetRuntime {
                info: Arc::new(TargetRef {
                    name: cfg.name.clone(),
                    guid: cfg.guid(),
                }),
                kind: cfg.kind,
                service,
                config: cfg.clone(),
                slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
                circuit: Circuit::new(
                    &cfg.circuit,
                    metrics.circuit_open.with_label_values(&[&cfg.name]),
                ),
                rate: cfg.rate_limit_per_sec.map(RateLimiter::new),
                reporter: reporter.clone(),
                metrics: metrics.clone(),
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

    /// The raw bytes a delivery to target `index` carries: `raw` itself, or nothing.
    pub fn raw_for(&self, index: usize, raw: &Arc<[u8]>) -> Arc<[u8]> {
        if self.needs_raw[index] {
            raw.clone()
        } else {
            self.no_raw.clone()
        }
    }

    /// Queues a delivery for target `index`.
    pub fn submit(&self, index: usize, d: Delivery) {
        if self.queues[index].send(d).is_err() {
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
        let Ok(permit) = rt.slots.clone().acquire_owned().await else {
            return;
        };
        let rt = rt.clone();
        tokio::spawn(run_batch(rt, batch, permit));
    }
}

/// Delivers a batch, then hands every event's result event to the result producer, which
/// finishes each ticket once Kafka acknowledged it (`report::sink`). The target's request
/// slot is released as soon as the HTTP work is done: waiting for Kafka's acknowledgement of
/// the result events must not hold back the next request.
async fn run_batch(
    rt: Arc<TargetRuntime>,
    batch: Vec<Delivery>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let outcomes = attempt::deliver(rt.clone(), batch, 0).await;
    drop(slot);
    if outcomes.is_empty() {
        return; // abandoned by an abort: nothing to report
    }
    let now = crate::envelope::now_rfc3339();
    let mut buf = Vec::with_capacity(1024);
    // The target's series, looked up once per batch rather than once per event (and each
    // only once it is used, so no zero series appears for an outcome that never happened).
    let name = rt.info.name.as_str();
    let delivered = |label: &str| rt.metrics.deliveries.with_label_values(&[name, label]);
    let (mut succeeded, mut failed) = (None, None);
    let duration = rt.metrics.delivery_duration.with_label_values(&[name]);
    for (d, outcome) in outcomes {
        match outcome.success {
            true => succeeded.get_or_insert_with(|| delivered("success")),
            false => failed.get_or_insert_with(|| delivered("error")),
        }
        .inc();
        duration.observe(outcome.duration.as_secs_f64());
        if !outcome.success {
            tracing::warn!(
                target_name = %rt.info.name,
                source_event_id = %d.env.id,
                event = %d.env.event,
                attempts = outcome.attempts,
                status_code = outcome.status_code,
                error = outcome.error.as_deref().unwrap_or_default(),
                "delivery failed for good"
            );
        }
        let Delivery { env, ticket, .. } = d;
        rt.reporter.send_result(
            crate::report::PendingResult {
                env,
                target: rt.info.clone(),
                outcome,
                ticket,
            },
            &mut buf,
            &now,
        );
    }
}
