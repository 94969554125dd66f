//! Parked deliveries: the record a delivery becomes on a retry tier or on the failed topic, and
//! back. One format for both, so `redrive --from failed` re-enters a failed record into a tier
//! unchanged but for its headers.
//!
//! The payload is what the target is sent from: the envelope as JSON, or the original bytes for
//! a `body = "original"` target (then the envelope rides in the `envelope` header, for the
//! result event). Headers (all UTF-8 text) carry the journey: `target`, `target_id`,
//! `attempts`, `parked`, `first_attempt_at`, `due_at`, `tier`, `last_error`, the source's
//! `source_topic` / `source_partition` / `source_offset` / `source_event_id`, `body`, and on
//! the failed topic `reason`; `redrive` marks a record re-entered by `event-relay redrive`;
//! `traceparent` (with `[telemetry]` on) names the span of the message the delivery came from,
//! so the attempts after the tier join its trace.

use crate::envelope::Envelope;
use crate::telemetry::TraceParent;
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use std::time::SystemTime;

/// Where a delivery is on its way across retry tiers (what result events report besides the
/// outcome).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Journey {
    /// Attempts made before the current phase (in memory and in earlier tiers).
    pub attempts: usize,
    /// Tiers the delivery went through so far.
    pub parked: u32,
    /// When the first attempt went out; `None` while none has.
    pub first_attempt_at: Option<SystemTime>,
    /// The tier (its label, e.g. `1m`) the delivery was consumed from; `None` when it came from
    /// the source.
    pub tier: Option<String>,
    /// Re-entered by `event-relay redrive`.
    pub redrive: bool,
    /// The span of the message the delivery came from (W3C trace context), when `[telemetry]`
    /// made one: its attempts' spans are that span's children, in memory and after each tier.
    pub trace: Option<TraceParent>,
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> Option<SystemTime> {
    DateTime::parse_from_rfc3339(s).ok().map(SystemTime::from)
}

/// When a parked record is due (its `due_at` header), read without the rest of the record:
/// what the tier consumer needs of a record that is not handed on yet. `None` when the header
/// is missing or not an RFC 3339 time ([`ParkedRecord::parse`] names the problem).
pub fn due_at<H: Headers>(headers: Option<&H>) -> Option<SystemTime> {
    Found::of(headers).time("due_at").ok().flatten()
}

/// A parked delivery as written to (and read from) a tier or the failed topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedRecord {
    pub env: Envelope,
    /// The original bytes, for `body = "original"` targets; empty otherwise.
    pub raw: Vec<u8>,
    pub target: String,
    pub target_id: uuid::Uuid,
    pub journey: Journey,
    /// Not to be attempted before this.
    pub due_at: SystemTime,
    /// The last attempt's failure (or why no attempt was made).
    pub last_error: String,
    /// On the failed topic: why the delivery ended there (`exhausted` or `final`).
    pub reason: Option<String>,
}

/// A record that is not a parked delivery (written by something else, or damaged).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParkedError {
    #[error("header {0:?} is missing")]
    Missing(&'static str),
    #[error("header {name:?}: {value:?} is not {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("the envelope does not parse: {0}")]
    Envelope(String),
}

/// Header values of one record, by name (the last value wins).
struct Found<'a>(Vec<(&'a str, &'a [u8])>);

impl<'a> Found<'a> {
    fn of<H: Headers>(headers: Option<&'a H>) -> Self {
        Found(
            headers
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key, h.value.unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    fn get(&self, name: &'static str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn need(&self, name: &'static str) -> Result<&'a str, ParkedError> {
        self.get(name).ok_or(ParkedError::Missing(name))
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<T, ParkedError> {
        let v = self.need(name)?;
        v.parse().map_err(|_| ParkedError::Invalid {
            name,
            value: v.to_string(),
            expected,
        })
    }

    fn time(&self, name: &'static str) -> Result<Option<SystemTime>, ParkedError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => parse_time(v).map(Some).ok_or(ParkedError::Invalid {
                name,
                value: v.to_string(),
                expected: "an RFC 3339 time",
            }),
        }
    }
}

