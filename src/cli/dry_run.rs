//! The dry-run machinery `route`, `test` and `transform` share: raw lines normalized as on
//! their source topic, routed, and each target's request (through its transform) built by the
//! targets' own code (`deliver::dry_run`), so no dry run can drift from what the relay sends.

use super::pick_settings;
use crate::config::{self, Config, SourceFormat};
use crate::envelope::{Envelope, Origin};
use crate::normalize::{NormalizeError, Normalized, Normalizer, SourceSettings};

/// What the dry runs need to follow events through routing to the targets' requests.
pub(super) struct DryRun<'a> {
    pub(super) cfg: &'a Config,
    pub(super) router: crate::route::Router,
    /// The targets' own request building (`deliver`), so the dry run shows what is sent.
    services: Vec<crate::deliver::Service>,
    /// The targets' compiled transforms (index = target index).
    transforms: Vec<Option<std::sync::Arc<crate::transform::Transform>>>,
    /// Values of `transform_vars` whose names say they are credentials (`api_key`,
    /// `write_key`, `token`, ...): a program may put them in a body, a dry run never shows them;
    /// and the OAuth2 client secrets.
    secrets: Vec<String>,
    /// With --topic, that source's settings; without, every source's.
    sources: Vec<(String, SourceSettings)>,
    /// Lenient, format-detecting settings that only tell a line's shape (Komo or acemate).
    detect: SourceSettings,
    normalizer: Normalizer,
}

impl<'a> DryRun<'a> {
    pub(super) fn new(cfg: &'a Config, topic: Option<&str>) -> anyhow::Result<Self> {
        let router = crate::route::Router::new(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        let services = cfg
            .targets
            .iter()
            .map(crate::deliver::Service::new)
            .collect::<Result<_, _>>()?;
        let transforms =
            crate::transform::compile_all(cfg).map_err(crate::deliver::BuildError::Transform)?;
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
            transforms,
            secrets: secret_vars(cfg),
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

    /// Input line `n` normalized as on its source topic: `topic` when given (a configured
    /// source), else the source [`Self::source_for`] picks.
    pub(super) fn normalize(
        &self,
        n: usize,
        line: &[u8],
        topic: Option<&str>,
    ) -> Result<Normalized, NormalizeError> {
        let origin = |topic: &str| Origin {
            topic: topic.to_string(),
            partition: 0,
            offset: n as i64 - 1,
            key: None,
        };
        let chosen = topic.and_then(|t| self.sources.iter().find(|(s, _)| s == t));
        let (topic, settings) = chosen.unwrap_or_else(|| self.source_for(line, origin));
        self.normalizer.normalize(line, settings, origin(topic))
    }

    /// `text` as a dry run prints it: credential values of `transform_vars` shown as
    /// `<redacted>`, like credential headers.
    pub(super) fn redact(&self, text: String) -> String {
        self.secrets
            .iter()
            .fold(text, |t, secret| t.replace(secret.as_str(), "<redacted>"))
    }

    /// The index of the target named `name`.
    pub(super) fn target_index(&self, name: &str) -> Option<usize> {
        self.cfg.targets.iter().position(|t| t.name == name)
    }

    /// What target `i` would do with `env`: its request (through its transform), a skip, or
    /// a failure without a request.
    pub(super) fn shown(&self, i: usize, env: &Envelope, raw: &[u8]) -> crate::deliver::DryRun {
        crate::deliver::dry_run(&self.services[i], self.transforms[i].as_deref(), env, raw)
    }

    /// What target `i` would be sent for `env`, from the target's own request building and
    /// its transform.
    pub(super) fn target(
        &self,
        i: usize,
        env: &crate::envelope::Envelope,
        raw: &[u8],
    ) -> serde_json::Value {
        use crate::deliver::DryRun as Shown;
        let t = &self.cfg.targets[i];
        let (preview, request) = match self.shown(i, env, raw) {
            Shown::Request(p, r) => (p, r),
            Shown::Skipped => {
                return serde_json::json!({"target": t.name, "kind": t.kind, "skipped": true})
            }
            Shown::Failed(e) => {
                return serde_json::json!({"target": t.name, "kind": t.kind, "error": e})
            }
        };
        let set = request.as_ref().map(|r| transform_headers(&preview, r));
        let headers: serde_json::Map<_, _> = preview
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        let body = body_json(&preview.body);
        let mut shown = serde_json::json!({
            "target": t.name,
            "kind": t.kind,
            "url": preview.url,
            "headers": headers,
            "body": body,
        });
        if let (Some(r), Some(set)) = (request, set) {
            shown["transformed"] = true.into();
            shown["transform_headers"] = set.into();
            shown["transform_path"] = r.path.into();
        }
        shown
    }
}

/// The values of the config's credential-named `transform_vars`, and the OAuth2 client
/// secrets of `auth` (a program cannot read them; kept out of the output should one be
/// written into a header or a body by hand).
fn secret_vars(cfg: &Config) -> Vec<String> {
    let vars = cfg
        .targets
        .iter()
        .flat_map(|t| &t.transform_vars)
        .filter(|(name, value)| crate::deliver::is_secret_name(name) && !value.is_empty())
        .map(|(_, value)| value.clone());
    let client_secrets = cfg.targets.iter().filter_map(|t| match &t.auth {
        Some(config::AuthConfig::OAuth2(o)) if !o.client_secret.is_empty() => {
            Some(o.client_secret.clone())
        }
        _ => None,
    });
    vars.chain(client_secrets).collect()
}

/// The headers a transform set, as the request sends them (credentials redacted like the
/// rest of the preview's headers).
pub(super) fn transform_headers(
    preview: &crate::deliver::Preview,
    request: &crate::transform::Request,
) -> serde_json::Map<String, serde_json::Value> {
    request
        .headers
        .iter()
        .map(|(name, _)| {
            let sent = preview.headers.iter().find(|(h, _)| h == name);
            (
                name.clone(),
                sent.map_or(serde_json::Value::Null, |(_, v)| v.as_str().into()),
            )
        })
        .collect()
}

/// A body as the dry runs show it: JSON, or text when it is not (an `original` body of other
/// bytes).
pub(super) fn body_json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned().into())
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
