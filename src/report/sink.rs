//! The fast path for result events: a librdkafka producer whose delivery callback finishes the
//! delivery's ticket itself — no future, oneshot channel or task per result event.
//!
//! Every delivery ends in exactly one result event, so this is the busiest producer of the
//! relay. The callback runs on the producer's polling thread: on success it counts the event and
//! finishes the ticket; on any failure (a send refused at once — queue full, record too large —
//! or an error reported later, after librdkafka's own retries) the pending result goes to
//! [`retry_results`], which produces it through the slow path ([`Reporter::result`]: backoff,
//! a cut-down record for one Kafka refuses for its size, given up only when the relay aborts).

use super::{Outcome, Reporter, TargetRef};
use crate::ack::Ticket;
use crate::envelope::Envelope;
use crate::tap::{Line, Stage};
use prometheus::IntCounter;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A result event on its way to Kafka, with what finishing or retrying it needs.
pub struct PendingResult {
    pub env: Arc<Envelope>,
    pub target: Arc<TargetRef>,
    pub outcome: Outcome,
    /// The tiers it went through (result events' `first_attempt_at` and `parked`).
    pub journey: super::Journey,
    pub ticket: Arc<Ticket>,
}

/// Delivery callbacks of the result producer.
pub struct SinkContext {
    retry: mpsc::UnboundedSender<Box<PendingResult>>,
    success: IntCounter,
    error: IntCounter,
    /// The brokers' outage state (the plain producer's errors go there too).
    pub(super) outage: Arc<crate::outage::Outage>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.outage.librdkafka(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.outage.error("result producer", &error, reason);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<PendingResult>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<PendingResult>) {
        match result {
            Ok(_) => {
                self.outage.up();
                if pending.outcome.is_delivered() {
                    self.success.inc();
                } else {
                    self.error.inc();
                }
                pending.ticket.finish_one();
            }
            Err((e, _)) => {
                tracing::debug!(error = %e, source_event_id = %pending.env.id, "producing a result event failed; retrying");
                self.outage
                    .retrying("producing a result event failed; retrying", e);
                self.retry_later(pending);
            }
        }
    }
}

impl SinkContext {
    /// `brokers`: whose outage state its errors go to.
    pub fn new(
        retry: mpsc::UnboundedSender<Box<PendingResult>>,
        metrics: &crate::metrics::Metrics,
        brokers: &str,
    ) -> Self {
        Self {
            outage: crate::outage::of(brokers),
            retry,
            success: metrics
                .results_produced
                .with_label_values(&["WebhookSuccess"]),
            error: metrics
                .results_produced
                .with_label_values(&["WebhookError"]),
        }
    }

    fn retry_later(&self, pending: Box<PendingResult>) {
        if self.retry.send(pending).is_err() {
            // Only after shutdown: the ticket stays unfinished, the offset uncommitted, and the
            // event is delivered again after the restart.
            tracing::debug!("result retry queue closed; result left unproduced");
        }
    }
}

/// The result producer.
pub type ResultProducer = ThreadedProducer<SinkContext>;

impl Reporter {
    /// Writes one delivery's result event into `buf` (cleared first) and hands it to the
    /// result producer; its ticket is finished once Kafka acknowledged it. `now` is the result
    /// event's timestamp (one per batch).
    pub fn send_result(&self, pending: PendingResult, buf: &mut Vec<u8>, now: &str) {
        self.tap.offer(|| tap_line(&pending));
        buf.clear();
        super::result::write_result_event(
            buf,
            &pending.env,
            &pending.target,
            &pending.outcome,
            &pending.journey,
            now,
        );
        // The key (the source event's id) goes after the payload in the same buffer, so the
        // record borrows both from it while the pending result moves into the record.
        let payload_len = buf.len();
        buf.extend_from_slice(pending.env.id.as_bytes());
        let (payload, key) = buf.split_at(payload_len);
        let record = BaseRecord::with_opaque_to(&self.results_topic, Box::new(pending))
            .key(key)
            .payload(payload);
        if let Err((e, record)) = self.results.send(record) {
            tracing::debug!(error = %e, "result event not queued; retrying on the slow path");
            self.results.context().retry_later(record.delivery_opaque);
        }
    }
}

