//! The command line: `run`, `check`, `test`, `normalize`, `route`, `transform`, `topics`,
//! `redrive`, `catalog`, `tap`.

use crate::config::{Config, SourceFormat};
use crate::envelope::Origin;
use crate::normalize::summary::Summary;
use crate::normalize::{Normalizer, SourceSettings};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod catalog;
mod catalog_check;
mod check;
mod dry_run;
mod json_diff;
mod redrive;
mod route;
mod summary;
mod tap;
mod test;
mod topics;
mod trace;
mod transform;
pub use catalog::{catalog, CatalogArg, CatalogCommand};
pub use check::check;
use check::load_or_exit;
pub use redrive::{redrive, RedriveArgs};
pub use route::route;
pub use tap::{tap, TapArgs};
pub use test::test;
pub use topics::topics;
pub use trace::{trace, TraceArgs};
pub use transform::transform;

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

/// How the environment changes a config (`check` and `run` help), one text for both.
macro_rules! env_help {
    () => {
        "\
Environment:
  EVENT_RELAY__SECTION__KEY=value  overrides a config key, e.g. EVENT_RELAY__KAFKA__BROKERS=kafka:9092;
                                   a number selects a list element (EVENT_RELAY__TARGETS__0__URL)
  ${VAR} in a config string        is replaced by the environment variable VAR (unset: an error)"
    };
}

