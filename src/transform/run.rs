//! Running a compiled program on one event: the input parsed, the context set, the program
//! resolved under a step budget and caught if it panics, then the outcome read off `.` and
//! the metadata: a body and request changes to send, a skip, or a failure naming its reason.

use super::request::{self, Request};
use super::Transform;
use crate::envelope::Envelope;
use std::cell::RefCell;
use std::ops::ControlFlow;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{ExpressionError, TargetValue, TimeZone};
use vrl::diagnostic::DiagnosticMessage;
use vrl::value::{Secrets, Value};

/// Steps (VRL's checkpoints: one per expression evaluated, closures' iterations included) a
/// program may take on one event. VRL has no open-ended loops, so every program ends; what
/// the budget stops is a program whose work explodes (iterations nested over `range`s of up
/// to 100,000 elements): a realistic program takes tens of steps, plus a few per element it
/// iterates over. A value a program nests in a loop gains at most one level per step, so this
/// also bounds how deep a value can get, and so the stack its copy, drop or serialization
/// needs: the relay's runtime threads have `pipeline::TRANSFORM_STACK` for that.
pub const STEP_LIMIT: usize = 1_000_000;

/// Wall-clock time a program may take on one event, whatever its steps: a step can be
/// expensive (copying a value the program nested deeply), so steps alone do not bound time.
/// The same order as Hookdeck's one second per transformation; a realistic program takes
/// microseconds. Checked every [`CLOCK_EVERY`] steps.
pub const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);
const CLOCK_EVERY: usize = 1024;

/// Timestamps without an offset are read as UTC, whatever the host's zone.
static UTC: std::sync::LazyLock<TimeZone> =
    std::sync::LazyLock::new(|| TimeZone::parse("UTC").expect("UTC is a time zone"));

thread_local! {
    /// Each thread's VRL runtime (its local variables are cleared before every run).
    static RUNTIME: RefCell<Runtime> = RefCell::new(Runtime::default());
}

/// What became of one event on its way through a program.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send `body` (JSON) with the request changes the program made.
    Send { body: Vec<u8>, request: Request },
    /// `%skip = true` or `abort`: no request and no result event for this target.
    Skip,
    /// The program failed on this event: the delivery ends in one final WebhookError.
    Fail(TransformFailure),
}

/// Why a program failed on an event; its `Display` is the WebhookError's `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformFailure {
    /// The input is not JSON (a `body = "original"` target whose message is not).
    #[error("transform failed: the input is not JSON: {0}")]
    InputNotJson(String),
    /// A runtime error: a fallible call forced with `!`, an unhandled error.
    #[error("transform failed: {}{message}", at.map(|(l, c)| format!("line {l}, column {c}: ")).unwrap_or_default())]
    Runtime {
        /// Line and column (1-based) of the failing expression.
        at: Option<(usize, usize)>,
        message: String,
    },
    /// The program took more steps than its budget.
    #[error("transform failed: stopped after {0} steps (the budget per event)")]
    StepBudget(usize),
    /// The program ran longer than [`TIME_LIMIT`].
    #[error("transform failed: stopped after running for {TIME_LIMIT:?}")]
    TimeBudget,
    /// The program panicked inside VRL (caught: the relay goes on).
    #[error("transform failed: the program panicked: {0}")]
    Panicked(String),
    /// What the program left is not what the target kind can send.
    #[error("transform failed: {0}")]
    InvalidOutput(String),
    /// The output is larger than the target may send.
    #[error("transform failed: the output is {bytes} bytes, over batch_max_bytes ({limit})")]
    TooLarge { bytes: usize, limit: usize },
}

impl Transform {
    /// Runs the program on `input` (the JSON the target would send for `env`).
    pub fn run(&self, input: &[u8], env: &Envelope) -> Outcome {
        match serde_json::from_slice(input) {
            Ok(value) => self.run_value(value, env),
            Err(e) => Outcome::Fail(TransformFailure::InputNotJson(e.to_string())),
        }
    }

