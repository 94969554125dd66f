//! event-relay: Kafka → normalized envelope → PostHog / webhook targets with retries, and a
//! WebhookSuccess / WebhookError result event on Kafka for every delivery.
//!
//! The data flows through the modules in this order:
//! [`source`] (Kafka consumer, offsets) → [`normalize`] (+ [`catalog`], producing an
//! [`envelope`]) → [`route`] → [`deliver`] (webhook, posthog, retry policy) → [`report`]
//! (result events, dead letters); [`config`], [`metrics`] and [`server`] support them all.
//! [`run`] wires them together; `main.rs` is only the command line.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod envelope;
pub mod json;
pub mod metrics;
pub mod normalize;
pub mod report;
pub mod route;
pub mod server;
pub mod source;

use anyhow::Context;
use config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Producer settings for result events and dead letters.
fn producer_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("client.id", "event-relay");
    for (k, v) in &config.kafka.options {
        // Consumer-only properties would make librdkafka warn on every start.
        if !is_consumer_only(k) && k != "statistics.interval.ms" {
            c.set(k, v);
        }
    }
    c
}

fn is_consumer_only(key: &str) -> bool {
    const CONSUMER: &[&str] = &[
        "group.id",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "auto.offset.reset",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "fetch.min.bytes",
        "fetch.wait.max.ms",
        "fetch.max.bytes",
        "max.partition.fetch.bytes",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "partition.assignment.strategy",
        "group.instance.id",
        "enable.auto.offset.store",
        "enable.partition.eof",
        "isolation.level",
        "group.protocol",
        "fetch.message.max.bytes",
        "check.crcs",
    ];
    CONSUMER.contains(&key)
}

