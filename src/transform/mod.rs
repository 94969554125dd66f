//! Per-target payload transforms: a target's VRL program (Vector Remap Language), compiled
//! once per config, reshapes the JSON the target would send for an event. Pure: no I/O.
//!
//! The rule is one for every target kind: the program receives as `.` exactly the JSON the
//! target would send without it (the envelope, the original message, or the PostHog event
//! object), and what `.` holds at its end is sent instead. Metadata paths steer the request:
//! `%headers.NAME` (a header, never one the relay sets for signing or auth), `%path` (appended
//! to the URL's path, webhook targets), `%skip = true` or `abort` (no request, no result
//! event). The program reads `%source`, `%topic`, `%partition`, `%offset`, `%target` and
//! `%vars` (the target's `transform_vars`), all read-only.
//!
//! - [`compile`]: the program text → [`Transform`], or every diagnostic with line and column.
//! - [`run`]: one event through a [`Transform`] → [`Outcome`] (send, skip, or a failure that
//!   names its reason), under a step budget, never panicking.
//!
//! The function set is VRL's standard library without its env, system and network functions
//! (the crate is built without those features), crypto kept.

mod compile;
pub mod input;
mod output;
mod request;
mod run;
#[cfg(test)]
mod tests;

pub use compile::{compile, CompileError, Spec, LEFT_OUT, MAX_NESTING};
pub use request::{Request, RESERVED_HEADERS};
pub use run::STEP_LIMIT;
pub use run::{Outcome, TransformFailure};

use crate::config::{Config, Problem, TargetConfig, TargetKind};
use std::sync::Arc;

/// A compiled program of one target, ready to run on events.
#[derive(Debug)]
pub struct Transform {
    program: vrl::compiler::Program,
    /// The program's text (runtime errors name a line and column in it).
    source: String,
    /// The target's name (`%target`).
    target: String,
    /// The target's `transform_vars` (`%vars`).
    vars: vrl::value::Value,
    /// PostHog targets: the output must still be a PostHog event.
    posthog: bool,
    /// `batch_max_bytes`: the largest output that can be sent.
    max_bytes: usize,
}

impl Transform {
    /// The spec of a target's program (what `compile` needs besides the text).
    pub fn spec(cfg: &TargetConfig) -> Spec<'_> {
        Spec {
            target: &cfg.name,
            posthog: cfg.kind == TargetKind::Posthog,
            vars: &cfg.transform_vars,
            max_bytes: cfg.batch_bytes(),
        }
    }
}

/// Every target's transform compiled (index = target index; `None` without one), or every
/// problem at once, each at its key path (`targets[2].transform: error[E103]: ...`): what
/// start-up and a reload build, and what `check` reports.
pub fn compile_all(config: &Config) -> Result<Vec<Option<Arc<Transform>>>, Vec<Problem>> {
    let mut compiled = Vec::with_capacity(config.targets.len());
    let mut problems = Vec::new();
    for (i, cfg) in config.targets.iter().enumerate() {
        match compile_target(cfg) {
            Ok(t) => compiled.push(t.map(Arc::new)),
            Err(ps) => {
                let at = |key: &str| format!("targets[{i}].{key}");
                problems.extend(ps.into_iter().map(|(key, msg)| Problem::new(&at(key), msg)));
            }
        }
    }
    if problems.is_empty() {
        Ok(compiled)
    } else {
        Err(problems)
    }
}

/// The problems of every target's program (empty when all compile): what `check`, start-up
/// and a reload refuse.
pub fn problems(config: &Config) -> Vec<Problem> {
    compile_all(config).err().unwrap_or_default()
}

/// One target's program read and compiled; problems as (key, message).
fn compile_target(cfg: &TargetConfig) -> Result<Option<Transform>, Vec<(&'static str, String)>> {
    let text = match cfg.program_text() {
        Ok(None) => return Ok(None),
        Ok(Some(text)) => text,
        Err(problem) => return Err(vec![problem]),
    };
    compile(&text.text, text.file.as_deref(), &Transform::spec(cfg))
        .map(Some)
        .map_err(|e| e.diagnostics.into_iter().map(|d| (text.key, d)).collect())
}
