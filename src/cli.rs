//! The command line: `run`, `check`, `normalize`, `route`.

use crate::config::{self, BodyFormat, Config, EventNames, SourceFormat, TargetKind};
use crate::envelope::Origin;
use crate::normalize::{Normalizer, SourceSettings};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "event-relay",
    version,
    about = "Relay Komo and acemate analytics events from Kafka to PostHog and webhooks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the relay daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file; prints every problem with its key path (exit 0 valid, 2 invalid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Dry run of the normalizer: raw events (one JSON per line) on stdin → envelopes on stdout.
    Normalize {
        #[arg(long, value_enum, default_value = "auto")]
        source: FormatArg,
        /// Optional config for per-source settings (validation policy, site).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// With --config: the source topic whose settings apply (default: first matching source).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Dry run of routing: raw events on stdin → matched routes, targets and bodies. Sends nothing.
    Route {
        #[arg(long, short)]
        config: PathBuf,
        /// The source topic the events would arrive on (default: per line, the first source whose format fits the payload).
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Komo,
    Acemate,
    Auto,
}

impl From<FormatArg> for SourceFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Komo => SourceFormat::Komo,
            FormatArg::Acemate => SourceFormat::Acemate,
            FormatArg::Auto => SourceFormat::Auto,
        }
    }
}

/// `check`: 0 valid, 2 invalid.
pub fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            println!(
                "{}: OK ({} sources, {} targets, {} routes)",
                path.display(),
                c.sources.len(),
                c.targets.len(),
                c.routes.len()
            );
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

fn load_or_exit(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        for p in &e.problems {
            eprintln!("{}: {p}", path.display());
        }
        ExitCode::from(2)
    })
}

fn pick_settings(
    cfg: &Config,
    topic: Option<&str>,
    format: Option<SourceFormat>,
) -> Option<(String, SourceSettings)> {
    cfg.sources
        .iter()
        .find(|s| match (topic, format) {
            (Some(t), _) => s.topic == t,
            (None, Some(f)) => s.format == f,
            (None, None) => true,
        })
        .map(|s| {
            (
                s.topic.clone(),
                SourceSettings::from_config(s, cfg.pipeline.max_message_bytes),
            )
        })
}

/// Lines of stdin as they arrive (so `kcat ... | event-relay normalize` prints as it reads).
fn stdin_lines() -> impl Iterator<Item = (usize, Vec<u8>)> {
    std::io::stdin()
        .lock()
        .split(b'\n')
        .map_while(Result::ok)
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
}

