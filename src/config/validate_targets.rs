//! Validation of the `[[targets]]` entries (part of [`Config::validate`]).

use super::validate::{check_url, Problem};
use super::{Config, TargetKind};
use std::collections::HashSet;

impl Config {
    /// Checks every target; returns the set of target names (routes refer to them).
    pub(super) fn validate_targets(&self, p: &mut Vec<Problem>) -> HashSet<&str> {
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let at = |k: &str| format!("targets[{i}].{k}");
            if t.name.trim().is_empty() {
                p.push(Problem::new(&at("name"), "must not be empty"));
            } else if !names.insert(t.name.as_str()) {
                p.push(Problem::new(
                    &at("name"),
                    format!("duplicate target name {:?}", t.name),
                ));
            }
            if let Err(e) = check_url(&t.url) {
                p.push(Problem::new(&at("url"), e));
            }
            if t.kind == TargetKind::Posthog && t.url.contains("{{") {
                p.push(Problem::new(
                    &at("url"),
                    "a posthog url is the host; templates are not allowed",
                ));
            }
            if let Some(id) = &t.id {
                if uuid::Uuid::parse_str(id).is_err() {
                    p.push(Problem::new(&at("id"), format!("{id:?} is not a GUID")));
                }
            }
            if !ids.insert(t.guid()) {
                p.push(Problem::new(&at("id"), "duplicate target id"));
            }
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
            if t.retry.max_attempts == 0 {
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
            match t.kind {
                TargetKind::Posthog => {
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
                TargetKind::Webhook => {
                    if t.api_key.is_some() {
                        p.push(Problem::new(&at("api_key"), "only for kind = \"posthog\""));
                    }
                    if let Some(secret) = &t.signing_secret {
                        if let Err(e) = super::decode_signing_secret(secret) {
                            p.push(Problem::new(&at("signing_secret"), e.to_string()));
                        }
                    }
                }
            }
            let batched = t.kind == TargetKind::Webhook && t.batch_max_events.unwrap_or(1) > 1;
            if batched && t.url.contains("{{") {
                p.push(Problem::new(
                &at("url"),
                "a templated URL cannot be combined with batch_max_events > 1 (one request carries events with different values)",
            ));
            }
            for (name, value) in t.headers.iter() {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    p.push(Problem::new(
                        &at(&format!("headers.{name}")),
                        "invalid HTTP header name",
                    ));
                }
                if value.contains("{{") && name.eq_ignore_ascii_case("host") {
                    p.push(Problem::new(
                    &at(&format!("headers.{name}")),
                    "the Host header cannot be templated (an event would choose the virtual host)",
                ));
                } else if value.contains("{{") && batched {
                    p.push(Problem::new(
                    &at(&format!("headers.{name}")),
                    "a templated header cannot be combined with batch_max_events > 1 (one request carries events with different values)",
                ));
                }
            }
        }
        names
    }
}
