//! Target (delivery destination) configuration: webhooks and PostHog, retries, circuit breaker.

use super::duration::ConfigDuration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Kind of delivery destination.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Any HTTP endpoint.
    Webhook,
    /// PostHog's `/batch/` capture endpoint.
    Posthog,
}

/// What a webhook target sends as the request body.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// The normalized envelope as JSON.
    #[default]
    Envelope,
    /// The original payload bytes, unchanged.
    Original,
    /// The PostHog event shape.
    Posthog,
}

/// HTTP method of a webhook target.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// POST (default).
    #[default]
    #[serde(alias = "post", alias = "Post")]
    Post,
    /// PUT.
    #[serde(alias = "put", alias = "Put")]
    Put,
    /// PATCH.
    #[serde(alias = "patch", alias = "Patch")]
    Patch,
}

/// Event name style sent to PostHog.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventNames {
    /// Keep the source's name (`CardViewed`).
    #[default]
    Original,
    /// `CardViewed` → `card_viewed`.
    SnakeCase,
}

/// One delivery destination.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Unique name used by routes, metrics and result events.
    pub name: String,
    /// `webhook` or `posthog`.
    pub kind: TargetKind,
    /// Endpoint URL (webhook: may hold `{{field}}` templates in path/query; posthog: the host).
    pub url: String,
    /// Stable GUID reported as `integration_id`; default: UUIDv5 of the name.
    #[serde(default)]
    pub id: Option<String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Extra request headers (values may use `${VAR}` and `{{field}}` templates).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How the relay authenticates to the endpoint (`kind = "bearer"`: a token from a file;
    /// `kind = "oauth2"`: client credentials), for partners that want a token that changes
    /// rather than a fixed header. It sets `Authorization`, so `headers` may not.
    #[serde(default)]
    pub auth: Option<super::auth::AuthConfig>,
    /// Retry schedule for retryable failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Most concurrent requests to this target, so one slow target never starves others.
    #[serde(
        default = "default_max_in_flight",
        deserialize_with = "super::lenient::lenient_usize"
    )]
    pub max_in_flight: usize,
    /// Optional requests-per-second ceiling.
    #[serde(default)]
    pub rate_limit_per_sec: Option<f64>,
    /// Webhook: request body shape.
    #[serde(default)]
    pub body: BodyFormat,
    /// Webhook: HTTP method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Webhook: Standard Webhooks secret (`whsec_<base64>`); when set, requests are signed, so
    /// a receiver can tell the relay's requests from forgeries. A list while a secret is
    /// rotated: every secret signs, so receivers holding the old or the new one both verify.
    #[serde(default)]
    pub signing_secret: Option<super::SigningSecret>,
    /// PostHog: project API key (usually `${POSTHOG_API_KEY}`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Events per request (PostHog default 100; webhook default 1 = one request per event).
    #[serde(default)]
    pub batch_max_events: Option<usize>,
    /// Bytes per request body before compression (PostHog default 5 MB).
    #[serde(default)]
    pub batch_max_bytes: Option<usize>,
    /// How long a partial batch waits for more events.
    #[serde(default)]
    pub batch_linger: Option<ConfigDuration>,
    /// PostHog: route to the historical ingestion topic (backfills).
    #[serde(default)]
    pub historical_migration: bool,
    /// PostHog: event name style.
    #[serde(default)]
    pub event_names: EventNames,
    /// PostHog: gzip request bodies.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Accept invalid TLS certificates (loudly logged; never in production).
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    /// Whom this target's server certificate must chain to (`ca_file`, `roots`) and the client
    /// certificate it is shown (mTLS), for partners on a private CA, behind a corporate root or
    /// requiring client certificates; see [`super::TlsConfig`].
    #[serde(default)]
    pub tls: super::TlsConfig,
    /// Speak HTTP/2 with prior knowledge, so one connection multiplexes many concurrent
    /// requests instead of one connection per request in flight (less per-request work for the
    /// relay and the target). On `http://` URLs this is h2c (cleartext HTTP/2, no upgrade); on
    /// `https://` the client offers only HTTP/2 (without the key it offers both through ALPN
    /// and uses HTTP/2 where the server picks it). Enable it only when the target speaks
    /// HTTP/2: one that does not fails every request. Off by default.
    #[serde(default, deserialize_with = "super::lenient::lenient_bool")]
    pub http2: bool,
    /// The HTTP proxy this target's requests go through, for relays that may only reach the
    /// outside through one: `"http://[user:pass@]host:port"` (`https://` targets through a
    /// `CONNECT` tunnel, `http://` targets as absolute-form requests), or `"none"` for direct
    /// connections. Unset: the environment decides, as for curl (`HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY`, either case).
    #[serde(default)]
    pub proxy: Option<String>,
    /// Circuit breaker settings.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// Most deliveries this target may hold in memory (queued, sending, retrying), so a target
    /// that is down cannot take the whole `pipeline.max_in_flight_events` from the others.
    /// With `[retry_tiers]`, deliveries beyond it are parked on the first tier at once while
    /// the target is failing (its last request failed); a healthy target may use in-flight
    /// room the others leave free. Default:
    /// an equal share of what the other targets' settings leave of the in-flight bound.
    #[serde(default)]
    pub max_queued_events: Option<usize>,
    /// A VRL program that reshapes what this target sends, for partners that want their own
    /// payload shape, headers or path, or must not get some fields (`docs/transforms.md`).
    /// It receives the body the target would send as `.` and sends what `.` holds at its end.
    #[serde(default)]
    pub transform: Option<String>,
    /// The same program in a file (a relative path is relative to the config file's
    /// directory), for programs too long to read inline.
    #[serde(default)]
    pub transform_file: Option<std::path::PathBuf>,
    /// Values the program reads as `%vars.NAME` (`${VAR}` expanded like any config string), so
    /// a program in a file can put an API key into a partner's body without holding it.
    #[serde(default)]
    pub transform_vars: BTreeMap<String, String>,
    /// Tests of what this target sends for given source messages (`event-relay test`, `check`).
    #[serde(default)]
    pub tests: Vec<super::transform::TargetTest>,
}