/// `normalize`: exit 0 if every line was accepted, 1 otherwise.
pub fn normalize(source: FormatArg, config: Option<PathBuf>, topic: Option<String>) -> ExitCode {
    let format: SourceFormat = source.into();
    let (topic, settings) = match &config {
        Some(path) => {
            let cfg = match load_or_exit(path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let wanted = if matches!(source, FormatArg::Auto) && topic.is_none() {
                None
            } else {
                Some(format)
            };
            match pick_settings(&cfg, topic.as_deref(), wanted) {
                Some((t, mut s)) => {
                    if topic.is_none() {
                        s.format = format;
                    }
                    (t, s)
                }
                None => ("stdin".to_string(), SourceSettings::standalone(format)),
            }
        }
        None => ("stdin".to_string(), SourceSettings::standalone(format)),
    };
    let normalizer = match Normalizer::builtin() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut rejected = false;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (n, line) in stdin_lines() {
        let origin = Origin {
            topic: topic.clone(),
            partition: 0,
            offset: n as i64 - 1,
            key: None,
        };
        match normalizer.normalize(&line, &settings, origin) {
            Ok(res) => {
                for (env, _) in &res.events {
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::to_string(env).expect("envelopes serialize")
                    );
                }
                for r in &res.rejected {
                    rejected = true;
                    eprintln!(
                        "line {n}: batch event {}: {} ({})",
                        r.index,
                        r.error,
                        r.error.reason()
                    );
                }
            }
            Err(e) => {
                rejected = true;
                eprintln!("line {n}: {e} ({})", e.reason());
            }
        }
    }
    if rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `route`: prints one JSON line per event: matched routes, targets and the bodies they'd get.
pub fn route(config: PathBuf, topic: Option<String>) -> ExitCode {
    let cfg = match load_or_exit(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let router = match crate::route::Router::new(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // With --topic, that source's settings. Without, each line is read as by the first source
    // whose format fits its shape (as it would be on that source's topic), so one input can mix
    // Komo and acemate events and acemate events get their source's site.
    let sources: Vec<(String, SourceSettings)> = if topic.is_some() {
        pick_settings(&cfg, topic.as_deref(), None)
            .into_iter()
            .collect()
    } else {
        cfg.sources
            .iter()
            .map(|s| {
                (
                    s.topic.clone(),
                    SourceSettings::from_config(s, cfg.pipeline.max_message_bytes),
                )
            })
            .collect()
    };
    let Some(first) = sources.first() else {
        eprintln!("no matching [[sources]] entry");
        return ExitCode::from(2);
    };
    let detect = SourceSettings {
        format: SourceFormat::Auto,
        validation: config::ValidationMode::Lenient,
        unknown_events: config::UnknownEvents::Forward,
        ..first.1.clone()
    };
    let normalizer = Normalizer::builtin().expect("builtin catalogs compile");
    let mut rejected = false;
    for (n, line) in stdin_lines() {
        let origin = |topic: &str| Origin {
            topic: topic.to_string(),
            partition: 0,
            offset: n as i64 - 1,
            key: None,
        };
        let (topic, settings) = if sources.len() == 1 {
            first
        } else {
            let shape = normalizer
                .normalize(&line, &detect, origin(&first.0))
                .ok()
                .and_then(|r| r.events.first().map(|(e, _)| e.source));
            sources
                .iter()
                .find(|(_, s)| {
                    use crate::envelope::Source;
                    matches!(
                        (s.format, shape),
                        (SourceFormat::Auto, _)
                            | (SourceFormat::Komo, Some(Source::Komo))
                            | (SourceFormat::Acemate, Some(Source::Acemate))
                    )
                })
                .unwrap_or(first)
        };
        let res = match normalizer.normalize(&line, settings, origin(topic)) {
            Ok(r) => r,
            Err(e) => {
                rejected = true;
                eprintln!("line {n}: {e} ({}) → dead letter", e.reason());
                continue;
            }
        };
        for r in &res.rejected {
            rejected = true;
            eprintln!(
                "line {n}: batch event {}: {} ({}) → dead letter",
                r.index,
                r.error,
                r.error.reason()
            );
        }
        for (env, raw) in &res.events {
            let d = router.route(env);
            let targets: Vec<serde_json::Value> = d
                .targets
                .iter()
                .map(|&i| {
                    let t = &cfg.targets[i];
                    let (url, body) = match t.kind {
                        TargetKind::Posthog => (
                            format!("{}/batch/", t.url.trim_end_matches('/')),
                            crate::deliver::posthog::event_json(env, t.event_names),
                        ),
                        TargetKind::Webhook => (
                            crate::deliver::template::Template::parse(&t.url).render(env, true),
                            match t.body {
                                BodyFormat::Envelope => {
                                    serde_json::to_value(env).expect("envelopes serialize")
                                }
                                BodyFormat::Posthog => {
                                    crate::deliver::posthog::event_json(env, EventNames::Original)
                                }
                                BodyFormat::Original => {
                                    serde_json::from_slice(raw).unwrap_or_else(|_| {
                                        String::from_utf8_lossy(raw).into_owned().into()
                                    })
                                }
                            },
                        ),
                    };
                    serde_json::json!({"target": t.name, "kind": t.kind, "url": url, "body": body})
                })
                .collect();
            let line = serde_json::json!({
                "line": n,
                "event": env.event,
                "id": env.id,
                "validation": env.validation.status,
                "routes": d.routes.iter().map(|&i| router.routes[i].name.clone()).collect::<Vec<_>>(),
                "default_targets": d.defaulted,
                "unrouted": d.routes.is_empty() && d.targets.is_empty(),
                "targets": targets,
            });
            println!("{line}");
        }
    }
    if rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
