//! A target's retry schedule, resolved once from the config: the in-memory phase (how long and
//! how many attempts), the retry tiers it may park on, the journey limits across them, and its
//! share of the in-flight bound. The one place that decides where a failed delivery goes next.

use crate::config::{Config, RetryConfig, TargetConfig, Tier, DEFAULT_MAX_ATTEMPTS};
use crate::report::Journey;
use std::time::{Duration, SystemTime};

/// One phase of attempts: the first, in memory (`retry.hold`), or one per tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// Time the phase may take, waits for an open circuit included.
    pub limit: Duration,
    /// Attempts the phase may make.
    pub attempts: usize,
    /// Wait for an open circuit (in memory), or end the phase at once (a tier delivery).
    pub wait_for_circuit: bool,
}

/// The resolved retry schedule of one target.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Backoff between in-memory attempts.
    pub backoff: RetryConfig,
    /// Attempts over the whole journey (`usize::MAX` with tiers and no explicit
    /// `retry.max_attempts`: the journey's time ends it).
    pub max_attempts: usize,
    /// Attempts of the in-memory phase with tiers (each tier keeps one of the journey's).
    pub memory_attempts: usize,
    /// Time from the first attempt over the whole journey.
    pub max_elapsed: Duration,
    /// The tiers this target parks on, in order (empty: no tiers, retries in memory only).
    pub tiers: Vec<Tier>,
    /// Where deliveries that failed for good are written (with tiers).
    pub failed_topic: Option<String>,
    /// Deliveries the target may hold in memory before new ones are parked.
    pub budget: usize,
}

impl Schedule {
    pub fn new(config: &Config, t: &TargetConfig, budget: usize) -> Self {
        let tiers = config.target_tiers(t);
        let set = t.retry.max_attempts;
        let max_attempts = match set {
            Some(n) => n,
            None if tiers.is_empty() => DEFAULT_MAX_ATTEMPTS,
            None => usize::MAX,
        };
        let memory_attempts = set
            .unwrap_or(DEFAULT_MAX_ATTEMPTS)
            .saturating_sub(tiers.len())
            .max(1);
        Self {
            backoff: t.retry.clone(),
            max_attempts,
            memory_attempts,
            max_elapsed: config.max_elapsed(t),
            tiers,
            failed_topic: config.tiering().map(|r| r.failed_topic),
            budget,
        }
    }

    /// Whether failed deliveries can be parked on tiers.
    pub fn tiered(&self) -> bool {
        !self.tiers.is_empty()
    }

    /// The phase of a delivery just taken up: in memory for `retry.hold` (with tiers; less one
    /// attempt per tier, so every tier keeps its attempt) or for the whole journey (without);
    /// a single attempt for a delivery out of a tier.
    pub fn phase(&self, journey: &Journey) -> Phase {
        if journey.tier.is_some() {
            return Phase {
                limit: Duration::ZERO,
                attempts: 1,
                wait_for_circuit: false,
            };
        }
        if !self.tiered() {
            return Phase {
                limit: self.max_elapsed,
                attempts: self.max_attempts,
                wait_for_circuit: true,
            };
        }
        Phase {
            limit: self.backoff.hold.get().min(self.max_elapsed),
            attempts: self.memory_attempts,
            wait_for_circuit: true,
        }
    }

