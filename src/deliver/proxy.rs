//! Outbound HTTP proxies: which proxy (if any) a target's requests go through, and the
//! connector that reaches a destination directly, through a `CONNECT` tunnel (`https://`
//! targets) or by handing the request to the proxy in absolute form (`http://` targets).
//!
//! A target without `proxy` follows the environment as curl and reqwest do (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case); `proxy = "http://[user:pass@]host:port"`
//! sends every request of the target through that proxy; `proxy = "none"` never uses one. Only
//! `http://` proxies are spoken (TLS to the proxy itself and SOCKS are not).

use crate::config::ProxySetting;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

pub use http::{HeaderValue, Uri};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which proxy each destination of one target goes through.
#[derive(Clone, Debug)]
pub struct Proxies(Option<Arc<Matcher>>);

impl Proxies {
    /// From a target's `proxy` setting ([`crate::config::TargetConfig::proxy_setting`]), the
    /// environment read through `env` when it leaves the choice to it (the process environment
    /// in the relay; a map in tests).
    pub fn new(setting: ProxySetting<'_>, env: impl Fn(&str) -> Option<String>) -> Self {
        match setting {
            ProxySetting::Direct => Self(None),
            ProxySetting::Via(url) => Self(Some(Arc::new(Matcher::builder().all(url).build()))),
            ProxySetting::FromEnvironment => Self::from_env(env),
        }
    }

    fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: [&str; 2]| {
            names
                .into_iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
        };
        let (all, http, https) = (
            first(["ALL_PROXY", "all_proxy"]),
            first(["HTTP_PROXY", "http_proxy"]),
            first(["HTTPS_PROXY", "https_proxy"]),
        );
        if all.is_none() && http.is_none() && https.is_none() {
            return Self(None);
        }
        let mut builder = Matcher::builder();
        if let Some(v) = all {
            builder = builder.all(v);
        }
        if let Some(v) = http {
            builder = builder.http(v);
        }
        if let Some(v) = https {
            builder = builder.https(v);
        }
        if let Some(no) = first(["NO_PROXY", "no_proxy"]) {
            builder = builder.no(no);
        }
        Self(Some(Arc::new(builder.build())))
    }

    /// The proxy a request to `dst` goes through, if any.
    pub fn intercept(&self, dst: &Uri) -> Option<Intercept> {
        self.0.as_ref()?.intercept(dst)
    }

    /// `Proxy-Authorization` for a request sent to a proxy in absolute form (`http://` targets;
    /// a tunnel carries its own on the `CONNECT`).
    pub fn authorization(&self, dst: &Uri) -> Option<HeaderValue> {
        if dst.scheme_str() != Some("http") {
            return None;
        }
        self.intercept(dst)?.basic_auth().cloned()
    }
}

/// A TCP connection, marked when it leads to a proxy that expects absolute-form requests.
pub struct ProxyStream {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// Reaches a destination directly or through the proxy [`Proxies`] names for it.
#[derive(Clone)]
pub struct ProxyConnector {
    http: HttpConnector,
    proxies: Proxies,
}

impl ProxyConnector {
    pub fn new(http: HttpConnector, proxies: Proxies) -> Self {
        Self { http, proxies }
    }
}

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let Some(proxy) = self.proxies.intercept(&dst) else {
            return Box::pin(async move {
                let io = http.call(dst).await?;
                Ok(ProxyStream { io, proxied: false })
            });
        };
        let proxy_uri = proxy.uri().clone();
        Box::pin(async move {
            if proxy_uri.scheme_str() != Some("http") {
                return Err(format!(
                    "proxy {proxy_uri}: only http:// proxies are supported (from the environment)"
                )
                .into());
            }
            if dst.scheme_str() == Some("https") {
                // TLS to the destination runs inside a CONNECT tunnel through the proxy.
                let mut tunnel = Tunnel::new(proxy_uri, http);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let io = tunnel.call(dst).await?;
                Ok(ProxyStream { io, proxied: false })
            } else {
                let io = http.call(proxy_uri).await?;
                Ok(ProxyStream { io, proxied: true })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn the_environment_is_followed_when_the_target_sets_nothing() {
        let p = Proxies::new(
            ProxySetting::FromEnvironment,
            env(&[
                ("https_proxy", "http://u:p@proxy:3128"),
                ("HTTP_PROXY", "http://plain:8080"),
                ("NO_PROXY", "internal.example,10.0.0.0/8"),
            ]),
        );
        let tls = p.intercept(&uri("https://hooks.example.com/x")).unwrap();
        assert_eq!(tls.uri(), &uri("http://proxy:3128"));
        assert_eq!(tls.basic_auth().unwrap(), "Basic dTpw");
        assert_eq!(
            p.intercept(&uri("http://hooks.example.com/x"))
                .unwrap()
                .uri(),
            &uri("http://plain:8080")
        );
        assert!(p.intercept(&uri("https://internal.example/x")).is_none());
        assert!(p.intercept(&uri("http://10.1.2.3/x")).is_none());
        // Only an absolute-form request carries the header; the tunnel sends its own.
        assert!(p
            .authorization(&uri("https://hooks.example.com/"))
            .is_none());
        assert!(p.authorization(&uri("http://hooks.example.com/")).is_none());
    }

    #[test]
    fn without_proxy_variables_everything_goes_direct() {
        let p = Proxies::new(
            ProxySetting::FromEnvironment,
            env(&[("NO_PROXY", "x"), ("HTTP_PROXY", " ")]),
        );
        assert!(p.intercept(&uri("http://a.example/")).is_none());
        assert!(p.intercept(&uri("https://a.example/")).is_none());
    }

    #[test]
    fn a_configured_proxy_overrides_the_environment_and_none_turns_it_off() {
        let e = env(&[("HTTPS_PROXY", "http://env-proxy:1")]);
        let p = Proxies::new(ProxySetting::Via("http://user:pw@configured:3128"), &e);
        for dst in ["http://a.example/", "https://a.example/"] {
            assert_eq!(
                p.intercept(&uri(dst)).unwrap().uri(),
                &uri("http://configured:3128")
            );
        }
        assert_eq!(
            p.authorization(&uri("http://a.example/")).unwrap(),
            "Basic dXNlcjpwdw=="
        );
        let off = Proxies::new(ProxySetting::Direct, &e);
        assert!(off.intercept(&uri("https://a.example/")).is_none());
    }
}
