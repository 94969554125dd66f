//! The exporter's HTTP client: the SDK's batch processor posts each batch of spans through it,
//! on the relay's tokio runtime, with the relay's HTTP stack (hyper-util over rustls, the web's
//! and the system's roots). The collector's trouble is logged as Kafka's is: one WARN when
//! exports start failing (spans are then dropped, never queued without bound), one INFO when
//! they succeed again.

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Pool;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::HttpError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Posts export requests on `runtime` (the batch processor calls from its own thread).
#[derive(Clone)]
pub struct Client {
    pool: Pool<Https, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    url: Arc<str>,
    failing: Arc<AtomicBool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("otlp::Client")
            .field("url", &self.url)
            .finish()
    }
}

impl Client {
    pub fn new(runtime: tokio::runtime::Handle, url: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // The system's store too: collectors behind a corporate CA are common.
        let (added, _) =
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        tracing::debug!(system_roots = added, "OTLP exporter trust store");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            pool: Pool::builder(TokioExecutor::new()).build(https),
            runtime,
            url: url.into(),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Logs the change when exports start or stop failing.
    fn note(&self, problem: Option<String>) {
        match problem {
            Some(why) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(endpoint = %self.url, error = %why, "OpenTelemetry export failing: spans are dropped until the collector answers");
                }
            }
            None => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.url, "OpenTelemetry export working again");
                }
            }
        }
    }
}

#[async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let pool = self.pool.clone();
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        // The batch processor polls this future on its own thread, without a reactor: the
        // request itself runs on the relay's runtime.
        let answer = self
            .runtime
            .spawn(async move {
                let response = pool.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            })
            .await
            .map_err(|e| -> HttpError { Box::new(e) })?;
        match &answer {
            Ok(r) if r.status().is_success() => self.note(None),
            Ok(r) => self.note(Some(format!("HTTP status {}", r.status()))),
            Err(e) => self.note(Some(e.to_string())),
        }
        answer
    }
}
