//! `event-relay redrive`: re-enters what finally failed once its cause is fixed. `--from failed`
//! reads `retry_tiers.failed_topic` and re-enters each matching delivery into the first tier of
//! its target with a fresh attempt budget; `--from dead-letter` reads `dead_letter.topic` and
//! re-produces each matching message's original bytes to the source topic it came from, marked
//! `redriven: true` so that a message dead-lettered again is not redriven in a loop.
//!
//! The topic is read from the beginning up to the end offsets seen at start (every partition
//! assigned, no consumer group commits), so records written while it runs are left for the next
//! run. What to do with each record is decided in [`plan`] (pure); [`kafka`] reads and
//! produces. An edge like `cli`: nothing in the relay imports it.

pub mod kafka;
mod plan;
#[cfg(test)]
mod tests;

pub use plan::{Outgoing, Skip};

use crate::config::Config;
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// How long reading waits for the broker (metadata, the next record) before giving up.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Which topic is redriven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromTopic {
    /// `retry_tiers.failed_topic`: deliveries that exhausted every retry or failed for good.
    Failed,
    /// `dead_letter.topic`: messages the relay could not normalize.
    DeadLetter,
}

impl FromTopic {
    /// As on the command line (and in `event_relay_redriven_total{from}`).
    pub fn as_str(self) -> &'static str {
        match self {
            FromTopic::Failed => "failed",
            FromTopic::DeadLetter => "dead-letter",
        }
    }
}

/// Which records are redriven; every set filter must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `--target`: the record's target name (`--from failed` only).
    pub target: Option<String>,
    /// `--event`: a route-style glob on the event name (`!glob` excludes).
    pub event: Option<String>,
    /// `--since`: records written at or after this time (the Kafka record timestamp).
    pub since: Option<SystemTime>,
    /// `--until`: records written before this time.
    pub until: Option<SystemTime>,
}

/// One `redrive` run.
#[derive(Clone, Debug)]
pub struct Request {
    pub from: FromTopic,
    pub filter: Filter,
    /// Decide and count, but produce nothing.
    pub dry_run: bool,
}

/// Why a redrive could not be done (or finished).
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// `--from failed` without a `[retry_tiers]` section: there is no failed topic.
    #[error("--from failed needs retry tiers, which this config turns off (retry_tiers.enabled = false): there is no failed topic")]
    NoRetryTiers,
    /// `--target` given with `--from dead-letter`.
    #[error("--target applies to --from failed")]
    TargetWithDeadLetter,
    /// `--target` names no configured target.
    #[error("--target {0:?}: no such target in the config (targets[].name)")]
    UnknownTarget(String),
    /// `--event` is not a valid glob.
    #[error("--event {glob:?}: {source}")]
    Glob {
        glob: String,
        #[source]
        source: regex::Error,
    },
    /// `--since` is not before `--until`.
    #[error("--since must be before --until")]
    EmptyWindow,
    /// The Kafka client could not be created (e.g. an invalid property in `kafka.options`).
    #[error("creating the Kafka client: {0}")]
    Client(#[source] KafkaError),
    /// No broker answered in time.
    #[error("cannot reach the Kafka brokers {brokers} (kafka.brokers) within {}s: {source}", BROKER_TIMEOUT.as_secs())]
    Unreachable {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    /// The topic to read does not exist on the broker.
    #[error("topic {topic} ({key}) does not exist (event-relay topics --create makes it)")]
    TopicMissing { topic: String, key: &'static str },
    /// Reading stopped: an error, or no record arrived in time although some were due.
    #[error("reading {topic} stopped with partitions {partitions:?} unfinished: {reason}")]
    Read {
        topic: String,
        partitions: Vec<i32>,
        reason: String,
    },
    /// A produced record was not acknowledged; `acknowledged` were, and stay produced.
    #[error("producing to {topic} failed after {acknowledged} record(s) were acknowledged: {source} (a second run re-enters those as well)")]
    Produce {
        topic: String,
        acknowledged: u64,
        #[source]
        source: KafkaError,
    },
}

impl RedriveError {
    /// Whether the arguments or the config are at fault (rather than the broker).
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            RedriveError::NoRetryTiers
                | RedriveError::TargetWithDeadLetter
                | RedriveError::UnknownTarget(_)
                | RedriveError::Glob { .. }
                | RedriveError::EmptyWindow
        )
    }

    /// Whether the brokers could not be reached.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RedriveError::Unreachable { .. })
    }
}

