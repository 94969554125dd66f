//! Reporting: WebhookSuccess / WebhookError result events and dead letters, produced to Kafka.
//!
//! Result events follow the Komo site-event shape (`komo-site-events.txt`) plus the relay's
//! delivery fields. A piece of work only counts as final once Kafka acknowledged its result or
//! dead letter; production is retried until it succeeds or the relay aborts (then the source
//! offset stays uncommitted and the event is redelivered after a restart).

use crate::envelope::{now_rfc3339, Envelope, RELAY_NAMESPACE};
use crate::metrics::Metrics;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value};
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

/// The envelope as a result event may carry it when the full one is too large for Kafka: no
/// user attributes or properties, ids and names cut to [`CUT_FIELD_BYTES`].
fn cut_envelope(env: &Envelope) -> Envelope {
    let cut = |s: &Option<String>| {
        s.as_deref()
            .map(|s| cut_str(s, CUT_FIELD_BYTES).to_string())
    };
    Envelope {
        envelope_version: env.envelope_version,
        source: env.source,
        timestamp: env.timestamp.clone(),
        received_at: env.received_at.clone(),
        origin: env.origin.clone(),
        id: cut_str(&env.id, CUT_FIELD_BYTES).to_string(),
        event: cut_str(&env.event, CUT_FIELD_BYTES).to_string(),
        session_id: cut(&env.session_id),
        distinct_id: cut(&env.distinct_id),
        site: env.site.as_ref().map(|s| crate::envelope::Site {
            id: cut(&s.id),
            name: cut(&s.name),
        }),
        user: crate::envelope::User {
            profile_id: cut(&env.user.profile_id),
            session_id: cut(&env.user.session_id),
            email: cut(&env.user.email),
            traits: Map::new(),
        },
        properties: Map::new(),
        validation: crate::envelope::Validation {
            catalog: env.validation.catalog.clone(),
            status: env.validation.status,
            problems: Vec::new(),
        },
    }
}

/// Final outcome of one (event, target) delivery.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub success: bool,
    pub attempts: usize,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
}

/// The target fields a result event names.
#[derive(Debug, Clone)]
pub struct TargetRef {
    pub name: String,
    pub guid: uuid::Uuid,
}

/// Where a dead letter came from.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub source: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub reason: &'a str,
    pub error: String,
    pub problems: Vec<String>,
    pub batch_index: Option<usize>,
    /// The source event's id, when the message parsed far enough to have one.
    pub source_event_id: Option<&'a str>,
}

/// Producer of result events and dead letters.
pub struct Reporter {
    producer: FutureProducer,
    results_topic: String,
    dlq_topic: String,
    metrics: Arc<Metrics>,
    abort: CancellationToken,
    /// `log.include_payloads`: put (truncated) payloads into dead-letter log lines.
    log_payloads: bool,
}

/// Builds the result event JSON for one outcome (pure; unit-tested).
pub fn result_event(env: &Envelope, target: &TargetRef, outcome: &Outcome) -> (String, Value) {
    let mut buf = Vec::with_capacity(1024);
    let kind = write_result_event(&mut buf, env, target, outcome);
    (
        kind.to_string(),
        serde_json::from_slice(&buf).expect("valid JSON"),
    )
}

/// Keys of a result event that the relay sets; user attributes with these names are left out.
const RESULT_KEYS: [&str; 17] = [
    "id",
    "event",
    "timestamp",
    "site_id",
    "site_name",
    "user_session_id",
    "user_profile_id",
    "integration_id",
    "webhook_trigger",
    "target",
    "source",
    "source_event_id",
    "attempts",
    "status_code",
    "error",
    "duration_ms",
    "email",
];

use crate::json::{write_opt_str as put_opt, write_str as put_str, write_value};

