//! The PostHog target: events in batches to `POST {url}/batch/`, gzip.
//!
//! Each envelope becomes `{event, distinct_id, uuid, timestamp, properties}` with `$session_id`,
//! `$lib`, `$lib_version`, `source`, `site_id`/`site_name` and `$set` (user traits) added to
//! the properties. Answers go through the common `retry::classify_status` (PostHog's status
//! table is the common one), and a 400 or 413 answer to a multi-event batch is split by the
//! caller (`AttemptError::splits_batch`) so one bad event never costs the others their delivery.

use super::auth::Auth;
use super::client::{HeaderMap, HeaderValue, HttpClient, Method, Uri};
use super::retry::AttemptError;
use super::shape::Shaped;
use super::{BuildError, Delivery, Preview};
use crate::config::{EventNames, TargetConfig};
use crate::envelope::{Envelope, RELAY_NAMESPACE};
use crate::report::{BodyLimit, Failure};
use crate::telemetry::TraceParent;
use crate::transform::Request;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::Value;
use std::cell::RefCell;

/// PostHog refuses single events above about 1 MB.
pub const MAX_EVENT_BYTES: usize = 1_000_000;

/// `CardViewed` → `card_viewed` (by `heck`); `$identify` and snake names stay as they are.
pub fn snake_case(name: &str) -> String {
    if name.starts_with('$') {
        return name.to_string();
    }
    heck::ToSnakeCase::to_snake_case(name)
}

use crate::json::{write_key as put_key, write_str as put_str};

/// Property keys the relay sets itself (they win over same-named event properties). `source`
/// is not among them: several acemate events carry their own `source` property (where in the
/// app the action started), which must reach PostHog unchanged; the relay's source (komo /
/// acemate) then goes to `relay_source` instead.
fn relay_owned(key: &str, env: &Envelope) -> bool {
    match key {
        "$lib" | "$lib_version" => true,
        "$session_id" => env.session_id.is_some(),
        "site_id" => env.site.as_ref().is_some_and(|s| s.id.is_some()),
        "site_name" => env.site.as_ref().is_some_and(|s| s.name.is_some()),
        "$set" => !env.user.traits.is_empty() || env.user.email.is_some(),
        _ => false,
    }
}

/// Writes the PostHog event shape of one envelope straight into `buf` (no intermediate maps):
/// `{event, distinct_id, uuid, timestamp, properties}` with `$session_id`, `$lib`,
/// `$lib_version`, `source`, `site_id`/`site_name` and `$set` (user traits + email) added.
pub fn write_event(buf: &mut Vec<u8>, env: &Envelope, names: EventNames) {
    buf.extend_from_slice(b"{\"event\":");
    match names {
        EventNames::Original => put_str(buf, &env.event),
        EventNames::SnakeCase => put_str(buf, &snake_case(&env.event)),
    }
    buf.extend_from_slice(b",\"distinct_id\":");
    let distinct = env
        .distinct_id
        .as_deref()
        .or(env.session_id.as_deref())
        .unwrap_or(&env.id);
    put_str(buf, distinct);
    buf.extend_from_slice(b",\"uuid\":");
    // Most ids already are what PostHog gets: written as they are, else parsed and encoded.
    if !crate::json::write_canonical_uuid(buf, &env.id) {
        match uuid::Uuid::parse_str(&env.id) {
            Ok(u) => put_str(
                buf,
                u.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            ),
            Err(_) => put_str(
                buf,
                &uuid::Uuid::new_v5(&RELAY_NAMESPACE, env.id.as_bytes()).to_string(),
            ),
        }
    }
    buf.extend_from_slice(b",\"timestamp\":");
    put_str(buf, &env.timestamp);
    buf.extend_from_slice(b",\"properties\":{");
    let mut first = true;
    for (k, v) in env.properties.iter() {
        if relay_owned(k, env) {
            continue;
        }
        put_key(buf, &mut first, k);
        v.write(buf);
    }
    if let Some(s) = &env.session_id {
        put_key(buf, &mut first, "$session_id");
        put_str(buf, s);
    }
    put_key(buf, &mut first, "$lib");
    put_str(buf, "event-relay");
    put_key(buf, &mut first, "$lib_version");
    put_str(buf, env!("CARGO_PKG_VERSION"));
    if env.properties.contains_key("source") {
        put_key(buf, &mut first, "relay_source");
    } else {
        put_key(buf, &mut first, "source");
    }
    put_str(buf, env.source.as_str());
    if let Some(site) = &env.site {
        if let Some(id) = &site.id {
            put_key(buf, &mut first, "site_id");
            put_str(buf, id);
        }
        if let Some(name) = &site.name {
            put_key(buf, &mut first, "site_name");
            put_str(buf, name);
        }
    }
    if relay_owned("$set", env) {
        put_key(buf, &mut first, "$set");
        buf.push(b'{');
        let mut first_set = true;
        for (k, v) in env.user.traits.iter() {
            put_key(buf, &mut first_set, k);
            v.write(buf);
        }
        if let (Some(email), false) = (&env.user.email, env.user.traits.contains_key("email")) {
            put_key(buf, &mut first_set, "email");
            put_str(buf, email);
        }
        buf.push(b'}');
    }
    buf.extend_from_slice(b"}}");
}

