//! A target's `auth`: the `Authorization: Bearer` header of every request, from a token file
//! ([`bearer`]) or an OAuth2 token endpoint ([`oauth2`]), and the one rule both share: a
//! request the target answers with 401 gets its credential renewed once (a new OAuth2 token, or
//! the token file read again at once) and is sent once more with it; the pair is one attempt.
//!
//! Failing to get a credential is a retryable delivery failure (`Failure::TokenRequest`,
//! `Failure::TokenFile`): nothing reached the target and the event is not to blame. Tokens and
//! secrets are kept in sensitive header values and appear in no message, log line, metric
//! label or result event; `route` shows the header as `<redacted>` without asking for a token.

mod bearer;
mod oauth2;

use super::client::{HeaderMap, HeaderValue, HttpClient, Method, Uri};
use super::retry::AttemptError;
use super::BuildError;
use crate::config::{AuthConfig, TargetConfig};
use crate::metrics::Metrics;
use crate::report::Failure;
use bytes::Bytes;
use http::header::AUTHORIZATION;

/// The credential a request carries: the whole `Authorization` value, and which one it is
/// (a new token, or a changed file, has a new generation), so a 401 renews only the
/// credential it was given for.
#[derive(Clone, Debug)]
pub(super) struct Credential {
    header: HeaderValue,
    generation: u64,
}

impl Credential {
    /// `Bearer <token>`, marked sensitive (hyper never indexes it in HTTP/2 header tables, and
    /// its `Debug` does not show it); `None` if HTTP cannot carry the token.
    fn bearer(token: &str, generation: u64) -> Option<Self> {
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        header.set_sensitive(true);
        Some(Self { header, generation })
    }
}

/// `event_relay_auth_token_refreshes_total{target, outcome}` of one target: new credentials
/// obtained (`ok`: an OAuth2 token, a token file that changed) and failed attempts (`error`).
/// Absent for dry runs (`route`), which never obtain a credential.
#[derive(Clone)]
pub(super) struct Refreshes {
    ok: prometheus::IntCounter,
    error: prometheus::IntCounter,
}

impl Refreshes {
    fn new(metrics: Option<&Metrics>, target: &str) -> Option<Self> {
        let m = metrics?;
        Some(Self {
            ok: m.auth_token_refreshes.with_label_values(&[target, "ok"]),
            error: m.auth_token_refreshes.with_label_values(&[target, "error"]),
        })
    }

    fn count(this: &Option<Self>, ok: bool) {
        if let Some(r) = this {
            let counter = if ok { &r.ok } else { &r.error };
            counter.inc();
        }
    }
}

/// How a target gets its `Authorization` header.
pub(super) enum Auth {
    // Boxed (one per target, built once): the two differ much in size.
    Bearer(Box<bearer::BearerFile>),
    OAuth2(Box<oauth2::OAuth2>),
}

impl Auth {
    /// The target's `auth`, if it has one; token requests go through `client`'s settings
    /// (proxy, TLS, timeout) on a client of their own.
    pub(super) fn new(
        cfg: &TargetConfig,
        metrics: Option<&Metrics>,
    ) -> Result<Option<Self>, BuildError> {
        let refreshes = Refreshes::new(metrics, &cfg.name);
        Ok(match &cfg.auth {
            None => None,
            Some(AuthConfig::Bearer(b)) => {
                let file = bearer::BearerFile::new(&cfg.name, &b.token_file, refreshes);
                Some(Auth::Bearer(Box::new(file)))
            }
            Some(AuthConfig::OAuth2(o)) => {
                let client = HttpClient::for_token_endpoint(cfg)?;
                let oauth2 = oauth2::OAuth2::new(&cfg.name, o, client, refreshes)?;
                Some(Auth::OAuth2(Box::new(oauth2)))
            }
        })
    }

    /// The credential for the next request.
    async fn credential(&self) -> Result<Credential, Failure> {
        match self {
            Auth::Bearer(b) => b.credential(),
            Auth::OAuth2(o) => o.credential().await,
        }
    }

    /// A credential to replace `rejected` (the target answered 401 to it), or `None` when
    /// there is none newer (the token file did not change): the 401 stands.
    async fn renew(&self, rejected: &Credential) -> Result<Option<Credential>, Failure> {
        match self {
            Auth::Bearer(b) => b.renew(rejected.generation),
            Auth::OAuth2(o) => o.renew(rejected.generation).await.map(Some),
        }
    }
}

/// A credential failure as a delivery attempt's: retryable, nothing was sent.
fn retryable(failure: Failure) -> AttemptError {
    AttemptError::Retryable {
        failure,
        retry_after: None,
    }
}

/// Sends one request through `client`, with `auth`'s credential when the target has one: on a
/// 401 the credential is renewed once and the request sent once more (see the module docs).
pub(super) async fn exchange(
    client: &HttpClient,
    auth: Option<&Auth>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Vec<u8>,
) -> Result<u16, AttemptError> {
    let Some(auth) = auth else {
        return client.exchange(method, uri, headers, body).await;
    };
    // Shared by both sends without a copy.
    let body = Bytes::from(body);
    let credential = auth.credential().await.map_err(retryable)?;
    headers.insert(AUTHORIZATION, credential.header.clone());
    let first = client
        .exchange(method.clone(), uri.clone(), headers.clone(), body.clone())
        .await;
    if first.as_ref().err().and_then(AttemptError::status) != Some(401) {
        return first;
    }
    let Some(renewed) = auth.renew(&credential).await.map_err(retryable)? else {
        return first;
    };
    headers.insert(AUTHORIZATION, renewed.header);
    client.exchange(method, uri, headers, body).await
}

/// What a dry run shows for a target with `auth`: an `Authorization` header (which the
/// preview redacts), without reading a file or asking for a token.
pub(super) fn preview(headers: &mut HeaderMap, auth: Option<&Auth>) {
    if auth.is_some() {
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer <redacted>"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_sensitive_and_refuses_what_http_cannot_carry() {
        let c = Credential::bearer("abc", 3).unwrap();
        assert_eq!(c.header, "Bearer abc");
        assert!(c.header.is_sensitive());
        assert!(!format!("{c:?}").contains("abc"));
        assert!(Credential::bearer("a\nb", 1).is_none());
    }
}
