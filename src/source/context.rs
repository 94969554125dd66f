//! The librdkafka client context: rebalances, commit results, statistics and errors.
//!
//! On revoke it commits the final positions of the revoked partitions (synchronously, inside
//! the rebalance) and forgets them; on assign it starts fresh bookkeeping. Statistics feed the
//! consumer-lag gauge and the broker-reachable flag used by `/readyz`.

use super::offsets::OffsetTracker;
use crate::metrics::Metrics;
use crate::server::Health;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::sync::Arc;

/// Context shared by the consumer (and its callbacks).
pub struct RelayContext {
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl ClientContext for RelayContext {
    fn stats(&self, stats: Statistics) {
        let up = stats
            .brokers
            .values()
            .any(|b| b.state == "UP" && b.nodeid >= 0);
        self.health.set_broker_reachable(up);
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .consumer_lag
                    .with_label_values(&[topic, &partition.to_string()])
                    .set(p.consumer_lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.set_broker_reachable(false);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for RelayContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut commit = TopicPartitionList::new();
                for e in tpl.elements() {
                    let tp = (e.topic().to_string(), e.partition());
                    // A revoked partition's lag is its new owner's to report.
                    let _ = self
                        .metrics
                        .consumer_lag
                        .remove_label_values(&[&tp.0, &tp.1.to_string()]);
                    if let Some(pos) = self.tracker.revoke(&tp) {
                        let _ = commit.add_partition_offset(&tp.0, tp.1, Offset::Offset(pos));
                    }
                }
                tracing::info!(
                    partitions = tpl.count(),
                    committing = commit.count(),
                    "partitions revoked"
                );
                if commit.count() > 0 {
                    match consumer.commit(&commit, CommitMode::Sync) {
                        Ok(()) => {
                            for e in commit.elements() {
                                self.metrics
                                    .offsets_committed
                                    .with_label_values(&[e.topic(), &e.partition().to_string()])
                                    .inc();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "commit on revoke failed; those events will be redelivered")
                        }
                    }
                }
                self.health.set_joined(false);
            }
            Rebalance::Assign(_) | Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    self.tracker.assign((e.topic().to_string(), e.partition()));
                }
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                self.health.set_joined(true);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        // Commits are synchronous (see `source::commit`) and counted there.
        if let Err(e) = result {
            tracing::debug!(error = %e, "offset commit callback reported an error");
        }
    }
}
