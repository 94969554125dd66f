//! The orchestrator: wires consume → normalize → route → deliver → report and owns the
//! relay's lifetime as three steps, [`Relay::start`], [`Relay::drain`] and [`Relay::stop`]
//! ([`run`] does all three). Tests start the real relay in-process through the same calls.

pub mod admin;
mod bound;
mod consume;
mod ensure;
mod handle;
mod kafka;
mod live;
mod reload;
mod restart;
mod tap_lines;
mod tier_loop;
mod tiers;
mod triggers;

pub use handle::Stages;
pub use kafka::{problems as kafka_problems, producer_config};
pub use live::{Live, LiveCell};
pub use reload::{config_hash, ReloadError, ReloadReport, Reloader};
pub use restart::restart_needed;
pub use triggers::{run_reloadable, serve_reloads};

use crate::ack::OffsetTracker;
use crate::config::{Config, ConfigError};
use crate::health::{watch_task, CircuitView, Health};
use crate::metrics::Metrics;
use crate::report::{self, Reporter};
use crate::server::{self, ServeError};
use crate::source::{self, commit, context::SourceContext, RelayConsumer, SourceError};
use crate::tap::Tap;
use crate::telemetry::Telemetry;
use rdkafka::error::KafkaError;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigError),
    #[error("the built-in catalogs: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("routes: {0}")]
    Routes(#[from] crate::route::RouteError),
    #[error("targets: {0}")]
    Targets(#[from] crate::deliver::BuildError),
    #[error("creating the Kafka producer: {0}")]
    Producer(#[source] KafkaError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Server(#[from] ServeError),
    /// The retry tier topics are missing and cannot be created (`run` exits 2).
    #[error(transparent)]
    RetryTopics(#[from] ensure::RetryTopicsError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

/// The running targets' circuits as `/readyz` shows them.
struct TargetCircuits(Weak<LiveCell>);

impl CircuitView for TargetCircuits {
    fn circuits(&self) -> Vec<(String, Option<Duration>)> {
        let Some(cell) = self.0.upgrade() else {
            return Vec::new();
        };
        cell.load()
            .targets
            .runtimes
            .iter()
            .map(|t| (t.info.name.clone(), t.circuit_open_for()))
            .collect()
    }
}

/// A running relay: the stages, the consumer, and the tasks beside the consume loop.
pub struct Relay {
    stages: Stages,
    consumer: Arc<RelayConsumer>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    tracker: Arc<OffsetTracker>,
    drain_timeout: Duration,
    /// Cancelled by the caller to stop consuming (then [`Relay::drain`]).
    shutdown: CancellationToken,
    /// Cancelled after the drain: deliveries still retrying give up, unfinished.
    abort: CancellationToken,
    server_stop: CancellationToken,
    server: JoinHandle<()>,
    committer: JoinHandle<()>,
    commit_stop: CancellationToken,
    /// The retry-tier consumer, with `[retry_tiers]`.
    tiers: Option<tiers::TierSide>,
    /// Swaps in a new config's stages; holds the target workers' handles.
    reloader: Reloader,
    /// Where `/healthz`, `/readyz` and `/metrics` are served (port 0 resolved).
    pub addr: SocketAddr,
}

impl Relay {
    /// Validates `config`, builds every stage, starts the target workers, the commit loop and
    /// the health/metrics server, and joins the consumer group. Consuming starts with
    /// [`Relay::consume`]; `shutdown` ends it.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Self, StartError> {
        config.validate()?;
        ensure::ensure(&config).await?;
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(
            config.server.liveness_deadline.get(),
            config.server.circuit_open_threshold.get(),
        ));
        let abort = CancellationToken::new();
        let tap = Arc::new(Tap::new(
            config.server.tap,
            config.log.include_payloads,
            &metrics,
        ));
        let reporter = start_reporter(&config, &metrics, &abort, &tap)?;
        let telemetry = Arc::new(Telemetry::start(&config.telemetry)?);
        let (live, workers) = Live::build(&config, &reporter, &metrics, &telemetry, &abort)?;
        let live = Arc::new(LiveCell::new(live));
        health.set_targets(Arc::new(TargetCircuits(Arc::downgrade(&live))));
        // A target worker that dies before shutdown turns /healthz red (its queue would fill up).
        let wiring = reload::Wiring {
            reporter: reporter.clone(),
            metrics: metrics.clone(),
            telemetry: telemetry.clone(),
            health: health.clone(),
            abort: abort.clone(),
            shutdown: shutdown.clone(),
        };
        let reloader = Reloader::new(&live, workers, wiring);
        let server_stop = CancellationToken::new();
        let (addr, server) = server::serve(
            &config.server.listen,
            health.clone(),
            metrics.clone(),
            tap.clone(),
            server_stop.clone(),
        )
        .await?;
        tracing::info!(%addr, "health and metrics server listening");
        let tracker = OffsetTracker::new();
        let consumer = Arc::new(subscribe_sources(&config, &tracker, &metrics, &health)?);
        let outputs = (reporter, tap, telemetry);
        let stages = build_stages(&config, live, outputs, &metrics, &tracker);
        let tiers = tiers::TierSide::start(&config, &metrics, &health)?;
        let (committer, commit_stop) = start_commit_loop(
            "commit loop",
            &consumer,
            &tracker,
            &metrics,
            &health,
            config.pipeline.commit_interval.get(),
        );
        tracing::info!(topics = ?config.sources.iter().map(|s| &s.topic).collect::<Vec<_>>(), group = %config.kafka.group_id, "relay started");
        Ok(Self {
            stages,
            consumer,
            health,
            metrics,
            tracker,
            drain_timeout: config.pipeline.drain_timeout.get(),
            shutdown,
            abort,
            server_stop,
            server,
            committer,
            commit_stop,
            tiers,
            reloader,
            addr,
        })
    }

    /// Reloads the config (see [`Reloader::reload`]).
    pub fn reload(&self, new: Config, hash: &str) -> Result<ReloadReport, ReloadError> {
        self.reloader.reload(new, hash)
    }

    /// A handle that reloads this relay's config, for a task beside the consume loop.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Consumes until the shutdown token is cancelled.
    pub async fn consume(&self) {
        let source =
            consume::ConsumeLoop::new(&self.consumer, &self.stages, &self.health, &self.shutdown)
                .run();
        match &self.tiers {
            None => source.await,
            Some(side) => {
                let tiers = tier_loop::TierLoop::new(side, &self.stages, &self.shutdown).run();
                tokio::join!(source, tiers);
            }
        }
        self.health.set_running(false);
    }

    /// Lets in-flight events finish within `pipeline.drain_timeout` (the commit loop goes on
    /// committing meanwhile); returns how many were not final by then. Those stay uncommitted
    /// and are redelivered after a restart.
    pub async fn drain(&self) -> usize {
        let in_flight = self.stages.in_flight();
        tracing::info!(in_flight, "shutting down: draining in-flight events");
        let everything_final = async {
            let permits = self.stages.bound.all().await;
            if let Some(side) = &self.tiers {
                side.all_final().await;
            }
            permits
        };
        if let Ok(permits) = tokio::time::timeout(self.drain_timeout, everything_final).await {
            drop(permits);
            return 0;
        }
        let left = self.stages.in_flight() + self.tiers.as_ref().map_or(0, |t| t.in_flight());
        tracing::warn!(
            unfinished = left,
            "drain timeout reached; unfinished events stay uncommitted and will be redelivered"
        );
        left
    }

    /// Stops everything after [`Relay::drain`]: deliveries still retrying give up, the target
    /// workers end, the producers flush, the final positions are committed, the consumer leaves
    /// the group and the server stops.
    pub async fn stop(self, unfinished: usize) {
        self.commit_stop.cancel();
        let _ = self.committer.await;
        self.abort.cancel();
        let Stages {
            live,
            reporter,
            tap,
            telemetry,
            ..
        } = self.stages;
        // The last holder of the stages: their target queues close, the workers finish.
        drop(live);
        for w in self.reloader.take_workers() {
            let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
        }
        let _ = tokio::task::spawn_blocking(move || reporter.flush(Duration::from_secs(10))).await;
        // The spans still buffered are exported (blocks up to the exporter's timeout).
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        if let Some(side) = self.tiers {
            side.stop(&self.metrics).await;
        }
        commit::commit_blocking(&self.consumer, &self.tracker, &self.metrics).await;
        self.metrics.in_flight_events.set(unfinished as i64);
        // Closing the consumer (leaving the group) blocks: off the async workers.
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        // Tap streams end once their queued lines are sent; a client that stopped reading
        // would hold the server's graceful shutdown forever, so it gets a few seconds.
        tap.close();
        self.server_stop.cancel();
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        tracing::info!("relay stopped");
    }
}

/// The async runtime `run` needs: `pipeline.worker_threads` workers (the consume loop runs on
/// the thread that blocks on it), timers and I/O enabled.
pub fn runtime(p: &crate::config::PipelineConfig) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(p.effective_worker_threads())
        .thread_stack_size(TRANSFORM_STACK)
        .enable_all()
        .build()
}

/// The stack of the runtime's threads, where targets run their transforms: a value a program
/// nests in a loop can be up to `transform::STEP_LIMIT` levels deep, and copying, dropping or
/// writing it recurses once per level. Address space only: a thread's stack pages are
/// committed as they are touched, so the resident memory is what a run actually uses.
pub const TRANSFORM_STACK: usize = 128 * 1024 * 1024;

/// Runs the relay until `shutdown` is cancelled, then drains and stops: stop consuming, let
/// in-flight deliveries finish within `pipeline.drain_timeout`, flush the producer, commit,
/// return. Events not final by the deadline stay uncommitted and are redelivered after a
/// restart.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let relay = Relay::start(config, shutdown).await?;
    relay.consume().await;
    let unfinished = relay.drain().await;
    relay.stop(unfinished).await;
    Ok(())
}

