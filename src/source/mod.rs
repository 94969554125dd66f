//! The Kafka source: the consumer group, the consume loop with backpressure, and the hand-off
//! of every message to normalize → route → deliver / dead-letter.
//!
//! Every consumed message takes one in-flight permit (released when its fate is final); when
//! none is left the assigned partitions are paused until one frees up, so memory stays bounded
//! while the group membership stays alive.

pub mod commit;
pub mod context;
pub mod offsets;

use crate::config::Config;
use crate::deliver::{Delivery, Targets};
use crate::envelope::Origin;
use crate::metrics::Metrics;
use crate::normalize::{NormalizeError, Normalizer, SourceSettings};
use crate::report::{DeadLetter, Reporter};
use crate::route::Router;
use crate::server::Health;
use context::RelayContext;
use offsets::{OffsetTracker, Ticket, Tp};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
        // A 4 MiB prefetch queue instead of librdkafka's 64 MiB keeps the relay's memory
        // small; refilling it 5 ms (not 1 s) after it ran full keeps consumption at full speed
        // (benchmark, batch scenario: same throughput, peak RSS ~100 MiB instead of ~140).
        .set("queued.max.messages.kbytes", "4096")
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

/// Consumes until `shutdown`; returns with every consumed message handed on.
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
        let permit = match p.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                pause_all(consumer, true);
                p.metrics.backpressure_paused.set(1);
                tracing::debug!("in-flight limit reached; consumption paused");
                let permit = loop {
                    health.tick();
                    p.metrics
                        .in_flight_events
                        .set((p.max_in_flight - p.permits.available_permits()) as i64);
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            p.metrics.backpressure_paused.set(0);
                            return;
                        }
                        permit = p.permits.clone().acquire_owned() => break permit.expect("semaphore never closes"),
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
                permit
            }
        };
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
        handle(p, msg, permit);
    }
}

/// The `event` metric label: catalog names as they are, anything else folded into `other`.
fn event_label<'a>(n: &Normalizer, source: &str, event: &'a str) -> &'a str {
    let c = n.catalogs();
    let known = match source {
        "komo" => c.komo.events.contains_key(event),
        "acemate" => c.acemate.events.contains_key(event) || event == "$identify",
        _ => false,
    };
    if known {
        event
    } else {
        "other"
    }
}

fn count_rejection(p: &Pipeline, source: &str, err: &NormalizeError) {
    match err {
        NormalizeError::Invalid { event, catalog, .. } => {
            let label = event_label(&p.normalizer, catalog, event);
            p.metrics
                .events_normalized
                .with_label_values(&[catalog, label, "invalid"])
                .inc();
        }
        NormalizeError::UnknownEvent(_) => {
            p.metrics
                .events_normalized
                .with_label_values(&[source, "other", "unknown_event"])
                .inc();
        }
        _ => {}
    }
}

fn source_label(err: &NormalizeError, fallback: &'static str) -> &'static str {
    match err {
        NormalizeError::Invalid { catalog, .. } => catalog,
        _ => fallback,
    }
}

/// One dead letter to write for a message (or one event of a batch).
struct Rejection {
    raw: Vec<u8>,
    key: Option<Vec<u8>>,
    err: NormalizeError,
    batch_index: Option<usize>,
}

fn spawn_dead_letter(
    p: &Pipeline,
    ticket: Arc<Ticket>,
    origin: &Origin,
    source: &'static str,
    r: Rejection,
) {
    let reporter = p.reporter.clone();
    let origin = origin.clone();
    tokio::spawn(async move {
        let dl = DeadLetter {
            source: source_label(&r.err, source),
            topic: &origin.topic,
            partition: origin.partition,
            offset: origin.offset,
            reason: r.err.reason(),
            error: r.err.to_string(),
            problems: r.err.problems(),
            batch_index: r.batch_index,
        };
        if reporter.dead_letter(&r.raw, r.key.as_deref(), &dl).await {
            ticket.finish_one();
        }
    });
}

/// Normalizes, routes and hands off one message.
fn handle(p: &Pipeline, msg: OwnedMessage, permit: OwnedSemaphorePermit) {
    let tp: Tp = (msg.topic().to_string(), msg.partition());
    let offset = msg.offset();
    p.metrics
        .messages_consumed
        .with_label_values(&[&tp.0])
        .inc();
    let Some(generation) = p.tracker.begin(&tp, offset) else {
        tracing::debug!(topic = %tp.0, partition = tp.1, offset, "message of a partition no longer assigned; left to its new owner");
        return;
    };
    let Some(settings) = p.settings.get(&tp.0) else {
        tracing::error!(topic = %tp.0, "message from a topic that is not a configured source");
        Ticket::new(p.tracker.clone(), tp, offset, generation, 0, Some(permit));
        return;
    };
    let source: &'static str = match settings.format {
        crate::config::SourceFormat::Komo => "komo",
        crate::config::SourceFormat::Acemate => "acemate",
        crate::config::SourceFormat::Auto => "auto",
    };
    let origin = Origin {
        topic: tp.0.clone(),
        partition: tp.1,
        offset,
        key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
    };
    let raw = msg.payload().unwrap_or_default();
    let t0 = Instant::now();
    let result = p.normalizer.normalize(raw, settings, origin.clone());
    p.metrics
        .normalize_duration
        .observe(t0.elapsed().as_secs_f64());
    let normalized = match result {
        Ok(n) => n,
        Err(err) => {
            count_rejection(p, source, &err);
            let ticket = Ticket::new(p.tracker.clone(), tp, offset, generation, 1, Some(permit));
            spawn_dead_letter(
                p,
                ticket,
                &origin,
                source,
                Rejection {
                    raw: raw.to_vec(),
                    key: msg.key().map(<[u8]>::to_vec),
                    err,
                    batch_index: None,
                },
            );
            return;
        }
    };
    let mut plan = Vec::with_capacity(normalized.events.len());
    let mut work = normalized.rejected.len();
    for (env, raw) in normalized.events {
        let src = env.source.as_str();
        let label = event_label(&p.normalizer, src, &env.event);
        p.metrics
            .events_normalized
            .with_label_values(&[src, label, env.validation.status.as_str()])
            .inc();
        let decision = p.router.route(&env);
        if decision.routes.is_empty() && decision.targets.is_empty() {
            p.metrics.unrouted.with_label_values(&[src]).inc();
            tracing::debug!(event_id = %env.id, event = %env.event, "unrouted");
        }
        work += decision.targets.len();
        plan.push((Arc::new(env), raw, decision.targets));
    }
    let ticket = Ticket::new(
        p.tracker.clone(),
        tp,
        offset,
        generation,
        work,
        Some(permit),
    );
    for r in normalized.rejected {
        count_rejection(p, source, &r.error);
        spawn_dead_letter(
            p,
            ticket.clone(),
            &origin,
            source,
            Rejection {
                raw: r.raw,
                key: msg.key().map(<[u8]>::to_vec),
                err: r.error,
                batch_index: Some(r.index),
            },
        );
    }
    for (env, raw, targets) in plan {
        for t in targets {
            p.targets.submit(
                t,
                Delivery {
                    env: env.clone(),
                    raw: raw.clone(),
                    ticket: ticket.clone(),
                },
            );
        }
    }
}
