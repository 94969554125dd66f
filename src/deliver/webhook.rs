//! The webhook target: one request per event (or a JSON array per batch) to any HTTP endpoint,
//! with templated URL/headers and optional Standard Webhooks signing.

use super::auth::Auth;
use super::client::{HeaderMap, HeaderName, HeaderValue, HttpClient, Method, Uri};
use super::retry::AttemptError;
use super::shape::Shaped;
use super::signing::Signer;
use super::template::Template;
use super::{BuildError, Delivery, Preview};
use crate::config::{BodyFormat, EventNames, HttpMethod, TargetConfig};
use crate::envelope::{Envelope, RELAY_NAMESPACE};
use crate::report::TransportKind;
use crate::report::{BodyLimit, Failure};
use crate::telemetry::TraceParent;
use crate::transform::Request;
use http::header::CONTENT_TYPE;

/// The Standard Webhooks headers.
const WEBHOOK_SIGNATURE: &str = "webhook-signature";
const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";

/// A webhook endpoint.
pub struct WebhookService {
    client: HttpClient,
    /// Where the `Authorization` header comes from (`auth`), if the target has one.
    auth: Option<Auth>,
    method: Method,
    url: Template,
    /// The URL parsed once, when it has no placeholders (most targets): parsing it again for
    /// every request was ~3% of the relay's CPU in the webhook benchmark.
    static_url: Option<(url::Url, Uri)>,
    headers: Vec<(HeaderName, Template)>,
    body: BodyFormat,
    signer: Option<Signer>,
    /// `batch_max_events` > 1: every body is a JSON array, even of one event.
    array: bool,
    /// `batch_max_bytes`: bound on multi-event bodies (a single event is always sent).
    max_bytes: usize,
}

