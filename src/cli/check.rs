//! `event-relay check`, and the loading every config-reading command shares: every problem
//! at once (the config's keys, its catalog files, its programs), then the declared tests.

use crate::config::{self, Config};
use std::process::ExitCode;

/// Template fields (`{{properties.X}}`, `{{user.traits.X}}`) that no event of the config's
/// catalogs has: legal (an unknown event may carry anything) but most likely a misspelling,
/// rendering empty for every event the catalogs know.
fn template_warnings(c: &Config) -> Vec<String> {
    let files: Vec<_> = c.catalogs.iter().map(|f| f.path.clone()).collect();
    let Ok(catalogs) = crate::catalog::Catalogs::load(&files) else {
        return Vec::new(); // reported as a problem already
    };
    let both = [&catalogs.komo, &catalogs.acemate];
    let is_property = |name: &str| {
        both.iter().any(|cat| {
            cat.common.contains_key(name)
                || cat.events.values().any(|e| e.properties.contains_key(name))
        })
    };
    let is_trait = |name: &str| both.iter().any(|cat| cat.identify.contains_key(name));
    let mut out = Vec::new();
    for (i, t) in c.targets.iter().enumerate() {
        let texts = std::iter::once(("url".to_string(), t.url.as_str())).chain(
            t.headers
                .iter()
                .map(|(k, v)| (format!("headers.{k}"), v.as_str())),
        );
        for (key, text) in texts {
            for field in config::template_fields(text) {
                let (name, known) = match field.split('.').collect::<Vec<_>>()[..] {
                    ["properties", name, ..] => (name, is_property(name)),
                    ["user", "traits", name, ..] => (name, is_trait(name)),
                    _ => continue,
                };
                if !known {
                    out.push(format!(
                        "targets[{i}].{key}: template {{{{{field}}}}}: no event of the catalogs has {name:?} (it renders empty for every event they know)"
                    ));
                }
            }
        }
    }
    out
}

/// What the retry tiers will be: their topics (created at start if missing, or not), or off;
/// and the targets whose budget keeps only some of the default tiers.
/// Where traces go (header names only: their values are usually keys).
fn telemetry_line(c: &Config) -> String {
    let t = &c.telemetry;
    let Some(url) = t.traces_url() else {
        return "telemetry: off (no spans; set telemetry.otlp_endpoint to export traces)".into();
    };
    let mut line = format!(
        "telemetry: OTLP/HTTP traces to {url}, sample ratio {}, service.name {:?}",
        t.sample_ratio, t.service_name
    );
    if !t.headers.is_empty() {
        let names: Vec<&str> = t.headers.keys().map(String::as_str).collect();
        line.push_str(&format!(
            ", headers {} (values not shown)",
            names.join(", ")
        ));
    }
    line
}

fn tiers_line(c: &Config) -> String {
    let Some(t) = c.tiering() else {
        return "retry tiers: off (retry_tiers.enabled = false): retries in memory only".into();
    };
    let topics: Vec<&str> = t.tiers.iter().map(|t| t.topic.as_str()).collect();
    let mut line = format!(
        "retry tiers: {}, failed topic {} ({})",
        topics.join(", "),
        t.failed_topic,
        if t.create_topics {
            "created at start if missing"
        } else {
            "must exist before run: event-relay topics --create"
        }
    );
    for (target, kept) in c.shortened_schedules() {
        line.push_str(&format!(
            "\n  target {target:?}: its retry budget fits the tiers {} only",
            if kept.is_empty() {
                "none".to_string()
            } else {
                kept.join(", ")
            }
        ));
    }
    line
}

/// `check`: 0 valid (and every declared test passed), 1 a declared test failed, 2 invalid.
pub fn check(path: &std::path::Path) -> ExitCode {
    match load_checked(path) {
        Ok(c) => {
            let tests = match super::test::run(&c) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{}: {e:#}", path.display());
                    return ExitCode::from(2);
                }
            };
            if !tests.failed.is_empty() {
                tests.print();
                eprintln!("{}: valid, but a declared test failed", path.display());
                return ExitCode::from(1);
            }
            println!(
                "{}: OK ({} sources, {} targets, {} routes, {} tests passed)",
                path.display(),
                c.sources.len(),
                c.targets.len(),
                c.routes.len(),
                tests.passed.len()
            );
            println!("{}", tiers_line(&c));
            println!("{}", telemetry_line(&c));
            for w in template_warnings(&c) {
                eprintln!("{}: warning: {w}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {} problem(s)", path.display(), e.problems.len());
            for p in &e.problems {
                println!("{p}");
            }
            ExitCode::from(2)
        }
    }
}

