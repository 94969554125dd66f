//! `[retry_tiers]`: the Kafka topics deliveries are parked on while a target is down, one topic
//! per delay, and the topic of deliveries that exhausted every retry. Also the per-target
//! budgets derived from the pipeline's in-flight bound, and each target's retry schedule across
//! the tiers.

use super::{Config, ConfigDuration, TargetConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Durable retry tiers on Kafka (see the README's "Lifecycle of a delivery"). On by default:
/// a config without the section runs with every default below, its topics named after
/// `kafka.group_id` and created by the relay at start.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryTiersConfig {
    /// `false`: no tiers, retries in memory only, so a target that stays down holds its
    /// share of the in-flight bound until its deliveries give up (the relay warns at start).
    #[serde(default = "yes", deserialize_with = "super::lenient::lenient_bool")]
    pub enabled: bool,
    /// Tier topics are named `{topic_prefix}.{delay}`, so every record of a tier has the same
    /// delay and a tier partition simply waits for its head. Default `event-relay.retry` in a
    /// `[retry_tiers]` section (as before tiers were on by default), `{kafka.group_id}.retry`
    /// without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_prefix: Option<String>,
    /// One tier per delay, in the order a parked delivery goes through them (each failure
    /// moves it to the next; the last one repeats until the journey's limits end it); a target
    /// may use a subset (`targets[].retry.tiers`).
    #[serde(default = "default_delays")]
    pub delays: Vec<ConfigDuration>,
    /// Where deliveries that exhausted every retry, or failed for good, are written (with
    /// everything needed to deliver them again: `event-relay redrive --from failed`).
    /// Default `{kafka.group_id}.failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_topic: Option<String>,
    /// Consumer group of the tier consumer; default `{kafka.group_id}.retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Create the missing tier and failed topics at start (as Kafka Streams creates its
    /// internal topics), so isolation needs no setup step; `false` where the relay may not
    /// create topics: `run` then refuses to start while one is missing.
    #[serde(default = "yes", deserialize_with = "super::lenient::lenient_bool")]
    pub create_topics: bool,
    /// Partitions of the topics the relay creates; default the largest source topic's
    /// count (the tier consumer's parallelism then matches the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replication factor of the topics the relay creates; default the broker's
    /// `default.replication.factor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
}

impl Default for RetryTiersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            topic_prefix: None,
            delays: default_delays(),
            failed_topic: None,
            group_id: None,
            create_topics: true,
            partitions: None,
            replication_factor: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// The tier prefix of a `[retry_tiers]` section that names none.
const SECTION_TOPIC_PREFIX: &str = "event-relay.retry";

fn default_delays() -> Vec<ConfigDuration> {
    [60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600]
        .into_iter()
        .map(ConfigDuration::from_secs)
        .collect()
}

/// The retry tiers a config runs with, every default resolved: from its `[retry_tiers]`
/// section, or (without one) the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Tiering {
    /// Every tier, in order.
    pub tiers: Vec<Tier>,
    /// Where deliveries that failed for good are written.
    pub failed_topic: String,
    /// The tier consumer's group.
    pub group_id: String,
    /// Create missing topics at start.
    pub create_topics: bool,
    /// Partitions of created topics (`None`: the largest source topic's count).
    pub partitions: Option<i32>,
    /// Replication factor of created topics (`None`: the broker's default).
    pub replication_factor: Option<i32>,
    /// From a `[retry_tiers]` section: targets' schedules are checked against it as written.
    /// Without one, a target gets the default tiers that fit its `retry` budget.
    pub explicit: bool,
}

/// `max_elapsed` without retry tiers, when not set.
pub const DEFAULT_MAX_ELAPSED: Duration = Duration::from_secs(15 * 60);
/// `max_elapsed` with retry tiers, when not set (at least twice the target's schedule).
pub const DEFAULT_MAX_ELAPSED_TIERED: Duration = Duration::from_secs(24 * 3600);

/// The short name of a delay in topic names and metric labels: `1m`, `90s`, `2h`, `1500ms`.
pub fn delay_label(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// One tier as the relay uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Position in `retry_tiers.delays`.
    pub index: usize,
    pub delay: Duration,
    /// `delay` as in topic names and metric labels.
    pub label: String,
    pub topic: String,
}

impl RetryTiersConfig {
    /// This section resolved for `kafka_group` (`explicit`: written in the config).
    fn resolve(&self, kafka_group: &str, explicit: bool) -> Tiering {
        let prefix = match (&self.topic_prefix, explicit) {
            (Some(p), _) => p.clone(),
            (None, true) => SECTION_TOPIC_PREFIX.to_string(),
            (None, false) => format!("{kafka_group}.retry"),
        };
        let tiers = self
            .delays
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let label = delay_label(d.get());
                Tier {
                    index,
                    delay: d.get(),
                    topic: format!("{prefix}.{label}"),
                    label,
                }
            })
            .collect();
        let or_group = |set: &Option<String>, suffix: &str| {
            set.clone()
                .unwrap_or_else(|| format!("{kafka_group}.{suffix}"))
        };
        Tiering {
            tiers,
            failed_topic: or_group(&self.failed_topic, "failed"),
            group_id: or_group(&self.group_id, "retry"),
            create_topics: self.create_topics,
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            explicit,
        }
    }
}

