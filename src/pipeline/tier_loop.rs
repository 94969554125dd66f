//! The tier loop: reads the retry tiers, waits for each record to come due and hands it to its
//! target's worker.
//!
//! Every record of a tier has the same delay, so records come due in the order they were
//! written: a partition whose head is not due yet is paused, its head (and whatever was
//! already fetched behind it) kept here, and resumed once the head is due. The loop never
//! sleeps: it goes on polling (heartbeats, rebalances, the other partitions) and wakes up for
//! the earliest due head. A record is registered with the offset bookkeeping only when it is
//! handed on, so a waiting record holds its partition's commit where it is.

use super::handle::Stages;
use super::tiers::TierSide;
use crate::ack::{Permits, Ticket, Tp};
use crate::config::Tier;
use crate::deliver::{Delivery, Targets};
use crate::report::{DeadLetter, Failure, Outcome, ParkedRecord, PendingResult, TargetRef};
use rdkafka::message::{Message, OwnedMessage};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// How often the loop wakes up when nothing arrives or comes due (tier-lag gauges).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// A record read from a paused partition, with its partition's generation then.
struct Waiting {
    msg: OwnedMessage,
    /// Its due time, read once when it arrived.
    due: SystemTime,
    generation: Option<u64>,
}

/// The loop's state.
pub(super) struct TierLoop<'a> {
    pub side: &'a TierSide,
    pub stages: &'a Stages,
    pub shutdown: &'a CancellationToken,
    /// Paused partitions and their records, head first.
    waiting: HashMap<Tp, VecDeque<Waiting>>,
    /// A due head is waiting for an in-flight permit: wake up when one frees.
    starved: bool,
    /// When the tier-lag gauges were last set.
    lag_reported: Option<std::time::Instant>,
}