/// The PostHog event shape of one envelope as a JSON value (for `event-relay route` output).
pub fn event_json(env: &Envelope, names: EventNames) -> Value {
    let mut buf = Vec::with_capacity(1024);
    write_event(&mut buf, env, names);
    serde_json::from_slice(&buf).expect("write_event writes valid JSON")
}

/// The largest body buffer a thread keeps for the next request (a larger one is freed).
const MAX_KEPT_BODY: usize = 1 << 20;

thread_local! {
    /// This thread's buffer for the JSON of a body that is gzipped before it goes out.
    static BODY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A PostHog `/batch/` endpoint.
pub struct PosthogService {
    client: HttpClient,
    /// Where the `Authorization` header comes from (`auth`: a self-hosted PostHog behind an
    /// authenticating proxy), if the target has one.
    auth: Option<Auth>,
    /// `{url}/batch/`, parsed once (config validation checked that it parses).
    endpoint: url::Url,
    /// The same, as the request URI.
    uri: Uri,
    api_key: String,
    historical: bool,
    names: EventNames,
    gzip: bool,
    max_bytes: usize,
}

impl PosthogService {
    pub(super) fn new(
        cfg: &TargetConfig,
        client: HttpClient,
        auth: Option<Auth>,
    ) -> Result<Self, BuildError> {
        let endpoint = format!("{}/batch/", cfg.url.trim_end_matches('/'));
        let endpoint = url::Url::parse(&endpoint).map_err(|source| BuildError::Url {
            target: cfg.name.clone(),
            url: endpoint,
            source,
        })?;
        let uri = endpoint
            .as_str()
            .parse()
            .map_err(|source| BuildError::Uri {
                target: cfg.name.clone(),
                url: endpoint.to_string(),
                source,
            })?;
        Ok(Self {
            client,
            auth,
            endpoint,
            uri,
            api_key: cfg.api_key.clone().unwrap_or_default(),
            historical: cfg.historical_migration,
            names: cfg.event_names,
            gzip: cfg.gzip,
            max_bytes: cfg.batch_bytes(),
        })
    }

    /// The exact JSON body for a batch (before gzip).
    pub fn body(&self, batch: &[Delivery]) -> Vec<u8> {
        let mut buf = Vec::new();
        self.write_body(&mut buf, batch);
        buf
    }

    /// Appends the JSON body for a batch (before gzip) to `buf`.
    pub fn write_body(&self, buf: &mut Vec<u8>, batch: &[Delivery]) {
        let estimate: usize = batch.iter().map(|d| d.size + 512).sum();
        buf.reserve(estimate + 256);
        buf.extend_from_slice(b"{\"api_key\":");
        put_str(buf, &self.api_key);
        buf.extend_from_slice(b",\"historical_migration\":");
        buf.extend_from_slice(if self.historical { b"true" } else { b"false" });
        buf.extend_from_slice(b",\"sent_at\":");
        put_str(buf, &crate::envelope::now_rfc3339());
        buf.extend_from_slice(b",\"batch\":[");
        for (i, d) in batch.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            match &d.shaped {
                Some(s) => buf.extend_from_slice(&s.body),
                None => write_event(buf, &d.env, self.names),
            }
        }
        buf.extend_from_slice(b"]}");
    }

    /// The request body for a batch, gzipped if the target says so; a body over its limit is
    /// a final failure (the caller halves a multi-event batch). With gzip the JSON is written
    /// into this thread's reused buffer (only the compressed body is a new allocation).
    fn encode(&self, batch: &[Delivery]) -> Result<Vec<u8>, AttemptError> {
        let too_large = |bytes: usize| {
            (bytes > self.max_bytes || (batch.len() == 1 && bytes > MAX_EVENT_BYTES)).then_some(
                AttemptError::Final(Failure::BodyTooLarge {
                    bytes,
                    limit: BodyLimit::Posthog,
                }),
            )
        };
        if !self.gzip {
            let body = self.body(batch);
            return match too_large(body.len()) {
                Some(err) => Err(err),
                None => Ok(body),
            };
        }
        BODY.with(|cell| {
            let mut fallback = Vec::new();
            let mut reused = cell.try_borrow_mut();
            let buf = match reused.as_deref_mut() {
                Ok(buf) => buf,
                Err(_) => &mut fallback,
            };
            buf.clear();
            self.write_body(buf, batch);
            let result = match too_large(buf.len()) {
                Some(err) => Err(err),
                None => Ok(super::gzip::gzip(buf, super::gzip::LEVEL)),
            };
            if buf.capacity() > MAX_KEPT_BODY {
                *buf = Vec::new();
            }
            result
        })
    }

    /// The request headers (the API key travels in the body, not here), with those a
    /// transform set.
    fn headers(&self, request: Option<&Request>) -> Result<HeaderMap, Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        super::shape::insert_headers(&mut headers, request)?;
        if self.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(headers)
    }

    /// The event as it goes into the body's `batch` array, without a transform (what a
    /// transform receives).
    pub(super) fn event_body(&self, env: &Envelope) -> Vec<u8> {
        let mut body = Vec::with_capacity(1024);
        write_event(&mut body, env, self.names);
        body
    }

    /// What a request for `env` would be: the endpoint, headers and the event as it goes into
    /// the body's `batch` array, `shaped` by its transform. Sends nothing.
    pub fn preview(&self, env: &Envelope, shaped: Option<&Shaped>) -> Result<Preview, Failure> {
        let body = match shaped {
            Some(s) => s.body.clone(),
            None => self.event_body(env),
        };
        let mut headers = self.headers(shaped.map(|s| &s.request))?;
        super::auth::preview(&mut headers, self.auth.as_ref());
        Ok(Preview {
            url: super::service::redacted_url(self.endpoint.to_string()),
            headers: super::service::redacted(&headers),
            body,
        })
    }

    pub async fn send(
        &self,
        batch: &[Delivery],
        trace: Option<TraceParent>,
    ) -> Result<u16, AttemptError> {
        let body = self.encode(batch)?;
        // A batch shares one request: its deliveries' transforms set the same (`by_request`).
        let mut headers = self
            .headers(batch[0].shaped.as_ref().map(|s| &s.request))
            .map_err(AttemptError::Final)?;
        super::service::trace_header(&mut headers, trace);
        // PostHog's status table is the common classifier's (see `retry::classify_status`).
        let (client, auth, uri) = (&self.client, self.auth.as_ref(), self.uri.clone());
        super::auth::exchange(client, auth, Method::POST, uri, headers, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relay's hand-written conversion before `heck`, kept as the reference the catalog
    /// names are checked against.
    fn hand_written_snake_case(name: &str) -> String {
        if name.starts_with('$') {
            return name.to_string();
        }
        let mut out = String::with_capacity(name.len() + 4);
        let chars: Vec<char> = name.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if c.is_uppercase() {
                let prev_lower =
                    i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                if i > 0 && (prev_lower || next_lower) && !out.ends_with('_') {
                    out.push('_');
                }
                out.extend(c.to_lowercase());
            } else if *c == ' ' || *c == '-' {
                out.push('_');
            } else {
                out.push(*c);
            }
        }
        out
    }

    /// `heck` converts every event name of the built-in catalogs exactly as the hand-written
    /// conversion did.
    #[test]
    fn heck_matches_the_hand_written_conversion_on_every_catalog_event() {
        let mut checked = 0;
        for text in [
            include_str!("../../catalog/komo.json"),
            include_str!("../../catalog/acemate.json"),
        ] {
            let catalog: Value = serde_json::from_str(text).unwrap();
            for name in catalog["events"].as_object().unwrap().keys() {
                assert_eq!(snake_case(name), hand_written_snake_case(name), "{name}");
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} event names found");
    }

    #[test]
    fn snake_names() {
        assert_eq!(snake_case("CardViewed"), "card_viewed");
        assert_eq!(snake_case("SignUpSuccess"), "sign_up_success");
        assert_eq!(snake_case("node_clicked"), "node_clicked");
        assert_eq!(snake_case("$identify"), "$identify");
    }

    #[test]
    fn event_shape() {
        let env = crate::envelope::sample();
        let v = event_json(&env, EventNames::SnakeCase);
        assert_eq!(v["event"], "card_viewed");
        assert_eq!(v["uuid"], env.id.as_str());
        assert_eq!(v["distinct_id"], "u1");
        assert_eq!(v["properties"]["$session_id"], "s1");
        assert_eq!(v["properties"]["$lib"], "event-relay");
        assert_eq!(v["properties"]["site_name"], "My site");
        assert_eq!(v["properties"]["$set"]["tenant"], "acemate");
        assert_eq!(v["properties"]["score"], 7);
        assert_eq!(v["properties"]["source"], env.source.as_str());
    }

    #[test]
    fn an_events_own_source_property_is_kept() {
        let mut env = crate::envelope::sample();
        env.properties
            .insert("source".into(), serde_json::json!("sidebar"));
        let v = event_json(&env, EventNames::Original);
        assert_eq!(v["properties"]["source"], "sidebar");
        assert_eq!(v["properties"]["relay_source"], env.source.as_str());
    }
}
