//! The command line: `run`, `check`, `normalize`, `route`.

use crate::config::{self, Config, SourceFormat};
use crate::envelope::Origin;
use crate::normalize::{Normalizer, SourceSettings};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod route;
pub use route::route;

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
    /// Dry run of routing: raw events on stdin → matched routes, and each target's URL, headers
    /// (credentials redacted) and body. Sends nothing.
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