/// `run --help`: the environment, logging, the health/metrics address, exit status.
const RUN_HELP: &str = concat!(
    env_help!(),
    "
  RUST_LOG                         log filter; wins over [log] level

Health and metrics:
  /healthz, /readyz and /metrics are served on server.listen (default 127.0.0.1:9464).

Reload without restart:
  SIGHUP reloads the config file (validated as `check` does; an invalid one is logged, the running
  one stays); --watch-config also reloads it when its content changes. Keys read only at start
  (kafka.*, source topics, results/dead-letter topics, retry_tiers topics, server.*, pipeline bounds,
  log.*) need a restart: a reload changing one is refused, each key named in the log.

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 on a fatal error, 2 for an invalid config."
);

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the relay daemon.
    #[command(after_help = RUN_HELP)]
    Run {
        /// The TOML config file (`config/example.toml` is the commented reference).
        #[arg(long, short)]
        config: PathBuf,
        /// Reload the config when the file's content changes (checked every second), as on
        /// SIGHUP.
        #[arg(long)]
        watch_config: bool,
    },
    /// Validate a config file; prints every problem with its key path, then runs the
    /// targets' declared tests (exit 0 valid and every test passed, 1 a test failed, 2 invalid).
    #[command(after_help = env_help!())]
    Check {
        /// The TOML config file to check, with the environment's overrides applied.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the `[[targets.tests]]` declared in a config: each raw message normalized and put
    /// through its target's transform and request building; a failure prints a JSON diff
    /// (exit 0 all passed, 1 a test failed, 2 invalid config).
    Test {
        /// The TOML config file whose targets' tests run.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Dry run of the normalizer: raw events (one JSON per line) on stdin → envelopes on stdout.
    Normalize {
        /// How to read the input: Komo site events, acemate PostHog-style events, or detect per line.
        #[arg(long, value_enum, default_value = "auto")]
        source: FormatArg,
        /// Optional config for per-source settings (validation policy, site).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// With --config: the source topic whose settings apply (default: first matching source).
        #[arg(long)]
        topic: Option<String>,
        /// Print a tracking-plan report instead of the envelopes: events per name × status,
        /// and the most frequent problems per property and rule.
        #[arg(long)]
        summary: bool,
        /// With --summary: how many problem groups to list.
        #[arg(long, requires = "summary", default_value_t = 10)]
        top: usize,
    },
    /// Dry run of routing: raw events on stdin → matched routes, and each target's URL, headers
    /// (credentials redacted) and body. Sends nothing.
    Route {
        /// The TOML config file whose sources, routes and targets apply.
        #[arg(long, short)]
        config: PathBuf,
        /// The source topic the events would arrive on (default: per line, the first source whose format fits the payload).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Dry run of one target's transform: raw events on stdin → one JSON line per event with
    /// the body it would send and the headers and path its program set, `skipped`, or the
    /// error. Sends nothing.
    Transform {
        /// The TOML config file with the target.
        #[arg(long, short)]
        config: PathBuf,
        /// The target whose transform runs.
        #[arg(long)]
        target: String,
        /// The source topic the events would arrive on (default: per line, the first source whose format fits the payload).
        #[arg(long)]
        topic: Option<String>,
    },
    /// List the Kafka topics the config needs, whether each exists and its partition count;
    /// --create creates the missing ones.
    #[command(after_help = topics::TOPICS_HELP)]
    Topics {
        /// The TOML config file whose sources, results and dead-letter topics are checked.
        #[arg(long, short)]
        config: PathBuf,
        /// Create the missing topics (replication factor: the broker's default).
        #[arg(long)]
        create: bool,
        /// With --create: partitions of each new source topic (results and dead-letter topics get 1).
        #[arg(long, requires = "create", default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
    },
    /// Re-enter failed deliveries or dead letters once their cause is fixed.
    ///
    /// --from failed puts deliveries back on their target's first retry tier with a fresh
    /// attempt budget; --from dead-letter re-produces dead letters to their source topic, marked
    /// `redriven` so one dead-lettered again is not redriven again. Reads the topic up to the
    /// end offsets seen at start, then exits.
    #[command(after_help = redrive::REDRIVE_HELP)]
    Redrive(RedriveArgs),
    /// Where is my event? Everything the relay did with one event: each target's outcome,
    /// the retry tiers it was parked on, the failed topic, a redrive, or its dead letter,
    /// read from the relay's topics (from --since, default 24 h ago).
    #[command(after_help = trace::TRACE_HELP)]
    Trace(TraceArgs),
    /// The event catalogs: list their events, show one event's rules, check a catalog file,
    /// infer draft entries for the unknown events of a captured sample.
    #[command(subcommand, after_help = catalog::CATALOG_HELP)]
    Catalog(CatalogCommand),
    /// Watch a running relay's events live: one line per event passing a stage (consumed,
    /// normalized, routed, delivered, failed, dead_lettered), from its `GET /tap` (the relay
    /// needs `server.tap = true`).
    #[command(after_help = tap::TAP_HELP)]
    Tap(TapArgs),
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

/// The source topic and settings `normalize` applies, and the config's catalog files.
fn normalize_settings(
    source: FormatArg,
    config: Option<PathBuf>,
    topic: Option<String>,
) -> Result<(String, SourceSettings, Vec<PathBuf>), ExitCode> {
    let format: SourceFormat = source.into();
    let mut catalog_files = Vec::new();
    let (topic, settings) = match &config {
        Some(path) => {
            let cfg = load_or_exit(path)?;
            if let Some(t) = topic.as_deref() {
                if !cfg.sources.iter().any(|s| s.topic == t) {
                    let known: Vec<&str> = cfg.sources.iter().map(|s| s.topic.as_str()).collect();
                    eprintln!(
                        "event-relay normalize: no [[sources]] entry for topic {t:?} in {} (its topics: {})",
                        path.display(),
                        known.join(", ")
                    );
                    return Err(ExitCode::from(2));
                }
            }
            catalog_files = cfg.catalogs.iter().map(|c| c.path.clone()).collect();
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
        None if topic.is_some() => {
            eprintln!(
                "event-relay normalize: --topic picks a [[sources]] entry of a config: it needs --config"
            );
            return Err(ExitCode::from(2));
        }
        None => ("stdin".to_string(), SourceSettings::standalone(format)),
    };
    Ok((topic, settings, catalog_files))
}

/// `normalize`: exit 0 if every line was accepted, 1 otherwise. With `summary` (the number
/// of problem groups to list), a tracking-plan report instead of the envelopes.
pub fn normalize(
    source: FormatArg,
    config: Option<PathBuf>,
    topic: Option<String>,
    summary: Option<usize>,
) -> ExitCode {
    let (topic, settings, catalog_files) = match normalize_settings(source, config, topic) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let normalizer = match crate::catalog::Catalogs::load(&catalog_files).map(Normalizer::new) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut rejected = false;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut report = Summary::default();
    for (n, line) in stdin_lines() {
        let origin = Origin {
            topic: topic.clone(),
            partition: 0,
            offset: n as i64 - 1,
            key: None,
        };
        let result = normalizer.normalize(&line, &settings, origin);
        if summary.is_some() {
            report.add(&result);
            rejected |= result.as_ref().map_or(true, |r| !r.rejected.is_empty());
            continue;
        }
        match result {
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
    if let Some(top) = summary {
        let _ = summary::print(&mut out, &report, top);
    }
    if rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_and_argument_is_described() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        for sub in cli.get_subcommands() {
            assert!(sub.get_about().is_some(), "{}", sub.get_name());
            for arg in sub.get_arguments().filter(|a| a.get_id() != "help") {
                assert!(
                    arg.get_help().is_some(),
                    "{} --{}",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    /// `run --help` names the environment overrides and the health/metrics address, and the
    /// address it names is the config's default.
    #[test]
    fn run_help_names_overrides_and_the_listen_address() {
        let minimal =
            "[kafka]\nbrokers = \"b:9092\"\n[[sources]]\ntopic = \"t\"\nformat = \"komo\"\n\
            [results]\ntopic = \"r\"\n[dead_letter]\ntopic = \"d\"\n[[targets]]\nname = \"w\"\n\
            kind = \"webhook\"\nurl = \"https://h.example/\"\n";
        let defaults = crate::config::load_str(minimal, Vec::new()).expect("valid config");
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("run")
            .expect("run")
            .render_long_help()
            .to_string();
        for needle in [
            "EVENT_RELAY__SECTION__KEY",
            "${VAR}",
            "server.listen",
            defaults.server.listen.as_str(),
            "The TOML config file",
        ] {
            assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
        }
    }
}
