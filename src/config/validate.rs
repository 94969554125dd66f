//! Semantic validation of a loaded [`Config`]: every problem at once, each with its key path.

use super::Config;
use serde::{Deserialize, Deserializer};
use std::collections::HashSet;
use std::fmt;

/// One config problem: where (`routes[2].targets[0]`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `targets[1].url`; empty for whole-file problems.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All problems found in a config.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn single(path: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem::new(path, message)],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Accepts a number or a numeric string (environment overrides arrive as strings).
pub fn lenient_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(usize),
        Str(String),
    }
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(n),
        NumOrStr::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got {s:?}"))),
    }
}

/// Accepts a boolean or `"true"`/`"false"` (environment overrides arrive as strings).
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrStr {
        Bool(bool),
        Str(String),
    }
    match BoolOrStr::deserialize(d)? {
        BoolOrStr::Bool(b) => Ok(b),
        BoolOrStr::Str(s) => match s.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
    }
}

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
    ("validation", Some(&["catalog", "status"])),
];

/// Checks that a dotted envelope path names a field that `Envelope::field` can resolve to a
/// value: objects themselves (`site`, `user`, `properties`, `user.traits`) are not values.
pub fn check_field_path(path: &str) -> Result<(), String> {
    let unknown = || Err(format!("unknown envelope field {path:?}"));
    let parts: Vec<&str> = path.split('.').collect();
    let Some((_, subs)) = ENVELOPE_FIELDS.iter().find(|(name, _)| *name == parts[0]) else {
        return unknown();
    };
    let ok = match (subs, &parts[1..]) {
        // `properties.<key>[.<nested>...]`
        (None, rest) => !rest.is_empty() && rest.iter().all(|p| !p.is_empty()),
        (Some(allowed), []) => allowed.is_empty(),
        (Some(allowed), [sub]) => allowed.contains(sub) && *sub != "traits",
        // `user.traits.<key>[.<nested>...]`
        (Some(allowed), [sub, rest @ ..]) => {
            *sub == "traits" && allowed.contains(sub) && rest.iter().all(|p| !p.is_empty())
        }
    };
    if ok {
        Ok(())
    } else {
        unknown()
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

pub(super) fn check_url(url: &str) -> Result<(), String> {
    // Templates may only appear in path/query; substitute a placeholder to parse the rest.
    let probe = url.replace("{{", "x").replace("}}", "x");
    let parsed = url::Url::parse(&probe).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("URL {url:?} must use http or https"));
    }
    if let Some(host_end) = url.find("://").map(|i| i + 3) {
        let authority = &url[host_end..];
        let authority = authority.split(['/', '?']).next().unwrap_or_default();
        if authority.contains("{{") {
            return Err(format!(
                "URL {url:?}: templates may only be used in the path or query, never the host"
            ));
        }
    }
    Ok(())
}

impl Config {
    /// Reports every semantic problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
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
        if self.sources.is_empty() {
            p.push(Problem::new(
                "sources",
                "at least one [[sources]] entry is required",
            ));
        }
        let mut topics = HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if s.topic.trim().is_empty() {
                p.push(Problem::new(
                    &format!("sources[{i}].topic"),
                    "must not be empty",
                ));
            } else if !topics.insert(s.topic.as_str()) {
                p.push(Problem::new(
                    &format!("sources[{i}].topic"),
                    format!("duplicate source topic {:?}", s.topic),
                ));
            }
        }
        if self.results.topic.trim().is_empty() {
            p.push(Problem::new("results.topic", "must not be empty"));
        }
        if self.dead_letter.topic.trim().is_empty() {
            p.push(Problem::new("dead_letter.topic", "must not be empty"));
        }
        if topics.contains(self.results.topic.as_str()) {
            p.push(Problem::new(
                "results.topic",
                "must not also be a source topic (result events would loop)",
            ));
        }
        if topics.contains(self.dead_letter.topic.as_str()) {
            p.push(Problem::new(
                "dead_letter.topic",
                "must not also be a source topic (dead letters would loop)",
            ));
        }

        let names = self.validate_targets(&mut p);

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
            for (j, t) in r.targets.iter().enumerate() {
                if !names.contains(t.as_str()) {
                    p.push(Problem::new(
                        &at(&format!("targets[{j}]")),
                        format!("unknown target {t:?}"),
                    ));
                }
            }
            for (j, s) in r.sources.iter().enumerate() {
                if !matches!(s.as_str(), "komo" | "acemate") {
                    p.push(Problem::new(
                        &at(&format!("sources[{j}]")),
                        format!("unknown source {s:?} (expected \"komo\" or \"acemate\")"),
                    ));
                }
            }
            for (j, g) in r.events.iter().enumerate() {
                if g.trim_start_matches('!').is_empty() {
                    p.push(Problem::new(&at(&format!("events[{j}]")), "empty glob"));
                }
            }
            for (j, c) in r.conditions.iter().enumerate() {
                let cat = format!("routes[{i}].where[{j}]");
                if let Err(e) = check_field_path(&c.field) {
                    p.push(Problem::new(&format!("{cat}.field"), e));
                }
                let ops = [
                    c.equals.is_some(),
                    c.not_equals.is_some(),
                    c.in_.is_some(),
                    c.not_in.is_some(),
                    c.exists.is_some(),
                    c.matches.is_some(),
                    c.gt.is_some(),
                    c.gte.is_some(),
                    c.lt.is_some(),
                    c.lte.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if ops != 1 {
                    p.push(Problem::new(
                        &cat,
                        format!("needs exactly one operator (equals, not_equals, in, not_in, exists, matches, gt, gte, lt, lte), found {ops}"),
                    ));
                }
                if let Some(re) = &c.matches {
                    if let Err(e) = regex::Regex::new(re) {
                        p.push(Problem::new(
                            &format!("{cat}.matches"),
                            format!("invalid regex: {e}"),
                        ));
                    }
                }
            }
        }
        for (j, t) in self.default_targets.iter().enumerate() {
            if !names.contains(t.as_str()) {
                p.push(Problem::new(
                    &format!("default_targets[{j}]"),
                    format!("unknown target {t:?}"),
                ));
            }
        }
        if self.pipeline.max_in_flight_events == 0 {
            p.push(Problem::new(
                "pipeline.max_in_flight_events",
                "must be at least 1",
            ));
        }
        if self.pipeline.commit_interval.get().is_zero() {
            p.push(Problem::new(
                "pipeline.commit_interval",
                "must be greater than 0",
            ));
        }
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
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
    }
}
