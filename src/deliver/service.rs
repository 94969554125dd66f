//! The request side of a target: its HTTP client ([`http_client`]) and the [`Service`] that
//! sends a batch or, for `event-relay route`, shows what it would send ([`Preview`], with
//! credentials redacted).

use super::retry::AttemptError;
use super::{posthog, webhook, BuildError, Delivery};
use crate::config::{TargetConfig, TargetKind};
use crate::envelope::Envelope;
use crate::report::Failure;
use std::time::Duration;

/// How a target talks HTTP.
pub enum Service {
    Webhook(webhook::WebhookService),
    Posthog(posthog::PosthogService),
}

impl Service {
    /// The service of one target, with its own HTTP client.
    pub fn new(cfg: &TargetConfig) -> Result<Self, BuildError> {
        let client = http_client(cfg)?;
        Ok(match cfg.kind {
            TargetKind::Webhook => Service::Webhook(webhook::WebhookService::new(cfg, client)?),
            TargetKind::Posthog => Service::Posthog(posthog::PosthogService::new(cfg, client)?),
        })
    }

    pub(super) async fn send(&self, batch: &[Delivery]) -> Result<u16, AttemptError> {
        match self {
            Service::Webhook(s) => s.send(batch).await,
            Service::Posthog(s) => s.send(batch).await,
        }
    }

    /// Dry run: the request this target would make for `env` (`raw`: the bytes it came from),
    /// built by the same code as [`Service::send`]. Sends nothing. Fails only where sending
    /// would (a header template rendering to an invalid value).
    pub fn preview(&self, env: &Envelope, raw: &[u8]) -> Result<Preview, Failure> {
        match self {
            Service::Webhook(s) => s.preview(env, raw),
            Service::Posthog(s) => Ok(s.preview(env)),
        }
    }
}

/// What a target would send for one event (see [`Service::preview`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The request URL, templates rendered.
    pub url: String,
    /// The request headers as sent, except that credentials are replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// The event's body, before any gzip: the whole request body for a webhook sending one
    /// event per request; on batching targets the event's element of the body's array
    /// (PostHog: of `batch`).
    pub body: Vec<u8>,
}

/// Whether a header carries a credential (`Authorization`, an API key or token, a signature):
/// a dry run shows it as `<redacted>`.
fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "cookie"
        || ["auth", "key", "token", "secret", "signature", "password"]
            .iter()
            .any(|word| name.contains(word))
}

/// Headers as text, credentials redacted.
pub(super) fn redacted(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let text = if is_secret_header(name.as_str()) {
                "<redacted>".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.to_string(), text)
        })
        .collect()
}

/// Builds the HTTP client of one target.
pub fn http_client(cfg: &TargetConfig) -> Result<reqwest::Client, BuildError> {
    if cfg.tls_insecure_skip_verify {
        tracing::warn!(target_name = %cfg.name, "TLS certificate verification is DISABLED for this target (tls_insecure_skip_verify = true)");
    }
    let builder = reqwest::Client::builder()
        .timeout(cfg.timeout.get())
        .connect_timeout(cfg.timeout.get().min(Duration::from_secs(10)))
        .pool_max_idle_per_host(cfg.max_in_flight)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(cfg.tls_insecure_skip_verify)
        .user_agent(concat!("event-relay/", env!("CARGO_PKG_VERSION")));
    // `http2 = true`: one connection carries every request in flight (h2c on http://).
    // Not set, measured in issue 16 (no difference beyond the bench's run-to-run noise):
    // `tcp_nodelay(true)` is reqwest's default already; `http1_only()` for the other targets
    // changes nothing on http:// and would stop https:// ones from negotiating HTTP/2 through
    // ALPN. The idle-pool cap above hardly ever binds (at most `max_in_flight` requests are in
    // flight); dropping it made no difference either.
    let builder = if cfg.http2 {
        builder.http2_prior_knowledge()
    } else {
        builder
    };
    builder.build().map_err(|source| BuildError::HttpClient {
        target: cfg.name.clone(),
        source,
    })
}