    /// Runs the program on `value` (what [`Transform::run`] parses from the JSON; for an
    /// envelope body, [`super::input::envelope`] builds it directly).
    pub fn run_value(&self, value: Value, env: &Envelope) -> Outcome {
        let uuid = self
            .posthog
            .then(|| request::field(&value, "uuid").cloned())
            .flatten();
        let mut target = TargetValue {
            value,
            metadata: self.context(env),
            secrets: Secrets::new(),
        };
        let budget = STEP_LIMIT;
        let (resolved, timed_out) = self.resolve(&mut target, budget);
        match resolved {
            Ok(()) => {}
            Err(Terminate::Abort(ExpressionError::Abort { .. })) => return Outcome::Skip,
            Err(Terminate::Interrupted) if timed_out => {
                return Outcome::Fail(TransformFailure::TimeBudget)
            }
            Err(Terminate::Interrupted) => {
                return Outcome::Fail(TransformFailure::StepBudget(budget))
            }
            Err(Terminate::Abort(e) | Terminate::Error(e)) => {
                return Outcome::Fail(self.runtime(e))
            }
        }
        match self.finish(target, uuid) {
            Ok(Some(send)) => send,
            Ok(None) => Outcome::Skip,
            Err(failure) => Outcome::Fail(failure),
        }
    }

    /// The read-only context (`%source`, `%topic`, `%partition`, `%offset`, `%target`, `%vars`)
    /// and an empty `%headers`.
    fn context(&self, env: &Envelope) -> Value {
        let fields: [(&str, Value); 7] = [
            (
                "source",
                Value::Bytes(bytes::Bytes::from_static(env.source.as_str().as_bytes())),
            ),
            ("topic", env.origin.topic.as_str().into()),
            ("partition", i64::from(env.origin.partition).into()),
            ("offset", env.origin.offset.into()),
            ("target", self.target.as_str().into()),
            ("vars", self.vars.clone()),
            ("headers", Value::Object(Default::default())),
        ];
        Value::Object(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Resolves the program with this thread's runtime, under the step budget and
    /// [`TIME_LIMIT`] (the flag says the time ran out); a panic inside VRL becomes an error
    /// instead of unwinding into the relay.
    fn resolve(&self, target: &mut TargetValue, budget: usize) -> (Result<(), Terminate>, bool) {
        let (mut steps, mut timed_out) = (0usize, false);
        let started = std::time::Instant::now();
        let mut control = || {
            steps += 1;
            if steps % CLOCK_EVERY == 0 && started.elapsed() > TIME_LIMIT {
                timed_out = true;
                return ControlFlow::Break(());
            }
            if steps > budget {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let tz = *UTC;
        let resolved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            RUNTIME.with(|rt| {
                let mut rt = rt.borrow_mut();
                rt.clear();
                let r = rt.resolve_with_control(target, &self.program, &tz, &mut control);
                rt.clear();
                r
            })
        }));
        let result = match resolved {
            Ok(r) => r.map(drop),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(Terminate::Error(ExpressionError::from(format!(
                    "{PANIC_MARK}{text}"
                ))))
            }
        };
        (result, timed_out)
    }

    /// A runtime error with the line and column of its primary label.
    fn runtime(&self, e: ExpressionError) -> TransformFailure {
        let message = e.message();
        if let Some(text) = message.strip_prefix(PANIC_MARK) {
            return TransformFailure::Panicked(text.to_string());
        }
        let at = e
            .labels()
            .iter()
            .find(|l| l.primary)
            .or(e.labels().first())
            .map(|l| line_col(&self.source, l.span.start()));
        TransformFailure::Runtime {
            at,
            message: strip_offsets(&message),
        }
    }

