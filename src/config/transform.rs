//! The transform keys of a target: its VRL program (`transform` inline or `transform_file`),
//! the values the program may read (`transform_vars`) and the tests declared with it
//! (`[[targets.tests]]`). The program is compiled by the `transform` stage; this module only
//! reads the keys, and the program's file (relative to the config file's directory).

use super::problem::Problem;
use super::TargetConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One `[[targets.tests]]` entry: a raw source message and what the target must make of it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetTest {
    /// Names the test in `event-relay test`'s report.
    pub name: String,
    /// A raw Komo or acemate message, normalized as the relay would before the target sees it
    /// (so a test exercises the real input, not a hand-made envelope).
    pub input: String,
    /// The source topic the message arrives on: its format and settings apply and the program
    /// sees it as `%topic`. Default: the first source whose format fits the message.
    #[serde(default)]
    pub topic: Option<String>,
    /// The body the target must send for the event, as JSON text (compared as JSON: key order
    /// and spacing do not matter).
    #[serde(default)]
    pub expect: Option<String>,
    /// The program must skip the event (`%skip = true` or `abort`).
    #[serde(default)]
    pub expect_skipped: bool,
    /// The delivery must fail with an error containing this text (`transform failed: ...`).
    #[serde(default)]
    pub expect_error: Option<String>,
}

/// What a test expects: exactly one of `expect`, `expect_skipped`, `expect_error`.
#[derive(Clone, Debug, PartialEq)]
pub enum Expectation {
    /// This body (parsed from `expect`).
    Body(serde_json::Value),
    /// No request: the program skips the event.
    Skipped,
    /// A transform error containing this text.
    Error(String),
}

impl TargetTest {
    /// The one expectation of the test, or the problem with its keys (at `at`, the test's
    /// key path).
    pub fn expectation(&self, at: &str) -> Result<Expectation, Problem> {
        let chosen = [
            self.expect.is_some(),
            self.expect_skipped,
            self.expect_error.is_some(),
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            return Err(Problem::new(
                at,
                "needs exactly one of expect, expect_skipped = true or expect_error",
            ));
        }
        if let Some(text) = &self.expect {
            return serde_json::from_str(text)
                .map(Expectation::Body)
                .map_err(|e| Problem::new(&format!("{at}.expect"), format!("not JSON: {e}")));
        }
        Ok(match &self.expect_error {
            Some(text) => Expectation::Error(text.clone()),
            None => Expectation::Skipped,
        })
    }
}

/// Where a target's program text comes from: exactly one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramSource<'a> {
    /// `transform = "..."`, in the config file.
    Inline(&'a str),
    /// `transform_file = "..."`, resolved against the config file's directory.
    File(&'a std::path::Path),
}

/// A target's program, read: its text and the key it was given under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramText {
    /// The program.
    pub text: String,
    /// `transform` or `transform_file`, for key paths in problems.
    pub key: &'static str,
    /// The file it was read from (diagnostics name it), if not inline.
    pub file: Option<PathBuf>,
}

impl TargetConfig {
    /// Which key gives the target's program (the one place the two keys are told apart), or
    /// `None` without a transform. Both keys at once are reported by `Config::validate`.
    pub fn program_source(&self) -> Option<ProgramSource<'_>> {
        match (&self.transform, &self.transform_file) {
            (Some(text), _) => Some(ProgramSource::Inline(text)),
            (None, Some(path)) => Some(ProgramSource::File(path)),
            (None, None) => None,
        }
    }

    /// The target's program text, reading `transform_file`; `Err` names the key (relative to
    /// `targets[i]`) and why the file cannot be read.
    pub fn program_text(&self) -> Result<Option<ProgramText>, (&'static str, String)> {
        Ok(match self.program_source() {
            None => None,
            Some(ProgramSource::Inline(text)) => Some(ProgramText {
                text: text.to_string(),
                key: "transform",
                file: None,
            }),
            Some(ProgramSource::File(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    (
                        "transform_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(ProgramText {
                    text,
                    key: "transform_file",
                    file: Some(path.to_path_buf()),
                })
            }
        })
    }
}

/// The structural checks of the transform keys of target `i` (part of `Config::validate`;
/// the programs themselves are compiled by the `transform` stage).
pub(super) fn check_transform_keys(
    i: usize,
    t: &TargetConfig,
    sources: &[super::SourceConfig],
    p: &mut Vec<Problem>,
) {
    let at = format!("targets[{i}]");
    if t.transform.is_some() && t.transform_file.is_some() {
        p.push(Problem::new(
            &format!("{at}.transform_file"),
            "give the program either inline (transform) or in a file (transform_file), not both",
        ));
    }
    if t.transform_file
        .as_ref()
        .is_some_and(|f| f.as_os_str().is_empty())
    {
        p.push(Problem::new(&format!("{at}.transform_file"), "is empty"));
    }
    if !t.transform_vars.is_empty() && t.program_source().is_none() {
        p.push(Problem::new(
            &format!("{at}.transform_vars"),
            "set without a program to read them (transform or transform_file)",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (j, test) in t.tests.iter().enumerate() {
        let at = format!("{at}.tests[{j}]");
        if let Err(problem) = test.expectation(&at) {
            p.push(problem);
        }
        if test.name.trim().is_empty() {
            p.push(Problem::new(&format!("{at}.name"), "is empty"));
        } else if !names.insert(test.name.as_str()) {
            p.push(Problem::new(
                &format!("{at}.name"),
                format!("duplicate test name {:?} in this target", test.name),
            ));
        }
        if test.input.trim().is_empty() {
            p.push(Problem::new(&format!("{at}.input"), "is empty"));
        }
        if let Some(topic) = &test.topic {
            if !sources.iter().any(|s| &s.topic == topic) {
                p.push(Problem::new(
                    &format!("{at}.topic"),
                    format!("{topic:?} is not the topic of a [[sources]] entry"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(expect: Option<&str>, skipped: bool, error: Option<&str>) -> TargetTest {
        TargetTest {
            name: "t".into(),
            input: "{}".into(),
            topic: None,
            expect: expect.map(String::from),
            expect_skipped: skipped,
            expect_error: error.map(String::from),
        }
    }

    #[test]
    fn a_test_has_exactly_one_expectation() {
        assert_eq!(
            test(Some(r#"{"a":1}"#), false, None).expectation("x"),
            Ok(Expectation::Body(serde_json::json!({"a": 1})))
        );
        assert_eq!(
            test(None, true, None).expectation("x"),
            Ok(Expectation::Skipped)
        );
        assert_eq!(
            test(None, false, Some("transform failed")).expectation("x"),
            Ok(Expectation::Error("transform failed".into()))
        );
        for none_or_two in [test(None, false, None), test(Some("{}"), true, None)] {
            let p = none_or_two.expectation("targets[0].tests[1]").unwrap_err();
            assert_eq!(p.path, "targets[0].tests[1]");
        }
        let p = test(Some("{"), false, None).expectation("x").unwrap_err();
        assert_eq!(p.path, "x.expect");
        assert!(p.message.starts_with("not JSON: "), "{}", p.message);
    }
}
