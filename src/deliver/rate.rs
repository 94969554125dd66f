//! A target's `rate_limit_per_sec`: requests evenly spaced, at most `rate` per second.
//!
//! `governor`'s GCRA with a burst of one is exactly that pacing. Waits are tokio sleeps (not
//! governor's own timer thread), so they follow the runtime's clock.

use governor::clock::{Clock, MonotonicClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use std::time::Duration;

/// The rate limiter of one target.
#[derive(Debug)]
pub struct RateLimiter {
    limiter: governor::RateLimiter<NotKeyed, InMemoryState, MonotonicClock>,
}

impl RateLimiter {
    /// At most `rate_per_sec` requests per second (a positive number, checked by `check`),
    /// one every `1 / rate_per_sec` seconds.
    pub fn new(rate_per_sec: f64) -> Self {
        // A rate beyond a billion per second paces nothing: one nanosecond is the least period.
        let period = Duration::from_secs_f64(1.0 / rate_per_sec).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period).expect("the period is at least 1 ns");
        Self {
            limiter: governor::RateLimiter::direct_with_clock(quota, MonotonicClock),
        }
    }

    /// Waits until the next request may go out, and takes its slot.
    pub async fn acquire(&self) {
        while let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first request goes at once; the next one has to wait for its slot (a burst of one).
    #[tokio::test]
    async fn one_request_per_period() {
        let rate = RateLimiter::new(1.0 / 3600.0); // one per hour
        tokio::time::timeout(Duration::from_secs(60), rate.acquire())
            .await
            .expect("the first request goes at once");
        let Err(not_until) = rate.limiter.check() else {
            panic!("a second request right after the first must wait");
        };
        let wait = not_until.wait_time_from(rate.limiter.clock().now());
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(3600),
            "{wait:?}"
        );
    }

    #[test]
    fn absurd_rates_do_not_panic() {
        let _ = RateLimiter::new(1e12);
    }
}