/// Exponential backoff with full jitter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts over the whole journey, including the first (1 = no retries), for a
    /// partner that must not be asked more often than that. Unset: 10 without retry tiers;
    /// with them, 10 in memory less one per tier, and then the journey's time
    /// (`max_elapsed`) ends it, the last tier repeating, so a partner down over a weekend is
    /// retried all weekend.
    #[serde(
        default,
        deserialize_with = "super::lenient::lenient_opt_usize",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_attempts: Option<usize>,
    /// Upper bound of the first backoff.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: ConfigDuration,
    /// Cap of any single backoff.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: ConfigDuration,
    /// Give up once this much time passed since the first attempt, across every retry tier
    /// (up to days with tiers, e.g. `"24h"`). Default: 15m without `[retry_tiers]`; with them
    /// 24h, or twice the target's schedule if that is longer.
    #[serde(default)]
    pub max_elapsed: Option<ConfigDuration>,
    /// With `[retry_tiers]`: how long a failing delivery is retried in memory before it is
    /// parked on the first tier (also bounded by `max_attempts`, less one attempt per tier, so
    /// every tier keeps its attempt). Without tiers the in-memory phase lasts `max_elapsed`.
    #[serde(default = "default_hold")]
    pub hold: ConfigDuration,
    /// With `[retry_tiers]`: the delays (out of `retry_tiers.delays`) this target's parked
    /// deliveries go through, in order; default all of them.
    #[serde(default)]
    pub tiers: Option<Vec<ConfigDuration>>,
}

/// Per-target circuit breaker.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive failed requests that open the circuit (0 disables the breaker).
    #[serde(
        default = "default_failure_threshold",
        deserialize_with = "super::lenient::lenient_usize"
    )]
    pub failure_threshold: usize,
    /// How long the circuit stays open before a probe request.
    #[serde(default = "default_cool_down")]
    pub cool_down: ConfigDuration,
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
fn default_max_in_flight() -> usize {
    64
}
fn default_true() -> bool {
    true
}
/// Attempts without an explicit `retry.max_attempts`: the whole journey without tiers, the
/// in-memory phase plus one per tier with them.
pub const DEFAULT_MAX_ATTEMPTS: usize = 10;
fn default_initial_backoff() -> ConfigDuration {
    ConfigDuration::from_secs(1)
}
fn default_max_backoff() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}
fn default_hold() -> ConfigDuration {
    ConfigDuration::from_secs(30)
}
fn default_failure_threshold() -> usize {
    20
}
fn default_cool_down() -> ConfigDuration {
    ConfigDuration::from_secs(30)
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: None,
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_elapsed: None,
            hold: default_hold(),
            tiers: None,
        }
    }
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            cool_down: default_cool_down(),
        }
    }
}

impl TargetConfig {
    /// The target's GUID: configured, else UUIDv5 of the name (stable across restarts).
    pub fn guid(&self) -> uuid::Uuid {
        self.id
            .as_deref()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .unwrap_or_else(|| {
                uuid::Uuid::new_v5(&crate::envelope::RELAY_NAMESPACE, self.name.as_bytes())
            })
    }

    /// Events per request, with the kind's default.
    pub fn batch_events(&self) -> usize {
        self.batch_max_events.unwrap_or(match self.kind {
            TargetKind::Posthog => 100,
            TargetKind::Webhook => 1,
        })
    }

    /// Bytes per request, with the kind's default.
    pub fn batch_bytes(&self) -> usize {
        self.batch_max_bytes.unwrap_or(5 * 1024 * 1024)
    }

    /// Linger of partial batches, with the default.
    pub fn linger(&self) -> std::time::Duration {
        self.batch_linger
            .map(|d| d.get())
            .unwrap_or(std::time::Duration::from_millis(250))
    }
}
