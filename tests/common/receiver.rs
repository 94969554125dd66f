//! A real HTTP server on loopback whose answers are scripted per request; it records every
//! request (gzip bodies decoded) for assertions.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::future::IntoFuture;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// A recorded request.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The raw body as sent.
    pub raw: Vec<u8>,
    /// The body, gunzipped when it was gzip.
    pub body: Vec<u8>,
    pub at: Instant,
    /// The status this request was answered with.
    pub status: u16,
}

impl Req {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

type Rule = Arc<dyn Fn(&Req) -> Option<Reply> + Send + Sync>;

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    rule: Option<Rule>,
    requests: Vec<Req>,
    /// Closed: kept-alive connections get `503` + `Connection: close`, new ones are refused.
    closed: bool,
}

/// The receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    stop: Mutex<tokio_util::sync::CancellationToken>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.lock().unwrap().cancel();
    }
}

fn serve(
    listener: tokio::net::TcpListener,
    inner: Arc<Mutex<Inner>>,
) -> tokio_util::sync::CancellationToken {
    let app = axum::Router::new().fallback(handle).with_state(inner);
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let server = axum::serve(listener, app).into_future();
        tokio::select! {
            _ = server => {},
            _ = s.cancelled() => {},
        }
    });
    stop
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body.to_vec();
    let decoded = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map(|_| out)
            .unwrap_or_default()
    } else {
        raw.clone()
    };
    let req = Req {
        method: method.to_string(),
        path: uri.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        raw,
        body: decoded,
        at: Instant::now(),
        status: 0,
    };
    if inner.lock().unwrap().closed {
        let mut resp = (StatusCode::SERVICE_UNAVAILABLE, "closed").into_response();
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return resp;
    }
    let reply = {
        let mut g = inner.lock().unwrap();
        let ruled = g.rule.as_ref().and_then(|r| r(&req));
        let reply = ruled
            .or_else(|| g.script.pop_front())
            .or_else(|| g.default.clone())
            .unwrap_or_else(|| Reply::status(200));
        let mut req = req;
        req.status = reply.status;
        g.requests.push(req);
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap(),
        "{\"status\":\"Ok\"}",
    )
        .into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}

impl Receiver {
    /// Starts a receiver answering `script` in order, then `200`.
    pub async fn start(script: Vec<Reply>) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.into(),
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = serve(listener, inner.clone());
        Self {
            url,
            inner,
            stop: Mutex::new(stop),
        }
    }

    /// Stops listening: connections are refused until [`Receiver::reopen`].
    pub fn close(&self) {
        self.inner.lock().unwrap().closed = true;
        self.stop.lock().unwrap().cancel();
    }

    /// Listens again on the same port.
    pub async fn reopen(&self) {
        let addr = self.url.trim_start_matches("http://").to_string();
        let listener = loop {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.inner.lock().unwrap().closed = false;
        *self.stop.lock().unwrap() = serve(listener, self.inner.clone());
    }

    /// Answer every unscripted request with `reply`.
    pub fn set_default(&self, reply: Reply) {
        self.inner.lock().unwrap().default = Some(reply);
    }

    /// A per-request rule consulted before the script.
    pub fn set_rule(&self, rule: impl Fn(&Req) -> Option<Reply> + Send + Sync + 'static) {
        self.inner.lock().unwrap().rule = Some(Arc::new(rule));
    }

    pub fn requests(&self) -> Vec<Req> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }
}
