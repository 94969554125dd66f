//! `event-relay route`: raw events on stdin, through the normalizer and the router, to what each
//! target would be sent. The URL, headers and body come from the targets' own request building
//! (`deliver::Service::preview`), so the dry run cannot drift from what the relay sends.

use super::{load_or_exit, pick_settings, stdin_lines};
use crate::config::{self, Config, SourceFormat};
use crate::envelope::Origin;
use crate::normalize::{Normalizer, SourceSettings};
use std::path::PathBuf;
use std::process::ExitCode;

/// `route`: prints one JSON line per event: matched routes, targets and what each would be sent.
pub fn route(config: PathBuf, topic: Option<String>) -> ExitCode {
    let cfg = match load_or_exit(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dry = match DryRun::new(&cfg, topic.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let mut rejected = false;
    for (n, line) in stdin_lines() {
        rejected |= !dry.line(n, &line);
    }
    if rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// What `route` needs to follow events through routing to the targets' requests.
struct DryRun<'a> {
    cfg: &'a Config,
    router: crate::route::Router,
    /// The targets' own request building (`deliver`), so the dry run shows what is sent.
    services: Vec<crate::deliver::Service>,
    /// With --topic, that source's settings; without, every source's.
    sources: Vec<(String, SourceSettings)>,
    /// Lenient, format-detecting settings that only tell a line's shape (Komo or acemate).
    detect: SourceSettings,
    normalizer: Normalizer,
}

impl<'a> DryRun<'a> {
    fn new(cfg: &'a Config, topic: Option<&str>) -> anyhow::Result<Self> {
        let router = crate::route::Router::new(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        let services = cfg
            .targets
            .iter()
            .map(crate::deliver::Service::new)
            .collect::<Result<_, _>>()?;
        let sources: Vec<_> = match topic {
            Some(t) => pick_settings(cfg, Some(t), None).into_iter().collect(),
            None => cfg
                .sources
                .iter()
                .map(|s| {
                    let settings = SourceSettings::from_config(s, cfg.pipeline.max_message_bytes);
                    (s.topic.clone(), settings)
                })
                .collect(),
        };
        let Some(first) = sources.first() else {
            anyhow::bail!(match topic {
                Some(t) => format!("no [[sources]] entry for topic {t:?}"),
                None => "the config has no [[sources]] entry".to_string(),
            });
        };
        let detect = SourceSettings {
            format: SourceFormat::Auto,
            validation: config::ValidationMode::Lenient,
            unknown_events: config::UnknownEvents::Forward,
            ..first.1.clone()
        };
        let normalizer = Normalizer::from_config(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            cfg,
            router,
            services,
            sources,
            detect,
            normalizer,
        })
    }

    /// The source a line is read as: the only one, else the first whose format fits the
    /// line's shape (as it would be on that source's topic), so one input can mix Komo and
    /// acemate events and acemate events get their source's site.
    fn source_for(
        &self,
        line: &[u8],
        origin: impl Fn(&str) -> Origin,
    ) -> &(String, SourceSettings) {
        use crate::envelope::Source;
        let first = &self.sources[0];
        if self.sources.len() == 1 {
            return first;
        }
        let shape = self
            .normalizer
            .normalize(line, &self.detect, origin(&first.0))
            .ok()
            .and_then(|r| r.events.first().map(|(e, _)| e.source));
        self.sources
            .iter()
            .find(|(_, s)| {
                matches!(
                    (s.format, shape),
                    (SourceFormat::Auto, _)
                        | (SourceFormat::Komo, Some(Source::Komo))
                        | (SourceFormat::Acemate, Some(Source::Acemate))
                )
            })
            .unwrap_or(first)
    }

    /// Prints one JSON line per event of input line `n` (rejections on stderr); `false` if
    /// anything in it would be dead-lettered.
    fn line(&self, n: usize, line: &[u8]) -> bool {
        let origin = |topic: &str| Origin {
            topic: topic.to_string(),
            partition: 0,
            offset: n as i64 - 1,
            key: None,
        };
        let (topic, settings) = self.source_for(line, origin);
        let res = match self.normalizer.normalize(line, settings, origin(topic)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("line {n}: {e} ({}) → dead letter", e.reason());
                return false;
            }
        };
        for r in &res.rejected {
            eprintln!(
                "line {n}: batch event {}: {} ({}) → dead letter",
                r.index,
                r.error,
                r.error.reason()
            );
        }
        for (env, raw) in &res.events {
            let d = self.router.route(env);
            let routes: Vec<_> = d
                .routes
                .iter()
                .map(|&i| &self.router.routes[i].name)
                .collect();
            let targets: Vec<_> = d
                .targets
                .iter()
                .map(|&i| self.target(i, env, raw))
                .collect();
            let line = serde_json::json!({
                "line": n,
                "event": env.event,
                "id": env.id,
                "validation": env.validation.status,
                "routes": routes,
                "default_targets": d.defaulted,
                "unrouted": d.routes.is_empty() && d.targets.is_empty(),
                "targets": targets,
            });
            println!("{line}");
        }
        res.rejected.is_empty()
    }

    /// What target `i` would be sent for `env`, from the target's own request building.
    fn target(&self, i: usize, env: &crate::envelope::Envelope, raw: &[u8]) -> serde_json::Value {
        let t = &self.cfg.targets[i];
        let preview = match self.services[i].preview(env, raw) {
            Ok(p) => p,
            Err(e) => {
                return serde_json::json!({"target": t.name, "kind": t.kind, "error": e.to_string()})
            }
        };
        let headers: serde_json::Map<_, _> = preview
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        // A body that is not JSON (an `original` body of other bytes) is shown as text.
        let body: serde_json::Value = serde_json::from_slice(&preview.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&preview.body).into_owned().into());
        serde_json::json!({
            "target": t.name,
            "kind": t.kind,
            "url": preview.url,
            "headers": headers,
            "body": body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[kafka]
brokers = "127.0.0.1:1"
[[sources]]
topic = "komo.events"
format = "komo"
[results]
topic = "relay.results"
[dead_letter]
topic = "relay.dlq"
[[targets]]
name = "crm"
kind = "webhook"
url = "https://hooks.example.com/{{source}}"
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
headers = { "X-Site" = "{{site.name}}", "Authorization" = "Bearer s3cret" }
[[targets]]
name = "ph"
kind = "posthog"
url = "https://eu.i.posthog.com"
api_key = "phc_s3cret"
"#;
        config::load_str(text, Vec::new()).expect("valid config")
    }

    #[test]
    fn an_unknown_topic_is_named() {
        let cfg = config();
        let err = DryRun::new(&cfg, Some("nosuch.topic"))
            .err()
            .expect("no source for the topic");
        assert_eq!(
            err.to_string(),
            "no [[sources]] entry for topic \"nosuch.topic\""
        );
    }

    /// Header templates are rendered; credentials (a configured Authorization, the signature,
    /// PostHog's API key) never appear.
    #[test]
    fn targets_show_rendered_headers_without_secrets() {
        let cfg = config();
        let dry = DryRun::new(&cfg, Some("komo.events")).expect("dry run");
        let env = crate::envelope::sample();
        let crm = dry.target(0, &env, b"{}");
        assert_eq!(crm["url"], "https://hooks.example.com/komo");
        assert_eq!(crm["headers"]["x-site"], "My site");
        assert_eq!(crm["headers"]["authorization"], "<redacted>");
        assert_eq!(crm["headers"]["webhook-signature"], "<redacted>");
        assert_eq!(crm["headers"]["webhook-id"], env.id.as_str());
        assert_eq!(crm["body"]["id"], env.id.as_str());
        let ph = dry.target(1, &env, b"{}");
        assert_eq!(ph["url"], "https://eu.i.posthog.com/batch/");
        assert_eq!(ph["headers"]["content-encoding"], "gzip");
        assert_eq!(ph["body"]["uuid"], env.id.as_str());
        let all = format!("{crm} {ph}");
        assert!(!all.contains("s3cret"), "{all}");
    }
}
