//! `[retry_tiers]`: the Kafka topics deliveries are parked on while a target is down, one topic
//! per delay, and the topic of deliveries that exhausted every retry. Also the per-target
//! budgets derived from the pipeline's in-flight bound, and each target's retry schedule across
//! the tiers.

use super::{Config, ConfigDuration, TargetConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Durable retry tiers on Kafka (see the README's "Lifecycle of a delivery").
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryTiersConfig {
    /// Tier topics are named `{topic_prefix}.{delay}` (`event-relay.retry.1m`, ...), so every
    /// record of a tier has the same delay and a tier partition simply waits for its head.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// One tier per delay, in the order a parked delivery goes through them (each failure
    /// moves it to the next); a target may use a subset (`targets[].retry.tiers`).
    #[serde(default = "default_delays")]
    pub delays: Vec<ConfigDuration>,
    /// Where deliveries that exhausted every retry, or failed for good, are written (with
    /// everything needed to deliver them again: `event-relay redrive --from failed`).
    pub failed_topic: String,
    /// Consumer group of the tier consumer; default `{kafka.group_id}.retry`.
    #[serde(default)]
    pub group_id: Option<String>,
}

fn default_topic_prefix() -> String {
    "event-relay.retry".into()
}

fn default_delays() -> Vec<ConfigDuration> {
    [60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600]
        .into_iter()
        .map(ConfigDuration::from_secs)
        .collect()
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
    /// Every tier, in order.
    pub fn tiers(&self) -> Vec<Tier> {
        self.delays
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let label = delay_label(d.get());
                Tier {
                    index,
                    delay: d.get(),
                    topic: format!("{}.{label}", self.topic_prefix),
                    label,
                }
            })
            .collect()
    }

    /// The tier consumer's group.
    pub fn group_id(&self, kafka_group: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("{kafka_group}.retry"))
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

    /// The tiers target `t` goes through (`retry.tiers`, else all), in order; empty without
    /// `[retry_tiers]`. Unknown delays are left out (`validate` reports them).
    pub fn target_tiers(&self, t: &TargetConfig) -> Vec<Tier> {
        let Some(rt) = &self.retry_tiers else {
            return Vec::new();
        };
        let all = rt.tiers();
        match &t.retry.tiers {
            None => all,
            Some(chosen) => all
                .into_iter()
                .filter(|tier| chosen.iter().any(|d| d.get() == tier.delay))
                .collect(),
        }
    }

    /// The journey limit of target `t`: `retry.max_elapsed` if set, else the default for
    /// whether tiers are on (at least twice the target's schedule with tiers).
    pub fn max_elapsed(&self, t: &TargetConfig) -> Duration {
        if let Some(d) = t.retry.max_elapsed {
            return d.get();
        }
        if self.retry_tiers.is_none() {
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
        let rt: RetryTiersConfig = toml::from_str("failed_topic = \"f\"").unwrap();
        let topics: Vec<String> = rt.tiers().into_iter().map(|t| t.topic).collect();
        assert_eq!(
            topics,
            [
                "event-relay.retry.1m",
                "event-relay.retry.5m",
                "event-relay.retry.30m",
                "event-relay.retry.2h",
                "event-relay.retry.6h"
            ]
        );
        assert_eq!(rt.group_id("g"), "g.retry");
    }
}
