//! How config problems are reported: each with the key path it is about, all at once, and
//! the environment variable that set the value when one did.

use std::fmt;

/// One config problem: where (`routes[2].targets[0]`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `targets[1].url`; empty for whole-file problems.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The `EVENT_RELAY__...` variable that set the value at `path` (or made the table that
    /// holds it), so the user looks in the environment rather than in the file.
    pub variable: Option<String>,
    /// Other key paths this problem was judged against (`retry_tiers.delays` for a target's
    /// unknown tier): when one of them has a problem of its own, this one is a consequence.
    pub against: Vec<String>,
}

impl Problem {
    pub fn new(path: &str, message: impl fmt::Display) -> Self {
        Self {
            path: path.to_string(),
            message: message.to_string(),
            variable: None,
            against: Vec::new(),
        }
    }

    /// The problem, judged against the value at `path` too (see [`Problem::against`]).
    pub fn judged_against(mut self, path: impl Into<String>) -> Self {
        self.against.push(path.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(variable) = &self.variable {
            write!(f, "{variable} → ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All problems found in a config.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn single(path: &str, message: impl fmt::Display) -> Self {
        Self {
            problems: vec![Problem::new(path, message)],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
