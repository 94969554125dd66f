//! The retry-tier side of the relay: a second consumer (the same `source` code, its own group,
//! `{kafka.group_id}.retry` by default) on the tier topics, with its own offset bookkeeping,
//! in-flight bound and commit loop. Its loop ([`super::tier_loop`]) waits for each record to
//! come due and hands it to the same target workers as the source's deliveries.

use crate::ack::OffsetTracker;
use crate::config::{Config, Tier};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::{self, commit, context::SourceContext, RelayConsumer, SourceError};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the tier loop needs besides the stages: the consumer and its bookkeeping, and how to
/// read a tier record's topic (its target is looked up in the running config's targets).
pub struct TierSide {
    pub consumer: Arc<RelayConsumer>,
    pub tracker: Arc<OffsetTracker>,
    /// Bounds the tier deliveries in memory (a quarter of `pipeline.max_in_flight_events`,
    /// so the relay holds at most 1.25 times the bound; apart from the
    /// source's: a backlog coming due cannot starve fresh events, nor the other way round).
    pub permits: Arc<Semaphore>,
    pub max_in_flight: usize,
    /// Tier by topic.
    pub tiers: HashMap<String, Tier>,
    /// `retry_tiers.failed_topic`.
    pub failed_topic: String,
    committer: JoinHandle<()>,
    commit_stop: CancellationToken,
}

impl TierSide {
    /// Subscribes to the tier topics of `config` (nothing without `[retry_tiers]`) and starts
    /// their commit loop. The tier consumer has its own `Health`: its group's rebalances say
    /// nothing about whether the source consumer is ready.
    pub fn start(
        config: &Config,
        metrics: &Arc<Metrics>,
        health: &Arc<Health>,
    ) -> Result<Option<Self>, SourceError> {
        let Some(rt) = config.tiering() else {
            return Ok(None);
        };
        let tracker = OffsetTracker::new();
        let context = SourceContext {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            health: Arc::new(Health::default()),
            revoke_timeout: config.pipeline.revoke_timeout.get(),
            outage: crate::outage::of(&config.kafka.brokers),
            consumer: "retry tiers",
        };
        let tiers: HashMap<String, Tier> = rt
            .tiers
            .iter()
            .cloned()
            .map(|t| (t.topic.clone(), t))
            .collect();
        let topics: Vec<&str> = tiers.keys().map(String::as_str).collect();
        let group = rt.group_id.clone();
        let consumer = Arc::new(source::subscribe(&config.kafka, &group, &topics, context)?);
        let (committer, commit_stop) = super::start_commit_loop(
            "tier commit loop",
            &consumer,
            &tracker,
            metrics,
            health,
            config.pipeline.commit_interval.get(),
        );
        tracing::info!(topics = ?topics, %group, "retry tiers consumed");
        let max_in_flight = (config.pipeline.max_in_flight_events / 4).max(1);
        Ok(Some(Self {
            consumer,
            tracker,
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            tiers,
            failed_topic: rt.failed_topic,
            committer,
            commit_stop,
        }))
    }

    /// Tier deliveries not final yet.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }

    /// Waits until every tier delivery is final (see [`crate::Relay::drain`]).
    pub async fn all_final(&self) {
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        if let Ok(p) = self.permits.acquire_many(all).await {
            drop(p);
        }
    }

    /// After the drain: stops the commit loop, commits the final positions and leaves the
    /// group (off the async workers: closing blocks).
    pub async fn stop(self, metrics: &Arc<Metrics>) {
        self.commit_stop.cancel();
        let _ = self.committer.await;
        commit::commit_blocking(&self.consumer, &self.tracker, metrics).await;
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }
}
