//! The librdkafka client context: rebalances, commit results, statistics and errors.
//!
//! A revoke is graceful: the consume loop is inside this callback, so no new work starts; the
//! revoked partitions' in-flight deliveries get up to `pipeline.revoke_timeout` to finish, then
//! their final positions are committed (synchronously, inside the rebalance) and the partitions
//! are forgotten, so the next owner starts exactly after what this member finished and nothing
//! is delivered twice. Deliveries still unfinished at the timeout are the only ones the next
//! owner repeats. On assign it starts fresh bookkeeping. Statistics feed the consumer-lag gauge
//! and the broker-reachable flag used by `/readyz`.

use crate::ack::{OffsetTracker, Tp};
use crate::health::Health;
use crate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::ClientContext;
use std::sync::Arc;
use std::time::Duration;

/// Context shared by the consumer (and its callbacks).
pub struct SourceContext {
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// How long a revoke waits for the revoked partitions' in-flight deliveries.
    pub revoke_timeout: Duration,
    /// The brokers' outage state: this client's errors and librdkafka's log go through it.
    pub outage: Arc<crate::outage::Outage>,
    /// Which consumer, in its log lines: `source` or `retry tiers`.
    pub consumer: &'static str,
}

impl SourceContext {
    /// Waits for the in-flight work of `tps` (see the module doc); returns what is left.
    ///
    /// This runs on the thread that polls the consumer, a tokio worker: on the multi-threaded
    /// runtime `block_in_place` hands that worker's other tasks (the deliveries being waited
    /// for among them) to another thread first. A current-thread runtime cannot make progress
    /// while this thread waits, so there the wait is skipped.
    fn wait_for_in_flight(&self, tps: &[Tp]) -> usize {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let wait = || self.tracker.wait_idle(tps, self.revoke_timeout);
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            Ok(_) => self.tracker.wait_idle(tps, Duration::ZERO),
            Err(_) => wait(),
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let tps: Vec<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let unfinished = self.wait_for_in_flight(&tps);
        let mut positions = Vec::new();
        for tp in &tps {
            // A revoked partition's lag is its new owner's to report.
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[&tp.0, &tp.1.to_string()]);
            if let Some(pos) = self.tracker.revoke(tp) {
                positions.push((tp.clone(), pos));
            }
        }
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                timeout = ?self.revoke_timeout,
                "revoke: in-flight events not final by pipeline.revoke_timeout; the next owner of their partitions delivers them again"
            );
        }
        tracing::info!(
            consumer = self.consumer,
            partitions = tps.len(),
            committing = positions.len(),
            "partitions revoked"
        );
        super::commit::commit_revoked(consumer, &positions, &self.metrics);
        self.health.set_joined(false);
    }
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let up = stats
            .brokers
            .values()
            .any(|b| b.state == "UP" && b.nodeid >= 0);
        self.health.set_broker_reachable(up);
        if up {
            self.outage.up();
        }
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
        self.outage.error("consumer", &error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.outage.librdkafka(level, fac, log_message);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.revoke(consumer, tpl);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    self.tracker.assign((e.topic().to_string(), e.partition()));
                }
                tracing::info!(
                    consumer = self.consumer,
                    partitions = tpl.count(),
                    "partitions assigned"
                );
                self.health.set_joined(true);
                // An assignment proves a broker answered: ready now, not at the first
                // statistics callback (`statistics.interval.ms` later); statistics only ever
                // turn this red again (no broker up), or back.
                self.health.set_broker_reachable(true);
                self.outage.up();
            }
            Rebalance::Error(e) => self.outage.retrying("rebalance error", e),
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
