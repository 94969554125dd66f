//! `event-relay test`: the `[[targets.tests]]` of a config, each a raw source message put
//! through the normalizer and the target's dry run (its transform and request building, as in
//! `route`), compared with what the test expects. `check` runs them too.

use super::dry_run::{body_json, DryRun};
use super::json_diff::diff;
use super::load_or_exit;
use crate::config::{Config, Expectation, TargetTest};
use crate::deliver::DryRun as Shown;
use std::path::Path;
use std::process::ExitCode;

/// How a config's declared tests went.
#[derive(Debug, Default)]
pub(super) struct Report {
    /// `(target, test)` of each passed test.
    pub passed: Vec<(String, String)>,
    /// `(target, test, why)` of each failed test.
    pub failed: Vec<(String, String, String)>,
}

impl Report {
    /// Prints each test's line, then each failure in full, then the counts.
    pub fn print(&self) {
        for (target, name) in &self.passed {
            println!("test {target}: {name} ... passed");
        }
        for (target, name, _) in &self.failed {
            println!("test {target}: {name} ... FAILED");
        }
        if !self.failed.is_empty() {
            println!("\nfailures:");
            for (target, name, why) in &self.failed {
                println!("\n--- {target}: {name} ---\n{why}");
            }
        }
        println!(
            "\n{} tests passed, {} failed",
            self.passed.len(),
            self.failed.len()
        );
    }
}

/// `test`: 0 when every declared test passes, 1 when one fails, 2 for an invalid config.
pub fn test(path: &Path) -> ExitCode {
    let cfg = match load_or_exit(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let report = match run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: {e:#}", path.display());
            return ExitCode::from(2);
        }
    };
    report.print();
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs every declared test of `cfg` (which loaded and validated).
pub(super) fn run(cfg: &Config) -> anyhow::Result<Report> {
    let mut report = Report::default();
    if cfg.targets.iter().all(|t| t.tests.is_empty()) {
        return Ok(report);
    }
    let dry = DryRun::new(cfg, None)?;
    for (i, target) in cfg.targets.iter().enumerate() {
        for test in &target.tests {
            let key = (target.name.clone(), test.name.clone());
            match one(&dry, i, test) {
                Ok(()) => report.passed.push(key),
                Err(why) => report.failed.push((key.0, key.1, dry.redact(why))),
            }
        }
    }
    Ok(report)
}

/// One test: `Err` says what differs.
fn one(dry: &DryRun, target: usize, test: &TargetTest) -> Result<(), String> {
    let expected = test
        .expectation("")
        .map_err(|p| format!("invalid test: {}", p.message))?;
    let normalized = dry
        .normalize(1, test.input.as_bytes(), test.topic.as_deref())
        .map_err(|e| {
            format!(
                "the input is not relayed: {e} ({}: a dead letter)",
                e.reason()
            )
        })?;
    if let Some(r) = normalized.rejected.first() {
        return Err(format!(
            "the input's batch event {} is not relayed: {}",
            r.index, r.error
        ));
    }
    let [(env, raw)] = &normalized.events[..] else {
        return Err(format!(
            "the input is {} events; a test takes a message with exactly one",
            normalized.events.len()
        ));
    };
    let shown = dry.shown(target, &at_fixed_time(env), raw);
    match (expected, shown) {
        (Expectation::Body(want), Shown::Request(p, _)) => {
            let got = body_json(&p.body);
            let lines = diff(&want, &got);
            if lines.is_empty() {
                return Ok(());
            }
            Err(format!(
                "the body differs from expect:\n{}\nbody sent:\n{}",
                lines.join("\n"),
                pretty(&got)
            ))
        }
        (Expectation::Skipped, Shown::Skipped) => Ok(()),
        (Expectation::Error(want), Shown::Failed(got)) if got.contains(&want) => Ok(()),
        (Expectation::Error(want), Shown::Failed(got)) => Err(format!(
            "expected an error containing {want:?}\ngot the error: {got}"
        )),
        (want, got) => Err(format!(
            "expected {}\ngot {}",
            expected_text(&want),
            got_text(&got)
        )),
    }
}

/// The time a declared test's message is received, so expected bodies do not change from run
/// to run: the envelope's `received_at`, and its `timestamp` where the message has none.
pub const TEST_RECEIVED_AT: &str = "2000-01-01T00:00:00.000Z";

/// `env` as if received at [`TEST_RECEIVED_AT`].
fn at_fixed_time(env: &crate::envelope::Envelope) -> crate::envelope::Envelope {
    let mut env = env.clone();
    if env.timestamp == env.received_at {
        env.timestamp = TEST_RECEIVED_AT.to_string();
    }
    env.received_at = TEST_RECEIVED_AT.to_string();
    env
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn expected_text(e: &Expectation) -> String {
    match e {
        Expectation::Body(v) => format!("this body:\n{}", pretty(v)),
        Expectation::Skipped => "the event skipped (no request)".into(),
        Expectation::Error(t) => format!("an error containing {t:?}"),
    }
}

fn got_text(s: &Shown) -> String {
    match s {
        Shown::Request(p, _) => format!("this body:\n{}", pretty(&body_json(&p.body))),
        Shown::Skipped => "the event skipped (no request)".into(),
        Shown::Failed(e) => format!("the error: {e}"),
    }
}
