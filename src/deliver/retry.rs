//! Retry policy: which failures are retryable, and how long to wait before the next attempt.
//!
//! Exponential backoff (the schedule comes from `backon`) with full jitter: each wait is a
//! uniform draw from `[0, base]` where `base` doubles from `initial_backoff` up to
//! `max_backoff`. A server's `Retry-After` (seconds or HTTP date) replaces the draw.

use super::client::Answer;
use super::schedule::Phase;
use crate::config::RetryConfig;
use crate::report::Failure;
use backon::BackoffBuilder;
use std::time::{Duration, Instant, SystemTime};

/// Why one request attempt failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttemptError {
    /// Worth retrying: transport errors, timeouts, 408, 429, 5xx.
    #[error("{failure}")]
    Retryable {
        failure: Failure,
        /// The server's `Retry-After` (honoured on 429 and 503), replacing the backoff draw.
        retry_after: Option<Duration>,
    },
    /// Final at once: any other 4xx, 3xx, or a request that could not be sent.
    #[error("{0}")]
    Final(Failure),
}

impl AttemptError {
    pub fn status(&self) -> Option<u16> {
        self.failure().status()
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, AttemptError::Retryable { .. })
    }

    pub fn failure(&self) -> &Failure {
        match self {
            AttemptError::Retryable { failure, .. } | AttemptError::Final(failure) => failure,
        }
    }

    /// The server's `Retry-After`, if it sent one with a retryable answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::Retryable { retry_after, .. } => *retry_after,
            AttemptError::Final(_) => None,
        }
    }

    pub fn into_failure(self) -> Failure {
        match self {
            AttemptError::Retryable { failure, .. } | AttemptError::Final(failure) => failure,
        }
    }

    /// The one splitting rule, for every target kind: a multi-event batch whose failure may be
    /// down to some of its events is split in halves, each retried on its own, so only the bad
    /// events fail. That is a final 400 or 413, or a request never sent (its body over the size
    /// limit, or a header rendered from the batch's first event invalid).
    pub fn splits_batch(&self) -> bool {
        match self {
            AttemptError::Final(f) => matches!(f.status(), Some(400 | 413)) || f.not_sent(),
            AttemptError::Retryable { .. } => false,
        }
    }
}

/// The one HTTP status classifier (non-2xx), for webhooks and PostHog alike. Retryable: 408,
/// 429 and 5xx, with `Retry-After` honoured on 429 and 503; final: everything else (other 4xx,
/// and 3xx since redirects are not followed). PostHog's own table (400/401/402/403/413/415
/// final, a 400/413 on a multi-event batch split) is this plus
/// [`AttemptError::splits_batch`]; `posthog_table_is_expressed_by_the_classifier` checks it.
pub fn classify_status(
    status: u16,
    retry_after: Option<Duration>,
    body_hint: &str,
) -> AttemptError {
    let failure = Failure::Status {
        status,
        hint: body_hint.to_string(),
    };
    let retryable = status == 408 || status == 429 || (500..=599).contains(&status);
    if retryable {
        AttemptError::Retryable {
            failure,
            retry_after: if status == 429 || status == 503 {
                retry_after
            } else {
                None
            },
        }
    } else {
        AttemptError::Final(failure)
    }
}

/// Classifies an HTTP answer that is not a success: its status, `Retry-After` and a short hint
/// from its body.
pub async fn classify_response(answer: Answer) -> AttemptError {
    let status = answer.status.as_u16();
    let retry_after = answer
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let hint = body_hint(&answer.body_prefix(200).await);
    classify_status(status, retry_after, &hint)
}

/// A short, single-line hint from the start of an error response body (never the whole body).
fn body_hint(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
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

/// The retry state of one delivery's phase (see [`super::schedule::Phase`]).
pub struct RetryState {
    phase: Phase,
    schedule: backon::ExponentialBackoff,
    started: Instant,
    pub attempts: usize,
}

impl RetryState {
    pub fn new(config: &RetryConfig, phase: Phase) -> Self {
        let schedule = backon::ExponentialBuilder::default()
            .with_min_delay(config.initial_backoff.get())
            .with_max_delay(config.max_backoff.get())
            .with_factor(2.0)
            .with_max_times(phase.attempts.saturating_sub(1))
            .build();
        Self {
            phase,
            schedule,
            started: Instant::now(),
            attempts: 0,
        }
    }

    /// Time counted against the phase's limit: everything since the delivery was taken up,
    /// including waits for an open circuit (else a dead target would hold its events, and
    /// with them the in-flight bound, forever).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// What is left of the phase's time.
    pub fn budget_left(&self) -> Duration {
        self.phase.limit.saturating_sub(self.elapsed())
    }

    /// The wait before the next attempt, or `None` when the phase is over.
    pub fn next_delay(&mut self, err: &AttemptError) -> Option<Duration> {
        let AttemptError::Retryable { retry_after, .. } = err else {
            return None;
        };
        if self.attempts >= self.phase.attempts {
            return None;
        }
        let base = self.schedule.next()?;
        let wait = match retry_after {
            Some(ra) => *ra,
            None => base.mul_f64(fastrand::f64()),
        };
        if self.elapsed() + wait > self.phase.limit {
            return None;
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDuration;

    fn cfg() -> RetryConfig {
        RetryConfig {
            initial_backoff: ConfigDuration::from_millis(100),
            max_backoff: ConfigDuration::from_millis(400),
            ..RetryConfig::default()
        }
    }

    fn phase(attempts: usize, limit: Duration) -> Phase {
        Phase {
            limit,
            attempts,
            wait_for_circuit: true,
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
        for s in [400, 413] {
            assert!(classify_status(s, None, "").splits_batch(), "{s}");
        }
        for s in [401, 404, 429, 500] {
            assert!(!classify_status(s, None, "").splits_batch(), "{s}");
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

    /// PostHog's status table (its client's rules, README "Retries"): 400/401/402/403/413/415
    /// final, 400 and 413 split a multi-event batch; 408, 429 and 5xx retried.
    #[test]
    fn posthog_table_is_expressed_by_the_classifier() {
        for s in [400, 401, 402, 403, 413, 415] {
            let e = classify_status(s, None, "");
            assert!(!e.is_retryable(), "{s}");
            assert_eq!(e.splits_batch(), s == 400 || s == 413, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(classify_status(s, None, "").is_retryable(), "{s}");
        }
        let not_sent = AttemptError::Final(Failure::BodyTooLarge {
            bytes: 2,
            limit: crate::report::BodyLimit::Posthog,
        });
        assert!(not_sent.splits_batch());
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
        let mut st = RetryState::new(&cfg(), phase(3, Duration::from_secs(60)));
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
        let mut st = RetryState::new(&cfg(), phase(3, Duration::from_secs(60)));
        st.attempts = 1;
        assert_eq!(st.next_delay(&classify_status(400, None, "")), None);
    }

    #[test]
    fn retry_after_beyond_budget_gives_up() {
        let mut st = RetryState::new(&cfg(), phase(5, Duration::from_secs(1)));
        st.attempts = 1;
        let err = classify_status(429, Some(Duration::from_secs(5)), "");
        assert_eq!(st.next_delay(&err), None);
    }
}