    /// The body and request changes a finished run left, `None` for `%skip = true`.
    fn finish(
        &self,
        target: TargetValue,
        uuid: Option<Value>,
    ) -> Result<Option<Outcome>, TransformFailure> {
        let invalid = TransformFailure::InvalidOutput;
        match request::field(&target.metadata, "skip") {
            None | Some(Value::Null) | Some(Value::Boolean(false)) => {}
            Some(Value::Boolean(true)) => return Ok(None),
            Some(other) => {
                return Err(invalid(format!(
                    "%skip is {}, not a boolean",
                    request::kind(other)
                )))
            }
        }
        let request = request::from_metadata(&target.metadata).map_err(invalid)?;
        let mut value = target.value;
        if self.posthog {
            posthog_event(&mut value, uuid).map_err(invalid)?;
        }
        let mut body = Vec::with_capacity(super::output::FIRST_CAPACITY);
        super::output::write(&mut body, &value);
        if body.len() > self.max_bytes {
            return Err(TransformFailure::TooLarge {
                bytes: body.len(),
                limit: self.max_bytes,
            });
        }
        Ok(Some(Outcome::Send { body, request }))
    }
}

/// Marks a caught panic's message on its way through VRL's error type.
const PANIC_MARK: &str = "\u{0}panic:";

/// A PostHog target's output must stay a PostHog event: an object with non-empty `event` and
/// `distinct_id` strings, `properties` an object if present, and a valid `uuid` (put back from
/// the input when the program removed it, so PostHog keeps de-duplicating).
fn posthog_event(value: &mut Value, uuid: Option<Value>) -> Result<(), String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "a PostHog target's output must be an event object, not {}",
            request::kind(value)
        ));
    };
    for key in ["event", "distinct_id"] {
        match map.get(key).and_then(Value::to_str_lossy) {
            Some(s) if !s.is_empty() => {}
            _ => {
                return Err(format!(
                    "a PostHog event needs {key} as a non-empty string (PostHog drops the \
                     event otherwise)"
                ))
            }
        }
    }
    if map.get("properties").is_some_and(|p| !p.is_object()) {
        return Err("a PostHog event's properties must be an object".into());
    }
    match map.get("uuid") {
        None | Some(Value::Null) => {
            if let Some(uuid) = uuid {
                map.insert("uuid".into(), uuid);
            }
        }
        Some(v) => {
            let valid = v
                .to_str_lossy()
                .is_some_and(|s| uuid::Uuid::parse_str(&s).is_ok());
            if !valid {
                return Err(
                    "a PostHog event's uuid must be a UUID (PostHog drops the event otherwise)"
                        .into(),
                );
            }
        }
    }
    Ok(())
}

/// 1-based line and column of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// VRL's function errors carry byte offsets (`... for "f" at (12:30): ...`, nested calls
/// once per call); the line and column say the same to a person.
fn strip_offsets(message: &str) -> String {
    let mut out = message.to_string();
    while let Some(cut) = offsets_at(&out) {
        out.replace_range(cut, "");
    }
    out
}

/// The byte range of the first ` at (N:M)` in `text`.
fn offsets_at(text: &str) -> Option<std::ops::Range<usize>> {
    let mut from = 0;
    while let Some(i) = text[from..].find(" at (") {
        let start = from + i;
        let inner = &text[start + 5..];
        if let Some(end) = inner.find(')') {
            let mut parts = inner[..end].split(':');
            let numbers = parts.clone().count() == 2
                && parts.all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if numbers {
                return Some(start..start + 5 + end + 1);
            }
        }
        from = start + 5;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_offsets_are_taken_out_of_nested_messages() {
        assert_eq!(
            super::strip_offsets(
                r#"function call error for "parse_int" at (1:9): function call error for "string" at (95:120): expected string, got null"#
            ),
            r#"function call error for "parse_int": function call error for "string": expected string, got null"#
        );
        assert_eq!(super::strip_offsets("look at (this)"), "look at (this)");
    }
}