impl ParkedRecord {
    /// The record's headers.
    pub fn headers(&self) -> OwnedHeaders {
        let j = &self.journey;
        let o = &self.env.origin;
        let mut h: Vec<(&str, String)> = vec![
            ("target", self.target.clone()),
            ("target_id", self.target_id.to_string()),
            ("attempts", j.attempts.to_string()),
            ("parked", j.parked.to_string()),
            (
                "first_attempt_at",
                j.first_attempt_at.map(rfc3339).unwrap_or_default(),
            ),
            ("due_at", rfc3339(self.due_at)),
            ("last_error", self.last_error.clone()),
            ("source_topic", o.topic.clone()),
            ("source_partition", o.partition.to_string()),
            ("source_offset", o.offset.to_string()),
            ("source_event_id", self.env.id.clone()),
        ];
        if let Some(t) = &j.tier {
            h.push(("tier", t.clone()));
        }
        if let Some(r) = &self.reason {
            h.push(("reason", r.clone()));
        }
        if j.redrive {
            h.push(("redrive", "true".into()));
        }
        if let Some(t) = &j.trace {
            h.push((crate::telemetry::TRACEPARENT, t.header()));
        }
        if self.raw.is_empty() {
            h.push(("body", "envelope".into()));
        } else {
            h.push(("body", "original".into()));
            h.push((
                "envelope",
                serde_json::to_string(&self.env).expect("envelopes serialize"),
            ));
        }
        h.into_iter()
            .fold(OwnedHeaders::new(), |acc, (key, value)| {
                acc.insert(Header {
                    key,
                    value: Some(value.as_str()),
                })
            })
    }

    /// The record's payload: the envelope as JSON, or the original bytes.
    pub fn payload(&self) -> Vec<u8> {
        if self.raw.is_empty() {
            serde_json::to_vec(&self.env).expect("envelopes serialize")
        } else {
            self.raw.clone()
        }
    }

    /// Reads a record back from its headers and payload.
    pub fn parse<H: Headers>(headers: Option<&H>, payload: &[u8]) -> Result<Self, ParkedError> {
        let found = Found::of(headers);
        let original = match found.get("body") {
            Some("original") => true,
            Some("envelope") | None => false,
            Some(other) => {
                return Err(ParkedError::Invalid {
                    name: "body",
                    value: other.to_string(),
                    expected: "envelope or original",
                })
            }
        };
        let env_json = if original {
            found.need("envelope")?.as_bytes()
        } else {
            payload
        };
        let env: Envelope =
            serde_json::from_slice(env_json).map_err(|e| ParkedError::Envelope(e.to_string()))?;
        let due_at = found
            .time("due_at")?
            .ok_or(ParkedError::Missing("due_at"))?;
        Ok(Self {
            raw: if original {
                payload.to_vec()
            } else {
                Vec::new()
            },
            target: found.need("target")?.to_string(),
            target_id: found.parse("target_id", "a GUID")?,
            journey: Journey {
                attempts: found.parse("attempts", "a number")?,
                parked: found.parse("parked", "a number")?,
                first_attempt_at: found.time("first_attempt_at")?,
                tier: found.get("tier").map(str::to_string),
                redrive: found.get("redrive") == Some("true"),
                trace: found
                    .get(crate::telemetry::TRACEPARENT)
                    .and_then(TraceParent::parse),
            },
            due_at,
            last_error: found.get("last_error").unwrap_or_default().to_string(),
            reason: found.get("reason").map(str::to_string),
            env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(raw: Vec<u8>) -> ParkedRecord {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        ParkedRecord {
            env: crate::envelope::sample(),
            raw,
            target: "crm".into(),
            target_id: uuid::Uuid::new_v4(),
            journey: Journey {
                attempts: 4,
                parked: 2,
                first_attempt_at: Some(t0),
                tier: Some("5m".into()),
                redrive: true,
                trace: TraceParent::parse(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            },
            due_at: t0 + Duration::from_secs(300),
            last_error: "HTTP 503: down".into(),
            reason: None,
        }
    }

    #[test]
    fn round_trips_both_bodies() {
        for raw in [Vec::new(), b"{\"original\":true}".to_vec()] {
            let r = record(raw);
            let back = ParkedRecord::parse(Some(&r.headers()), &r.payload()).unwrap();
            assert_eq!(back, r);
            assert_eq!(due_at(Some(&r.headers())), Some(r.due_at));
        }
    }

    #[test]
    fn a_foreign_record_is_named_for_what_it_lacks() {
        let none: Option<&OwnedHeaders> = None;
        let env = serde_json::to_vec(&crate::envelope::sample()).unwrap();
        assert_eq!(
            ParkedRecord::parse(none, &env),
            Err(ParkedError::Missing("due_at"))
        );
        let r = record(Vec::new());
        let bad = r.headers().insert(Header {
            key: "attempts",
            value: Some("many"),
        });
        assert!(matches!(
            ParkedRecord::parse(Some(&bad), &r.payload()),
            Err(ParkedError::Invalid {
                name: "attempts",
                ..
            })
        ));
    }
}
