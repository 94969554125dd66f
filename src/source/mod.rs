//! The Kafka consumer, and only that: the client settings, subscribing, pausing and resuming
//! the assignment, the rebalance and statistics callbacks ([`context`]) and offset commits
//! ([`commit`]). It knows nothing of what the messages become: the `pipeline` reads them and
//! finishes their offsets in [`crate::ack`], which is all this module commits from. A second
//! set of topics (e.g. retry tiers under their own group) is a second user of the same code.

pub mod commit;
pub mod context;

use crate::config::KafkaConfig;
use context::SourceContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;

/// The consumer type of the relay.
pub type RelayConsumer = StreamConsumer<SourceContext>;

/// The consumer could not be created or could not subscribe.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("creating the Kafka consumer (group {group}): {source}")]
    Create { group: String, source: KafkaError },
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: KafkaError,
    },
}

/// Consumer settings: the relay's defaults, then the operator's `kafka.options` on top.
pub fn consumer_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("group.id", group_id)
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
    for (k, v) in &kafka.options {
        c.set(k, v);
    }
    c
}

/// Creates a consumer in `group_id` and subscribes it to `topics`.
pub fn subscribe(
    kafka: &KafkaConfig,
    group_id: &str,
    topics: &[&str],
    ctx: SourceContext,
) -> Result<RelayConsumer, SourceError> {
    let consumer: RelayConsumer = consumer_config(kafka, group_id)
        .create_with_context(ctx)
        .map_err(|source| SourceError::Create {
            group: group_id.to_string(),
            source,
        })?;
    consumer
        .subscribe(topics)
        .map_err(|source| SourceError::Subscribe {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            source,
        })?;
    Ok(consumer)
}

/// Pauses (`pause = true`) or resumes the whole current assignment; the group membership
/// stays alive while paused, as long as the consumer is polled.
pub fn pause_all(consumer: &RelayConsumer, pause: bool) {
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