/// The tap's line of a final outcome: `delivered` or `failed` at its target.
fn tap_line(p: &PendingResult) -> Line<'_> {
    let stage = if p.outcome.is_delivered() {
        Stage::Delivered
    } else {
        Stage::Failed
    };
    let mut line = Line::of(stage, &p.env)
        .target(&p.target.name)
        .outcome(p.outcome.result_kind());
    line.status = p.outcome.status_code();
    line.attempts = Some(p.outcome.attempts());
    line.error = p.outcome.error().map(ToString::to_string);
    line
}

/// Produces the result events the fast path could not, one task each, through
/// [`Reporter::result`]; ends when the relay aborts (results left then stay unproduced, their
/// offsets uncommitted).
pub async fn retry_results(
    reporter: Arc<Reporter>,
    mut rx: mpsc::UnboundedReceiver<Box<PendingResult>>,
) {
    loop {
        let p = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
            _ = reporter.abort.cancelled() => return,
        };
        let reporter = reporter.clone();
        tokio::spawn(async move {
            if reporter
                .result(&p.env, &p.target, &p.outcome, &p.journey)
                .await
            {
                p.ticket.finish_one();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::OffsetTracker;
    use crate::metrics::Metrics;
    use crate::outage::QuietContext;
    use crate::report::Outcome;
    use rdkafka::config::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::FutureProducer;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    /// The fallback: a result event the fast producer refuses (larger than its
    /// `message.max.bytes`: an event with huge user attributes) still gets produced, cut down,
    /// through the slow path, and only then is its ticket finished.
    #[tokio::test]
    async fn a_result_the_fast_path_refuses_is_produced_cut_down_and_finishes_its_ticket() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("results", 1, 1).expect("topic");
        let config = |max: &str| {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", cluster.bootstrap_servers())
                .set("message.max.bytes", max);
            c
        };
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let results: ResultProducer = config("20000")
            .create_with_context(SinkContext::new(tx, &metrics, "mock"))
            .expect("result producer");
        let slow: FutureProducer<QuietContext> = config("20000")
            .create_with_context(QuietContext::new("mock", "producer"))
            .expect("producer");
        let abort = CancellationToken::new();
        let reporter = Arc::new(Reporter::new(
            slow,
            results,
            "results".into(),
            "dlq".into(),
            metrics.clone(),
            abort.clone(),
            false,
        ));
        let retries = tokio::spawn(retry_results(reporter.clone(), rx));

        let tracker = OffsetTracker::new();
        let tp = ("in".to_string(), 0);
        tracker.assign(tp.clone());
        let generation = tracker.begin(&tp, 7).expect("assigned");
        let ticket = Ticket::new(
            tracker.clone(),
            tp.clone(),
            7,
            generation,
            1,
            crate::ack::Permits::default(),
        );
        let mut env = crate::envelope::sample();
        env.user
            .traits
            .insert("notes".into(), serde_json::Value::from("x".repeat(50_000)));
        let outcome = Outcome::Delivered {
            status: 200,
            attempts: 1,
            duration: Duration::from_millis(3),
        };
        let target = Arc::new(TargetRef {
            name: "crm".into(),
            guid: uuid::Uuid::nil(),
        });
        let mut buf = Vec::new();
        reporter.send_result(
            PendingResult {
                env: Arc::new(env),
                target,
                outcome,
                journey: Default::default(),
                ticket,
            },
            &mut buf,
            "2000-01-01T00:00:00.000Z",
        );
        assert!(
            buf.len() > 20_000,
            "the full result event is over the limit"
        );
        assert!(
            buf.ends_with(b"}54e635de-92f5-4419-a498-5f69323db34c"),
            "the payload, then the key"
        );

        for _ in 0..200 {
            if tracker.pending() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            tracker.take_commits(),
            vec![(tp, 8)],
            "the ticket finished: offset 7 is done"
        );
        let produced = metrics
            .results_produced
            .with_label_values(&["WebhookSuccess"])
            .get();
        assert_eq!(produced, 1, "counted once, by the slow path");
        abort.cancel();
        retries.await.expect("retry task ends on abort");
    }
}
