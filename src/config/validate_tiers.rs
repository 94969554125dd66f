//! Validation of `[retry_tiers]` and of what targets ask of it (part of [`Config::validate`]):
//! tier delays and topics, each target's `retry.tiers`, `retry.hold` and a schedule that fits
//! `retry.max_elapsed`, and the per-target budgets against the in-flight bound.

use super::problem::Problem;
use super::{delay_label, Config, TargetConfig};
use std::collections::HashSet;

/// Characters Kafka allows in a topic name.
fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Config {
    pub(super) fn check_retry_tiers(&self, p: &mut Vec<Problem>) {
        self.check_budgets(p);
        let Some(rt) = &self.retry_tiers else {
            for (i, t) in self.targets.iter().enumerate() {
                if t.retry.tiers.is_some() {
                    p.push(Problem::new(
                        &format!("targets[{i}].retry.tiers"),
                        "needs a [retry_tiers] section",
                    ));
                }
            }
            return;
        };
        if rt.delays.is_empty() {
            p.push(Problem::new(
                "retry_tiers.delays",
                "at least one delay is required",
            ));
        }
        let mut seen = HashSet::new();
        for (j, d) in rt.delays.iter().enumerate() {
            let at = format!("retry_tiers.delays[{j}]");
            if d.get().is_zero() {
                p.push(Problem::new(&at, "must be greater than 0"));
            } else if !seen.insert(delay_label(d.get())) {
                p.push(Problem::new(&at, format!("duplicate delay {d}")));
            }
        }
        let probe = format!("{}.1m", rt.topic_prefix);
        if rt.topic_prefix.trim().is_empty() || !valid_topic(&probe) {
            p.push(Problem::new(
                "retry_tiers.topic_prefix",
                format!(
                    "{:?} cannot start a Kafka topic name (letters, digits, '.', '_', '-')",
                    rt.topic_prefix
                ),
            ));
        }
        self.check_failed_topic(p);
        for (i, t) in self.targets.iter().enumerate() {
            self.check_target_schedule(i, t, p);
        }
    }

    /// `failed_topic` is set, a valid name, and none of the other topics.
    fn check_failed_topic(&self, p: &mut Vec<Problem>) {
        let Some(rt) = &self.retry_tiers else { return };
        let at = "retry_tiers.failed_topic";
        let failed = rt.failed_topic.as_str();
        if failed.trim().is_empty() {
            p.push(Problem::new(at, "must not be empty"));
            return;
        }
        if !valid_topic(failed) {
            p.push(Problem::new(
                at,
                format!("{failed:?} is not a valid Kafka topic name"),
            ));
        }
        let tiers = rt.tiers();
        let clash = self.sources.iter().any(|s| s.topic == failed)
            || self.results.topic == failed
            || self.dead_letter.topic == failed
            || tiers.iter().any(|t| t.topic == failed);
        if clash {
            p.push(Problem::new(
                at,
                "must differ from the source, results, dead-letter and tier topics",
            ));
        }
        for tier in &tiers {
            if self.sources.iter().any(|s| s.topic == tier.topic) {
                p.push(Problem::new(
                    "retry_tiers.topic_prefix",
                    format!("tier topic {:?} is also a source topic", tier.topic),
                ));
            }
        }
    }

    /// A target's `retry.tiers` name configured delays, and its schedule fits its journey limit.
    fn check_target_schedule(&self, i: usize, t: &TargetConfig, p: &mut Vec<Problem>) {
        let Some(rt) = &self.retry_tiers else { return };
        let at = |k: &str| format!("targets[{i}].retry.{k}");
        if let Some(chosen) = &t.retry.tiers {
            if chosen.is_empty() {
                p.push(Problem::new(
                    &at("tiers"),
                    "at least one tier is required (leave the key out to use every tier)",
                ));
            }
            for (j, d) in chosen.iter().enumerate() {
                if !rt.delays.contains(d) {
                    let known: Vec<String> = rt.delays.iter().map(|d| d.to_string()).collect();
                    p.push(Problem::new(
                        &at(&format!("tiers[{j}]")),
                        format!(
                            "unknown tier {d} (retry_tiers.delays: {})",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(limit) = t.retry.max_elapsed {
            let schedule = self.schedule_length(t);
            if schedule > limit.get() {
                p.push(Problem::new(
                    &at("max_elapsed"),
                    format!(
                        "{limit} is shorter than the retry schedule ({} = retry.hold plus every tier's delay): the last tiers would never be reached",
                        crate::config::ConfigDuration(schedule)
                    ),
                ));
            }
        }
        let tiers = self.target_tiers(t).len();
        if tiers > 0 && t.retry.max_attempts <= tiers {
            p.push(Problem::new(
                &at("max_attempts"),
                format!("{} leaves no attempt in memory: it must exceed the number of tiers ({tiers}), one attempt each", t.retry.max_attempts),
            ));
        }
    }

    /// Explicit `max_queued_events` are at least 1 and, with one each for the others, fit in
    /// `pipeline.max_in_flight_events`, so no target can be starved of its share.
    fn check_budgets(&self, p: &mut Vec<Problem>) {
        let total = self.pipeline.max_in_flight_events;
        let mut sum = 0usize;
        for (i, t) in self.targets.iter().enumerate() {
            match t.max_queued_events {
                Some(0) => p.push(Problem::new(
                    &format!("targets[{i}].max_queued_events"),
                    "must be at least 1",
                )),
                Some(n) => sum = sum.saturating_add(n),
                None => sum = sum.saturating_add(1),
            }
        }
        if sum > total {
            let first = self
                .targets
                .iter()
                .position(|t| t.max_queued_events.is_some())
                .unwrap_or(0);
            p.push(Problem::new(
                &format!("targets[{first}].max_queued_events"),
                format!("the targets' budgets add up to {sum}, more than pipeline.max_in_flight_events = {total}: a target could be starved"),
            ));
        }
    }
}