    /// The tier a delivery that just failed (retryably) moves to: the next one after the tier
    /// it came from whose delay is at least the server's `Retry-After` (the last tier when it
    /// asks for longer than any; from the last tier:
    /// the last tier again, so the journey goes on until its limits end it, as Spring Kafka's
    /// retry topics do), if the journey's attempts and time allow it (`attempts`: made so far,
    /// this phase included). `None`: it failed for good. The journey's time runs from its
    /// first attempt, or (`received`: when the relay received the event) from the event's
    /// receipt for a delivery parked without any attempt, so a target whose circuit stays open
    /// cannot keep one going round the last tier for ever.
    pub fn next_tier(
        &self,
        journey: &Journey,
        attempts: usize,
        retry_after: Option<Duration>,
        (now, received): (SystemTime, Option<SystemTime>),
    ) -> Option<&Tier> {
        if attempts >= self.max_attempts {
            return None;
        }
        let last = self.tiers.len().checked_sub(1)?;
        let start = match &journey.tier {
            None => 0,
            Some(label) => (self.tiers.iter().position(|t| &t.label == label)? + 1).min(last),
        };
        let elapsed = journey
            .first_attempt_at
            .or(received)
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        let wanted = retry_after.unwrap_or_default();
        // A Retry-After longer than every tier left: the last (longest) one, not the end.
        self.tiers[start..]
            .iter()
            .find(|t| t.delay >= wanted)
            .or(self.tiers.last())
            .filter(|t| elapsed + t.delay <= self.max_elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDuration;

    fn schedule(delays: &[u64]) -> Schedule {
        let tiers = delays
            .iter()
            .enumerate()
            .map(|(index, s)| Tier {
                index,
                delay: Duration::from_secs(*s),
                label: format!("{s}s"),
                topic: format!("t.{s}s"),
            })
            .collect();
        Schedule {
            backoff: RetryConfig {
                hold: ConfigDuration::from_secs(30),
                ..RetryConfig::default()
            },
            max_attempts: 10,
            memory_attempts: 7,
            max_elapsed: Duration::from_secs(1000),
            tiers,
            failed_topic: Some("failed".into()),
            budget: 10,
        }
    }

    fn from_tier(label: &str, first: SystemTime) -> Journey {
        Journey {
            tier: Some(label.into()),
            first_attempt_at: Some(first),
            ..Journey::default()
        }
    }

    #[test]
    fn tiers_in_order_then_exhausted() {
        let s = schedule(&[1, 5, 60]);
        let now = SystemTime::now();
        let fresh = Journey::default();
        assert_eq!(
            s.next_tier(&fresh, 3, None, (now, None)).unwrap().label,
            "1s"
        );
        assert_eq!(
            s.next_tier(&from_tier("1s", now), 4, None, (now, None))
                .unwrap()
                .label,
            "5s"
        );
        assert_eq!(
            s.next_tier(&from_tier("5s", now), 5, None, (now, None))
                .unwrap()
                .label,
            "60s"
        );
        assert_eq!(
            s.next_tier(&from_tier("60s", now), 6, None, (now, None))
                .unwrap()
                .label,
            "60s",
            "the last tier repeats"
        );
        assert_eq!(
            s.next_tier(&fresh, 10, None, (now, None)),
            None,
            "attempts spent"
        );
        assert_eq!(
            s.next_tier(&from_tier("60s", now), 10, None, (now, None)),
            None,
            "attempts spent on the last tier"
        );
        let near_the_end = now - Duration::from_secs(941);
        assert_eq!(
            s.next_tier(&from_tier("60s", near_the_end), 6, None, (now, None)),
            None,
            "another pass would end after max_elapsed"
        );
        let just_fits = now - Duration::from_secs(940);
        assert!(s
            .next_tier(&from_tier("60s", just_fits), 6, None, (now, None))
            .is_some());
    }

    /// A delivery parked without any attempt (its target's circuit open) has no first
    /// attempt: its journey's time runs from the event's receipt, so it ends too.
    #[test]
    fn a_journey_without_attempts_is_timed_from_the_events_receipt() {
        let s = schedule(&[1, 5, 60]);
        let now = SystemTime::now();
        let untried = Journey {
            tier: Some("60s".into()),
            ..Journey::default()
        };
        let received = |ago: u64| (now, Some(now - Duration::from_secs(ago)));
        assert!(s.next_tier(&untried, 0, None, received(10)).is_some());
        assert_eq!(s.next_tier(&untried, 0, None, received(941)), None);
    }

    /// Without an explicit `retry.max_attempts` the in-memory phase keeps the default's
    /// attempts less one per tier, and the journey has no attempt limit: its time ends it.
    #[test]
    fn without_max_attempts_the_time_budget_ends_a_tiered_journey() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n[[sources]]\ntopic = \"s\"\nformat = \"komo\"\n\
                    [results]\ntopic = \"r\"\n[dead_letter]\ntopic = \"d\"\n[[targets]]\n\
                    name = \"t\"\nkind = \"webhook\"\nurl = \"https://t.example.com/\"\n\
                    retry = { max_elapsed = \"72h\" }\n";
        let c = crate::config::load_str(text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let s = Schedule::new(&c, &c.targets[0], 10);
        assert_eq!(s.tiers.len(), 5);
        assert_eq!(s.max_attempts, usize::MAX);
        assert_eq!(s.phase(&Journey::default()).attempts, 10 - 5);
        let now = SystemTime::now();
        let day_two = from_tier("6h", now - Duration::from_secs(30 * 3600));
        let next = s.next_tier(&day_two, 40, None, (now, None));
        assert_eq!(next.map(|t| t.label.as_str()), Some("6h"), "still retrying");
    }

    #[test]
    fn retry_after_skips_to_a_long_enough_tier_and_time_bounds_the_journey() {
        let s = schedule(&[1, 5, 60]);
        let now = SystemTime::now();
        let ra = Some(Duration::from_secs(30));
        assert_eq!(
            s.next_tier(&Journey::default(), 1, ra, (now, None))
                .unwrap()
                .label,
            "60s"
        );
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            s.next_tier(&Journey::default(), 1, hour, (now, None))
                .unwrap()
                .label,
            "60s",
            "longer than every tier: the longest"
        );
        let long_ago = now - Duration::from_secs(990);
        assert_eq!(
            s.next_tier(&from_tier("1s", long_ago), 2, None, (now, None))
                .unwrap()
                .label,
            "5s"
        );
        assert_eq!(
            s.next_tier(&from_tier("5s", long_ago), 2, None, (now, None)),
            None,
            "60s would pass max_elapsed"
        );
    }

    #[test]
    fn phases() {
        let s = schedule(&[1, 5, 60]);
        let p = s.phase(&Journey::default());
        assert_eq!(
            (p.limit, p.attempts, p.wait_for_circuit),
            (Duration::from_secs(30), 7, true)
        );
        let p = s.phase(&from_tier("1s", SystemTime::now()));
        assert_eq!((p.attempts, p.wait_for_circuit), (1, false));
        let none = schedule(&[]);
        assert_eq!(
            none.phase(&Journey::default()).limit,
            Duration::from_secs(1000)
        );
    }
}
