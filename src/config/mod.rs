//! The one configuration tree of the relay, loaded from TOML plus environment overrides.
//!
//! Loading ([`load`]) layers the TOML file under `EVENT_RELAY__SECTION__KEY` environment
//! variables (the `config` crate), expands `${VAR}` inside string values from the environment,
//! and deserializes into [`Config`] with `deny_unknown_fields` everywhere, so a typo is an
//! error with its key path. Deserialization goes on past each error (`salvage.rs`), and
//! [`Config::validate`] then checks what loaded: `check` reports *every* problem at once.

mod auth;
mod duration;
mod expand;
mod keypath;
mod lenient;
mod load;
mod plain;
mod problem;
mod routes;
mod salvage;
mod secret;
mod targets;
mod telemetry;
mod tiers;
mod tls;
mod transform;
mod validate;
mod validate_targets;
mod validate_tiers;

pub use auth::{read_token_file, AuthConfig, BearerAuth, OAuth2Auth, TokenFileError};
pub use duration::{parse_duration, ConfigDuration, DurationError, DurationProblem};
pub use load::{load, load_partial, load_str, name_variables};
pub use problem::{ConfigError, Problem};
pub use routes::{Condition, Operator, OperatorCount, Pattern, RouteConfig};
pub use secret::{decode_signing_secret, SecretError, SigningSecret};
pub use targets::{
    BodyFormat, CircuitConfig, EventNames, HttpMethod, RetryConfig, TargetConfig, TargetKind,
    DEFAULT_MAX_ATTEMPTS,
};
pub use telemetry::TelemetryConfig;
pub use tiers::{delay_label, RetryTiersConfig, Tier, Tiering};
pub use tls::{ClientIdentity, TlsConfig, TlsError, TlsMaterial, TlsProblems, TlsRoots};
pub use transform::{Expectation, ProgramSource, ProgramText, TargetTest};
pub use validate::UnknownEnvelopeField;
pub use validate_targets::template_fields;
pub use validate_targets::{ProxySetting, ProxyUrlError, UrlError};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole relay configuration. See `config/example.toml` for a commented reference.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to consume from and produce to.
    pub kafka: KafkaConfig,
    /// Input topics, one entry per topic.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Where WebhookSuccess / WebhookError result events go.
    pub results: ResultsConfig,
    /// Where messages that cannot be relayed at all go.
    pub dead_letter: DeadLetterConfig,
    /// Delivery destinations (webhooks, PostHog).
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Routing rules: which events go to which targets.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Targets for events that no route matched (empty: such events are counted as unrouted).
    #[serde(default)]
    pub default_targets: Vec<String>,
    /// Durable retry tiers on Kafka for deliveries whose target stays down, so it costs the
    /// other targets nothing. On without the section (every default, topics named after
    /// `kafka.group_id`); `enabled = false` keeps retries in memory only.
    #[serde(default)]
    pub retry_tiers: Option<RetryTiersConfig>,
    /// Bounds on in-flight work, commit cadence and shutdown.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The HTTP server for health and metrics.
    #[serde(default)]
    pub server: ServerConfig,
    /// Logging format and level.
    #[serde(default)]
    pub log: LogConfig,
    /// OpenTelemetry traces of each message's journey, exported over OTLP/HTTP: off unless
    /// `otlp_endpoint` is set (then a span per message and per delivery attempt, and a W3C
    /// `traceparent` header on every request to a target).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Catalog files applied over the built-in catalogs in order (a later file wins), so a
    /// new upstream event or property is validated and typed without a new release.
    #[serde(default)]
    pub catalogs: Vec<CatalogFileConfig>,
}

/// One `[[catalogs]]` entry: a catalog file (format: `docs/catalog.md`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFileConfig {
    /// The JSON catalog file; a relative path is relative to the config file's directory.
    pub path: std::path::PathBuf,
}

/// Kafka connection and consumer-group settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// Consumer group; replicas sharing it split the partitions between them.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Any librdkafka property passed through verbatim (security.protocol, sasl.*, ssl.*, ...).
    /// Applied to the consumer and the producer; these win over the relay's own defaults.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// How to interpret payloads of a source topic.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// Komo's flat webhook body.
    Komo,
    /// acemate's PostHog-style events (single, batch or PostHog's Kafka ingestion record).
    Acemate,
    /// Decide per message from the payload's shape.
    Auto,
}

/// What to do with events that break their catalog schema.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMode {
    /// Dead-letter events that break the catalog.
    #[default]
    Strict,
    /// Forward them with `validation.status = "invalid"` and the problems listed.
    Lenient,
}

/// What to do with events whose name is not in the catalog.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownEvents {
    /// Forward with `validation.status = "unknown_event"`.
    #[default]
    Forward,
    /// Send to the dead-letter topic.
    DeadLetter,
}

/// One input topic.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The Kafka topic to consume.
    pub topic: String,
    /// Payload shape: komo | acemate | auto.
    pub format: SourceFormat,
    /// Site id stamped on events of this topic that carry none (acemate has no sites).
    #[serde(default)]
    pub site_id: Option<String>,
    /// Site name stamped on events of this topic that carry none.
    #[serde(default)]
    pub site_name: Option<String>,
    /// Catalog validation policy for this topic.
    #[serde(default)]
    pub validation: ValidationMode,
    /// Policy for events not in the catalog.
    #[serde(default)]
    pub unknown_events: UnknownEvents,
    /// The user attributes this source's hubs declare (names, or globs with `*` / `?` such as
    /// `utm_*`): for events the catalog does not know, these keys go to `user.traits` (and so
    /// to result events and PostHog's `$set`) instead of `properties`.
    #[serde(default)]
    pub user_attributes: Vec<String>,
}

