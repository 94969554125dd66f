//! The webhook target: one request per event (or a JSON array per batch) to any HTTP endpoint,
//! with templated URL/headers and optional Standard Webhooks signing.

use super::retry::{classify_status, classify_transport, parse_retry_after, AttemptError};
use super::signing::Signer;
use super::template::Template;
use super::Delivery;
use crate::config::{BodyFormat, EventNames, HttpMethod, TargetConfig};
use crate::envelope::RELAY_NAMESPACE;

/// A webhook endpoint.
pub struct WebhookService {
    client: reqwest::Client,
    method: reqwest::Method,
    url: Template,
    /// The URL parsed once, when it has no placeholders (most targets): parsing it again for
    /// every request was ~3% of the relay's CPU in the webhook benchmark.
    static_url: Option<reqwest::Url>,
    headers: Vec<(reqwest::header::HeaderName, Template)>,
    body: BodyFormat,
    signer: Option<Signer>,
    /// `batch_max_events` > 1: every body is a JSON array, even of one event.
    array: bool,
    /// `batch_max_bytes`: bound on multi-event bodies (a single event is always sent).
    max_bytes: usize,
}

impl WebhookService {
    pub fn new(cfg: &TargetConfig, client: reqwest::Client) -> Result<Self, String> {
        let headers = cfg
            .headers
            .iter()
            .map(|(k, v)| {
                reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map(|name| (name, Template::parse(v)))
                    .map_err(|_| format!("invalid header name {k:?}"))
            })
            .collect::<Result<_, _>>()?;
        let url = Template::parse(&cfg.url);
        let static_url = url
            .is_static()
            .then(|| reqwest::Url::parse(&cfg.url).ok())
            .flatten();
        Ok(Self {
            client,
            method: match cfg.method {
                HttpMethod::Post => reqwest::Method::POST,
                HttpMethod::Put => reqwest::Method::PUT,
                HttpMethod::Patch => reqwest::Method::PATCH,
            },
            url,
            static_url,
            headers,
            body: cfg.body,
            signer: cfg.signing_secret.as_deref().map(Signer::new).transpose()?,
            array: cfg.batch_events() > 1,
            max_bytes: cfg.batch_bytes(),
        })
    }

    /// Appends one event's body.
    fn write_one(&self, buf: &mut Vec<u8>, d: &Delivery) {
        match self.body {
            BodyFormat::Envelope => d.env.write_json(buf),
            BodyFormat::Original => buf.extend_from_slice(&d.raw),
            BodyFormat::Posthog => super::posthog::write_event(buf, &d.env, EventNames::Original),
        }
    }

    /// The exact body bytes for a batch: a JSON array on batching targets (whatever the batch's
    /// size, so receivers always get one shape), else the one event as itself.
    pub fn body(&self, batch: &[Delivery]) -> Vec<u8> {
        let estimate: usize = batch.iter().map(|d| d.size * 2 + 512).sum();
        let mut out = Vec::with_capacity(estimate);
        if batch.len() == 1 && !self.array {
            self.write_one(&mut out, &batch[0]);
            return out;
        }
        out.push(b'[');
        for (i, d) in batch.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.write_one(&mut out, d);
        }
        out.push(b']');
        out
    }

    /// The `webhook-id` of a request: the envelope id (constant across retries); for a batch a
    /// UUIDv5 of the member ids.
    fn message_id(batch: &[Delivery]) -> String {
        if batch.len() == 1 {
            return batch[0].env.id.clone();
        }
        let joined: Vec<&str> = batch.iter().map(|d| d.env.id.as_str()).collect();
        uuid::Uuid::new_v5(&RELAY_NAMESPACE, joined.join(",").as_bytes()).to_string()
    }

    pub async fn send(&self, batch: &[Delivery]) -> Result<u16, AttemptError> {
        let first = &batch[0].env;
        let body = self.body(batch);
        if batch.len() > 1 && body.len() > self.max_bytes {
            // Not sent: the caller splits the batch (the worker bounds batches by raw sizes,
            // which can be smaller than the bodies built from them).
            return Err(AttemptError::Fatal {
                status: None,
                message: format!(
                    "request body of {} bytes exceeds batch_max_bytes",
                    body.len()
                ),
            });
        }
        let req = match &self.static_url {
            Some(url) => self.client.request(self.method.clone(), url.clone()),
            None => self
                .client
                .request(self.method.clone(), self.url.render(first, true)),
        };
        let mut req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
        // Configured headers replace the defaults (a configured Content-Type is sent once);
        // the signing headers below are set last, so configuration cannot override them.
        let mut configured = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let rendered = value.render(first, false);
            match reqwest::header::HeaderValue::from_str(&rendered) {
                Ok(v) => {
                    configured.insert(name.clone(), v);
                }
                Err(_) => {
                    return Err(AttemptError::Fatal {
                        status: None,
                        message: format!(
                            "header {name}: the rendered value is not a valid HTTP header value"
                        ),
                    })
                }
            }
        }
        req = req.headers(configured);
        if let Some(signer) = &self.signer {
            let id = Self::message_id(batch);
            let ts = chrono::Utc::now().timestamp();
            req = req
                .header("webhook-signature", signer.sign(&id, ts, &body))
                .header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string());
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let hint = super::body_hint(resp).await;
        Err(classify_status(status.as_u16(), retry_after, &hint))
    }
}
