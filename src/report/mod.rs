//! Reporting: WebhookSuccess / WebhookError result events and dead letters, produced to Kafka.
//!
//! Result events follow the Komo site-event shape (`komo-site-events.txt`) plus the relay's
//! delivery fields. A piece of work only counts as final once Kafka acknowledged its result or
//! dead letter; production is retried until it succeeds or the relay aborts (then the source
//! offset stays uncommitted and the event is redelivered after a restart).

mod dead_letter;
mod outcome;
mod parked;
mod result;
mod sink;

pub use dead_letter::{DeadLetter, REDRIVEN_HEADER};
pub use outcome::{BodyLimit, Failure, Outcome, TransportKind};
pub use parked::{due_at, rfc3339, Journey, ParkedError, ParkedRecord};
pub use result::{result_event, write_result_event};
pub use sink::{retry_results, PendingResult, ResultProducer, SinkContext};

use crate::envelope::Envelope;
use crate::metrics::Metrics;
use crate::outage::QuietContext;
use crate::tap::Tap;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Payload prefix kept in a dead letter that Kafka refused for its size.
const CUT_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest key, header value or result-event string kept in a cut-down record.
const CUT_FIELD_BYTES: usize = 1024;

/// Kafka refused the record for its size (the producer's `message.max.bytes`, or the broker's
/// or topic's limit): sending the same record again cannot succeed.
fn too_large(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode;
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How producing one record ended.
#[derive(Debug)]
enum Produced {
    /// Kafka acknowledged the record.
    Acknowledged,
    /// The relay is aborting; the record was given up (its offset stays uncommitted).
    Aborted,
    /// Kafka refused the record for its size (the producer's `message.max.bytes` or the
    /// broker's limit), which no retry can change.
    TooLarge(rdkafka::error::KafkaError),
}

/// The target fields a result event names.
#[derive(Debug, Clone)]
pub struct TargetRef {
    pub name: String,
    pub guid: uuid::Uuid,
}

/// Producer of result events and dead letters.
pub struct Reporter {
    /// Dead letters, and result events the fast path could not produce.
    producer: FutureProducer<QuietContext>,
    /// Result events (see [`sink`]).
    results: ResultProducer,
    results_topic: String,
    dlq_topic: String,
    metrics: Arc<Metrics>,
    abort: CancellationToken,
    /// `log.include_payloads`: put (truncated) payloads into dead-letter log lines.
    log_payloads: bool,
    /// Where delivered, failed and dead-lettered events are shown live (`GET /tap`).
    tap: Arc<Tap>,
}

impl Reporter {
    pub fn new(
        producer: FutureProducer<QuietContext>,
        results: ResultProducer,
        results_topic: String,
        dlq_topic: String,
        metrics: Arc<Metrics>,
        abort: CancellationToken,
        log_payloads: bool,
    ) -> Self {
        Self {
            producer,
            results,
            results_topic,
            dlq_topic,
            metrics,
            abort,
            log_payloads,
            tap: Arc::new(Tap::off()),
        }
    }

    /// Shows delivered, failed and dead-lettered events on `tap` (off without this).
    pub fn with_tap(mut self, tap: Arc<Tap>) -> Self {
        self.tap = tap;
        self
    }

    /// Waits (up to `timeout` for each producer) until everything produced is acknowledged.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        for r in [self.producer.flush(timeout), self.results.flush(timeout)] {
            if let Err(e) = r {
                tracing::warn!(error = %e, "producer flush failed");
            }
        }
    }

    /// Produces until acknowledged, the relay aborts, or Kafka refuses the record for its size.
    async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Produced {
        let mut delay = Duration::from_millis(100);
        loop {
            let mut record = FutureRecord::to(topic).key(key).payload(payload);
            if let Some(h) = headers.clone() {
                record = record.headers(h);
            }
            let sent = tokio::select! {
                r = self.producer.send(record, Duration::from_secs(30)) => r,
                _ = self.abort.cancelled() => return Produced::Aborted,
            };
            match sent {
                Ok(_) => {
                    rdkafka::producer::Producer::context(&self.results)
                        .outage
                        .up();
                    return Produced::Acknowledged;
                }
                Err((e, _)) if too_large(&e) => return Produced::TooLarge(e),
                Err((e, _)) => {
                    tracing::debug!(topic, error = %e, "producing to Kafka failed; retrying");
                    // The two producers talk to the same brokers: one outage state.
                    rdkafka::producer::Producer::context(&self.results)
                        .outage
                        .retrying("producing to Kafka failed; retrying", &e);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        _ = self.abort.cancelled() => return Produced::Aborted,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Produces an already cut-down record until acknowledged. A size refusal now means the
    /// broker's limit is absurdly low (a few KiB): it is logged as an error and retried like any
    /// other failure until the operator raises it. `false` only when the relay is aborting.
    async fn produce_cut(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> bool {
        loop {
            match self.produce(topic, key, payload, headers.clone()).await {
                Produced::Acknowledged => return true,
                Produced::Aborted => return false,
                Produced::TooLarge(e) => {
                    tracing::error!(topic, error = %e, size = payload.len(), "Kafka refuses even a cut-down record; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {},
                        _ = self.abort.cancelled() => return false,
                    }
                }
            }
        }
    }

    /// Writes a parked delivery to `topic` (a retry tier or the failed topic) until Kafka
    /// acknowledges it; `false` only when the relay is aborting. Keyed by the event id, so a
    /// tier partition keeps one event's deliveries in order.
    pub async fn park(&self, topic: &str, record: &ParkedRecord) -> bool {
        let payload = record.payload();
        let headers = Some(record.headers());
        match self
            .produce(topic, &record.env.id, &payload, headers.clone())
            .await
        {
            Produced::Acknowledged => true,
            Produced::Aborted => false,
            Produced::TooLarge(e) => {
                // The tier topic takes less than the source did: nothing smaller can be sent
                // without losing the event, so it is retried (loudly) until the operator raises
                // the topic's `max.message.bytes`; the source offset stays uncommitted meanwhile.
                tracing::error!(topic, error = %e, size = payload.len(), source_event_id = %record.env.id, "a parked delivery is larger than the tier topic takes; retrying");
                self.produce_cut(topic, &record.env.id, &payload, headers)
                    .await
            }
        }
    }

    /// Produces the result event for one outcome; `true` once Kafka acknowledged it.
    pub async fn result(
        &self,
        env: &Envelope,
        target: &TargetRef,
        outcome: &Outcome,
        journey: &Journey,
    ) -> bool {
        let mut payload = Vec::with_capacity(1024);
        let kind = write_result_event(
            &mut payload,
            env,
            target,
            outcome,
            journey,
            &crate::envelope::now_rfc3339(),
        );
        let ok = match self
            .produce(&self.results_topic, &env.id, &payload, None)
            .await
        {
            Produced::Acknowledged => true,
            Produced::Aborted => false,
            Produced::TooLarge(e) => {
                // The triggering event's user attributes and ids ride along, so an event with
                // huge ones can make its result larger than Kafka takes. Retrying the same
                // record forever would stall the partition's commits: send it without user
                // attributes and with long values cut, marked `"truncated": true`.
                tracing::warn!(error = %e, size = payload.len(), "result event too large for Kafka; producing it cut down");
                let small = result::cut_envelope(env);
                let (_, mut value) = result_event(&small, target, outcome, journey);
                value["truncated"] = Value::Bool(true);
                let payload = serde_json::to_vec(&value).expect("JSON values serialize");
                self.produce_cut(&self.results_topic, &small.id, &payload, None)
                    .await
            }
        };
        if ok {
            self.metrics
                .results_produced
                .with_label_values(&[&kind])
                .inc();
        }
        ok
    }
}