/// Writes the result event JSON for one outcome straight into `buf`; returns its kind.
/// User attributes come first as separate keys; the relay's keys win on a name clash.
pub fn write_result_event(
    buf: &mut Vec<u8>,
    env: &Envelope,
    target: &TargetRef,
    outcome: &Outcome,
) -> &'static str {
    let kind = if outcome.success {
        "WebhookSuccess"
    } else {
        "WebhookError"
    };
    let id = uuid::Uuid::new_v5(
        &RELAY_NAMESPACE,
        format!("{}|{}|{}", env.id, target.guid, kind).as_bytes(),
    );
    buf.push(b'{');
    for (k, v) in &env.user.traits {
        if RESULT_KEYS.contains(&k.as_str()) {
            continue;
        }
        put_str(buf, k);
        buf.push(b':');
        write_value(buf, v);
        buf.push(b',');
    }
    let site = env.site.as_ref();
    buf.extend_from_slice(b"\"id\":");
    put_str(buf, &id.to_string());
    buf.extend_from_slice(b",\"event\":");
    put_str(buf, kind);
    buf.extend_from_slice(b",\"timestamp\":");
    put_str(buf, &now_rfc3339());
    buf.extend_from_slice(b",\"site_id\":");
    put_opt(buf, site.and_then(|s| s.id.as_deref()));
    buf.extend_from_slice(b",\"site_name\":");
    put_opt(buf, site.and_then(|s| s.name.as_deref()));
    buf.extend_from_slice(b",\"user_session_id\":");
    put_opt(buf, env.session_id.as_deref());
    buf.extend_from_slice(b",\"user_profile_id\":");
    put_opt(buf, env.user.profile_id.as_deref());
    buf.extend_from_slice(b",\"integration_id\":");
    put_str(buf, &target.guid.to_string());
    buf.extend_from_slice(b",\"webhook_trigger\":");
    put_str(buf, &env.event);
    buf.extend_from_slice(b",\"target\":");
    put_str(buf, &target.name);
    buf.extend_from_slice(b",\"source\":");
    put_str(buf, env.source.as_str());
    buf.extend_from_slice(b",\"source_event_id\":");
    put_str(buf, &env.id);
    buf.extend_from_slice(format!(",\"attempts\":{}", outcome.attempts).as_bytes());
    match outcome.status_code {
        Some(c) => buf.extend_from_slice(format!(",\"status_code\":{c}").as_bytes()),
        None => buf.extend_from_slice(b",\"status_code\":null"),
    }
    buf.extend_from_slice(b",\"error\":");
    put_opt(buf, outcome.error.as_deref());
    buf.extend_from_slice(format!(",\"duration_ms\":{}", outcome.duration.as_millis()).as_bytes());
    let email = env
        .user
        .email
        .as_deref()
        .or(match env.user.traits.get("email") {
            Some(Value::String(e)) => Some(e.as_str()),
            _ => None,
        });
    if let Some(e) = email {
        buf.extend_from_slice(b",\"email\":");
        put_str(buf, e);
    }
    buf.push(b'}');
    kind
}

