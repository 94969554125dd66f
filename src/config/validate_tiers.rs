//! Validation of `[retry_tiers]` and of what targets ask of it (part of [`Config::validate`]):
//! tier delays and topics, each target's `retry.tiers`, `retry.hold` and a schedule that fits
//! `retry.max_elapsed`, and the per-target budgets against the in-flight bound.

use super::problem::Problem;
use super::{delay_label, Config, RetryTiersConfig, TargetConfig, Tiering};
use std::collections::HashSet;

/// The key the tiers' delays are written at: what a target's tiers are judged against.
const DELAYS: &str = "retry_tiers.delays";

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
        let Some(tiering) = self.tiering() else {
            for (i, t) in self.targets.iter().enumerate() {
                if t.retry.tiers.is_some() {
                    p.push(Problem::new(
                        &format!("targets[{i}].retry.tiers"),
                        "retry tiers are off (retry_tiers.enabled = false)",
                    ));
                }
            }
            return;
        };
        if let Some(rt) = &self.retry_tiers {
            check_section(rt, p);
        }
        self.check_tier_topics(&tiering, p);
        for (i, t) in self.targets.iter().enumerate() {
            self.check_target_schedule(i, t, &tiering, p);
        }
    }

    /// The tier and failed topic names are valid and none of the other topics. Names made
    /// from `kafka.group_id` are reported there, with the keys that name them instead.
    fn check_tier_topics(&self, tiering: &Tiering, p: &mut Vec<Problem>) {
        let section = self.retry_tiers.as_ref();
        let named = |set: bool, key: &'static str| if set { key } else { "kafka.group_id" };
        let prefix_at = named(
            section.is_some_and(|rt| rt.topic_prefix.is_some()) || tiering.explicit,
            "retry_tiers.topic_prefix",
        );
        let failed_at = named(
            section.is_some_and(|rt| rt.failed_topic.is_some()),
            "retry_tiers.failed_topic",
        );
        if let Some(tier) = tiering.tiers.iter().find(|t| !valid_topic(&t.topic)) {
            p.push(Problem::new(
                prefix_at,
                format!(
                    "{:?} is not a valid Kafka topic name (letters, digits, '.', '_', '-'){}",
                    tier.topic,
                    hint(prefix_at, "retry_tiers.topic_prefix")
                ),
            ));
        }
        let failed = tiering.failed_topic.as_str();
        if failed.trim().is_empty() || !valid_topic(failed) {
            p.push(Problem::new(
                failed_at,
                format!(
                    "{failed:?} is not a valid Kafka topic name{}",
                    hint(failed_at, "retry_tiers.failed_topic")
                ),
            ));
        }
        let clash = self.sources.iter().any(|s| s.topic == failed)
            || self.results.topic == failed
            || self.dead_letter.topic == failed
            || tiering.tiers.iter().any(|t| t.topic == failed);
        if clash {
            p.push(Problem::new(
                failed_at,
                format!(
                    "{failed:?} must differ from the source, results, dead-letter and tier topics"
                ),
            ));
        }
        for tier in &tiering.tiers {
            if self.sources.iter().any(|s| s.topic == tier.topic) {
                p.push(Problem::new(
                    prefix_at,
                    format!("tier topic {:?} is also a source topic", tier.topic),
                ));
            }
        }
    }

    /// A target's `retry.tiers` name configured delays, and (as written: an explicit list or
    /// a `[retry_tiers]` section) its schedule fits its journey limits.
    fn check_target_schedule(
        &self,
        i: usize,
        t: &TargetConfig,
        tiering: &Tiering,
        p: &mut Vec<Problem>,
    ) {
        let at = |k: &str| format!("targets[{i}].retry.{k}");
        if let Some(chosen) = &t.retry.tiers {
            if chosen.is_empty() {
                p.push(Problem::new(
                    &at("tiers"),
                    "at least one tier is required (leave the key out to use every tier)",
                ));
            }
            for (j, d) in chosen.iter().enumerate() {
                if !tiering.tiers.iter().any(|tier| tier.delay == d.get()) {
                    let known: Vec<&str> = tiering.tiers.iter().map(|t| t.label.as_str()).collect();
                    p.push(
                        Problem::new(
                            &at(&format!("tiers[{j}]")),
                            format!(
                                "unknown tier {d} (retry_tiers.delays: {})",
                                known.join(", ")
                            ),
                        )
                        .judged_against(DELAYS),
                    );
                }
            }
        }
        if !tiering.explicit && t.retry.tiers.is_none() {
            return; // the default tiers that fit (Config::target_tiers)
        }
        if let Some(limit) = t.retry.max_elapsed {
            let schedule = self.schedule_length(t);
            if schedule > limit.get() {
                p.push(
                    Problem::new(
                        &at("max_elapsed"),
                        format!(
                            "{limit} is shorter than the retry schedule ({} = retry.hold plus every tier's delay): the last tiers would never be reached",
                            crate::config::ConfigDuration(schedule)
                        ),
                    )
                    .judged_against(DELAYS)
                    .judged_against(at("hold"))
                    .judged_against(at("tiers")),
                );
            }
        }
        let tiers = self.target_tiers(t).len();
        if let Some(n) = t.retry.max_attempts.filter(|n| tiers > 0 && *n <= tiers) {
            p.push(
                Problem::new(
                    &at("max_attempts"),
                    format!("{n} leaves no attempt in memory: it must exceed the number of tiers ({tiers}), one attempt each"),
                )
                .judged_against(DELAYS)
                .judged_against(at("tiers")),
            );
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

/// `[retry_tiers]` as written: delays, and the numbers of the topics the relay creates.
fn check_section(rt: &RetryTiersConfig, p: &mut Vec<Problem>) {
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
    if rt.partitions.is_some_and(|n| n < 1) {
        p.push(Problem::new("retry_tiers.partitions", "must be at least 1"));
    }
    if rt.replication_factor.is_some_and(|n| n < 1) {
        p.push(Problem::new(
            "retry_tiers.replication_factor",
            "must be at least 1 (leave it out for the broker's default)",
        ));
    }
}

/// What to do about an invalid topic name made from `kafka.group_id`.
fn hint(at: &str, key: &str) -> String {
    if at == "kafka.group_id" {
        format!(": the group id names it by default; set {key}")
    } else {
        String::new()
    }
}