/// What a run did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// The topic read.
    pub topic: String,
    /// Records read.
    pub read: u64,
    /// Redriven records per (target or source topic, topic produced to).
    pub redriven: BTreeMap<(String, String), u64>,
    /// Records left alone, per reason.
    pub skipped: BTreeMap<Skip, u64>,
    pub dry_run: bool,
}

impl Summary {
    /// Records redriven (or, dry, that would be).
    pub fn redriven_total(&self) -> u64 {
        self.redriven.values().sum()
    }

    /// Records skipped.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// The report printed on stdout: what was read, then one aligned line per target (or
    /// source topic) redriven to, then one per skip reason.
    ///
    /// ```text
    /// read 6 records from event-relay.failed
    /// redriven 3
    ///   crm  2  -> event-relay.retry.1m
    ///   ph   1  -> event-relay.retry.1m
    /// skipped 3
    ///   not_matching    2
    ///   unknown_target  1
    /// ```
    pub fn render(&self) -> String {
        let mut out = format!("read {} records from {}\n", self.read, self.topic);
        let n = self.redriven_total();
        if self.dry_run {
            let _ = writeln!(out, "would redrive {n} (dry run: nothing produced)");
        } else {
            let _ = writeln!(out, "redriven {n}");
        }
        let rows: Vec<(String, u64, Option<&str>)> = self
            .redriven
            .iter()
            .map(|((group, to), n)| (group.clone(), *n, (group != to).then_some(to.as_str())))
            .collect();
        aligned(&mut out, &rows);
        let _ = writeln!(out, "skipped {}", self.skipped_total());
        let rows: Vec<(String, u64, Option<&str>)> = self
            .skipped
            .iter()
            .map(|(skip, n)| (skip.as_str().to_string(), *n, None))
            .collect();
        aligned(&mut out, &rows);
        out
    }
}

/// `  name  count[  -> destination]`, names and counts padded to the widest.
fn aligned(out: &mut String, rows: &[(String, u64, Option<&str>)]) {
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.1.to_string().len())
        .max()
        .unwrap_or(0);
    for (name, n, to) in rows {
        let line = format!("  {name:w0$}  {n:<w1$}");
        match to {
            Some(to) => {
                let _ = writeln!(out, "{line}  -> {to}");
            }
            None => {
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
    }
}

/// Runs one redrive against `config`'s brokers: checks the request, reads the chosen topic up
/// to its end offsets at start, produces every redriven record (unless dry) and waits for each
/// acknowledgement.
pub async fn redrive(config: &Config, request: &Request) -> Result<Summary, RedriveError> {
    let planner = plan::Planner::new(config, request)?;
    let (topic, key) = match request.from {
        FromTopic::Failed => (
            config
                .tiering()
                .map(|rt| rt.failed_topic)
                .ok_or(RedriveError::NoRetryTiers)?,
            "retry_tiers.failed_topic",
        ),
        FromTopic::DeadLetter => (config.dead_letter.topic.clone(), "dead_letter.topic"),
    };
    let mut reader = kafka::Reader::open(&config.kafka, &topic, key)?;
    let mut sender = if request.dry_run {
        None
    } else {
        Some(kafka::Sender::new(&config.kafka)?)
    };
    let mut summary = Summary {
        topic: topic.clone(),
        dry_run: request.dry_run,
        ..Summary::default()
    };
    while let Some(msg) = reader.next().await? {
        summary.read += 1;
        match planner.plan(&msg, SystemTime::now()) {
            Err(skip) => *summary.skipped.entry(skip).or_default() += 1,
            Ok(out) => {
                let group = (out.group.clone(), out.topic.clone());
                *summary.redriven.entry(group).or_default() += 1;
                if let Some(sender) = sender.as_mut() {
                    sender.send(out).await?;
                }
            }
        }
    }
    if let Some(sender) = sender.as_mut() {
        sender.finish().await?;
    }
    Ok(summary)
}
