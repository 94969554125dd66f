//! `event-relay trace`: the arguments, and the journey printed one step per line (the reading
//! is in [`crate::trace`]).

use crate::trace::{self, Request};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `trace --help`: the output and the exit status.
pub const TRACE_HELP: &str = "\
Output: one line per step, in time order: the time the relay wrote the record, the step
(WebhookSuccess / WebhookError with target, attempts, status_code, error, parked; parked with
the tier, due_at and last_error; redriven; failed with reason and last_error; dead_lettered
with reason, error and problems), then its fields. --json: one JSON object per step. Progress
goes to stderr.

Exit status: 0 found, 1 nothing about the id in the window, 2 invalid config or arguments,
3 the brokers cannot be reached.";

/// The arguments of `trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The TOML config file (its brokers, results, dead-letter, tier and failed topics).
    #[arg(long, short)]
    pub config: PathBuf,
    /// A source event id, or the id of one of its result events.
    pub id: String,
    /// Where to start: a duration ago (`24h`, `90m`) or an RFC 3339 time. Default 24h.
    #[arg(long, value_name = "DURATION|RFC3339", value_parser = time_arg)]
    pub since: Option<i64>,
    /// Where to stop: a duration ago or an RFC 3339 time. Default: now.
    #[arg(long, value_name = "DURATION|RFC3339", value_parser = time_arg)]
    pub until: Option<i64>,
    /// One JSON object per step.
    #[arg(long)]
    pub json: bool,
}

/// A time (ms since the epoch) from `24h` (that long ago) or RFC 3339 text.
fn time_arg(text: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    match crate::config::parse_duration(text) {
        Ok(d) => Ok(now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        Err(_) => Err(format!(
            "{text:?} is neither a duration (24h, 90m) nor an RFC 3339 time (2026-12-01T08:00:00Z)"
        )),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `trace`: 0 found, 1 not found, 2 invalid, 3 brokers unreachable.
pub fn trace(args: &TraceArgs) -> ExitCode {
    let cfg = match super::check::load_or_exit(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = Request {
        id: args.id.clone(),
        since_ms: args.since.unwrap_or_else(|| now_ms() - 24 * 3600 * 1000),
        until_ms: args.until,
    };
    if request.until_ms.is_some_and(|u| u <= request.since_ms) {
        eprintln!("event-relay trace: --until must be later than --since");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut progress = |line: String| eprintln!("{line}");
    match runtime.block_on(trace::trace(&cfg, &request, &mut progress)) {
        Ok(steps) if steps.is_empty() => {
            eprintln!(
                "event-relay trace: nothing about {:?} in the relay's topics in this window",
                args.id
            );
            ExitCode::from(1)
        }
        Ok(steps) => {
            for s in &steps {
                if args.json {
                    println!("{}", s.json());
                } else {
                    println!("{}", s.line());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("event-relay trace: {e}");
            ExitCode::from(if e.is_unreachable() { 3 } else { 1 })
        }
    }
}
