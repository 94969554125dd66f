//! Validation of the `[[targets]]` entries (part of [`Config::validate`]), one function per
//! concern: identity, URL, limits, kind-specific keys, templates, TLS files.

use super::problem::Problem;
use super::{Config, TargetConfig, TargetKind};
use std::collections::HashSet;

/// A target URL that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("invalid URL {url:?}: {source}")]
    Invalid {
        url: String,
        source: url::ParseError,
    },
    #[error("URL {0:?} must use http or https")]
    NotHttp(String),
    #[error("URL {0:?}: templates may only be used in the path or query, never the host")]
    TemplatedHost(String),
}

/// Checks a target URL; `{{field}}` templates are allowed in its path and query only.
pub(super) fn check_url(url: &str) -> Result<(), UrlError> {
    // Substitute a placeholder for the templates to parse the rest.
    let probe = url.replace("{{", "x").replace("}}", "x");
    let parsed = url::Url::parse(&probe).map_err(|source| UrlError::Invalid {
        url: url.to_string(),
        source,
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlError::NotHttp(url.to_string()));
    }
    if let Some(host_end) = url.find("://").map(|i| i + 3) {
        let authority = &url[host_end..];
        let authority = authority.split(['/', '?']).next().unwrap_or_default();
        if authority.contains("{{") {
            return Err(UrlError::TemplatedHost(url.to_string()));
        }
    }
    Ok(())
}

/// The `targets[].proxy` value that turns proxies off for the target, environment included.
const NO_PROXY: &str = "none";

/// What a target's `proxy` key asks for: exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxySetting<'a> {
    /// Unset: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` decide.
    FromEnvironment,
    /// `"none"`: direct connections, whatever the environment says.
    Direct,
    /// Every request through this `http://` proxy.
    Via(&'a str),
}

impl TargetConfig {
    /// The `proxy` key read (the one place its values are told apart), or why it cannot be used.
    pub fn proxy_setting(&self) -> Result<ProxySetting<'_>, ProxyUrlError> {
        match self.proxy.as_deref().map(str::trim) {
            None => Ok(ProxySetting::FromEnvironment),
            Some(NO_PROXY) => Ok(ProxySetting::Direct),
            Some(url) => check_proxy_url(url).map(|()| ProxySetting::Via(url)),
        }
    }
}

/// Why a `targets[].proxy` setting cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyUrlError {
    #[error("{0:?} is not a URL (expected \"http://host:port\" or \"none\")")]
    NotUrl(String),
    #[error("{0:?}: only http:// proxies are supported (got {1}://)")]
    Scheme(String, String),
}

/// A `proxy` setting other than `"none"` must be an `http://` URL with a host.
fn check_proxy_url(url: &str) -> Result<(), ProxyUrlError> {
    let parsed = url::Url::parse(url).map_err(|_| ProxyUrlError::NotUrl(url.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(ProxyUrlError::Scheme(url.into(), parsed.scheme().into()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ProxyUrlError::NotUrl(url.to_string()));
    }
    Ok(())
}

const PER_EVENT_IN_BATCH: &str = "cannot be combined with batch_max_events > 1 (one request carries events with different values)";

impl Config {
    /// Checks every target; returns the set of target names (routes refer to them).
    pub(super) fn validate_targets(&self, p: &mut Vec<Problem>) -> HashSet<&str> {
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let at = |k: &str| format!("targets[{i}].{k}");
            let duplicate_name = !t.name.trim().is_empty() && !names.insert(t.name.as_str());
            if t.name.trim().is_empty() {
                p.push(Problem::new(&at("name"), "must not be empty"));
            } else if duplicate_name {
                p.push(Problem::new(
                    &at("name"),
                    format!("duplicate target name {:?}", t.name),
                ));
            }
            if let Some(id) = &t.id {
                if uuid::Uuid::parse_str(id).is_err() {
                    p.push(Problem::new(&at("id"), format!("{id:?} is not a GUID")));
                }
            }
            // Without an `id`, a duplicate name is also a duplicate id: report it once.
            if !ids.insert(t.guid()) && (t.id.is_some() || !duplicate_name) {
                p.push(Problem::new(&at("id"), "duplicate target id"));
            }
            check_target(t, &at, p);
            super::transform::check_transform_keys(i, t, &self.sources, p);
            super::auth::check_auth(i, t, p);
        }
        names
    }
}

/// The checks of one target that do not depend on the others.
fn check_target(t: &TargetConfig, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    if let Err(e) = check_url(&t.url) {
        p.push(Problem::new(&at("url"), e));
    }
    if let Err(e) = t.proxy_setting() {
        p.push(Problem::new(&at("proxy"), e));
    }
    check_limits(t, at, p);
    match t.kind {
        TargetKind::Posthog => check_posthog(t, at, p),
        TargetKind::Webhook => check_webhook(t, at, p),
    }
    check_templates(t, at, p);
    // The files are read and parsed as the target's client will (`deliver::tls`).
    if let Err(problems) = t.tls.load(!t.tls_insecure_skip_verify) {
        for (key, e) in problems {
            p.push(Problem::new(&at(&format!("tls.{key}")), e));
        }
    }
}

/// Timeouts, concurrency, rate, retry and batch bounds.
fn check_limits(t: &TargetConfig, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    if t.timeout.get().is_zero() {
        p.push(Problem::new(&at("timeout"), "must be greater than 0"));
    }
    if t.max_in_flight == 0 {
        p.push(Problem::new(&at("max_in_flight"), "must be at least 1"));
    }
    if let Some(r) = t.rate_limit_per_sec {
        if !(r > 0.0 && r.is_finite()) {
            p.push(Problem::new(
                &at("rate_limit_per_sec"),
                "must be a positive number",
            ));
        }
    }
    if t.retry.max_attempts == Some(0) {
        p.push(Problem::new(
            &at("retry.max_attempts"),
            "must be at least 1",
        ));
    }
    if t.retry.initial_backoff > t.retry.max_backoff {
        p.push(Problem::new(
            &at("retry.initial_backoff"),
            "must not exceed retry.max_backoff",
        ));
    }
    if t.batch_max_events == Some(0) {
        p.push(Problem::new(&at("batch_max_events"), "must be at least 1"));
    }
    if t.batch_max_bytes == Some(0) {
        p.push(Problem::new(&at("batch_max_bytes"), "must be at least 1"));
    }
}

/// The PostHog capture endpoint a posthog `url`'s path ends in, if any: the relay would post
/// to `{url}/batch/` (`/batch/batch/`), which PostHog does not serve.
fn capture_endpoint(url: &str) -> Option<&'static str> {
    let path = url::Url::parse(url)
        .ok()?
        .path()
        .trim_end_matches('/')
        .to_string();
    ["/batch", "/capture", "/i/v0/e", "/e", "/track", "/engage"]
        .into_iter()
        .find(|e| path.ends_with(e))
}