impl WebhookService {
    pub(super) fn new(
        cfg: &TargetConfig,
        client: HttpClient,
        auth: Option<Auth>,
    ) -> Result<Self, BuildError> {
        let headers = cfg
            .headers
            .iter()
            .map(|(k, v)| {
                HeaderName::from_bytes(k.as_bytes())
                    .map(|name| (name, Template::parse(v)))
                    .map_err(|_| BuildError::HeaderName {
                        target: cfg.name.clone(),
                        name: k.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let url = Template::parse(&cfg.url);
        let static_url = url
            .is_static()
            .then(|| {
                let url = url::Url::parse(&cfg.url).ok()?;
                let uri = url.as_str().parse().ok()?;
                Some((url, uri))
            })
            .flatten();
        let signer = cfg.signing_secret.as_ref().map(Signer::new).transpose();
        Ok(Self {
            client,
            auth,
            method: match cfg.method {
                HttpMethod::Post => Method::POST,
                HttpMethod::Put => Method::PUT,
                HttpMethod::Patch => Method::PATCH,
            },
            url,
            static_url,
            headers,
            body: cfg.body,
            signer: signer.map_err(|source| BuildError::SigningSecret {
                target: cfg.name.clone(),
                source,
            })?,
            array: cfg.batch_events() > 1,
            max_bytes: cfg.batch_bytes(),
        })
    }

    /// Whether the body is the envelope (`body = "envelope"`).
    pub(super) fn sends_envelope(&self) -> bool {
        self.body == BodyFormat::Envelope
    }

    /// Appends one event's own body (what a transform receives).
    pub(super) fn write_one(&self, buf: &mut Vec<u8>, env: &Envelope, raw: &[u8]) {
        match self.body {
            BodyFormat::Envelope => env.write_json(buf),
            BodyFormat::Original => buf.extend_from_slice(raw),
            BodyFormat::Posthog => super::posthog::write_event(buf, env, EventNames::Original),
        }
    }

    /// Appends a delivery's body: its transform's output, else the event's own.
    fn write_delivery(&self, buf: &mut Vec<u8>, d: &Delivery) {
        match &d.shaped {
            Some(s) => buf.extend_from_slice(&s.body),
            None => self.write_one(buf, &d.env, &d.raw),
        }
    }

    /// The exact body bytes for a batch: a JSON array on batching targets (whatever the batch's
    /// size, so receivers always get one shape), else the one event as itself.
    pub fn body(&self, batch: &[Delivery]) -> Vec<u8> {
        let estimate: usize = batch.iter().map(|d| d.size * 2 + 512).sum();
        let mut out = Vec::with_capacity(estimate);
        if batch.len() == 1 && !self.array {
            self.write_delivery(&mut out, &batch[0]);
            return out;
        }
        out.push(b'[');
        for (i, d) in batch.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.write_delivery(&mut out, d);
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

    /// The request URL for a batch whose first event is `first`, with the path its transform
    /// appended.
    fn url(&self, first: &Envelope, request: Option<&Request>) -> String {
        let url = match &self.static_url {
            Some((url, _)) => url.to_string(),
            None => self.url.render(first, true),
        };
        match request.filter(|r| r.path.is_some()) {
            Some(r) => match url::Url::parse(&url) {
                Ok(mut parsed) => {
                    r.apply_path(&mut parsed);
                    parsed.into()
                }
                Err(_) => url, // refused when sent (`request_uri`)
            },
            None => url,
        }
    }

    /// The request URI: the static one parsed at start when nothing changes it.
    fn uri(&self, first: &Envelope, request: Option<&Request>) -> Result<Uri, AttemptError> {
        match (&self.static_url, request.and_then(|r| r.path.as_ref())) {
            (Some((_, uri)), None) => Ok(uri.clone()),
            _ => request_uri(&self.url(first, request)),
        }
    }

    /// The request headers: `Content-Type`, then the configured ones rendered from the batch's
    /// first event (they replace the defaults: a configured Content-Type is sent once), then
    /// those its transform set, then the signing headers, set last so neither configuration
    /// nor a transform can override them. `Authorization` from `auth` is added when the
    /// request is sent (`auth::exchange`).
    fn headers(
        &self,
        first: &Envelope,
        request: Option<&Request>,
        message_id: impl FnOnce() -> String,
        body: &[u8],
    ) -> Result<HeaderMap, Failure> {
        let value = |name: &HeaderName, text: &str| {
            HeaderValue::from_str(text).map_err(|_| Failure::InvalidHeaderValue {
                name: name.to_string(),
            })
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, template) in &self.headers {
            headers.insert(name.clone(), value(name, &template.render(first, false))?);
        }
        super::shape::insert_headers(&mut headers, request)?;
        if let Some(signer) = &self.signer {
            let id = message_id();
            let ts = chrono::Utc::now().timestamp();
            for (name, text) in [
                (WEBHOOK_SIGNATURE, signer.sign(&id, ts, body)),
                (WEBHOOK_ID, id),
                (WEBHOOK_TIMESTAMP, ts.to_string()),
            ] {
                let name = HeaderName::from_static(name);
                let v = value(&name, &text)?;
                headers.insert(name, v);
            }
        }
        Ok(headers)
    }

    /// What a request for `env` alone would be: URL, headers (secrets redacted) and the event's
    /// body (on batching targets, one element of the body's array), `shaped` by its transform.
    /// Sends nothing.
    pub fn preview(
        &self,
        env: &Envelope,
        raw: &[u8],
        shaped: Option<&Shaped>,
    ) -> Result<Preview, Failure> {
        let body = match shaped {
            Some(s) => s.body.clone(),
            None => {
                let mut body = Vec::new();
                self.write_one(&mut body, env, raw);
                body
            }
        };
        let request = shaped.map(|s| &s.request);
        let mut headers = self.headers(env, request, || env.id.clone(), &body)?;
        super::auth::preview(&mut headers, self.auth.as_ref());
        Ok(Preview {
            url: super::service::redacted_url(self.url(env, request)),
            headers: super::service::redacted(&headers),
            body,
        })
    }

    pub async fn send(
        &self,
        batch: &[Delivery],
        trace: Option<TraceParent>,
    ) -> Result<u16, AttemptError> {
        let first = &batch[0].env;
        let body = self.body(batch);
        if batch.len() > 1 && body.len() > self.max_bytes {
            // Not sent: the caller splits the batch (the worker bounds batches by raw sizes,
            // which can be smaller than the bodies built from them).
            return Err(AttemptError::Final(Failure::BodyTooLarge {
                bytes: body.len(),
                limit: BodyLimit::BatchMaxBytes,
            }));
        }
        // A batch shares one request: its deliveries' transforms set the same (`by_request`).
        let request = batch[0].shaped.as_ref().map(|s| &s.request);
        let mut headers = self
            .headers(first, request, || Self::message_id(batch), &body)
            .map_err(AttemptError::Final)?;
        super::service::trace_header(&mut headers, trace);
        let uri = self.uri(first, request)?;
        let (client, auth) = (&self.client, self.auth.as_ref());
        super::auth::exchange(client, auth, self.method.clone(), uri, headers, body).await
    }
}

/// A rendered URL template as a request URI (placeholders are percent-encoded, so this fails
/// only where the configured URL itself does not parse; retried as a transport error, as any
/// request that cannot be sent).
fn request_uri(text: &str) -> Result<Uri, AttemptError> {
    let url = url::Url::parse(text).map_err(|e| bad_url(e.to_string()))?;
    url.as_str()
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad_url(e.to_string()))
}

fn bad_url(cause: String) -> AttemptError {
    super::client::transport(TransportKind::Other, format!("invalid URL: {cause}"))
}
