//! Offset commits: the highest contiguous finished offset of every partition, committed
//! synchronously off the async runtime so every result is known (and counted) exactly.

use super::offsets::{OffsetTracker, Tp};
use super::RelayConsumer;
use crate::metrics::Metrics;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Counts successful commits per partition.
pub fn count(metrics: &Metrics, commits: &[(Tp, i64)]) {
    for ((topic, partition), _) in commits {
        metrics
            .offsets_committed
            .with_label_values(&[topic, &partition.to_string()])
            .inc();
    }
}

/// Commits every position that advanced; failed ones are retried on the next call.
pub fn commit_now(consumer: &RelayConsumer, tracker: &OffsetTracker, metrics: &Metrics) {
    let commits = tracker.take_commits();
    if commits.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), pos) in &commits {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*pos));
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            count(metrics, &commits);
            tracing::debug!(partitions = commits.len(), "offsets committed");
        }
        Err(e) => {
            tracing::warn!(error = %e, "offset commit failed; will retry");
            for (tp, pos) in commits {
                tracker.commit_failed(&tp, pos);
            }
        }
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