impl Reporter {
    pub fn new(
        producer: FutureProducer,
        results_topic: String,
        dlq_topic: String,
        metrics: Arc<Metrics>,
        abort: CancellationToken,
        log_payloads: bool,
    ) -> Self {
        Self {
            producer,
            results_topic,
            dlq_topic,
            metrics,
            abort,
            log_payloads,
        }
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Produces until acknowledged: `Ok(true)` once acknowledged, `Ok(false)` only when the relay
    /// is aborting, `Err` when Kafka refuses the record for its size (the producer's
    /// `message.max.bytes` or the broker's limit), which no retry can change.
    async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<bool, String> {
        let mut delay = Duration::from_millis(100);
        loop {
            let mut record = FutureRecord::to(topic).key(key).payload(payload);
            if let Some(h) = headers.clone() {
                record = record.headers(h);
            }
            let sent = tokio::select! {
                r = self.producer.send(record, Duration::from_secs(30)) => r,
                _ = self.abort.cancelled() => return Ok(false),
            };
            match sent {
                Ok(_) => return Ok(true),
                Err((e, _)) if too_large(&e) => return Err(e.to_string()),
                Err((e, _)) => {
                    tracing::warn!(topic, error = %e, "producing to Kafka failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        _ = self.abort.cancelled() => return Ok(false),
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
                Ok(ok) => return ok,
                Err(e) => {
                    tracing::error!(topic, error = %e, size = payload.len(), "Kafka refuses even a cut-down record; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {},
                        _ = self.abort.cancelled() => return false,
                    }
                }
            }
        }
    }

    /// Produces the result event for one outcome; `true` once Kafka acknowledged it.
    pub async fn result(&self, env: &Envelope, target: &TargetRef, outcome: &Outcome) -> bool {
        let mut payload = Vec::with_capacity(1024);
        let kind = write_result_event(&mut payload, env, target, outcome);
        let ok = match self
            .produce(&self.results_topic, &env.id, &payload, None)
            .await
        {
            Ok(ok) => ok,
            Err(e) => {
                // The triggering event's user attributes and ids ride along, so an event with
                // huge ones can make its result larger than Kafka takes. Retrying the same
                // record forever would stall the partition's commits: send it without user
                // attributes and with long values cut, marked `"truncated": true`.
                tracing::warn!(error = %e, size = payload.len(), "result event too large for Kafka; producing it cut down");
                let small = cut_envelope(env);
                let (_, mut value) = result_event(&small, target, outcome);
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

    /// Writes a dead letter: the original bytes, headers naming reason and origin.
    pub async fn dead_letter(&self, raw: &[u8], key: Option<&[u8]>, dl: &DeadLetter<'_>) -> bool {
        let partition = dl.partition.to_string();
        let offset = dl.offset.to_string();
        let problems = serde_json::to_string(&dl.problems).unwrap_or_default();
        // `cut`: the original size when the payload is cut down (see below).
        let headers = |error: &str, problems: &str, cut: Option<usize>| {
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "reason",
                    value: Some(dl.reason),
                })
                .insert(Header {
                    key: "error",
                    value: Some(error),
                })
                .insert(Header {
                    key: "problems",
                    value: Some(problems),
                })
                .insert(Header {
                    key: "source",
                    value: Some(dl.source),
                })
                .insert(Header {
                    key: "source_topic",
                    value: Some(dl.topic),
                })
                .insert(Header {
                    key: "source_partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "source_offset",
                    value: Some(&offset),
                });
            if let Some(i) = dl.batch_index {
                let i = i.to_string();
                headers = headers.insert(Header {
                    key: "batch_index",
                    value: Some(&i),
                });
            }
            if let Some(id) = dl.source_event_id {
                headers = headers.insert(Header {
                    key: "source_event_id",
                    value: Some(cut_str(id, CUT_FIELD_BYTES)),
                });
            }
            if let Some(size) = cut {
                let size = size.to_string();
                headers = headers
                    .insert(Header {
                        key: "truncated",
                        value: Some("true"),
                    })
                    .insert(Header {
                        key: "original_size",
                        value: Some(&size),
                    });
            }
            headers
        };
        let key = key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_else(|| format!("{}/{}/{}", dl.topic, dl.partition, dl.offset));
        let ok = match self
            .produce(
                &self.dlq_topic,
                &key,
                raw,
                Some(headers(&dl.error, &problems, None)),
            )
            .await
        {
            Ok(ok) => ok,
            Err(e) => {
                // Larger than Kafka takes (e.g. a `too_large` message, or error headers quoting
                // huge values). Retrying the same record forever would stall the partition's
                // commits: keep a prefix of the payload and of the headers, mark it with
                // `truncated` / `original_size`; source_topic/partition/offset still point at
                // the original message.
                tracing::warn!(error = %e, size = raw.len(), reason = dl.reason, "dead letter too large for Kafka; producing it cut down");
                self.produce_cut(
                    &self.dlq_topic,
                    cut_str(&key, CUT_FIELD_BYTES),
                    &raw[..raw.len().min(CUT_PAYLOAD_BYTES)],
                    Some(headers(
                        cut_str(&dl.error, CUT_FIELD_BYTES),
                        cut_str(&problems, CUT_FIELD_BYTES),
                        Some(raw.len()),
                    )),
                )
                .await
            }
        };
        if ok {
            self.metrics
                .dead_letters
                .with_label_values(&[dl.source, dl.reason])
                .inc();
            // Payloads carry personal data: only logged when the operator opted in.
            let payload = self
                .log_payloads
                .then(|| String::from_utf8_lossy(&raw[..raw.len().min(2048)]).into_owned());
            tracing::warn!(
                payload = payload.as_deref(),
                reason = dl.reason,
                source = dl.source,
                topic = dl.topic,
                partition = dl.partition,
                offset = dl.offset,
                batch_index = dl.batch_index,
                source_event_id = dl.source_event_id,
                // Problems may quote (attacker-sized) values: bound the log line.
                error = %cut_str(&dl.error, CUT_FIELD_BYTES),
                "message dead-lettered"
            );
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_event_shape() {
        let env = crate::envelope::sample();
        let target = TargetRef {
            name: "crm".into(),
            guid: uuid::Uuid::parse_str("e772b5f1-47f4-4c43-ac01-8ef81990fa7d").unwrap(),
        };
        let outcome = Outcome {
            success: false,
            attempts: 3,
            status_code: Some(400),
            error: Some("HTTP 400".into()),
            duration: Duration::from_millis(12),
        };
        let (kind, v) = result_event(&env, &target, &outcome);
        assert_eq!(kind, "WebhookError");
        assert_eq!(v["event"], "WebhookError");
        assert_eq!(v["integration_id"], "e772b5f1-47f4-4c43-ac01-8ef81990fa7d");
        assert_eq!(v["webhook_trigger"], "CardViewed");
        assert_eq!(v["site_id"], "2d5776b8-158a-4216-aaa1-edbc249e005b");
        assert_eq!(v["tenant"], "acemate");
        assert_eq!(v["attempts"], 3);
        assert_eq!(v["status_code"], 400);
        assert_eq!(v["source_event_id"], env.id.as_str());
        let (_, again) = result_event(&env, &target, &outcome);
        assert_eq!(v["id"], again["id"], "replays yield the same id");
        let ok = Outcome {
            success: true,
            ..outcome
        };
        assert_ne!(result_event(&env, &target, &ok).1["id"], v["id"]);
    }

    #[test]
    fn cut_down_result_events_are_small_and_keep_their_identity() {
        assert_eq!(cut_str("héllo", 2), "h", "cut at a character boundary");
        assert_eq!(cut_str("abc", 10), "abc");
        let mut env = crate::envelope::sample();
        let huge = "x".repeat(2 * 1024 * 1024);
        env.user
            .traits
            .insert("favourite_team".into(), Value::from(huge.clone()));
        env.user.email = Some(huge.clone());
        env.event = huge.clone();
        let target = TargetRef {
            name: "crm".into(),
            guid: uuid::Uuid::nil(),
        };
        let outcome = Outcome {
            success: true,
            attempts: 1,
            status_code: Some(200),
            error: None,
            duration: Duration::from_millis(1),
        };
        let small = cut_envelope(&env);
        let (_, v) = result_event(&small, &target, &outcome);
        assert!(serde_json::to_vec(&v).unwrap().len() < 16 * 1024);
        assert!(v.get("favourite_team").is_none(), "user attributes dropped");
        assert_eq!(
            v["source_event_id"],
            env.id.as_str(),
            "short ids kept whole"
        );
        assert_eq!(
            v["id"],
            result_event(&env, &target, &outcome).1["id"],
            "same result id as the full event"
        );
    }
}