/// The reporter: result events through a callback producer whose delivery callback finishes
/// tickets (`report::sink`), dead letters and retried results through a plain one.
fn start_reporter(
    config: &Config,
    metrics: &Arc<Metrics>,
    abort: &CancellationToken,
    tap: &Arc<Tap>,
) -> Result<Arc<Reporter>, StartError> {
    let brokers = &config.kafka.brokers;
    let producer = producer_config(&config.kafka)
        .create_with_context(crate::outage::QuietContext::new(brokers, "producer"))
        .map_err(StartError::Producer)?;
    let (result_retries, retry_rx) = tokio::sync::mpsc::unbounded_channel();
    let results: report::ResultProducer = producer_config(&config.kafka)
        .create_with_context(report::SinkContext::new(result_retries, metrics, brokers))
        .map_err(StartError::Producer)?;
    let reporter = Arc::new(
        Reporter::new(
            producer,
            results,
            config.results.topic.clone(),
            config.dead_letter.topic.clone(),
            metrics.clone(),
            abort.clone(),
            config.log.include_payloads,
        )
        .with_tap(tap.clone()),
    );
    tokio::spawn(report::retry_results(reporter.clone(), retry_rx));
    Ok(reporter)
}

/// Starts the commit loop of `consumer` (watched: if it dies, `/healthz` turns red); returns
/// its task and the token that stops it. The source and the tier consumer each have one.
fn start_commit_loop(
    name: &str,
    consumer: &Arc<RelayConsumer>,
    tracker: &Arc<OffsetTracker>,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    every: Duration,
) -> (JoinHandle<()>, CancellationToken) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(commit::commit_loop(
        consumer.clone(),
        tracker.clone(),
        metrics.clone(),
        every,
        stop.clone(),
    ));
    let watched = watch_task(health.clone(), name.into(), task, stop.clone());
    (watched, stop)
}