/// The config file loaded and validated, its `[[catalogs]]` files checked, its programs
/// compiled and its `kafka.options` tried by librdkafka (without a broker).
/// Every problem at once: a program is compiled even when another key has a problem.
pub(super) fn load_checked(path: &std::path::Path) -> Result<Config, config::ConfigError> {
    let (cfg, mut problems) = config::load_partial(path);
    let Some(cfg) = cfg else {
        return Err(config::ConfigError { problems });
    };
    if problems.is_empty() {
        problems.extend(crate::normalize::catalog_problems(&cfg));
    }
    problems.extend(crate::transform::problems(&cfg));
    // librdkafka would judge other options than those written when one was taken out.
    if !problems.iter().any(|p| p.path.starts_with("kafka.options")) {
        problems.extend(crate::pipeline::kafka_problems(&cfg));
    }
    config::name_variables(&mut problems, std::env::vars());
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(config::ConfigError { problems })
    }
}

pub(super) fn load_or_exit(path: &std::path::Path) -> Result<Config, ExitCode> {
    load_checked(path).map_err(|e| {
        for p in &e.problems {
            eprintln!("{}: {p}", path.display());
        }
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::{load_checked, tiers_line};

    fn config(extra: &str) -> crate::config::Config {
        let text = format!(
            "[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\n[[sources]]\ntopic = \"s\"\n\
             format = \"komo\"\n[results]\ntopic = \"r\"\n\
             [dead_letter]\ntopic = \"d\"\n[[targets]]\nname = \"crm\"\nkind = \"webhook\"\n\
             url = \"https://crm.example.com/\"\n{extra}"
        );
        crate::config::load_str(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_template_field_no_catalog_event_has_is_a_warning() {
        let c =
            config("headers = { x-a = \"{{properties.scroe}}\", x-b = \"{{properties.score}}\" }");
        let w = super::template_warnings(&c);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("targets[0].headers.x-a: template {{properties.scroe}}: no event"),
            "{w:?}"
        );
    }

    #[test]
    fn the_tiers_line_names_the_topics_a_short_budget_and_tiers_off() {
        let on = tiers_line(&config(""));
        assert!(
            on.starts_with("retry tiers: g.retry.1m, g.retry.5m,"),
            "{on}"
        );
        assert!(
            on.contains("failed topic g.failed (created at start if missing)"),
            "{on}"
        );
        let short = tiers_line(&config("retry = { max_elapsed = \"10m\" }"));
        assert!(
            short.ends_with("target \"crm\": its retry budget fits the tiers 1m, 5m only"),
            "{short}"
        );
        let off = tiers_line(&config("[retry_tiers]\nenabled = false"));
        assert!(off.starts_with("retry tiers: off"), "{off}");
    }

    /// An option taken out (an unquoted dotted key) is reported once: librdkafka does not
    /// then judge the options left, which would ask for the default SASL mechanism.
    #[test]
    fn librdkafka_does_not_judge_options_with_one_taken_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        let text = "[kafka]\nbrokers = \"b:9092\"\n[kafka.options]\n\
                    \"security.protocol\" = \"SASL_SSL\"\nsasl.mechanism = \"PLAIN\"\n\
                    [[sources]]\ntopic = \"s\"\nformat = \"komo\"\n[results]\ntopic = \"r\"\n\
                    [dead_letter]\ntopic = \"d\"\n";
        std::fs::write(&file, text).unwrap();
        let problems: Vec<String> = match load_checked(&file) {
            Ok(_) => panic!("an unquoted dotted option loaded"),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("kafka.options.sasl: must be text, not a table"),
            "{problems:#?}"
        );
    }
}
