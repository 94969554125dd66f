//! Deserializers for numbers and booleans that also accept their text form: environment
//! overrides (`EVENT_RELAY__PIPELINE__MAX_IN_FLIGHT_EVENTS=77`) always arrive as strings.
//! A value of neither form is refused in serde's usual terms (`invalid type: ..., expected
//! a whole number`), which `plain.rs` turns into plain words.

use serde::de::{Error, Unexpected, Visitor};
use serde::Deserializer;
use std::fmt;

/// Accepts a number or a numeric string.
pub fn lenient_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    d.deserialize_any(WholeNumber)
}

/// [`lenient_usize`] for an optional key (absent stays `None`, with `#[serde(default)]`).
pub fn lenient_opt_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    lenient_usize(d).map(Some)
}

/// Accepts a boolean or `"true"`/`"false"` (also `"1"`/`"0"`).
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(Boolean)
}

struct WholeNumber;

impl Visitor<'_> for WholeNumber {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_u64<E: Error>(self, n: u64) -> Result<usize, E> {
        usize::try_from(n).map_err(|_| E::invalid_value(Unexpected::Unsigned(n), &self))
    }

    fn visit_i64<E: Error>(self, n: i64) -> Result<usize, E> {
        usize::try_from(n).map_err(|_| E::invalid_value(Unexpected::Signed(n), &self))
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<usize, E> {
        s.trim()
            .parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(s), &self))
    }
}

struct Boolean;

impl Visitor<'_> for Boolean {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_bool<E: Error>(self, b: bool) -> Result<bool, E> {
        Ok(b)
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<bool, E> {
        match s.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(E::invalid_value(Unexpected::Str(s), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(v: serde_json::Value) -> Result<usize, String> {
        lenient_usize(v).map_err(|e| e.to_string())
    }

    fn boolean(v: serde_json::Value) -> Result<bool, String> {
        lenient_bool(v).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_and_booleans_are_read_from_text_too_and_refused_in_serde_terms() {
        assert_eq!(number(json!(77)), Ok(77));
        assert_eq!(number(json!(" 77 ")), Ok(77));
        assert_eq!(
            number(json!("lots")).unwrap_err(),
            "invalid value: string \"lots\", expected a whole number"
        );
        assert_eq!(
            number(json!([1])).unwrap_err(),
            "invalid type: sequence, expected a whole number"
        );
        assert_eq!(
            number(json!(-1)).unwrap_err(),
            "invalid value: integer `-1`, expected a whole number"
        );
        assert_eq!(boolean(json!("1")), Ok(true));
        assert_eq!(boolean(json!(false)), Ok(false));
        assert_eq!(
            boolean(json!("yes")).unwrap_err(),
            "invalid value: string \"yes\", expected true or false"
        );
    }
}
