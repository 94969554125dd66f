//! `event-relay trace`: everything the relay did with one event, from its topics. Given a
//! source event id (or the id of one of its result events), it reads the result, dead-letter,
//! retry-tier and failed topics from a start time on (the brokers' offsets for that time, so
//! the cost grows with the window, not the topics) and returns the steps in time order: each
//! target's outcome, each tier a delivery was parked on, the failed-topic record, a redrive,
//! or the dead letter.
//!
//! - [`step`]: one record of one of those topics → a [`Step`], if it is about the event.

mod step;

pub use step::{Step, StepKind};

use crate::config::Config;
use crate::redrive::kafka::Reader;
use crate::redrive::RedriveError;

/// What to trace.
#[derive(Debug, Clone)]
pub struct Request {
    /// A source event id, or a result event's id.
    pub id: String,
    /// Records written at or after this time (ms since the epoch).
    pub since_ms: i64,
    /// Records written before this time (ms since the epoch; `None`: up to now).
    pub until_ms: Option<i64>,
}

/// Why a trace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Reading a topic failed (the brokers unreachable, a read stopped).
    #[error(transparent)]
    Read(#[from] RedriveError),
}

impl TraceError {
    /// Whether the brokers could not be reached at all (exit 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TraceError::Read(e) if e.is_unreachable())
    }
}

/// The topics a trace reads, each with the kind of record it holds and its config key.
fn topics(config: &Config) -> Vec<(String, StepKind, &'static str)> {
    let mut out = vec![
        (
            config.results.topic.clone(),
            StepKind::Result,
            "results.topic",
        ),
        (
            config.dead_letter.topic.clone(),
            StepKind::DeadLettered,
            "dead_letter.topic",
        ),
    ];
    if let Some(t) = config.tiering() {
        for tier in t.tiers {
            out.push((tier.topic, StepKind::Parked, "retry_tiers.topic_prefix"));
        }
        out.push((t.failed_topic, StepKind::Failed, "retry_tiers.failed_topic"));
    }
    out
}

/// Every step of `request.id`'s journey, in time order (empty: the topics say nothing of it).
/// `progress` gets a line per topic read (the caller prints it on stderr).
pub async fn trace(
    config: &Config,
    request: &Request,
    progress: &mut dyn FnMut(String),
) -> Result<Vec<Step>, TraceError> {
    let mut id = request.id.clone();
    let mut steps = Vec::new();
    for (topic, kind, key) in topics(config) {
        let found = read(config, request, &topic, kind, key, &id, progress).await?;
        // A result event's id: the journey is its source event's.
        if let Some(source) = found
            .iter()
            .find(|s| s.result_id.as_deref() == Some(id.as_str()))
            .map(|s| s.source_event_id.clone())
        {
            if source != id {
                id = source;
                steps = read(config, request, &topic, kind, key, &id, progress).await?;
                continue;
            }
        }
        steps.extend(found);
    }
    steps.sort_by_key(|s| s.at_ms);
    Ok(steps)
}

fn in_window(s: &Step, since: i64, until: i64) -> bool {
    // Since: a broker that cannot find offsets for times is read from the start.
    s.at_ms >= since && s.at_ms < until
}

/// The steps of `id` in one topic, read from `request.since_ms` to its end at opening.
async fn read(
    config: &Config,
    request: &Request,
    topic: &str,
    kind: StepKind,
    key: &'static str,
    id: &str,
    progress: &mut dyn FnMut(String),
) -> Result<Vec<Step>, TraceError> {
    let mut reader = match Reader::open_since(&config.kafka, topic, key, Some(request.since_ms)) {
        Ok(r) => r,
        // A topic never written to (a tier no delivery was parked on yet) says nothing.
        Err(RedriveError::TopicMissing { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let until = request.until_ms.unwrap_or(reader.started_ms());
    let (mut read, mut steps) = (0u64, Vec::new());
    while let Some(m) = reader.next().await? {
        read += 1;
        if read % 100_000 == 0 {
            progress(format!("trace: {topic}: {read} records read"));
        }
        match step::of(kind, topic, &m) {
            Some(s) if in_window(&s, request.since_ms, until) && s.names(id) => steps.push(s),
            _ => {}
        }
    }
    progress(format!(
        "trace: {topic}: {read} records read, {} about the event",
        steps.len()
    ));
    Ok(steps)
}
