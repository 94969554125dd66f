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
    let kind = if outcome.success {
        "WebhookSuccess"
    } else {
        "WebhookError"
    };
    let id = uuid::Uuid::new_v5(
        &RELAY_NAMESPACE,
        format!("{}|{}|{}", env.id, target.guid, kind).as_bytes(),
    );
    let mut m = Map::new();
    // User attributes first, as separate keys; the fixed keys below win on a name clash.
    for (k, v) in &env.user.traits {
        m.insert(k.clone(), v.clone());
    }
    let site = env.site.as_ref();
    let fields: [(&str, Value); 17] = [
        ("id", Value::from(id.to_string())),
        ("event", Value::from(kind)),
        ("timestamp", Value::from(now_rfc3339())),
        (
            "site_id",
            site.and_then(|s| s.id.clone())
                .map_or(Value::Null, Value::from),
        ),
        (
            "site_name",
            site.and_then(|s| s.name.clone())
                .map_or(Value::Null, Value::from),
        ),
        (
            "user_session_id",
            env.session_id.clone().map_or(Value::Null, Value::from),
        ),
        (
            "user_profile_id",
            env.user.profile_id.clone().map_or(Value::Null, Value::from),
        ),
        ("integration_id", Value::from(target.guid.to_string())),
        ("webhook_trigger", Value::from(env.event.clone())),
        ("target", Value::from(target.name.clone())),
        ("source", Value::from(env.source.as_str())),
        ("source_event_id", Value::from(env.id.clone())),
        ("attempts", Value::from(outcome.attempts)),
        (
            "status_code",
            outcome.status_code.map_or(Value::Null, Value::from),
        ),
        (
            "error",
            outcome.error.clone().map_or(Value::Null, Value::from),
        ),
        (
            "duration_ms",
            Value::from(outcome.duration.as_millis() as u64),
        ),
        (
            "email",
            env.user.email.clone().map_or(Value::Null, Value::from),
        ),
    ];
    for (k, v) in fields {
        if k == "email" && v.is_null() {
            continue;
        }
        m.insert(k.to_string(), v);
    }
    (kind.to_string(), Value::Object(m))
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

    /// Produces until acknowledged; `false` only when the relay is aborting.
    async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> bool {
        let mut delay = Duration::from_millis(100);
        loop {
            let mut record = FutureRecord::to(topic).key(key).payload(payload);
            if let Some(h) = headers.clone() {
                record = record.headers(h);
            }
            let sent = tokio::select! {
                r = self.producer.send(record, Duration::from_secs(30)) => r,
                _ = self.abort.cancelled() => return false,
            };
            match sent {
                Ok(_) => return true,
                Err((e, _)) => {
                    tracing::warn!(topic, error = %e, "producing to Kafka failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        _ = self.abort.cancelled() => return false,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Produces the result event for one outcome; `true` once Kafka acknowledged it.
    pub async fn result(&self, env: &Envelope, target: &TargetRef, outcome: &Outcome) -> bool {
        let (kind, value) = result_event(env, target, outcome);
        let payload = serde_json::to_vec(&value).expect("JSON values serialize");
        let ok = self
            .produce(&self.results_topic, &env.id, &payload, None)
            .await;
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
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(dl.reason),
            })
            .insert(Header {
                key: "error",
                value: Some(&dl.error),
            })
            .insert(Header {
                key: "problems",
                value: Some(&problems),
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
        let key = key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_else(|| format!("{}/{}/{}", dl.topic, dl.partition, dl.offset));
        let ok = self
            .produce(&self.dlq_topic, &key, raw, Some(headers))
            .await;
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
                error = %dl.error,
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
}
