//! The Kafka source: the consumer group, the consume loop with backpressure, and the hand-off
//! of every message to normalize → route → deliver / dead-letter.
//!
//! Every consumed message takes one in-flight permit per event it holds (released when its fate
//! is final); when too few are left the assigned partitions are paused until they free up, so
//! memory stays bounded while the group membership stays alive.

pub mod commit;
pub mod context;
mod handle;
pub mod offsets;

use crate::config::Config;
use crate::deliver::Targets;
use crate::metrics::Metrics;
use crate::normalize::{Normalizer, SourceSettings};
use crate::report::Reporter;
use crate::route::Router;
use crate::server::Health;
use context::RelayContext;
use offsets::OffsetTracker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The consumer type of the relay.
pub type RelayConsumer = StreamConsumer<RelayContext>;

/// Consumer settings: the relay's defaults, then the operator's `kafka.options` on top.
pub fn consumer_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000")
        // A 2 MiB prefetch queue instead of librdkafka's 64 MiB keeps the relay's memory
        // small; refilling it 5 ms (not 1 s) after it ran full keeps consumption going
        // (benchmark, batch scenario, 300,000 events: peak RSS 59 MiB and 85k events/s with
        // 2 MiB, 74 MiB and 90k events/s with 4 MiB; ~140 MiB with librdkafka's default).
        .set("queued.max.messages.kbytes", "2048")
        .set("fetch.queue.backoff.ms", "5")
        .set("client.id", "event-relay");
    for (k, v) in &config.kafka.options {
        c.set(k, v);
    }
    c
}

/// Creates the consumer and subscribes to every source topic.
pub fn consumer(config: &Config, ctx: RelayContext) -> anyhow::Result<RelayConsumer> {
    let consumer: RelayConsumer = consumer_config(config).create_with_context(ctx)?;
    let topics: Vec<&str> = config.sources.iter().map(|s| s.topic.as_str()).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// Everything the consume loop hands messages to.
pub struct Pipeline {
    pub normalizer: Arc<Normalizer>,
    pub settings: HashMap<String, SourceSettings>,
    pub router: Router,
    pub targets: Targets,
    pub reporter: Arc<Reporter>,
    pub metrics: Arc<Metrics>,
    pub tracker: Arc<OffsetTracker>,
    pub permits: Arc<Semaphore>,
    pub max_in_flight: usize,
}

fn pause_all(consumer: &RelayConsumer, pause: bool) {
    if let Ok(assignment) = consumer.assignment() {
        if assignment.count() > 0 {
            let r = if pause {
                consumer.pause(&assignment)
            } else {
                consumer.resume(&assignment)
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, pause, "pause/resume failed");
            }
        }
    }
}

/// How long the consume loop waits for in-flight permits without polling before it pauses the
/// partitions. Not polling for a moment costs nothing: librdkafka's prefetch queue is bounded
/// (`queued.max.messages.kbytes`) and heartbeats go on in its own thread. Pausing at once, on
/// the other hand, makes librdkafka drop what it prefetched and fetch it again on resume —
/// in the benchmark that refetch churn halved webhook throughput at 4,000 events in flight.
const WAIT_BEFORE_PAUSE: Duration = Duration::from_millis(500);

enum Stop {
    Shutdown,
    TooLong,
}

/// Waits up to [`WAIT_BEFORE_PAUSE`] for `n` in-flight permits without polling the consumer.
async fn acquire_briefly(
    p: &Pipeline,
    health: &Health,
    shutdown: &CancellationToken,
    n: u32,
) -> Result<OwnedSemaphorePermit, Stop> {
    p.metrics.backpressure_paused.set(1);
    p.metrics
        .in_flight_events
        .set((p.max_in_flight - p.permits.available_permits()) as i64);
    let result = tokio::select! {
        _ = shutdown.cancelled() => Err(Stop::Shutdown),
        permit = p.permits.clone().acquire_many_owned(n) => Ok(permit.expect("semaphore never closes")),
        _ = tokio::time::sleep(WAIT_BEFORE_PAUSE) => Err(Stop::TooLong),
    };
    health.tick();
    if !matches!(result, Err(Stop::TooLong)) {
        p.metrics.backpressure_paused.set(0);
    }
    result
}

/// Waits for `n` in-flight permits with the assigned partitions paused, still polling the
/// consumer (so the group membership stays alive) and stashing what arrives meanwhile.
/// `None` on shutdown.
async fn acquire_paused(
    consumer: &RelayConsumer,
    p: &Pipeline,
    health: &Health,
    shutdown: &CancellationToken,
    stash: &mut VecDeque<OwnedMessage>,
    n: u32,
) -> Option<OwnedSemaphorePermit> {
    pause_all(consumer, true);
    p.metrics.backpressure_paused.set(1);
    tracing::debug!(permits = n, "in-flight limit reached; consumption paused");
    let permit = loop {
        health.tick();
        p.metrics
            .in_flight_events
            .set((p.max_in_flight - p.permits.available_permits()) as i64);
        tokio::select! {
            _ = shutdown.cancelled() => {
                p.metrics.backpressure_paused.set(0);
                return None;
            }
            permit = p.permits.clone().acquire_many_owned(n) => break permit.expect("semaphore never closes"),
            m = consumer.recv() => match m {
                Ok(m) => {
                    // Fetched before the pause took effect: keep it, pause again.
                    stash.push_back(m.detach());
                    pause_all(consumer, true);
                }
                Err(e) => tracing::warn!(error = %e, "consumer error"),
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    pause_all(consumer, false);
    p.metrics.backpressure_paused.set(0);
    Some(permit)
}

/// Consumes until `shutdown`; returns with every consumed message handed on.
///
/// Each message is normalized first, then takes one in-flight permit per event it holds (a
/// batch message holds many) before it is handed on; without enough free permits the
/// partitions are paused until its events fit.
pub async fn consume_loop(
    consumer: &RelayConsumer,
    p: &Pipeline,
    health: &Health,
    shutdown: &CancellationToken,
) {
    let mut stash: VecDeque<OwnedMessage> = VecDeque::new();
    // One idle timer, re-armed only when it fires (not one timer per message).
    let idle = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(idle);
    loop {
        health.tick();
        p.metrics
            .in_flight_events
            .set((p.max_in_flight - p.permits.available_permits()) as i64);
        let msg = match stash.pop_front() {
            Some(m) => m,
            None => tokio::select! {
                _ = shutdown.cancelled() => return,
                m = consumer.recv() => match m {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut idle => {
                    idle.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Some(job) = handle::prepare(p, msg) else {
            continue;
        };
        let n = job.permits(p.max_in_flight);
        let permit = match p.permits.clone().try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(_) => match acquire_briefly(p, health, shutdown, n).await {
                Ok(permit) => permit,
                Err(Stop::Shutdown) => return,
                Err(Stop::TooLong) => {
                    match acquire_paused(consumer, p, health, shutdown, &mut stash, n).await {
                        Some(permit) => permit,
                        // Shutdown: this message was not handed on; its offset stays
                        // uncommitted and it is consumed again after the restart.
                        None => return,
                    }
                }
            },
        };
        handle::dispatch(p, job, permit);
    }
}