/// Runs the relay until `shutdown` is cancelled, then drains: stop consuming, let in-flight
/// deliveries finish within `pipeline.drain_timeout`, flush the producer, commit, return.
/// Events not final by the deadline stay uncommitted and are redelivered after a restart.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(server::Health::new(
        config.server.liveness_deadline.get(),
        config.server.circuit_open_threshold.get(),
    ));
    let normalizer = Arc::new(normalize::Normalizer::builtin().map_err(anyhow::Error::msg)?);
    let router = route::Router::new(&config).map_err(anyhow::Error::msg)?;
    let abort = CancellationToken::new();
    let server_stop = CancellationToken::new();

    let producer: FutureProducer = producer_config(&config)
        .create()
        .context("creating the Kafka producer")?;
    // Result events go through their own producer, whose delivery callback finishes tickets
    // (report::sink); what it cannot produce is retried through `producer`.
    let (result_retries, retry_rx) = tokio::sync::mpsc::unbounded_channel();
    let results: report::ResultProducer = producer_config(&config)
        .create_with_context(report::SinkContext::new(result_retries, &metrics))
        .context("creating the Kafka producer for result events")?;
    let reporter = Arc::new(report::Reporter::new(
        producer,
        results,
        config.results.topic.clone(),
        config.dead_letter.topic.clone(),
        metrics.clone(),
        abort.clone(),
        config.log.include_payloads,
    ));
    tokio::spawn(report::retry_results(reporter.clone(), retry_rx));
    let (targets, workers) = deliver::Targets::start(
        &config.targets,
        reporter.clone(),
        metrics.clone(),
        abort.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    health.set_targets(targets.runtimes.clone());
    // A target worker that dies before shutdown turns /healthz red (its queue would fill up).
    let workers: Vec<_> = workers
        .into_iter()
        .zip(&config.targets)
        .map(|(w, t)| {
            server::watch_task(
                health.clone(),
                format!("target worker {}", t.name),
                w,
                shutdown.clone(),
            )
        })
        .collect();
    let (addr, server) = server::serve(
        &config.server.listen,
        health.clone(),
        metrics.clone(),
        server_stop.clone(),
    )
    .await?;
    tracing::info!(%addr, "health and metrics server listening");

    let tracker = source::offsets::OffsetTracker::new();
    let consumer = Arc::new(source::consumer(
        &config,
        source::context::RelayContext {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
        },
    )?);
    let max_in_flight = config.pipeline.max_in_flight_events;
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let pipeline = source::Pipeline {
        normalizer,
        settings: config
            .sources
            .iter()
            .map(|s| {
                (
                    s.topic.clone(),
                    normalize::SourceSettings::from_config(s, config.pipeline.max_message_bytes),
                )
            })
            .collect::<HashMap<_, _>>(),
        router,
        targets,
        reporter,
        metrics: metrics.clone(),
        tracker: tracker.clone(),
        permits: permits.clone(),
        max_in_flight,
    };

    // Periodic commit of the highest contiguous finished offsets.
    let committer = server::watch_task(
        health.clone(),
        "commit loop".into(),
        tokio::spawn(source::commit::commit_loop(
            consumer.clone(),
            tracker.clone(),
            metrics.clone(),
            config.pipeline.commit_interval.get(),
            shutdown.clone(),
        )),
        shutdown.clone(),
    );

    tracing::info!(topics = ?config.sources.iter().map(|s| &s.topic).collect::<Vec<_>>(), group = %config.kafka.group_id, "relay started");
    source::consume_loop(&consumer, &pipeline, &health, &shutdown).await;

    // Drain.
    health.set_running(false);
    tracing::info!(
        in_flight = max_in_flight - permits.available_permits(),
        "shutting down: draining in-flight events"
    );
    let _ = committer.await;
    let deadline = Instant::now() + config.pipeline.drain_timeout.get();
    let mut last_commit = Instant::now();
    while permits.available_permits() < max_in_flight && Instant::now() < deadline {
        if last_commit.elapsed() >= Duration::from_millis(200) {
            source::commit::commit_blocking(&consumer, &tracker, &metrics).await;
            last_commit = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = max_in_flight - permits.available_permits();
    if left > 0 {
        tracing::warn!(
            unfinished = left,
            "drain timeout reached; unfinished events stay uncommitted and will be redelivered"
        );
    }
    abort.cancel();
    let source::Pipeline {
        targets,
        reporter: pipeline_reporter,
        ..
    } = pipeline;
    targets.close();
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    pipeline_reporter.flush(Duration::from_secs(10));
    source::commit::commit_blocking(&consumer, &tracker, &metrics).await;
    metrics.in_flight_events.set(left as i64);
    drop(consumer);
    server_stop.cancel();
    let _ = server.await;
    tracing::info!("relay stopped");
    Ok(())
}

/// Opts the process out of transparent huge pages: where the kernel hands them out (`always`,
/// or `madvise` with an allocator that asks), the heap grows and stays resident in 2 MiB steps.
/// Measured with mimalloc (the relay's allocator before jemalloc) in the benchmark's batch
/// scenario (100,000 events): peak RSS ~160 MiB with them, ~142 MiB without, at the same
/// throughput. Best effort: on other systems, or if the call fails, nothing changes.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag on
        // this process's memory descriptor; no memory is passed to the kernel.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::debug!("prctl(PR_SET_THP_DISABLE) failed; transparent huge pages stay as the system sets them");
        }
    }
}

/// Sets up `tracing` from the `[log]` section (`RUST_LOG` wins when set).
pub fn init_logging(log: &config::LogConfig) {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::BaseProducer;

    /// Managed Kafka (Confluent Cloud, MSK, Aiven) needs SASL over TLS: the bundled
    /// librdkafka must be built with OpenSSL, or creating the clients fails.
    #[test]
    fn sasl_ssl_clients_can_be_created() {
        let text = r#"
            [kafka]
            brokers = "127.0.0.1:9"
            group_id = "g"
            [kafka.options]
            "security.protocol" = "SASL_SSL"
            "sasl.mechanisms" = "PLAIN"
            "sasl.username" = "user"
            "sasl.password" = "secret"
            [[sources]]
            topic = "in"
            format = "auto"
            [results]
            topic = "results"
            [dead_letter]
            topic = "dlq"
        "#;
        let config = config::load_str(text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let consumer: Result<BaseConsumer, _> = source::consumer_config(&config).create();
        consumer.unwrap_or_else(|e| panic!("consumer with SASL_SSL: {e}"));
        let producer: Result<BaseProducer, _> = producer_config(&config).create();
        producer.unwrap_or_else(|e| panic!("producer with SASL_SSL: {e}"));
    }
}
