//! The HTTP client every target sends through: hyper-util's pooled client over rustls (the
//! target's trust and client certificate from [`super::tls`], ALPN for HTTP/2 on `https://`),
//! with the target's timeout, connect timeout, pool size and user agent, and one exchange that
//! ends in a status or an [`AttemptError`].
//!
//! Chosen over reqwest (which wraps this same client) by measurement, issue 16:
//! `bench/src/bin/http_client_cost.rs`, one 600-byte POST per request to a loopback receiver,
//! 64 and 256 concurrent: 0.61–0.63× reqwest's client CPU per request over HTTP/1.1 (reqwest's
//! layers, URL conversion and per-request allocations); see docs/performance.md.

use super::proxy::{Proxies, ProxyConnector};
use super::retry::{classify_response, AttemptError};
use super::BuildError;
use crate::config::TargetConfig;
use crate::report::{Failure, TransportKind};
use bytes::Bytes;
use http::header::{PROXY_AUTHORIZATION, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

/// Most bytes of a success answer's body read back so its connection can be reused; a longer
/// body is dropped with its connection.
const DRAIN_LIMIT: usize = 64 * 1024;

/// One target's HTTP client (cheap to clone: the pool is shared).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<ProxyConnector>, Full<Bytes>>,
    /// Which proxy (if any) each destination goes through.
    proxies: Proxies,
    /// The whole exchange, from sending to the end of the answer's body.
    timeout: Duration,
    user_agent: HeaderValue,
}

/// An answer whose status is known and whose body has not been read.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    deadline: Instant,
}

impl HttpClient {
    /// Builds the client of one target (its proxy from `proxy`, else the process environment).
    pub fn new(cfg: &TargetConfig) -> Result<Self, BuildError> {
        if cfg.tls_insecure_skip_verify {
            tracing::warn!(target_name = %cfg.name, "TLS certificate verification is DISABLED for this target (tls_insecure_skip_verify = true)");
        }
        Self::build(cfg, cfg.http2, cfg.max_in_flight)
    }

    /// The client of a target's OAuth2 token endpoint (`auth`, `deliver::auth`): the target's
    /// proxy, TLS settings and timeout, but never HTTP/2 only (`http2 = true` is about the
    /// target, not its authorization server) and one pooled connection (one token request at
    /// a time).
    pub fn for_token_endpoint(cfg: &TargetConfig) -> Result<Self, BuildError> {
        Self::build(cfg, false, 1)
    }

    fn build(cfg: &TargetConfig, http2_only: bool, pool: usize) -> Result<Self, BuildError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.timeout.get().min(Duration::from_secs(10))));
        let setting = cfg.proxy_setting().map_err(|source| BuildError::Proxy {
            target: cfg.name.clone(),
            source,
        })?;
        let proxies = Proxies::new(setting, |k| std::env::var(k).ok());
        let http = ProxyConnector::new(http, proxies.clone());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(super::tls::client_config(cfg)?)
            .https_or_http();
        // ALPN on https://: `h2` alone with `http2 = true`, else `h2` and `http/1.1`.
        let https = if http2_only {
            https.enable_http2().wrap_connector(http)
        } else {
            https.enable_http1().enable_http2().wrap_connector(http)
        };
        let mut builder = Client::builder(TokioExecutor::new());
        // `http2 = true`: one connection carries every request in flight (h2c on http://).
        builder
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(90))
            // Idle connections past the timeout are closed by a timer, not only when found.
            .pool_timer(TokioTimer::new())
            .http2_only(http2_only);
        Ok(Self {
            client: builder.build(https),
            proxies,
            timeout: cfg.timeout.get(),
            user_agent: HeaderValue::from_static(concat!(
                "event-relay/",
                env!("CARGO_PKG_VERSION")
            )),
        })
    }

    /// Sends one request and classifies its answer: `Ok(status)` for a 2xx, else the
    /// retryable or final [`AttemptError`] (see [`super::retry::classify_status`]).
    pub async fn exchange(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: impl Into<Bytes>,
    ) -> Result<u16, AttemptError> {
        let answer = self.send(method, uri, headers, body).await?;
        if answer.status.is_success() {
            let status = answer.status.as_u16();
            answer.drain();
            return Ok(status);
        }
        Err(classify_response(answer).await)
    }

    /// Sends one request and returns its answer, whatever its status, body unread.
    pub(super) async fn send(
        &self,
        method: Method,
        uri: Uri,
        mut headers: HeaderMap,
        body: impl Into<Bytes>,
    ) -> Result<Answer, AttemptError> {
        headers
            .entry(USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        let uri = credentials_to_header(uri, &mut headers);
        if let Some(auth) = self.proxies.authorization(&uri) {
            headers.insert(PROXY_AUTHORIZATION, auth);
        }
        let mut req = http::Request::new(Full::new(body.into()));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let deadline = Instant::now() + self.timeout;
        match timeout_at(deadline, self.client.request(req)).await {
            Err(_) => Err(transport(
                TransportKind::Timeout,
                "operation timed out".into(),
            )),
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    TransportKind::Connect
                } else {
                    TransportKind::Other
                };
                Err(transport(kind, root_cause(&e)))
            }
            Ok(Ok(resp)) => {
                let (parts, body) = resp.into_parts();
                Ok(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                    deadline,
                })
            }
        }
    }
}

