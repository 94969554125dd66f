//! What became of one (event, target) delivery: the vocabulary the delivery layer produces and
//! result events report. It lives here, downstream of `deliver`, so `report` never imports
//! `deliver` (the flow has one direction).

use crate::config::ConfigDuration;
use std::fmt;
use std::time::Duration;

/// Final outcome of one (event, target) delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The target accepted the event (a 2xx answer).
    Delivered {
        /// The 2xx status of the accepting answer.
        status: u16,
        /// Requests made for the event, splits included.
        attempts: usize,
        /// From the first attempt to the answer.
        duration: Duration,
    },
    /// The delivery failed for good: a final answer, or retries ran out.
    Failed {
        /// Why: the last attempt's failure, or the circuit that stayed open.
        error: Failure,
        /// Requests made for the event, splits included.
        attempts: usize,
        /// From the first attempt (or from taking the delivery up) to giving up.
        duration: Duration,
    },
}

impl Outcome {
    /// Whether the target accepted the event.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }

    /// The result event's `event`: `WebhookSuccess` or `WebhookError`.
    pub fn result_kind(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "WebhookSuccess",
            Outcome::Failed { .. } => "WebhookError",
        }
    }

    /// The HTTP status of the last answer, if there was one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status, .. } => Some(*status),
            Outcome::Failed { error, .. } => error.status(),
        }
    }

    /// The failure, for failed deliveries.
    pub fn error(&self) -> Option<&Failure> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Failed { error, .. } => Some(error),
        }
    }

    pub fn attempts(&self) -> usize {
        match self {
            Outcome::Delivered { attempts, .. } | Outcome::Failed { attempts, .. } => *attempts,
        }
    }

    pub fn duration(&self) -> Duration {
        match self {
            Outcome::Delivered { duration, .. } | Outcome::Failed { duration, .. } => *duration,
        }
    }
}

/// Why a request, or a whole delivery, failed. Its `Display` is the result event's `error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The target answered with a non-2xx status.
    #[error("HTTP {status}{}{hint}", if hint.is_empty() { "" } else { ": " })]
    Status {
        status: u16,
        /// A short, single-line prefix of the answer's body (may be empty).
        hint: String,
    },
    /// No answer: the connection failed, the request timed out or was reset.
    #[error("{kind}: {cause}")]
    Transport {
        kind: TransportKind,
        /// The root cause (reqwest's own message can include the URL; this does not).
        cause: String,
    },
    /// Not sent: the request body is over a size limit.
    #[error("request body of {bytes} bytes exceeds {limit}")]
    BodyTooLarge { bytes: usize, limit: BodyLimit },
    /// Not sent: a header template rendered to a value HTTP does not allow.
    #[error("header {name}: the rendered value is not a valid HTTP header value")]
    InvalidHeaderValue { name: String },
    /// The target's circuit stayed open for the rest of the retry budget.
    #[error("circuit open (target {target} kept failing); retry budget max_elapsed = {max_elapsed} spent")]
    CircuitOpen {
        target: String,
        max_elapsed: ConfigDuration,
    },
    /// A parked delivery came due while its target's circuit was open (and the probe was
    /// not its to make): it moved on without a request.
    #[error("circuit open (target {target} kept failing) when the parked delivery came due")]
    CircuitStillOpen { target: String },
    /// The target's transform failed on the event (`transform failed: ...`, the reason from
    /// the `transform` stage): final, nothing sent, never retried.
    #[error("{0}")]
    Transform(String),
    /// Not sent: the OAuth2 token endpoint of the target's `auth` failed or answered no
    /// usable token. Retryable (the event is not to blame); names the endpoint, never the
    /// client secret or a token.
    #[error("oauth2 token request to {url} failed: {cause}")]
    TokenRequest { url: String, cause: String },
    /// Not sent: the target's bearer `token_file` has never held a usable token since the
    /// relay started (a token read earlier is kept while the file is briefly missing).
    /// Retryable; names the file, never its content.
    #[error("auth.token_file: {0}")]
    TokenFile(crate::config::TokenFileError),
    /// A parked delivery came due for a target the config no longer has.
    #[error("target {target} is no longer configured; the delivery is kept in the failed topic")]
    TargetRemoved { target: String },
}

impl Failure {
    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the request never left the relay (nothing reached the target).
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            Failure::BodyTooLarge { .. }
                | Failure::InvalidHeaderValue { .. }
                | Failure::TargetRemoved { .. }
                | Failure::Transform(..)
                | Failure::TokenRequest { .. }
                | Failure::TokenFile(..)
        )
    }
}

/// How a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Timeout,
    Connect,
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Timeout => "request timed out",
            TransportKind::Connect => "connection failed",
            TransportKind::Other => "transport error",
        })
    }
}

/// Which size limit a request body exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// The target's `batch_max_bytes` (webhooks).
    BatchMaxBytes,
    /// PostHog's: `batch_max_bytes` for a batch, about 1 MB for a single event.
    Posthog,
}

impl fmt::Display for BodyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyLimit::BatchMaxBytes => "batch_max_bytes",
            BodyLimit::Posthog => "the size limit",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages result events carry (`error`) keep their wording.
    #[test]
    fn failure_messages() {
        let status = |hint: &str| Failure::Status {
            status: 503,
            hint: hint.into(),
        };
        assert_eq!(status("").to_string(), "HTTP 503");
        assert_eq!(status("busy").to_string(), "HTTP 503: busy");
        let t = Failure::Transport {
            kind: TransportKind::Connect,
            cause: "refused".into(),
        };
        assert_eq!(t.to_string(), "connection failed: refused");
        let big = Failure::BodyTooLarge {
            bytes: 10,
            limit: BodyLimit::BatchMaxBytes,
        };
        assert_eq!(
            big.to_string(),
            "request body of 10 bytes exceeds batch_max_bytes"
        );
        assert!(big.not_sent() && big.status().is_none());
        let budget = ConfigDuration::from_secs(2);
        let open = Failure::CircuitOpen {
            target: "crm".into(),
            max_elapsed: budget,
        };
        assert_eq!(
            open.to_string(),
            format!(
                "circuit open (target crm kept failing); retry budget max_elapsed = {budget} spent"
            )
        );
    }
}
