//! The request side of a target: the [`Service`] that, through its own
//! [`HttpClient`](super::client::HttpClient),
//! sends a batch or, for `event-relay route`, shows what it would send ([`Preview`], with
//! credentials redacted).

use super::client::{HeaderMap, HttpClient};
use super::retry::AttemptError;
use super::shape::Shaped;
use super::{posthog, webhook, BuildError, Delivery};
use crate::config::{TargetConfig, TargetKind};
use crate::envelope::Envelope;
use crate::metrics::Metrics;
use crate::report::Failure;
use crate::telemetry::{TraceParent, TRACEPARENT};

/// Adds the `traceparent` header of `trace` (unless the target's headers or transform set
/// one), so the target's own tracing joins the relay's trace.
pub(super) fn trace_header(headers: &mut HeaderMap, trace: Option<TraceParent>) {
    if let Some(t) = trace {
        let value = http::HeaderValue::try_from(t.header()).expect("hex digits and dashes");
        headers.entry(TRACEPARENT).or_insert(value);
    }
}

/// How a target talks HTTP.
pub enum Service {
    Webhook(webhook::WebhookService),
    Posthog(posthog::PosthogService),
}

impl Service {
    /// The service of one target, with its own HTTP client, for a dry run (`route`, `test`,
    /// `transform`: nothing counted in metrics).
    pub fn new(cfg: &TargetConfig) -> Result<Self, BuildError> {
        Self::build(cfg, None)
    }

    /// The service of one target, with its own HTTP client; `metrics` count its credential
    /// refreshes (`auth`).
    pub(super) fn build(cfg: &TargetConfig, metrics: Option<&Metrics>) -> Result<Self, BuildError> {
        let client = HttpClient::new(cfg)?;
        let auth = super::auth::Auth::new(cfg, metrics)?;
        Ok(match cfg.kind {
            TargetKind::Webhook => {
                Service::Webhook(webhook::WebhookService::new(cfg, client, auth)?)
            }
            TargetKind::Posthog => {
                Service::Posthog(posthog::PosthogService::new(cfg, client, auth)?)
            }
        })
    }

    /// Sends a batch as one request; `trace`: the W3C trace context it carries.
    pub(super) async fn send(
        &self,
        batch: &[Delivery],
        trace: Option<TraceParent>,
    ) -> Result<u16, AttemptError> {
        match self {
            Service::Webhook(s) => s.send(batch, trace).await,
            Service::Posthog(s) => s.send(batch, trace).await,
        }
    }

    /// Dry run: the request this target would make for `env` (`raw`: the bytes it came from),
    /// `shaped` by its transform, built by the same code as [`Service::send`]. Sends nothing.
    /// Fails only where sending would (a header rendering to an invalid value).
    pub fn preview(
        &self,
        env: &Envelope,
        raw: &[u8],
        shaped: Option<&Shaped>,
    ) -> Result<Preview, Failure> {
        match self {
            Service::Webhook(s) => s.preview(env, raw, shaped),
            Service::Posthog(s) => s.preview(env, shaped),
        }
    }

    /// Whether the target sends the envelope itself (a webhook with `body = "envelope"`).
    pub fn sends_envelope(&self) -> bool {
        matches!(self, Service::Webhook(s) if s.sends_envelope())
    }

    /// The JSON this target sends for `env` alone without a transform (on batching targets,
    /// its element of the body's array): what a transform receives as `.`.
    pub fn event_body(&self, env: &Envelope, raw: &[u8]) -> Vec<u8> {
        match self {
            Service::Webhook(s) => {
                let mut body = Vec::with_capacity(raw.len() * 2 + 512);
                s.write_one(&mut body, env, raw);
                body
            }
            Service::Posthog(s) => s.event_body(env),
        }
    }
}

/// What a target would send for one event (see [`Service::preview`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The request URL, templates rendered, a password in it shown as `redacted`.
    pub url: String,
    /// The request headers as sent, except that credentials are replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// The event's body, before any gzip: the whole request body for a webhook sending one
    /// event per request; on batching targets the event's element of the body's array
    /// (PostHog: of `batch`).
    pub body: Vec<u8>,
}

/// Whether a header (or a transform variable) carries a credential (`Authorization`, an API
/// key or token, a signature): a dry run shows it as `<redacted>`.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "cookie"
        || ["auth", "key", "token", "secret", "signature", "password"]
            .iter()
            .any(|word| name.contains(word))
}

/// A URL as a dry run shows it: a password in it (`https://user:pass@host/`) replaced by
/// `redacted`, like the credential headers.
pub(super) fn redacted_url(url: String) -> String {
    match url::Url::parse(&url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.into()
        }
        _ => url,
    }
}

/// Headers as text, credentials redacted.
pub(super) fn redacted(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let text = if is_secret_name(name.as_str()) {
                "<redacted>".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.to_string(), text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn a_password_in_a_url_is_not_shown() {
        assert_eq!(
            redacted_url("https://crm:s3cret@hooks.example.com/in?x=1".into()),
            "https://crm:redacted@hooks.example.com/in?x=1"
        );
        let plain = "https://hooks.example.com/in/{{event}}".to_string();
        assert_eq!(redacted_url(plain.clone()), plain);
    }
}