/// When a tier record is due: its `due_at` header, or at once if it has none readable (the
/// record is then dead-lettered when it is handed on).
fn due_at(msg: &OwnedMessage) -> SystemTime {
    crate::report::due_at(msg.headers()).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn tp_of(msg: &OwnedMessage) -> Tp {
    (msg.topic().to_string(), msg.partition())
}

impl<'a> TierLoop<'a> {
    pub fn new(side: &'a TierSide, stages: &'a Stages, shutdown: &'a CancellationToken) -> Self {
        Self {
            side,
            stages,
            shutdown,
            waiting: HashMap::new(),
            starved: false,
            lag_reported: None,
        }
    }

    /// Reads and hands on tier records until shutdown.
    pub async fn run(mut self) {
        let consumer = self.side.consumer.clone();
        let permits = self.side.permits.clone();
        loop {
            self.report_lag();
            let wake = if self.starved {
                IDLE_TICK
            } else {
                self.next_due()
            };
            let starved = self.starved;
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                m = consumer.recv() => match m {
                    Ok(m) => self.arrived(m.detach()),
                    Err(e) => {
                        rdkafka::consumer::Consumer::context(&*consumer).outage.retrying("tier consumer error", &e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = tokio::time::sleep(wake) => self.release_due(),
                // A permit freed up: the waiting due heads can go.
                p = permits.acquire(), if starved => {
                    drop(p);
                    self.release_due();
                }
            }
        }
    }

    /// How long until the earliest waiting head is due (at most [`IDLE_TICK`]).
    fn next_due(&self) -> Duration {
        let now = SystemTime::now();
        self.waiting
            .values()
            .filter_map(|q| q.front())
            .map(|w| w.due.duration_since(now).unwrap_or_default())
            .min()
            .unwrap_or(IDLE_TICK)
            .min(IDLE_TICK)
    }

    /// A record read from a tier: handed on if due and its partition has nothing waiting,
    /// else kept (its partition paused) until it is.
    fn arrived(&mut self, msg: OwnedMessage) {
        let tp = tp_of(&msg);
        let generation = self.side.tracker.generation(&tp);
        let due = due_at(&msg);
        let waiting = Waiting {
            msg,
            due,
            generation,
        };
        if let Some(queue) = self.waiting.get_mut(&tp) {
            // Records kept from before a rebalance moved the partition away and back are its
            // next reading's, not this one's: the fetch restarts at the committed offset.
            queue.retain(|w| w.generation == generation);
            if !queue.is_empty() {
                queue.push_back(waiting);
                return;
            }
            self.waiting.remove(&tp);
            self.pause(&tp, false);
        }
        if due <= SystemTime::now() {
            if let Ok(permit) = self.side.permits.clone().try_acquire_owned() {
                self.hand_on(waiting.msg, generation, permit);
                return;
            }
        }
        self.pause(&tp, true);
        self.waiting.insert(tp, VecDeque::from([waiting]));
    }

    /// Hands on every due head (while in-flight permits last) and resumes partitions whose
    /// queue emptied; drops the records of partitions that moved to another member.
    fn release_due(&mut self) {
        let now = SystemTime::now();
        self.starved = false;
        let tps: Vec<Tp> = self.waiting.keys().cloned().collect();
        for tp in tps {
            while self.head_is_due(&tp, now) {
                let Ok(permit) = self.side.permits.clone().try_acquire_owned() else {
                    self.starved = true; // full: go on when a permit frees up
                    return;
                };
                let head = self.waiting.get_mut(&tp).and_then(VecDeque::pop_front);
                if let Some(head) = head {
                    self.hand_on(head.msg, head.generation, permit);
                }
            }
            if self.waiting.get(&tp).is_some_and(VecDeque::is_empty) {
                self.waiting.remove(&tp);
                self.pause(&tp, false);
            }
        }
    }

    /// Whether `tp`'s head is due; drops its records first if the partition moved to another
    /// member meanwhile (its next owner reads them).
    fn head_is_due(&mut self, tp: &Tp, now: SystemTime) -> bool {
        let current = self.side.tracker.generation(tp);
        let Some(queue) = self.waiting.get_mut(tp) else {
            return false;
        };
        queue.retain(|w| w.generation == current);
        queue.front().is_some_and(|head| head.due <= now)
    }

    fn pause(&self, tp: &Tp, pause: bool) {
        use rdkafka::consumer::Consumer;
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        let c = &self.side.consumer;
        let r = if pause { c.pause(&tpl) } else { c.resume(&tpl) };
        if let Err(e) = r {
            tracing::debug!(error = %e, topic = %tp.0, partition = tp.1, pause, "tier pause/resume failed");
        }
    }

    /// Registers a due record and hands it to its target (or, unreadable or for a target no
    /// longer configured, reports it).
    fn hand_on(&self, msg: OwnedMessage, generation: Option<u64>, permit: OwnedSemaphorePermit) {
        let tp = tp_of(&msg);
        let offset = msg.offset();
        let Some(begun) = self.side.tracker.begin(&tp, offset) else {
            return; // no longer ours
        };
        if generation.is_some_and(|g| g != begun) {
            return;
        }
        let ticket = Ticket::new(
            self.side.tracker.clone(),
            tp,
            offset,
            begun,
            1,
            Permits::new(permit, None),
        );
        let Some(tier) = self.side.tiers.get(msg.topic()) else {
            return;
        };
        let payload = msg.payload().unwrap_or_default();
        let record = match ParkedRecord::parse(msg.headers(), payload) {
            Ok(r) => r,
            Err(e) => return self.unreadable(&msg, e.to_string(), ticket),
        };
        // The targets of the running config (a reload may have added or removed this one).
        let live = self.stages.live.load();
        match live.targets.index_of(&record.target) {
            Some(index) => self.deliver(&live.targets, index, record, tier, payload.len(), ticket),
            None => self.target_removed(record, ticket),
        }
    }

    fn deliver(
        &self,
        targets: &Targets,
        index: usize,
        r: ParkedRecord,
        tier: &Tier,
        size: usize,
        ticket: Arc<Ticket>,
    ) {
        let mut journey = r.journey;
        if journey.redrive && journey.parked == 0 {
            self.stages
                .metrics
                .redriven
                .with_label_values(&["failed"])
                .inc();
        }
        // The tier is the topic's: the header only says where it was meant to go.
        journey.tier = Some(tier.label.clone());
        let raw: Arc<[u8]> = Arc::from(r.raw);
        targets.submit(
            index,
            Delivery {
                env: Arc::new(r.env),
                raw: targets.raw_for(index, &raw),
                size,
                ticket,
                journey,
                shaped: None,
                span: Default::default(),
            },
        );
    }

    /// A record that is not a parked delivery: dead-lettered as it is, with the reason.
    fn unreadable(&self, msg: &OwnedMessage, error: String, ticket: Arc<Ticket>) {
        tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), %error, "unreadable retry-tier record; dead-lettered");
        let reporter = self.stages.reporter.clone();
        let (raw, key) = (
            msg.payload().unwrap_or_default().to_vec(),
            msg.key().map(<[u8]>::to_vec),
        );
        let (topic, partition, offset) = (msg.topic().to_string(), msg.partition(), msg.offset());
        tokio::spawn(async move {
            let dl = DeadLetter {
                source: "retry-tier",
                topic: &topic,
                partition,
                offset,
                reason: "unreadable_retry_record",
                error,
                problems: Vec::new(),
                batch_index: None,
                source_event_id: None,
                event: None,
                redriven: false,
            };
            if reporter.dead_letter(&raw, key.as_deref(), &dl).await {
                ticket.finish_one();
            }
        });
    }

    /// A parked delivery whose target is gone from the config: kept in the failed topic (a
    /// redrive can re-enter it once the target is back) and reported by a WebhookError.
    fn target_removed(&self, mut r: ParkedRecord, ticket: Arc<Ticket>) {
        tracing::error!(target_name = %r.target, source_event_id = %r.env.id, "parked delivery for a target no longer configured; written to the failed topic");
        let reporter = self.stages.reporter.clone();
        let failed = self.side.failed_topic.clone();
        let error = Failure::TargetRemoved {
            target: r.target.clone(),
        };
        r.last_error = error.to_string();
        r.reason = Some("target_removed".into());
        tokio::spawn(async move {
            if !reporter.park(&failed, &r).await {
                return;
            }
            let pending = PendingResult {
                env: Arc::new(r.env),
                target: Arc::new(TargetRef {
                    name: r.target,
                    guid: r.target_id,
                }),
                outcome: Outcome::Failed {
                    error,
                    attempts: r.journey.attempts,
                    duration: Duration::ZERO,
                },
                journey: r.journey,
                ticket,
            };
            let stamp = crate::envelope::now_rfc3339();
            reporter.send_result(pending, &mut Vec::new(), &stamp);
        });
    }

    /// `event_relay_tier_lag{tier}`: per tier, the records waiting in its partitions assigned
    /// here: their consumer lag (librdkafka statistics: records not yet committed), or, where
    /// the statistics know none yet (nothing committed in the group so far), at least the
    /// records held here until due.
    fn report_lag(&mut self) {
        use prometheus::core::Collector;
        if self.lag_reported.is_some_and(|t| t.elapsed() < IDLE_TICK) {
            return;
        }
        self.lag_reported = Some(std::time::Instant::now());
        let metrics = &self.stages.metrics;
        let mut lag: HashMap<&str, i64> = HashMap::new();
        for family in metrics.consumer_lag.collect() {
            for m in family.get_metric() {
                let topic = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "topic")
                    .map(|l| l.value());
                if let Some(tier) = topic.and_then(|t| self.side.tiers.get(t)) {
                    *lag.entry(tier.label.as_str()).or_default() +=
                        m.get_gauge().get_value() as i64;
                }
            }
        }
        let mut held: HashMap<&str, i64> = HashMap::new();
        for (tp, queue) in &self.waiting {
            if let Some(tier) = self.side.tiers.get(&tp.0) {
                *held.entry(tier.label.as_str()).or_default() += queue.len() as i64;
            }
        }
        for tier in self.side.tiers.values() {
            let label = tier.label.as_str();
            let n = lag.get(label).copied().unwrap_or(0);
            let n = n.max(held.get(label).copied().unwrap_or(0));
            metrics.tier_lag.with_label_values(&[label]).set(n);
        }
    }
}