fn check_posthog(t: &TargetConfig, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    if t.url.contains("{{") {
        p.push(Problem::new(
            &at("url"),
            "a posthog url is the host; templates are not allowed",
        ));
    } else if let Some(endpoint) = capture_endpoint(&t.url) {
        p.push(Problem::new(
            &at("url"),
            format!(
                "ends in PostHog's {endpoint:?} endpoint, but the relay appends /batch/ itself: give the instance's URL (e.g. https://eu.i.posthog.com, or a self-hosted instance's base URL)"
            ),
        ));
    }
    if t.api_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
        p.push(Problem::new(
            &at("api_key"),
            "required for kind = \"posthog\"",
        ));
    }
    if t.signing_secret.is_some() {
        p.push(Problem::new(
            &at("signing_secret"),
            "only for kind = \"webhook\"",
        ));
    }
}

fn check_webhook(t: &TargetConfig, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    if t.api_key.is_some() {
        p.push(Problem::new(&at("api_key"), "only for kind = \"posthog\""));
    }
    if let Some(secret) = &t.signing_secret {
        for (key, e) in secret.problems() {
            p.push(Problem::new(&at(&key), e));
        }
    }
}

/// The fields of the `{{field}}` templates in `text`, as the renderer reads them.
pub fn template_fields(text: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        fields.push(rest[start + 2..start + 2 + len].trim());
        rest = &rest[start + 2 + len + 2..];
    }
    fields
}

/// Every template field names an envelope value: a misspelt one would render empty.
fn check_template_fields(key: &str, text: &str, p: &mut Vec<Problem>) {
    for field in template_fields(text) {
        if let Err(e) = super::validate::check_field_path(field) {
            p.push(Problem::new(
                key,
                format!("template {{{{{field}}}}}: {e} (it would render empty)"),
            ));
        }
    }
}

/// Header names, and `{{field}}` templates only where one request carries one event.
fn check_templates(t: &TargetConfig, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    check_template_fields(&at("url"), &t.url, p);
    for (name, value) in t.headers.iter() {
        check_template_fields(&at(&format!("headers.{name}")), value, p);
    }
    let batched = t.kind == TargetKind::Webhook && t.batch_max_events.unwrap_or(1) > 1;
    if batched && t.url.contains("{{") {
        p.push(Problem::new(
            &at("url"),
            format!("a templated URL {PER_EVENT_IN_BATCH}"),
        ));
    }
    for (name, value) in t.headers.iter() {
        let at_header = at(&format!("headers.{name}"));
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.push(Problem::new(&at_header, "invalid HTTP header name"));
        }
        if value.contains("{{") && name.eq_ignore_ascii_case("host") {
            p.push(Problem::new(
                &at_header,
                "the Host header cannot be templated (an event would choose the virtual host)",
            ));
        } else if value.contains("{{") && batched {
            p.push(Problem::new(
                &at_header,
                format!("a templated header {PER_EVENT_IN_BATCH}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_proxy_urls_are_accepted() {
        assert_eq!(
            check_proxy_url("socks5://proxy:1080"),
            Err(ProxyUrlError::Scheme(
                "socks5://proxy:1080".into(),
                "socks5".into()
            ))
        );
        assert!(matches!(
            check_proxy_url("https://proxy:3128"),
            Err(ProxyUrlError::Scheme(..))
        ));
        assert!(matches!(
            check_proxy_url("not a url"),
            Err(ProxyUrlError::NotUrl(_))
        ));
        assert!(check_proxy_url("http://user:pw@proxy.internal:3128").is_ok());
    }

    #[test]
    fn the_proxy_key_is_one_of_environment_direct_or_a_url() {
        let mut t: TargetConfig = serde_json::from_value(serde_json::json!({
            "name": "t", "kind": "webhook", "url": "https://example.com/",
        }))
        .unwrap();
        assert_eq!(t.proxy_setting(), Ok(ProxySetting::FromEnvironment));
        t.proxy = Some(" none ".into());
        assert_eq!(t.proxy_setting(), Ok(ProxySetting::Direct));
        t.proxy = Some("http://proxy:3128".into());
        assert_eq!(
            t.proxy_setting(),
            Ok(ProxySetting::Via("http://proxy:3128"))
        );
        t.proxy = Some("socks5://proxy:1080".into());
        assert!(matches!(t.proxy_setting(), Err(ProxyUrlError::Scheme(..))));
    }
}
