//! `[telemetry]`: OpenTelemetry traces of the relay's work (a span per consumed message, a child
//! span per delivery attempt), exported over OTLP/HTTP. Off unless `otlp_endpoint` is set.

use super::Problem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where and how the relay exports its traces.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP endpoint (`http://otel-collector:4318`); spans are posted as
    /// protobuf to its `/v1/traces` (appended unless the URL already ends with it). Unset: no
    /// spans are made at all, so tracing costs the hot path nothing.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The share of messages traced, 0.0 to 1.0, decided by trace id (so every span of one
    /// message's journey is kept or dropped together). A message that arrives with a sampled
    /// W3C `traceparent` header is always traced, one that arrives with an unsampled one never.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// The `service.name` resource attribute the spans carry (how the tracing backend names
    /// this relay; set one per deployment when several run).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Extra headers on every export request, for collectors that want an API key
    /// (`{ "x-honeycomb-team" = "${HONEYCOMB_KEY}" }`). `check` never prints their values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "event-relay".into()
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: default_sample_ratio(),
            service_name: default_service_name(),
            headers: BTreeMap::new(),
        }
    }
}

impl TelemetryConfig {
    /// The URL spans are posted to: `otlp_endpoint` with `/v1/traces` appended unless it ends
    /// with it. `None` when telemetry is off.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?.trim();
        if base.trim_end_matches('/').ends_with("/v1/traces") {
            return Some(base.trim_end_matches('/').to_string());
        }
        Some(format!("{}/v1/traces", base.trim_end_matches('/')))
    }

    /// Every problem of the section, each with its key path.
    pub(super) fn check(&self, p: &mut Vec<Problem>) {
        if let Some(endpoint) = &self.otlp_endpoint {
            match url::Url::parse(endpoint.trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(u) if !matches!(u.scheme(), "http" | "https") => p.push(Problem::new(
                    "telemetry.otlp_endpoint",
                    format!(
                        "{endpoint:?} must be an http:// or https:// URL (OTLP over HTTP; gRPC \
                         is not supported: use the collector's HTTP port, 4318 by default)"
                    ),
                )),
                Ok(_) => p.push(Problem::new(
                    "telemetry.otlp_endpoint",
                    format!("{endpoint:?} names no host"),
                )),
                Err(e) => p.push(Problem::new(
                    "telemetry.otlp_endpoint",
                    format!("{endpoint:?} is not a URL: {e}"),
                )),
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            p.push(Problem::new(
                "telemetry.sample_ratio",
                format!(
                    "{} is not between 0.0 and 1.0 (the share of messages traced)",
                    self.sample_ratio
                ),
            ));
        }
        if self.service_name.trim().is_empty() {
            p.push(Problem::new("telemetry.service_name", "must not be empty"));
        }
        for (name, value) in &self.headers {
            let path = format!("telemetry.headers.\"{name}\"");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.push(Problem::new(&path, "is not a valid HTTP header name"));
            } else if http::HeaderValue::from_str(value).is_err() {
                p.push(Problem::new(
                    &path,
                    "its value is not a valid HTTP header value (control characters?)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(url: &str) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: Some(url.into()),
            ..Default::default()
        }
    }

    fn problems(t: &TelemetryConfig) -> Vec<String> {
        let mut p = Vec::new();
        t.check(&mut p);
        p.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn off_by_default() {
        let t = TelemetryConfig::default();
        assert_eq!(t.traces_url(), None);
        assert!(problems(&t).is_empty());
    }

    #[test]
    fn the_traces_path_is_appended_once() {
        for (given, want) in [
            ("http://c:4318", "http://c:4318/v1/traces"),
            ("http://c:4318/", "http://c:4318/v1/traces"),
            ("https://c/otlp", "https://c/otlp/v1/traces"),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
            ("http://c:4318/v1/traces/", "http://c:4318/v1/traces"),
        ] {
            assert_eq!(with_endpoint(given).traces_url().as_deref(), Some(want));
        }
    }

    #[test]
    fn each_problem_names_its_key() {
        let mut t = with_endpoint("grpc://collector:4317");
        t.sample_ratio = 1.5;
        t.service_name = " ".into();
        t.headers.insert("bad name".into(), "x".into());
        t.headers.insert("x-key".into(), "a\nb".into());
        let p = problems(&t);
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].starts_with("telemetry.otlp_endpoint: ") && p[0].contains("http://"));
        assert!(p[1].starts_with("telemetry.sample_ratio: 1.5"));
        assert!(p[2].starts_with("telemetry.service_name: "));
        assert!(p[3].starts_with("telemetry.headers.\"bad name\": "));
        assert!(p[4].starts_with("telemetry.headers.\"x-key\": "));
        assert!(problems(&with_endpoint("not a url"))[0].contains("is not a URL"));
        assert!(problems(&with_endpoint("http://collector:4318")).is_empty());
    }
}
