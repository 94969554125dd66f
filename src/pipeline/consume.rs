//! The consume loop: reads the source consumer, has each message prepared (normalized and
//! routed), takes its in-flight permits and dispatches it.
//!
//! Every consumed message takes one in-flight permit per event it holds (released when its fate
//! is final); when too few are left the assigned partitions are paused until they free up, so
//! memory stays bounded while the group membership stays alive.

use super::bound::Cost;
use super::handle::{self, Job, Stages};
use super::live::LiveReader;
use crate::ack::{Permits, Tp};
use crate::health::Health;
use crate::source::{pause_all, RelayConsumer};
use rdkafka::message::{Message, OwnedMessage};
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

/// How long the consume loop waits for in-flight permits without polling before it pauses the
/// partitions. Not polling for a moment costs nothing: librdkafka's prefetch queue is bounded
/// (`queued.max.messages.kbytes`) and heartbeats go on in its own thread. Pausing at once, on
/// the other hand, makes librdkafka drop what it prefetched and fetch it again on resume —
/// in the benchmark that refetch churn halved webhook throughput at 4,000 events in flight.
const WAIT_BEFORE_PAUSE: Duration = Duration::from_millis(500);

/// How often the loop wakes up when nothing arrives (liveness ticks, gauges).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// A message read while the partitions were paused, with its partition's generation then: if
/// a rebalance moved the partition meanwhile, the message is its next owner's.
struct Stashed {
    msg: OwnedMessage,
    generation: Option<u64>,
}

/// The loop's state: what it reads from, hands to, and keeps between messages.
pub(super) struct ConsumeLoop<'a> {
    pub consumer: &'a RelayConsumer,
    pub stages: &'a Stages,
    pub health: &'a Health,
    pub shutdown: &'a CancellationToken,
    stash: VecDeque<Stashed>,
    /// The running config's stages, re-read after a reload (at the next message, or the next
    /// idle tick, so a retired target set is let go of even when nothing arrives).
    live: LiveReader<'a>,
    /// One idle timer, re-armed only when it fires (not one timer per message).
    idle: Pin<Box<Sleep>>,
}

enum Wait {
    Shutdown,
    TooLong,
}

impl<'a> ConsumeLoop<'a> {
    pub fn new(
        consumer: &'a RelayConsumer,
        stages: &'a Stages,
        health: &'a Health,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            consumer,
            stages,
            health,
            shutdown,
            stash: VecDeque::new(),
            live: stages.live.reader(),
            idle: Box::pin(tokio::time::sleep(IDLE_TICK)),
        }
    }

    /// Consumes until shutdown; returns with every consumed message handed on (or left
    /// uncommitted, to be consumed again after a restart).
    ///
    /// Each message is normalized first, then takes one in-flight permit per event it holds (a
    /// batch message holds many) before it is handed on; without enough free permits the
    /// partitions are paused until its events fit.
    pub async fn run(mut self) {
        while let Some(msg) = self.next_message().await {
            let Some(job) = handle::prepare(self.stages, self.live.current(), msg) else {
                continue;
            };
            let Some(permit) = self.permits_for(&job).await else {
                // Shutdown: this message was not handed on; its offset stays uncommitted.
                return;
            };
            handle::dispatch(self.stages, job, permit);
        }
    }

    fn tick(&self) {
        self.health.tick();
        self.stages.report_in_flight();
    }

    /// The next message: stashed ones first, then the consumer. `None` on shutdown.
    async fn next_message(&mut self) -> Option<OwnedMessage> {
        loop {
            self.tick();
            while let Some(s) = self.stash.pop_front() {
                if self.stages.tracker.generation(&tp_of(&s.msg)) == s.generation {
                    return Some(s.msg);
                }
            }
            let consumer = self.consumer;
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                m = consumer.recv() => match m {
                    Ok(m) => return Some(m.detach()),
                    Err(e) => {
                        rdkafka::consumer::Consumer::context(consumer).outage.retrying("consumer error", &e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = &mut self.idle => {
                    self.idle.as_mut().reset(tokio::time::Instant::now() + IDLE_TICK);
                    self.live.current(); // idle: let go of stages a reload replaced
                }
            }
        }
    }

    /// The in-flight permits of `job`: at once if free, else after a short wait, else with the
    /// partitions paused. `None` on shutdown.
    async fn permits_for(&mut self, job: &Job) -> Option<Permits> {
        let n = job.cost(&self.stages.bound);
        if let Some(permits) = self.stages.bound.try_hold(n) {
            return Some(permits);
        }
        // Begun but not dispatched: a revoke during the wait must not wait for it (see ack).
        self.stages.tracker.set_held(Some(job.position()));
        let permit = match self.acquire_briefly(n).await {
            Ok(permit) => Some(permit),
            Err(Wait::Shutdown) => None,
            Err(Wait::TooLong) => self.acquire_paused(n).await,
        };
        self.stages.tracker.set_held(None);
        permit
    }

    /// Waits up to [`WAIT_BEFORE_PAUSE`] for `n` in-flight permits without polling the consumer.
    async fn acquire_briefly(&self, n: Cost) -> Result<Permits, Wait> {
        let metrics = &self.stages.metrics;
        // The in-flight gauges first: whoever sees the paused gauge at 1 sees what filled the
        // bound.
        self.stages.report_in_flight();
        metrics.backpressure_paused.set(1);
        let result = tokio::select! {
            _ = self.shutdown.cancelled() => Err(Wait::Shutdown),
            permits = self.stages.bound.hold(n) => Ok(permits),
            _ = tokio::time::sleep(WAIT_BEFORE_PAUSE) => Err(Wait::TooLong),
        };
        self.health.tick();
        if !matches!(result, Err(Wait::TooLong)) {
            metrics.backpressure_paused.set(0);
        }
        result
    }

    /// Waits for `n` in-flight permits with the assigned partitions paused, still polling the
    /// consumer (so the group membership stays alive and rebalances are served) and stashing
    /// what arrives meanwhile. `None` on shutdown.
    async fn acquire_paused(&mut self, n: Cost) -> Option<Permits> {
        let metrics = self.stages.metrics.clone();
        pause_all(self.consumer, true);
        metrics.backpressure_paused.set(1);
        tracing::debug!(
            events = n.0,
            kib = n.1,
            "in-flight limit reached; consumption paused"
        );
        let permit = loop {
            self.tick();
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    metrics.backpressure_paused.set(0);
                    return None;
                }
                permits = self.stages.bound.hold(n) => break permits,
                m = self.consumer.recv() => match m {
                    Ok(m) => {
                        // Fetched before the pause took effect (or assigned by a rebalance
                        // meanwhile): keep it, pause again.
                        let msg = m.detach();
                        let generation = self.stages.tracker.generation(&tp_of(&msg));
                        self.stash.push_back(Stashed { msg, generation });
                        pause_all(self.consumer, true);
                    }
                    Err(e) => rdkafka::consumer::Consumer::context(self.consumer).outage.retrying("consumer error", &e),
                },
                _ = tokio::time::sleep(IDLE_TICK) => {}
            }
        };
        pause_all(self.consumer, false);
        metrics.backpressure_paused.set(0);
        Some(permit)
    }
}

fn tp_of(msg: &OwnedMessage) -> Tp {
    (msg.topic().to_string(), msg.partition())
}
