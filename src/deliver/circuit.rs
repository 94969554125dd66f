//! Per-target circuit breaker: one failing target waits alone.
//!
//! Circuit: after `failure_threshold` consecutive failed requests the circuit opens; requests
//! wait (their events stay in flight, offsets uncommitted) until `cool_down` has passed, then one
//! probe goes out; success closes the circuit, failure re-opens it.

use crate::config::CircuitConfig;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State {
    failures: usize,
    open_until: Option<Instant>,
    opened_at: Option<Instant>,
    probing: bool,
}

/// Circuit breaker of one target.
#[derive(Debug)]
pub struct Circuit {
    config: CircuitConfig,
    state: Mutex<State>,
    gauge: prometheus::IntGauge,
}

impl Circuit {
    pub fn new(config: &CircuitConfig, gauge: prometheus::IntGauge) -> Self {
        gauge.set(0);
        Self {
            config: config.clone(),
            state: Mutex::new(State {
                failures: 0,
                open_until: None,
                opened_at: None,
                probing: false,
            }),
            gauge,
        }
    }

    /// Waits until a request may go out (the circuit is closed, or this request is the probe).
    pub async fn admit(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap();
                match s.open_until {
                    None => return,
                    Some(until) if Instant::now() >= until && !s.probing => {
                        s.probing = true;
                        return;
                    }
                    Some(until) => until
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(50)),
                }
            };
            tokio::time::sleep(wait.min(Duration::from_millis(500))).await;
        }
    }

    /// Whether a request may go out now (the circuit is closed, or this request becomes the
    /// probe); never waits. Retry-tier deliveries use it: a target still down when their
    /// record comes due costs at most one probe, not a wait.
    pub fn try_admit(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        match s.open_until {
            None => true,
            Some(until) if Instant::now() >= until && !s.probing => {
                s.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    /// Whether the circuit is open (requests wait or are parked).
    pub fn is_open(&self) -> bool {
        self.state.lock().unwrap().open_until.is_some()
    }

    /// Records a request's result.
    pub fn record(&self, success: bool) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let mut s = self.state.lock().unwrap();
        if success {
            s.failures = 0;
            s.open_until = None;
            s.opened_at = None;
            s.probing = false;
            self.gauge.set(0);
            return;
        }
        s.failures += 1;
        if s.probing || s.failures >= self.config.failure_threshold {
            if s.opened_at.is_none() {
                s.opened_at = Some(Instant::now());
                tracing::warn!(failures = s.failures, "circuit opened");
            }
            s.open_until = Some(Instant::now() + self.config.cool_down.get());
            s.probing = false;
            self.gauge.set(1);
        }
    }

    /// Ends a probe that never reached the target (nothing was sent), so another can go out.
    pub fn release_probe(&self) {
        self.state.lock().unwrap().probing = false;
    }

    /// How long the circuit has been open, if it is.
    pub fn open_for(&self) -> Option<Duration> {
        self.state.lock().unwrap().opened_at.map(|t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDuration;

    #[tokio::test]
    async fn opens_after_threshold_and_closes_on_success() {
        let c = Circuit::new(
            &CircuitConfig {
                failure_threshold: 2,
                cool_down: ConfigDuration::from_millis(50),
            },
            prometheus::IntGauge::new("g", "g").unwrap(),
        );
        c.record(false);
        assert!(c.open_for().is_none());
        c.record(false);
        assert!(c.open_for().is_some());
        assert_eq!(c.gauge.get(), 1);
        c.admit().await; // probe after cool-down
        c.record(true);
        assert!(c.open_for().is_none());
        assert_eq!(c.gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_released_probe_lets_the_next_one_out() {
        let c = Circuit::new(
            &CircuitConfig {
                failure_threshold: 1,
                cool_down: ConfigDuration::from_millis(10),
            },
            prometheus::IntGauge::new("g", "g").unwrap(),
        );
        c.record(false);
        c.admit().await; // the probe
        c.release_probe(); // it was never sent
        tokio::time::timeout(std::time::Duration::from_secs(2), c.admit())
            .await
            .expect("another probe may go out");
    }
}
