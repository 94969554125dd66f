//! One record of the result, dead-letter, tier or failed topic as a step of an event's journey:
//! when, what, and the fields an operator reads (a target's outcome with attempts, status and
//! error; a tier with its due time and last error; a dead letter's reason and problems).

use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::{json, Map, Value};

/// Which topic a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// `results.topic`: WebhookSuccess / WebhookError.
    Result,
    /// `dead_letter.topic`.
    DeadLettered,
    /// A retry tier: a delivery parked (or re-entered by `redrive`).
    Parked,
    /// `retry_tiers.failed_topic`.
    Failed,
}

/// One step of an event's journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The record's time (ms since the epoch).
    pub at_ms: i64,
    /// `WebhookSuccess`, `WebhookError`, `dead_lettered`, `parked`, `redriven`, `failed`.
    pub step: String,
    /// The event it is about.
    pub source_event_id: String,
    /// A result event's own id.
    pub result_id: Option<String>,
    /// The topic it was read from.
    pub topic: String,
    /// What it says, in the order printed.
    pub fields: Vec<(&'static str, Value)>,
}

fn header<'a>(m: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The step `m` (from `topic`, holding `kind` records) is, if it names an event.
pub fn of(kind: StepKind, topic: &str, m: &OwnedMessage) -> Option<Step> {
    let at_ms = m.timestamp().to_millis().unwrap_or(0);
    let text = |key: &str| header(m, key).map(|v| Value::from(v.to_string()));
    let (step, source_event_id, result_id, fields) = match kind {
        StepKind::Result => {
            let v: Value = serde_json::from_slice(m.payload()?).ok()?;
            let fields = [
                "target",
                "attempts",
                "status_code",
                "error",
                "parked",
                "duration_ms",
            ]
            .into_iter()
            .map(|k| (k, v.get(k).cloned().unwrap_or(Value::Null)))
            .collect();
            (
                v.get("event")?.as_str()?.to_string(),
                v.get("source_event_id")?.as_str()?.to_string(),
                v.get("id").and_then(Value::as_str).map(str::to_string),
                fields,
            )
        }
        StepKind::DeadLettered => {
            let problems = header(m, "problems")
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(Value::Array(Vec::new()));
            let fields = vec![
                ("reason", text("reason").unwrap_or(Value::Null)),
                ("error", text("error").unwrap_or(Value::Null)),
                ("problems", problems),
                ("source_topic", text("source_topic").unwrap_or(Value::Null)),
                (
                    "source_offset",
                    text("source_offset").unwrap_or(Value::Null),
                ),
            ];
            let id = header(m, "source_event_id")?.to_string();
            ("dead_lettered".to_string(), id, None, fields)
        }
        StepKind::Parked | StepKind::Failed => {
            let keys: &[&'static str] = match kind {
                StepKind::Failed => &["target", "reason", "attempts", "parked", "last_error"],
                _ => &["target", "tier", "due_at", "attempts", "last_error"],
            };
            let fields = keys
                .iter()
                .map(|k| (*k, text(k).unwrap_or(Value::Null)))
                .collect();
            let step = match (kind, header(m, "redrive")) {
                (StepKind::Failed, _) => "failed",
                (_, Some("true")) => "redriven",
                _ => "parked",
            };
            let id = header(m, "source_event_id")?.to_string();
            (step.to_string(), id, None, fields)
        }
    };
    Some(Step {
        at_ms,
        step,
        source_event_id,
        result_id,
        topic: topic.to_string(),
        fields,
    })
}

impl Step {
    /// Whether the step is about `id` (the event's, or a result event's own id).
    pub fn names(&self, id: &str) -> bool {
        self.source_event_id == id || self.result_id.as_deref() == Some(id)
    }

    /// RFC 3339 with milliseconds, UTC.
    pub fn time(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    }

    /// One line for a person: time, step, then `key=value` for every field that has one.
    pub fn line(&self) -> String {
        let mut out = format!("{}  {:<14}", self.time(), self.step);
        for (k, v) in &self.fields {
            match v {
                Value::Null => {}
                Value::String(s) if s.is_empty() => {}
                Value::String(s) if !s.contains(char::is_whitespace) => {
                    out.push_str(&format!("  {k}={s}"))
                }
                other => out.push_str(&format!("  {k}={other}")),
            }
        }
        out
    }

    /// One JSON object: `at`, `step`, `source_event_id`, `topic`, then the fields.
    pub fn json(&self) -> Value {
        let mut o = Map::new();
        o.insert("at".into(), json!(self.time()));
        o.insert("step".into(), json!(self.step));
        o.insert("source_event_id".into(), json!(self.source_event_id));
        if let Some(id) = &self.result_id {
            o.insert("result_id".into(), json!(id));
        }
        o.insert("topic".into(), json!(self.topic));
        for (k, v) in &self.fields {
            o.insert((*k).into(), v.clone());
        }
        Value::Object(o)
    }
}