/// The results topic.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsConfig {
    /// Topic receiving one WebhookSuccess / WebhookError per (event, target).
    pub topic: String,
}

/// The dead-letter topic.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Topic receiving the original bytes of messages that cannot be relayed.
    pub topic: String,
}

/// Bounds on in-flight work and shutdown behaviour.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Most consumed-but-not-final events held at once (a batch message counts each of its
    /// events), which bounds memory; at the bound the relay stops reading (for up to 500 ms),
    /// then pauses its partitions. The default (2,000) keeps the relay under 64 MiB with
    /// ~600-byte events and still fills 256 webhook requests or twenty 100-event PostHog
    /// batches at once; a target slower than ~100 ms per request needs it higher
    /// (throughput ≤ bound ÷ request time).
    #[serde(
        default = "default_max_in_flight_events",
        deserialize_with = "lenient::lenient_usize"
    )]
    pub max_in_flight_events: usize,
    /// Most payload bytes of consumed-but-not-final messages held at once (counted in started
    /// KiB per message), so large events cannot take memory the event bound assumes small: a
    /// message larger than this is admitted alone. In memory an event takes several times its
    /// payload (its parsed envelope), so this bounds what large events can take.
    #[serde(
        default = "default_max_in_flight_bytes",
        deserialize_with = "lenient::lenient_usize"
    )]
    pub max_in_flight_bytes: usize,
    /// On shutdown, how long to wait for in-flight deliveries before giving up on them
    /// (given-up events stay uncommitted and are redelivered after a restart).
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: ConfigDuration,
    /// On a rebalance, how long a revoked partition's in-flight deliveries may take to finish
    /// before the partition is released (what is final by then is committed, so the next owner
    /// repeats nothing else). Bounded below the group's `max.poll.interval.ms`: the consumer is
    /// not polled while it waits.
    #[serde(default = "default_revoke_timeout")]
    pub revoke_timeout: ConfigDuration,
    /// How often finished offsets are committed to the group (also as soon as a partition has
    /// nothing in flight, at most every tenth of this), bounding what a crash redelivers.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: ConfigDuration,
    /// Messages larger than this are dead-lettered unread.
    #[serde(
        default = "default_max_message_bytes",
        deserialize_with = "lenient::lenient_usize"
    )]
    pub max_message_bytes: usize,
    /// Threads of the async runtime that runs the target workers, HTTP requests and result
    /// events (the consume loop has a thread of its own). Default: one per core. Fewer leave
    /// cores to a broker or receiver on the same machine; on 2 cores one worker cost the webhook
    /// path 1.14× the CPU per event and 0.77× the throughput (issue 16).
    #[serde(
        default,
        deserialize_with = "lenient::lenient_opt_usize",
        skip_serializing_if = "Option::is_none"
    )]
    pub worker_threads: Option<usize>,
}

impl PipelineConfig {
    /// The runtime's worker threads: `worker_threads`, else one per available core.
    pub fn effective_worker_threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

/// The health/metrics HTTP server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for `/healthz`, `/readyz` and `/metrics`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `/healthz` turns red when the consume loop has not ticked for this long (stuck loop).
    #[serde(default = "default_liveness_deadline")]
    pub liveness_deadline: ConfigDuration,
    /// `/readyz` lists a target whose circuit has been open longer than this under
    /// `circuits_open_too_long` (for operators; readiness itself ignores target health, so a
    /// partner's outage never takes a sidecar's pod out of service).
    #[serde(default = "default_circuit_open_threshold")]
    pub circuit_open_threshold: ConfigDuration,
    /// Serve `GET /tap`: the events passing each stage, live, as NDJSON (`event-relay tap`), so
    /// an operator can see which events go where without reading topics. Off by default: the
    /// lines name event ids and names (envelopes only with `log.include_payloads`) to anyone
    /// who can reach `listen`. With no client connected it costs one atomic load per message
    /// and per delivery outcome.
    #[serde(default, deserialize_with = "lenient::lenient_bool")]
    pub tap: bool,
}

/// Log output.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for humans, `json` for log pipelines.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// Level filter (`info`, `debug`, `event_relay=debug`); `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Include payload personal data in log lines (off by default).
    #[serde(default, deserialize_with = "lenient::lenient_bool")]
    pub include_payloads: bool,
}

fn default_group_id() -> String {
    "event-relay".into()
}
fn default_max_in_flight_events() -> usize {
    2_000
}
fn default_max_in_flight_bytes() -> usize {
    4 << 20
}
fn default_drain_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(30)
}
fn default_revoke_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
fn default_commit_interval() -> ConfigDuration {
    ConfigDuration::from_millis(1000)
}
fn default_max_message_bytes() -> usize {
    1024 * 1024
}
fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_liveness_deadline() -> ConfigDuration {
    ConfigDuration::from_secs(30)
}
fn default_circuit_open_threshold() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}
fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_in_flight_events: default_max_in_flight_events(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            drain_timeout: default_drain_timeout(),
            revoke_timeout: default_revoke_timeout(),
            commit_interval: default_commit_interval(),
            max_message_bytes: default_max_message_bytes(),
            worker_threads: None,
        }
    }
}
impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            liveness_deadline: default_liveness_deadline(),
            circuit_open_threshold: default_circuit_open_threshold(),
            tap: false,
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
            include_payloads: false,
        }
    }
}

#[cfg(test)]
mod tests;
