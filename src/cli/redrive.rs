//! `event-relay redrive`: the arguments, and the report printed (the work itself is in
//! [`crate::redrive`]).

use crate::config;
use crate::redrive::{self, Filter, FromTopic, Request};
use chrono::DateTime;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

/// `redrive --help`: the output and the exit status.
pub const REDRIVE_HELP: &str = "\
Output: `read N records from TOPIC`, then `redriven N` (`would redrive N (dry run: nothing
produced)` with --dry-run) and one line per target (--from failed: `NAME  COUNT  -> TIER TOPIC`)
or per source topic (--from dead-letter: `TOPIC  COUNT`), then `skipped N` and one line per
reason: not_matching, not_a_parked_record, unknown_target, no_tiers, not_a_dead_letter,
truncated, not_a_source, already_redriven.

Exit status: 0 done, 1 reading or producing failed, 2 invalid config or arguments,
3 the brokers cannot be reached.";

/// Which topic to redrive.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum FromArg {
    /// retry_tiers.failed_topic: deliveries that exhausted every retry or failed for good.
    Failed,
    /// dead_letter.topic: messages the relay could not normalize.
    DeadLetter,
}

/// The arguments of `redrive`.
#[derive(Args, Debug)]
pub struct RedriveArgs {
    /// The TOML config file (its brokers, topics, targets and retry tiers apply).
    #[arg(long, short)]
    pub config: PathBuf,
    /// What to redrive: failed deliveries, or dead letters.
    #[arg(long, value_enum)]
    pub from: FromArg,
    /// Only deliveries to this target (--from failed).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Only events whose name matches this glob (as in routes: `*`, `?`, a leading `!` excludes).
    #[arg(long, value_name = "GLOB")]
    pub event: Option<String>,
    /// Only records written (failed, dead-lettered) at or after this time, e.g. 2026-12-01T08:00:00Z.
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    pub since: Option<SystemTime>,
    /// Only records written before this time.
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    pub until: Option<SystemTime>,
    /// Print what would be redriven; produce nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// An RFC 3339 time (clap names the flag in its error).
fn rfc3339(text: &str) -> Result<SystemTime, String> {
    DateTime::parse_from_rfc3339(text)
        .map(SystemTime::from)
        .map_err(|e| format!("not an RFC 3339 time such as 2026-12-01T08:00:00Z ({e})"))
}

/// `redrive`: 0 done, 1 reading or producing failed, 2 invalid config or arguments, 3 brokers
/// unreachable.
pub fn redrive(args: &RedriveArgs) -> ExitCode {
    let cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            // As `check` words it.
            eprintln!("{}: {} problem(s)", args.config.display(), e.problems.len());
            for p in &e.problems {
                eprintln!("{p}");
            }
            return ExitCode::from(2);
        }
    };
    let request = Request {
        from: match args.from {
            FromArg::Failed => FromTopic::Failed,
            FromArg::DeadLetter => FromTopic::DeadLetter,
        },
        filter: Filter {
            target: args.target.clone(),
            event: args.event.clone(),
            since: args.since,
            until: args.until,
        },
        dry_run: args.dry_run,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(redrive::redrive(&cfg, &request)) {
        Ok(summary) => {
            print!("{}", summary.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("event-relay redrive: {e}");
            ExitCode::from(if e.is_invalid_request() {
                2
            } else if e.is_unreachable() {
                3
            } else {
                1
            })
        }
    }
}