/// The consumer of the source topics, in `kafka.group_id`.
fn subscribe_sources(
    config: &Config,
    tracker: &Arc<OffsetTracker>,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) -> Result<RelayConsumer, SourceError> {
    let context = SourceContext {
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        revoke_timeout: config.pipeline.revoke_timeout.get(),
        outage: crate::outage::of(&config.kafka.brokers),
        consumer: "source",
    };
    let topics: Vec<&str> = config.sources.iter().map(|s| s.topic.as_str()).collect();
    source::subscribe(&config.kafka, &config.kafka.group_id, &topics, context)
}

/// The stages a consumed message goes through (`live`: built by [`Live::build`]), the
/// in-flight bound, and the outputs beside the flow: the reporter, the tap the stages offer
/// lines to, and the tracer.
fn build_stages(
    config: &Config,
    live: Arc<LiveCell>,
    (reporter, tap, telemetry): (Arc<Reporter>, Arc<Tap>, Arc<Telemetry>),
    metrics: &Arc<Metrics>,
    tracker: &Arc<OffsetTracker>,
) -> Stages {
    let p = &config.pipeline;
    Stages {
        live,
        reporter,
        metrics: metrics.clone(),
        tracker: tracker.clone(),
        tap,
        telemetry,
        bound: bound::Bound::new(p.max_in_flight_events, p.max_in_flight_bytes),
    }
}