impl Config {
    /// Per target (in `targets` order): how many deliveries it may hold in memory. Set ones as
    /// set; the others share what is left of `pipeline.max_in_flight_events` equally (at
    /// least 1 each). `validate` checks that the sum fits the bound.
    pub fn target_budgets(&self) -> Vec<usize> {
        let total = self.pipeline.max_in_flight_events;
        let set: usize = self
            .targets
            .iter()
            .filter_map(|t| t.max_queued_events)
            .sum();
        let unset = self
            .targets
            .iter()
            .filter(|t| t.max_queued_events.is_none())
            .count();
        let share = total
            .saturating_sub(set)
            .checked_div(unset)
            .unwrap_or(0)
            .max(1);
        self.targets
            .iter()
            .map(|t| t.max_queued_events.unwrap_or(share))
            .collect()
    }

    /// The retry tiers this config runs with: its `[retry_tiers]` section, or the defaults
    /// without one; `None` with `retry_tiers.enabled = false`.
    pub fn tiering(&self) -> Option<Tiering> {
        match &self.retry_tiers {
            Some(rt) if !rt.enabled => None,
            Some(rt) => Some(rt.resolve(&self.kafka.group_id, true)),
            None => Some(RetryTiersConfig::default().resolve(&self.kafka.group_id, false)),
        }
    }

    /// The tiers target `t` goes through, in order: its `retry.tiers` (unknown delays left
    /// out: `validate` reports them), else every tier of a `[retry_tiers]` section, else the
    /// default tiers that fit its budget ([`fitting`]); empty with tiers off.
    pub fn target_tiers(&self, t: &TargetConfig) -> Vec<Tier> {
        let Some(tiering) = self.tiering() else {
            return Vec::new();
        };
        match &t.retry.tiers {
            Some(chosen) => tiering
                .tiers
                .into_iter()
                .filter(|tier| chosen.iter().any(|d| d.get() == tier.delay))
                .collect(),
            None if tiering.explicit => tiering.tiers,
            None => fitting(tiering.tiers, t),
        }
    }

    /// The journey limit of target `t`: `retry.max_elapsed` if set, else the default for
    /// whether tiers are on (at least twice the target's schedule with tiers).
    pub fn max_elapsed(&self, t: &TargetConfig) -> Duration {
        if let Some(d) = t.retry.max_elapsed {
            return d.get();
        }
        if self.tiering().is_none() {
            return DEFAULT_MAX_ELAPSED;
        }
        DEFAULT_MAX_ELAPSED_TIERED.max(2 * self.schedule_length(t))
    }

    /// `retry.hold` plus the delay of every tier of target `t`: the shortest journey that
    /// reaches its last tier.
    pub fn schedule_length(&self, t: &TargetConfig) -> Duration {
        let tiers: Duration = self.target_tiers(t).iter().map(|tier| tier.delay).sum();
        t.retry.hold.get() + tiers
    }

    /// Targets that run with fewer than the default tiers (no `[retry_tiers]` section, a
    /// `retry` budget too short for all of them): (name, the delays they keep), for the one
    /// line `run` logs about them.
    pub fn shortened_schedules(&self) -> Vec<(String, Vec<String>)> {
        let Some(tiering) = self.tiering().filter(|t| !t.explicit) else {
            return Vec::new();
        };
        self.targets
            .iter()
            .filter(|t| t.retry.tiers.is_none())
            .map(|t| (t, self.target_tiers(t)))
            .filter(|(_, kept)| kept.len() < tiering.tiers.len())
            .map(|(t, kept)| (t.name.clone(), kept.into_iter().map(|k| k.label).collect()))
            .collect()
    }
}

/// The leading default tiers a target's budget leaves room for: `retry.hold` plus their
/// delays within its `retry.max_elapsed` (when set), and one attempt each with at least one
/// left for the first, in-memory phase (`retry.max_attempts`). What a config written before
/// tiers were on by default gets, instead of a schedule `check` would reject.
fn fitting(tiers: Vec<Tier>, t: &TargetConfig) -> Vec<Tier> {
    let limit = t.retry.max_elapsed.map(|d| d.get());
    let most = t
        .retry
        .max_attempts
        .map_or(usize::MAX, |n| n.saturating_sub(1));
    let mut length = t.retry.hold.get();
    tiers
        .into_iter()
        .take(most)
        .take_while(|tier| {
            length += tier.delay;
            limit.is_none_or(|l| length <= l)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(delay_label(Duration::from_secs(60)), "1m");
        assert_eq!(delay_label(Duration::from_secs(90)), "90s");
        assert_eq!(delay_label(Duration::from_secs(7200)), "2h");
        assert_eq!(delay_label(Duration::from_secs(86_400 * 2)), "2d");
        assert_eq!(delay_label(Duration::from_millis(1500)), "1500ms");
        assert_eq!(delay_label(Duration::from_secs(1)), "1s");
    }

    #[test]
    fn default_topics() {
        let section = RetryTiersConfig::default().resolve("g", true);
        let implicit = RetryTiersConfig::default().resolve("g", false);
        let topics =
            |t: &Tiering| -> Vec<String> { t.tiers.iter().map(|t| t.topic.clone()).collect() };
        assert_eq!(
            topics(&section),
            [
                "event-relay.retry.1m",
                "event-relay.retry.5m",
                "event-relay.retry.30m",
                "event-relay.retry.2h",
                "event-relay.retry.6h"
            ]
        );
        assert_eq!(topics(&implicit)[0], "g.retry.1m");
        assert_eq!(topics(&implicit)[4], "g.retry.6h");
        for t in [&section, &implicit] {
            assert_eq!(t.group_id, "g.retry");
            assert_eq!(t.failed_topic, "g.failed");
        }
    }
}
