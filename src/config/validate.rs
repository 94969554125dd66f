//! Semantic validation of a loaded [`Config`]: every problem at once, each with its key path.
//!
//! One function per concern; [`Config::validate`] runs them all. The targets' checks live in
//! `validate_targets.rs`. What serde already rejects (unknown keys, wrong types, bad durations,
//! a `where` condition without exactly one operator) never reaches these checks.

use super::problem::{ConfigError, Problem};
use super::{Config, RouteConfig};
use std::collections::HashSet;

/// A `where` field that names no value of the envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown envelope field {0:?}")]
pub struct UnknownEnvelopeField(pub String);

/// Top-level envelope fields a `where` condition may name, with their known sub-fields
/// (`None`: any sub-path is allowed, e.g. `properties.*`).
const ENVELOPE_FIELDS: &[(&str, Option<&[&str]>)] = &[
    ("envelope_version", Some(&[])),
    ("id", Some(&[])),
    ("source", Some(&[])),
    ("event", Some(&[])),
    ("timestamp", Some(&[])),
    ("received_at", Some(&[])),
    ("distinct_id", Some(&[])),
    ("session_id", Some(&[])),
    ("site", Some(&["id", "name"])),
    (
        "user",
        Some(&["profile_id", "session_id", "email", "traits"]),
    ),
    ("properties", None),
    ("origin", Some(&["topic", "partition", "offset", "key"])),
    (
        "validation",
        Some(&["catalog", "catalog_version", "status"]),
    ),
];

/// Checks that a dotted envelope path names a field that `Envelope::field` can resolve to a
/// value: objects themselves (`site`, `user`, `properties`, `user.traits`) are not values.
pub fn check_field_path(path: &str) -> Result<(), UnknownEnvelopeField> {
    let parts: Vec<&str> = path.split('.').collect();
    let known = ENVELOPE_FIELDS.iter().find(|(name, _)| *name == parts[0]);
    let ok = match known.map(|(_, subs)| (subs, &parts[1..])) {
        None => false,
        // `properties.<key>[.<nested>...]`
        Some((None, rest)) => !rest.is_empty() && rest.iter().all(|p| !p.is_empty()),
        Some((Some(allowed), [])) => allowed.is_empty(),
        Some((Some(allowed), [sub])) => allowed.contains(sub) && *sub != "traits",
        // `user.traits.<key>[.<nested>...]`
        Some((Some(allowed), [sub, rest @ ..])) => {
            *sub == "traits" && allowed.contains(sub) && rest.iter().all(|p| !p.is_empty())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(UnknownEnvelopeField(path.to_string()))
    }
}

/// librdkafka properties the relay's guarantees depend on: overriding them through
/// `kafka.options` would commit offsets of events whose fate is not final, or bypass the
/// config keys that own them.
fn managed_kafka_option(key: &str) -> Option<&'static str> {
    Some(match key {
        "enable.auto.commit" | "enable.auto.offset.store" | "auto.commit.enable" => {
            "offsets are stored and committed only once an event's fate is final"
        }
        "enable.partition.eof" => "the consume loop does not expect end-of-partition events",
        "bootstrap.servers" | "metadata.broker.list" => "use kafka.brokers",
        "group.id" => "use kafka.group_id",
        _ => return None,
    })
}

impl Config {
    /// Reports every semantic problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        self.check_kafka(&mut p);
        self.check_topics(&mut p);
        let names = self.validate_targets(&mut p);
        self.check_routes(&names, &mut p);
        check_known_targets("default_targets", &self.default_targets, &names, &mut p);
        self.check_runtime(&mut p);
        self.check_retry_tiers(&mut p);
        self.check_declarations(&mut p);
        self.telemetry.check(&mut p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
    }

    fn check_kafka(&self, p: &mut Vec<Problem>) {
        if self.kafka.brokers.trim().is_empty() {
            p.push(Problem::new("kafka.brokers", "must not be empty"));
        }
        if self.kafka.group_id.trim().is_empty() {
            p.push(Problem::new("kafka.group_id", "must not be empty"));
        }
        for key in self.kafka.options.keys() {
            if let Some(why) = managed_kafka_option(key) {
                p.push(Problem::new(
                    &format!("kafka.options.\"{key}\""),
                    format!("is set by the relay and cannot be overridden: {why}"),
                ));
            }
        }
    }

