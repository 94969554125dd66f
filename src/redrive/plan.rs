//! What `redrive` does with one record it read: the record to produce, or why it is skipped.
//! Pure: no I/O.

use super::{Filter, FromTopic, RedriveError, Request};
use crate::config::Config;
use crate::report::{Journey, ParkedRecord, REDRIVEN_HEADER};
use crate::route::EventGlobs;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a record is not redriven (the `skipped` lines of the report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// A filter (`--target`, `--event`, `--since`, `--until`) does not match it.
    NotMatching,
    /// On the failed topic, but not in the parked-record format.
    NotParked,
    /// Its target is no longer in the config.
    UnknownTarget,
    /// Its target has no retry tiers (`targets[].retry.tiers` names none of `retry_tiers.delays`).
    NoTiers,
    /// On the dead-letter topic, but without a `source_topic` header.
    NotDeadLetter,
    /// Cut down to fit Kafka (`truncated` header): the original bytes are not all there.
    Truncated,
    /// Its `source_topic` is not a configured source.
    NotASource,
    /// Dead-lettered again after a redrive (`redriven: true`): not redriven in a loop.
    AlreadyRedriven,
}

impl Skip {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotMatching => "not_matching",
            Skip::NotParked => "not_a_parked_record",
            Skip::UnknownTarget => "unknown_target",
            Skip::NoTiers => "no_tiers",
            Skip::NotDeadLetter => "not_a_dead_letter",
            Skip::Truncated => "truncated",
            Skip::NotASource => "not_a_source",
            Skip::AlreadyRedriven => "already_redriven",
        }
    }
}

/// A record to produce.
#[derive(Debug)]
pub struct Outgoing {
    /// What the report counts it under: the target (failed) or the source topic (dead-letter).
    pub group: String,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
}

/// A checked request against one config.
pub struct Planner<'a> {
    config: &'a Config,
    from: FromTopic,
    filter: &'a Filter,
    event: Option<EventGlobs>,
}

impl<'a> Planner<'a> {
    /// Checks `request` against `config` (a wrong flag is an error before anything is read).
    pub fn new(config: &'a Config, request: &'a Request) -> Result<Self, RedriveError> {
        let filter = &request.filter;
        match request.from {
            FromTopic::Failed if config.tiering().is_none() => {
                return Err(RedriveError::NoRetryTiers)
            }
            FromTopic::DeadLetter if filter.target.is_some() => {
                return Err(RedriveError::TargetWithDeadLetter)
            }
            _ => {}
        }
        if let Some(name) = &filter.target {
            if !config.targets.iter().any(|t| &t.name == name) {
                return Err(RedriveError::UnknownTarget(name.clone()));
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since >= until {
                return Err(RedriveError::EmptyWindow);
            }
        }
        let event =
            match &filter.event {
                None => None,
                Some(glob) => Some(EventGlobs::new(std::slice::from_ref(glob)).map_err(
                    |source| RedriveError::Glob {
                        glob: glob.clone(),
                        source,
                    },
                )?),
            };
        Ok(Self {
            config,
            from: request.from,
            filter,
            event,
        })
    }

    /// What to do with `msg`; `now` is the new due time of a redriven delivery.
    pub fn plan(&self, msg: &OwnedMessage, now: SystemTime) -> Result<Outgoing, Skip> {
        match self.from {
            FromTopic::Failed => self.failed(msg, now),
            FromTopic::DeadLetter => self.dead_letter(msg),
        }
    }

    /// Whether the record was written inside `--since` .. `--until` (a record without a
    /// timestamp is outside any set bound).
    fn in_window(&self, msg: &OwnedMessage) -> bool {
        if self.filter.since.is_none() && self.filter.until.is_none() {
            return true;
        }
        let Some(ms) = msg
            .timestamp()
            .to_millis()
            .and_then(|ms| u64::try_from(ms).ok())
        else {
            return false;
        };
        let at = UNIX_EPOCH + std::time::Duration::from_millis(ms);
        self.filter.since.is_none_or(|s| at >= s) && self.filter.until.is_none_or(|u| at < u)
    }

    fn event_matches(&self, event: Option<&str>) -> bool {
        match &self.event {
            None => true,
            Some(globs) => event.is_some_and(|e| globs.matches(e)),
        }
    }

    /// A failed delivery back into its target's first tier, attempt budget reset; the payload
    /// (the envelope, or the original bytes) as it was.
    fn failed(&self, msg: &OwnedMessage, now: SystemTime) -> Result<Outgoing, Skip> {
        let payload = msg.payload().unwrap_or_default();
        let mut record = ParkedRecord::parse(msg.headers(), payload).map_err(|e| {
            tracing::debug!(offset = msg.offset(), partition = msg.partition(), error = %e, "not a parked record");
            Skip::NotParked
        })?;
        let wanted = self
            .filter
            .target
            .as_ref()
            .is_none_or(|t| *t == record.target);
        if !wanted || !self.event_matches(Some(&record.env.event)) || !self.in_window(msg) {
            return Err(Skip::NotMatching);
        }
        let target = self
            .config
            .targets
            .iter()
            .find(|t| t.name == record.target)
            .ok_or(Skip::UnknownTarget)?;
        let first = self
            .config
            .target_tiers(target)
            .into_iter()
            .next()
            .ok_or(Skip::NoTiers)?;
        record.journey = Journey {
            attempts: 0,
            parked: 0,
            first_attempt_at: None,
            tier: Some(first.label),
            redrive: true,
            // The redriven delivery's attempts join its message's trace.
            trace: record.journey.trace,
        };
        record.due_at = now;
        record.reason = None;
        Ok(Outgoing {
            group: record.target.clone(),
            topic: first.topic,
            key: Some(record.env.id.clone().into_bytes()),
            payload: payload.to_vec(),
            headers: record.headers(),
        })
    }

    /// A dead letter's original bytes back to its source topic, with its original key, marked.
    fn dead_letter(&self, msg: &OwnedMessage) -> Result<Outgoing, Skip> {
        let header = |name: &str| header(msg.headers(), name);
        let source_topic = header("source_topic").ok_or(Skip::NotDeadLetter)?;
        let payload = msg.payload().unwrap_or_default();
        if !self.event_matches(json_event(payload).as_deref()) || !self.in_window(msg) {
            return Err(Skip::NotMatching);
        }
        if header(REDRIVEN_HEADER).as_deref() == Some("true") {
            return Err(Skip::AlreadyRedriven);
        }
        if header("truncated").as_deref() == Some("true") {
            return Err(Skip::Truncated);
        }
        if !self.config.sources.iter().any(|s| s.topic == source_topic) {
            return Err(Skip::NotASource);
        }
        // A message without a key was dead-lettered under `topic/partition/offset`.
        let synthetic = format!(
            "{source_topic}/{}/{}",
            header("source_partition").unwrap_or_default(),
            header("source_offset").unwrap_or_default()
        );
        let key = msg.key().filter(|k| *k != synthetic.as_bytes());
        Ok(Outgoing {
            group: source_topic.clone(),
            topic: source_topic,
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            headers: OwnedHeaders::new().insert(Header {
                key: REDRIVEN_HEADER,
                value: Some("true"),
            }),
        })
    }
}

/// The (last) value of header `name` as text.
fn header<H: Headers>(headers: Option<&H>, name: &str) -> Option<String> {
    let headers = headers?;
    headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The payload's top-level `event` field, when it is JSON with a string there.
fn json_event(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        event: Option<serde_json::Value>,
    }
    let named: Named = serde_json::from_slice(payload).ok()?;
    match named.event? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}
