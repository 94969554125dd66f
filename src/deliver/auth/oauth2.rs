//! `auth = { kind = "oauth2", ... }`: the OAuth2 client-credentials grant (RFC 6749 §4.4),
//! written here by hand over the target's own HTTP stack (hyper-util + rustls, through
//! [`HttpClient::for_token_endpoint`]): a POST of `grant_type=client_credentials` (and `scope`)
//! as `application/x-www-form-urlencoded`, the client authenticated with HTTP Basic
//! (`client_secret_basic`, §2.3.1), the answer's `access_token` and `expires_in` read from JSON
//! (§5.1). The `oauth2` crate and reqwest would bring a second HTTP stack for one request.
//!
//! The token is cached until shortly before it expires ([`refresh_after`]). Requests that find
//! no fresh token share one token request (single flight): they queue on one async mutex, and
//! whoever gets it after another request's fetch ended takes that fetch's outcome — token or
//! failure — instead of asking again (the fetch counter is the generation check).

use super::{Credential, Refreshes};
use crate::config::OAuth2Auth;
use crate::deliver::client::{HeaderMap, HeaderValue, HttpClient, Method, Uri};
use crate::deliver::BuildError;
use crate::report::Failure;
use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::form_urlencoded;

/// The lifetime of a token whose answer has no `expires_in` (RFC 6749 §5.1 only recommends
/// it). Five minutes: long enough that the endpoint sees a request every few minutes at most,
/// short enough that a token which in fact expires sooner is not sent for long (a 401 also
/// renews it, at the cost of one refused request).
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Lifetimes above this are taken as this: a token revoked at the endpoint would otherwise be
/// noticed only through a 401.
pub(super) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Most bytes of a token answer read (JWTs are a few KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long after it was requested a token of `lifetime` is refreshed: one minute before it
/// expires, or a tenth of its lifetime before if that is shorter. Early, because a request
/// that goes out with the token is checked by the target up to a request timeout later (10 s by
/// default, plus the time it waited for the rate limit or a slot), by a clock that may be a few
/// seconds off the endpoint's; a minute covers both, and costs nothing but a token request a
/// minute sooner. A tenth keeps tokens of a few seconds usable at all. The lifetime is counted
/// from when the token request was sent, not answered (the endpoint's clock started then at
/// the latest).
pub(super) fn refresh_after(lifetime: Duration) -> Duration {
    lifetime - (lifetime / 10).min(Duration::from_secs(60))
}

/// The token request's body: `grant_type=client_credentials`, and `scope` (space-separated,
/// RFC 6749 §3.3) when scopes are configured.
pub(super) fn form_body(scopes: &[String]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if !scopes.is_empty() {
        form.append_pair("scope", &scopes.join(" "));
    }
    form.finish()
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1 form-encodes both
/// before HTTP Basic, so a `:` in the id cannot end it early.
pub(super) fn basic_credentials(client_id: &str, client_secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(client_secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A token and when it is due for a refresh.
#[derive(Debug)]
struct Token {
    credential: Credential,
    refresh_at: Instant,
    expires_at: Instant,
}

impl Token {
    fn fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// One target's OAuth2 client.
pub(in crate::deliver) struct OAuth2 {
    target: String,
    client: HttpClient,
    endpoint: Uri,
    /// The endpoint as messages name it (a password in it redacted).
    shown_url: String,
    /// `Basic ...` of the client (sensitive).
    basic: HeaderValue,
    /// The form body, the same for every request.
    form: Bytes,
    /// Kept out of error hints, should an endpoint echo it.
    secret: String,
    /// The token requests use, if any.
    current: Mutex<Option<Arc<Token>>>,
    /// The single flight: held while a token is requested; holds the last fetch's outcome.
    flight: tokio::sync::Mutex<Option<Result<Arc<Token>, Failure>>>,
    /// Fetches ended so far (also numbers the tokens).
    fetches: AtomicU64,
    refreshes: Option<Refreshes>,
}

impl OAuth2 {
    pub(super) fn new(
        target: &str,
        cfg: &OAuth2Auth,
        client: HttpClient,
        refreshes: Option<Refreshes>,
    ) -> Result<Self, BuildError> {
        let endpoint = cfg.token_url.parse().map_err(|source| BuildError::Uri {
            target: target.to_string(),
            url: cfg.token_url.clone(),
            source,
        })?;
        let mut basic =
            HeaderValue::from_str(&basic_credentials(&cfg.client_id, &cfg.client_secret))
                .expect("base64 is header text");
        basic.set_sensitive(true);
        Ok(Self {
            target: target.to_string(),
            client,
            endpoint,
            shown_url: crate::deliver::service::redacted_url(cfg.token_url.clone()),
            basic,
            form: Bytes::from(form_body(&cfg.scopes)),
            secret: cfg.client_secret.clone(),
            current: Mutex::new(None),
            flight: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            refreshes,
        })
    }

    fn current(&self) -> Option<Arc<Token>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The token for the next request: the cached one while fresh, else a new one. If the
    /// early refresh fails, the old token is used until it expires.
    pub(super) async fn credential(&self) -> Result<Credential, Failure> {
        if let Some(t) = self.current().filter(|t| t.fresh()) {
            return Ok(t.credential.clone());
        }
        match self.shared_fetch(None).await {
            Ok(t) => Ok(t.credential.clone()),
            Err(f) => match self.current() {
                Some(t) if Instant::now() < t.expires_at => Ok(t.credential.clone()),
                _ => Err(f),
            },
        }
    }

    /// A new token after the target refused the one of generation `rejected` (401): one
    /// another request already got after it, else a fetched one.
    pub(super) async fn renew(&self, rejected: u64) -> Result<Credential, Failure> {
        self.shared_fetch(Some(rejected))
            .await
            .map(|t| t.credential.clone())
    }

    /// The single flight: a fetch that ended while this request waited for its turn is its
    /// outcome; else the current token if usable (fresh, and not the `rejected` one), else a
    /// fetch of its own.
    async fn shared_fetch(&self, rejected: Option<u64>) -> Result<Arc<Token>, Failure> {
        let seen = self.fetches.load(Ordering::Acquire);
        let mut last = self.flight.lock().await;
        if self.fetches.load(Ordering::Acquire) != seen {
            if let Some(outcome) = last.as_ref() {
                return outcome.clone();
            }
        }
        let usable = |t: &Token| t.fresh() && Some(t.credential.generation) != rejected;
        if let Some(t) = self.current().filter(|t| usable(t)) {
            return Ok(t);
        }
        if rejected.is_some() {
            // Refused by the target: never the fallback of a failed refresh.
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        let generation = self.fetches.load(Ordering::Acquire) + 1;
        let outcome = self.fetch(generation).await.map(Arc::new);
        Refreshes::count(&self.refreshes, outcome.is_ok());
        match &outcome {
            Ok(t) => {
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.clone());
            }
            Err(f) => {
                tracing::warn!(target_name = %self.target, error = %f, "oauth2 token request failed")
            }
        }
        *last = Some(outcome.clone());
        self.fetches.store(generation, Ordering::Release);
        outcome
    }

    /// One token request.
    async fn fetch(&self, generation: u64) -> Result<Token, Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, self.basic.clone());
        let sent = Instant::now();
        let answer = self
            .client
            .send(
                Method::POST,
                self.endpoint.clone(),
                headers,
                self.form.clone(),
            )
            .await
            .map_err(|e| self.failure(e.to_string()))?;
        if !answer.status.is_success() {
            let e = crate::deliver::retry::classify_response(answer).await;
            return Err(self.failure(e.to_string()));
        }
        let body = answer.body_prefix(MAX_ANSWER_BYTES).await;
        let (access_token, lifetime) = parse_answer(&body).map_err(|why| self.failure(why))?;
        let credential = Credential::bearer(&access_token, generation)
            .ok_or_else(|| self.failure("the access_token cannot be sent in a header".into()))?;
        tracing::debug!(target_name = %self.target, expires_in_s = lifetime.as_secs(), "oauth2 token obtained");
        Ok(Token {
            credential,
            refresh_at: sent + refresh_after(lifetime),
            expires_at: sent + lifetime,
        })
    }

    /// A failed token request, named by its endpoint (never the secret, should the endpoint
    /// have echoed it).
    fn failure(&self, cause: String) -> Failure {
        let cause = if self.secret.is_empty() {
            cause
        } else {
            cause.replace(&self.secret, "<redacted>")
        };
        Failure::TokenRequest {
            url: self.shown_url.clone(),
            cause,
        }
    }
}

/// The `access_token` and lifetime of a successful token answer (RFC 6749 §5.1). The messages
/// never quote the answer (it holds the token).
pub(super) fn parse_answer(body: &[u8]) -> Result<(String, Duration), String> {
    let answer: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| "the answer is not JSON (expected an access token response)".to_string())?;
    let token = match answer.get("access_token") {
        Some(serde_json::Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err("the answer has no access_token".into()),
    };
    if let Some(kind) = answer.get("token_type").and_then(|t| t.as_str()) {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "token_type {kind:?} is not supported (only Bearer)"
            ));
        }
    }
    // A number of seconds; some endpoints send it as a string.
    let seconds = match answer.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let lifetime = match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            Duration::from_secs_f64(s.min(MAX_LIFETIME.as_secs_f64()))
        }
        _ => DEFAULT_LIFETIME,
    };
    Ok((token, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_and_the_client_credentials_are_form_encoded() {
        assert_eq!(form_body(&[]), "grant_type=client_credentials");
        let scopes = ["api.read".to_string(), "crm/write".to_string()];
        assert_eq!(
            form_body(&scopes),
            "grant_type=client_credentials&scope=api.read+crm%2Fwrite"
        );
        // base64("my+client:p%40ss%3Aw%2Frd+x")
        let basic = basic_credentials("my client", "p@ss:w/rd x");
        let b64 = basic.strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "my+client:p%40ss%3Aw%2Frd+x"
        );
    }

    #[test]
    fn a_token_is_refreshed_a_minute_or_a_tenth_of_its_lifetime_early() {
        let s = Duration::from_secs;
        assert_eq!(refresh_after(s(3600)), s(3540));
        assert_eq!(refresh_after(s(600)), s(540));
        assert_eq!(refresh_after(s(30)), s(27));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_lifetime_comes_from_expires_in_with_a_default_and_a_cap() {
        let life = |body: &str| parse_answer(body.as_bytes()).map(|(_, l)| l);
        let s = Duration::from_secs;
        assert_eq!(
            life(r#"{"access_token":"t","expires_in":3600}"#),
            Ok(s(3600))
        );
        assert_eq!(life(r#"{"access_token":"t","expires_in":"90"}"#), Ok(s(90)));
        assert_eq!(life(r#"{"access_token":"t"}"#), Ok(DEFAULT_LIFETIME));
        assert_eq!(
            life(r#"{"access_token":"t","expires_in":-5}"#),
            Ok(DEFAULT_LIFETIME)
        );
        assert_eq!(
            life(r#"{"access_token":"t","expires_in":1e12}"#),
            Ok(MAX_LIFETIME)
        );
        let (token, _) = parse_answer(br#"{"access_token":"abc","token_type":"bearer"}"#).unwrap();
        assert_eq!(token, "abc");
    }

    #[test]
    fn a_bad_answer_is_named_without_quoting_it() {
        for body in [
            "not json secret-ish",
            r#"{"token":"secret-ish"}"#,
            r#"{"access_token":"secret-ish","token_type":"mac"}"#,
        ] {
            let why = parse_answer(body.as_bytes()).unwrap_err();
            assert!(!why.contains("secret-ish"), "{why}");
        }
    }

    #[test]
    fn a_token_is_fresh_until_its_refresh_time() {
        let now = Instant::now();
        let token = |refresh_at| Token {
            credential: Credential::bearer("t", 1).unwrap(),
            refresh_at,
            expires_at: now + Duration::from_secs(3600),
        };
        assert!(token(now + Duration::from_secs(3600)).fresh());
        assert!(!token(now).fresh());
    }
}