    /// Source topics are present and distinct, and neither output topic is one of them.
    fn check_topics(&self, p: &mut Vec<Problem>) {
        if self.sources.is_empty() {
            p.push(Problem::new(
                "sources",
                "at least one [[sources]] entry is required",
            ));
        }
        let mut topics = HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("sources[{i}].topic");
            if s.topic.trim().is_empty() {
                p.push(Problem::new(&at, "must not be empty"));
            } else if !topics.insert(s.topic.as_str()) {
                p.push(Problem::new(
                    &at,
                    format!("duplicate source topic {:?}", s.topic),
                ));
            }
        }
        let outputs = [
            ("results.topic", &self.results.topic, "result events"),
            ("dead_letter.topic", &self.dead_letter.topic, "dead letters"),
        ];
        for (at, topic, what) in outputs {
            if topic.trim().is_empty() {
                p.push(Problem::new(at, "must not be empty"));
            } else if topics.contains(topic.as_str()) {
                p.push(Problem::new(
                    at,
                    format!("must not also be a source topic ({what} would loop)"),
                ));
            }
        }
    }

    fn check_routes(&self, targets: &HashSet<&str>, p: &mut Vec<Problem>) {
        let mut route_names = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = |k: &str| format!("routes[{i}].{k}");
            if !route_names.insert(r.name.as_str()) {
                p.push(Problem::new(
                    &at("name"),
                    format!("duplicate route name {:?}", r.name),
                ));
            }
            if r.targets.is_empty() && r.continue_ {
                p.push(Problem::new(
                    &at("targets"),
                    "at least one target is required (an empty list is only allowed with continue = false, to drop events)",
                ));
            }
            check_known_targets(&at("targets"), &r.targets, targets, p);
            for (j, g) in r.events.iter().enumerate() {
                if g.trim_start_matches('!').is_empty() {
                    p.push(Problem::new(&at(&format!("events[{j}]")), "empty glob"));
                }
            }
            check_conditions(i, r, p);
        }
    }

    /// The revoke wait happens inside the rebalance, where the consumer is not polled: it must
    /// end well before the group's `max.poll.interval.ms` (librdkafka's default 300 s) would
    /// expel the member.
    fn check_revoke_timeout(&self, p: &mut Vec<Problem>) {
        let key = "max.poll.interval.ms";
        let poll_ms = match self.kafka.options.get(key).map(|v| v.parse::<u64>()) {
            Some(Ok(ms)) => ms,
            Some(Err(_)) => return, // librdkafka reports a malformed property itself
            None => 300_000,
        };
        let revoke_ms = self.pipeline.revoke_timeout.get().as_millis();
        if revoke_ms >= u128::from(poll_ms / 2) {
            p.push(Problem::new(
                "pipeline.revoke_timeout",
                format!(
                    "must be less than half of kafka.options.\"{key}\" ({poll_ms} ms): the consumer is not polled while a revoke waits"
                ),
            ));
        }
    }

    /// In-flight bound, commit cadence, listen address and log format.
    fn check_runtime(&self, p: &mut Vec<Problem>) {
        if self.pipeline.max_in_flight_events == 0 {
            p.push(Problem::new(
                "pipeline.max_in_flight_events",
                "must be at least 1",
            ));
        }
        if self.pipeline.max_in_flight_bytes < 1024 {
            p.push(Problem::new(
                "pipeline.max_in_flight_bytes",
                "must be at least 1024 (the bound counts whole KiB)",
            ));
        }
        if self.pipeline.worker_threads == Some(0) {
            p.push(Problem::new(
                "pipeline.worker_threads",
                "must be at least 1",
            ));
        }
        if self.pipeline.commit_interval.get().is_zero() {
            p.push(Problem::new(
                "pipeline.commit_interval",
                "must be greater than 0",
            ));
        }
        self.check_revoke_timeout(p);
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(Problem::new(
                "server.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.server.listen
                ),
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            p.push(Problem::new(
                "log.format",
                format!("{:?}: expected \"text\" or \"json\"", self.log.format),
            ));
        }
    }
}

/// Every name in the list `at` is a configured target.
fn check_known_targets(at: &str, list: &[String], known: &HashSet<&str>, p: &mut Vec<Problem>) {
    for (j, t) in list.iter().enumerate() {
        if !known.contains(t.as_str()) {
            p.push(Problem::new(
                &format!("{at}[{j}]"),
                format!("unknown target {t:?}"),
            ));
        }
    }
}

/// Each `where` condition names an envelope field that holds a value.
fn check_conditions(i: usize, r: &RouteConfig, p: &mut Vec<Problem>) {
    for (j, c) in r.conditions.iter().enumerate() {
        if let Err(e) = check_field_path(&c.field) {
            p.push(Problem::new(&format!("routes[{i}].where[{j}].field"), e));
        }
    }
}

impl Config {
    /// `[[catalogs]]` paths are given, and each source's `user_attributes` compile. (The
    /// catalog files' contents are checked by `normalize::catalog_problems`, which `check`
    /// and start-up run: the catalog format is not the config's to know.)
    fn check_declarations(&self, p: &mut Vec<Problem>) {
        for (i, c) in self.catalogs.iter().enumerate() {
            if c.path.as_os_str().is_empty() {
                p.push(Problem::new(
                    &format!("catalogs[{i}].path"),
                    "must not be empty",
                ));
            }
        }
        for (i, s) in self.sources.iter().enumerate() {
            if let Err(e) = crate::envelope::UserAttributes::new(&s.user_attributes) {
                let at = match e.index() {
                    Some(j) => format!("sources[{i}].user_attributes[{j}]"),
                    None => format!("sources[{i}].user_attributes"),
                };
                p.push(Problem::new(&at, e));
            }
        }
    }
}
