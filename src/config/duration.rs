//! Human-readable durations in config files (`"500ms"`, `"10s"`, `"1.5s"`, `"15m"`, `"1h"`,
//! `"7d"`).
//!
//! Parsed by `humantime` (which also takes compound forms such as `"1m 30s"`); errors name the
//! offending text and what is wrong with it, so `check` can report them with their key path.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// The longest duration any key accepts (a year of 365 days).
const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// A config duration. Serializes to the `humantime` form (`"1s 500ms"`), which parses back to
/// the same value, so a `Config` built in code can be written out as TOML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

/// A duration text that does not parse: the text and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {problem}")]
pub struct DurationError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub problem: DurationProblem,
}

/// What is wrong with a duration text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationProblem {
    #[error("empty (write a number and a unit, e.g. \"10s\")")]
    Empty,
    #[error("missing unit (ms, s, m, h, d)")]
    MissingUnit,
    #[error("unknown unit {0:?} (use ms, s, m, h, d)")]
    UnknownUnit(String),
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("unexpected character {0:?}")]
    UnexpectedCharacter(char),
    #[error("out of range (at most 365 days)")]
    OutOfRange,
}

/// Parses `"250ms"`, `"10s"`, `"1.5s"`, `"15m"`, `"2h"`, `"7d"`, up to 365 days.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let problem = match humantime::parse_duration(text) {
        Ok(d) if d <= MAX => return Ok(d),
        Ok(_) => DurationProblem::OutOfRange,
        Err(e) => problem(text, e),
    };
    Err(DurationError {
        text: text.to_string(),
        problem,
    })
}

/// `humantime`'s error in the words of the relay's config reference.
fn problem(text: &str, e: humantime::DurationError) -> DurationProblem {
    use humantime::DurationError as E;
    let at = |offset: usize| text.get(offset..).unwrap_or_default();
    match e {
        E::Empty => DurationProblem::Empty,
        E::UnknownUnit { unit, .. } if unit.is_empty() => DurationProblem::MissingUnit,
        E::UnknownUnit { unit, .. } => DurationProblem::UnknownUnit(unit),
        E::NumberExpected(offset) => DurationProblem::NotANumber(at(offset).trim().to_string()),
        E::InvalidCharacter(offset) => match at(offset).chars().next() {
            Some(c) => DurationProblem::UnexpectedCharacter(c),
            None => DurationProblem::MissingUnit,
        },
        E::NumberOverflow => DurationProblem::OutOfRange,
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(ConfigDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("365d").unwrap(), MAX);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "10",
            "ten s",
            "5 parsecs",
            "-1s",
            "1e400s",
            "366d",
            "1,5s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn errors_name_the_text_and_the_problem() {
        let msg = |t: &str| parse_duration(t).unwrap_err().to_string();
        assert_eq!(
            msg("10 parsecs"),
            r#"invalid duration "10 parsecs": unknown unit "parsecs" (use ms, s, m, h, d)"#
        );
        assert_eq!(
            msg("10"),
            r#"invalid duration "10": missing unit (ms, s, m, h, d)"#
        );
        assert_eq!(
            msg("ten s"),
            r#"invalid duration "ten s": "ten s" is not a number"#
        );
        assert_eq!(
            msg("1,5s"),
            r#"invalid duration "1,5s": unexpected character ','"#
        );
        assert_eq!(
            msg("400d"),
            r#"invalid duration "400d": out of range (at most 365 days)"#
        );
    }

    #[test]
    fn display_parses_back_to_the_same_value() {
        for ms in [
            0,
            1,
            500,
            1000,
            1500,
            60_000,
            90_500,
            3_600_000,
            86_400_000 * 7,
        ] {
            let d = ConfigDuration::from_millis(ms);
            let text = serde_json::to_value(d).unwrap();
            let back: ConfigDuration = serde_json::from_value(text.clone()).unwrap();
            assert_eq!(back, d, "{text}");
        }
    }
}
