//! Offset commits: the highest contiguous finished offset of every partition, committed
//! synchronously off the async runtime so every result is known (and counted) exactly. Every
//! commit of the relay — periodic, early, on revoke, at shutdown — goes through [`commit`].

use super::RelayConsumer;
use crate::ack::{OffsetTracker, Tp};
use crate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Commits `positions` synchronously and counts each committed partition once.
pub fn commit<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    positions: &[(Tp, i64)],
    metrics: &Metrics,
) -> Result<(), KafkaError> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), pos) in positions {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*pos));
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    for ((topic, partition), _) in positions {
        metrics
            .offsets_committed
            .with_label_values(&[topic, &partition.to_string()])
            .inc();
    }
    Ok(())
}

/// Commits every position that advanced; failed ones are retried on the next call.
pub fn commit_now(consumer: &RelayConsumer, tracker: &OffsetTracker, metrics: &Metrics) {
    let commits = tracker.take_commits();
    if commits.is_empty() {
        return;
    }
    match commit(consumer, &commits, metrics) {
        Ok(()) => tracing::debug!(partitions = commits.len(), "offsets committed"),
        Err(e) => {
            consumer
                .context()
                .outage
                .retrying("offset commit failed; will retry", &e);
            for (tp, pos) in commits {
                tracker.commit_failed(&tp, pos);
            }
        }
    }
}

/// The revoke-time commit, from inside the rebalance callback (a [`BaseConsumer`]).
pub(super) fn commit_revoked<X: ConsumerContext>(
    consumer: &BaseConsumer<X>,
    positions: &[(Tp, i64)],
    metrics: &Metrics,
) {
    if let Err(e) = commit(consumer, positions, metrics) {
        tracing::warn!(error = %e, "commit on revoke failed; those events will be redelivered");
    }
}

/// [`commit_now`] on a blocking thread.
pub async fn commit_blocking(
    consumer: &Arc<RelayConsumer>,
    tracker: &Arc<OffsetTracker>,
    metrics: &Arc<Metrics>,
) {
    let (c, t, m) = (consumer.clone(), tracker.clone(), metrics.clone());
    let _ = tokio::task::spawn_blocking(move || commit_now(&c, &t, &m)).await;
}

/// Commits every `every` until `stop`; also early, when a partition has nothing in flight and
/// nothing was consumed for `every / 10` (the end of a burst, a quiet topic), so the last
/// offsets do not wait a whole interval. A steady stream keeps the regular cadence: each commit
/// is a request the broker has to serve, and a partition of a steady stream drains many times a
/// second.
pub async fn commit_loop(
    consumer: Arc<RelayConsumer>,
    tracker: Arc<OffsetTracker>,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let spacing = every / 10;
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tracker.drained.notified() => {
                let at = (last + spacing).max(tokio::time::Instant::now() + spacing);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = stop.cancelled() => return,
                }
                if tracker.reading_idle_for() < spacing {
                    continue;
                }
            }
            _ = stop.cancelled() => return,
        }
        commit_blocking(&consumer, &tracker, &metrics).await;
        last = tokio::time::Instant::now();
    }
}