impl Answer {
    /// Up to `limit` bytes of the body, read within the request's timeout (empty if it fails).
    pub async fn body_prefix(self, limit: usize) -> Bytes {
        let mut body = self.body;
        let mut out = Vec::new();
        while out.len() < limit {
            match timeout_at(self.deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        out.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        out.truncate(limit);
        Bytes::from(out)
    }

    /// Reads the rest of a success answer's body, so its connection goes back to the pool.
    /// An empty body (the usual answer) is already at its end; another is read by a task of
    /// its own, within the request's timeout, so the delivery is settled at once.
    fn drain(self) {
        if self.body.is_end_stream() {
            return;
        }
        let (body, deadline) = (self.body, self.deadline);
        tokio::spawn(async move {
            let _ = timeout_at(deadline, Limited::new(body, DRAIN_LIMIT).collect()).await;
        });
    }
}

/// Credentials in the URL (`https://user:pass@host/...`) go as HTTP Basic authorization, as
/// reqwest (the client before issue 16) and browsers send them, unless the request already has
/// an `Authorization` header; the request target and `Host` carry no userinfo. A URL without
/// `@` in its authority (nearly all) is returned as it is.
fn credentials_to_header(uri: Uri, headers: &mut HeaderMap) -> Uri {
    if !uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return uri;
    }
    let Ok(mut url) = url::Url::parse(&uri.to_string()) else {
        return uri;
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (user, password) = (decode(url.username()), url.password().map(decode));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let Ok(bare) = url.as_str().parse() else {
        return uri;
    };
    if !headers.contains_key(http::header::AUTHORIZATION) {
        use base64::Engine;
        let pair = format!("{user}:{}", password.unwrap_or_default());
        let token = base64::engine::general_purpose::STANDARD.encode(pair);
        if let Ok(value) = HeaderValue::from_str(&format!("Basic {token}")) {
            headers.insert(http::header::AUTHORIZATION, value);
        }
    }
    bare
}

/// A failure to get an answer at all (connect, TLS, timeout, reset, a URL that cannot be sent):
/// always retryable.
pub(super) fn transport(kind: TransportKind, cause: String) -> AttemptError {
    AttemptError::Retryable {
        failure: Failure::Transport { kind, cause },
        retry_after: None,
    }
}

/// The innermost error's text (an outer one can include the URL).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_become_basic_authorization_and_leave_the_uri() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "http://user:p%40ss@127.0.0.1:8080/hook?x=1"
            .parse()
            .unwrap();
        let bare = credentials_to_header(uri, &mut headers);
        assert_eq!(bare.to_string(), "http://127.0.0.1:8080/hook?x=1");
        // base64("user:p@ss")
        assert_eq!(headers[http::header::AUTHORIZATION], "Basic dXNlcjpwQHNz");
    }

    #[test]
    fn a_configured_authorization_header_wins_and_plain_urls_are_untouched() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        let bare = credentials_to_header("https://u:p@example.com/".parse().unwrap(), &mut headers);
        assert_eq!(bare.to_string(), "https://example.com/");
        assert_eq!(headers[http::header::AUTHORIZATION], "Bearer t");

        let mut headers = HeaderMap::new();
        let plain = credentials_to_header("https://example.com/a".parse().unwrap(), &mut headers);
        assert_eq!(plain.to_string(), "https://example.com/a");
        assert!(headers.is_empty());
    }
}
