//! Retry policy: which failures are retryable, and how long to wait before the next attempt.
//!
//! Exponential backoff (the schedule comes from `backon`) with full jitter: each wait is a
//! uniform draw from `[0, base]` where `base` doubles from `initial_backoff` up to
//! `max_backoff`. A server's `Retry-After` (seconds or HTTP date) replaces the draw.

use crate::config::RetryConfig;
use backon::BackoffBuilder;
use std::time::{Duration, Instant, SystemTime};

/// Why one request attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttemptError {
    /// Worth retrying: transport errors, timeouts, 408, 429, 5xx.
    #[error("{message}")]
    Retryable {
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Final at once: any other 4xx, invalid request, 3xx.
    #[error("{message}")]
    Fatal {
        status: Option<u16>,
        message: String,
    },
}

impl AttemptError {
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptError::Retryable { status, .. } | AttemptError::Fatal { status, .. } => *status,
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, AttemptError::Retryable { .. })
    }
}

/// Classifies an HTTP status (non-2xx) for a webhook target.
pub fn classify_status(
    status: u16,
    retry_after: Option<Duration>,
    body_hint: &str,
) -> AttemptError {
    let message = if body_hint.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body_hint}")
    };
    let retryable = status == 408 || status == 429 || (500..=599).contains(&status);
    if retryable {
        AttemptError::Retryable {
            status: Some(status),
            message,
            retry_after: if status == 429 || status == 503 {
                retry_after
            } else {
                None
            },
        }
    } else {
        AttemptError::Fatal {
            status: Some(status),
            message,
        }
    }
}

/// Classifies a transport error (connect, timeout, reset): always retryable.
pub fn classify_transport(err: &reqwest::Error) -> AttemptError {
    let kind = if err.is_timeout() {
        "request timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    // reqwest's Display can include the URL; keep only the kind and the root cause.
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    AttemptError::Retryable {
        status: None,
        message: format!("{kind}: {cause}"),
        retry_after: None,
    }
}

/// Parses a `Retry-After` header: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(24 * 3600)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The retry state of one delivery.
pub struct RetryState {
    config: RetryConfig,
    schedule: backon::ExponentialBackoff,
    started: Instant,
    pub attempts: usize,
}

impl RetryState {
    pub fn new(config: &RetryConfig) -> Self {
        let schedule = backon::ExponentialBuilder::default()
            .with_min_delay(config.initial_backoff.get())
            .with_max_delay(config.max_backoff.get())
            .with_factor(2.0)
            .with_max_times(config.max_attempts.saturating_sub(1))
            .build();
        Self {
            config: config.clone(),
            schedule,
            started: Instant::now(),
            attempts: 0,
        }
    }

    /// Time counted against `max_elapsed`: everything since the delivery was taken up,
    /// including waits for an open circuit (else a dead target would hold its events, and
    /// with them the in-flight bound, forever).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// What is left of `max_elapsed`.
    pub fn budget_left(&self) -> Duration {
        self.config.max_elapsed.get().saturating_sub(self.elapsed())
    }

    /// The wait before the next attempt, or `None` when the budget is spent.
    pub fn next_delay(&mut self, err: &AttemptError) -> Option<Duration> {
        let AttemptError::Retryable { retry_after, .. } = err else {
            return None;
        };
        if self.attempts >= self.config.max_attempts {
            return None;
        }
        let base = self.schedule.next()?;
        let wait = match retry_after {
            Some(ra) => *ra,
            None => base.mul_f64(fastrand::f64()),
        };
        let budget = self.config.max_elapsed.get();
        if self.elapsed() + wait > budget {
            return None;
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDuration;

    fn cfg(max_attempts: usize) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_backoff: ConfigDuration::from_millis(100),
            max_backoff: ConfigDuration::from_millis(400),
            max_elapsed: ConfigDuration::from_secs(60),
        }
    }

    #[test]
    fn classification() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(classify_status(s, None, "").is_retryable(), "{s}");
        }
        for s in [300, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!classify_status(s, None, "").is_retryable(), "{s}");
        }
        let ra = Some(Duration::from_secs(3));
        assert!(matches!(
            classify_status(429, ra, ""),
            AttemptError::Retryable {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            classify_status(500, ra, ""),
            AttemptError::Retryable {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let future = SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(d <= Duration::from_secs(120) && d >= Duration::from_secs(100));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn budget_counts_attempts_and_caps_jitter() {
        let mut st = RetryState::new(&cfg(3));
        let err = classify_status(503, None, "");
        let mut waits = vec![];
        loop {
            st.attempts += 1;
            match st.next_delay(&err) {
                Some(d) => waits.push(d),
                None => break,
            }
        }
        assert_eq!(st.attempts, 3);
        assert_eq!(waits.len(), 2);
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(400)));
        let mut st = RetryState::new(&cfg(3));
        st.attempts = 1;
        assert_eq!(st.next_delay(&classify_status(400, None, "")), None);
    }

    #[test]
    fn retry_after_beyond_budget_gives_up() {
        let mut c = cfg(5);
        c.max_elapsed = ConfigDuration::from_secs(1);
        let mut st = RetryState::new(&c);
        st.attempts = 1;
        let err = classify_status(429, Some(Duration::from_secs(5)), "");
        assert_eq!(st.next_delay(&err), None);
    }
}
