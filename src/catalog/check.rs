//! Checking values against compiled catalog rules: types, formats, enums, nullability, and
//! the coercions lenient sources get (a numeric string for a number property, ...).

use super::{Format, NameMap, Prop, PropType};
use crate::envelope::{PropRef, Props};
use serde_json::{Map, Value};

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `8-4-4-4-12` hex digits (either case): the only 36-character form `uuid::Uuid::parse_str`
/// accepts, checked without decoding.
fn is_hyphenated_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && (b[8], b[13], b[18], b[23]) == (b'-', b'-', b'-', b'-')
        && [&b[..8], &b[9..13], &b[14..18], &b[19..23], &b[24..]]
            .iter()
            .all(|part| part.iter().all(u8::is_ascii_hexdigit))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (no leap second): the form the normalizer writes timestamps in.
pub(crate) fn is_canonical_utc_millis(s: &str) -> bool {
    const DIGITS: [usize; 17] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    let b = s.as_bytes();
    b.len() == 24
        && (b[4], b[7], b[10], b[13], b[16], b[19], b[23])
            == (b'-', b'-', b'T', b':', b':', b'.', b'Z')
        && DIGITS.iter().all(|&i| b[i].is_ascii_digit())
        && &b[17..19] != b"60"
}

/// The instant of a canonical `YYYY-MM-DDTHH:MM:SS.mmmZ` text ([`is_canonical_utc_millis`]),
/// read straight from its digits; `None` for any other text and for an impossible date or time
/// (left to `DateTime::parse_from_rfc3339`, which judges both alike).
pub(crate) fn canonical_instant(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if !is_canonical_utc_millis(s) {
        return None;
    }
    let b = s.as_bytes();
    let n =
        |at: std::ops::Range<usize>| b[at].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let year = i32::try_from(n(0..4)).ok()?;
    chrono::NaiveDate::from_ymd_opt(year, n(5..7), n(8..10))?
        .and_hms_milli_opt(n(11..13), n(14..16), n(17..19), n(20..23))
        .map(|t| t.and_utc())
}

fn check_format(f: Format, s: &str) -> Result<(), &'static str> {
    let ok = match f {
        // The specs' pattern: 8-4-4-4-12 hex with a version digit of 1-8.
        Format::Uuid => is_hyphenated_uuid(s) && matches!(s.as_bytes()[14], b'1'..=b'8'),
        Format::Guid => is_hyphenated_uuid(s),
        Format::Email => is_email(s),
        Format::DateTime => {
            canonical_instant(s).is_some() || chrono::DateTime::parse_from_rfc3339(s).is_ok()
        }
        Format::Uri => url::Url::parse(s).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(match f {
            Format::Uuid => "not a valid uuid",
            Format::Guid => "not a valid GUID (8-4-4-4-12 hex digits)",
            Format::Email => "not a valid email address",
            Format::DateTime => "not a valid RFC 3339 date-time",
            Format::Uri => "not a valid URI",
        })
    }
}

fn coerce_string(ty: PropType, s: &str) -> Option<Value> {
    let t = s.trim();
    match ty {
        PropType::Number => {
            if let Ok(i) = t.parse::<i64>() {
                return Some(Value::from(i));
            }
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
        }
        PropType::Integer => t.parse::<i64>().ok().map(Value::from),
        PropType::Boolean => match t {
            "true" | "True" | "TRUE" | "1" => Some(Value::Bool(true)),
            "false" | "False" | "FALSE" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

impl Prop {
    /// Checks (and, with `coerce`, converts string-encoded numbers/booleans in place) one value.
    /// Problems are pushed as `<path>: <rule>`.
    pub fn check(&self, value: &mut Value, path: &str, coerce: bool, problems: &mut Vec<String>) {
        self.check_at(value, &path, coerce, problems)
    }

    /// [`Prop::check`] with the path given as anything displayable (e.g. [`PropPath`]), so it is
    /// only rendered into a `String` when there is a problem to report.
    pub fn check_at(
        &self,
        value: &mut Value,
        path: &dyn std::fmt::Display,
        coerce: bool,
        problems: &mut Vec<String>,
    ) {
        if value.is_null() {
            if !self.nullable {
                problems.push(format!("{path}: must not be null"));
            }
            return;
        }
        let type_ok = match (self.ty, &*value) {
            (PropType::String, Value::String(_)) => true,
            (PropType::Number, Value::Number(_)) => true,
            (PropType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (PropType::Boolean, Value::Bool(_)) => true,
            (PropType::Array, Value::Array(_)) => true,
            (PropType::Object, Value::Object(_)) => true,
            _ => false,
        };
        if !type_ok {
            let coerced = match (&*value, coerce) {
                (Value::String(s), true) => coerce_string(self.ty, s),
                _ => None,
            };
            match coerced {
                Some(v) => *value = v,
                None => {
                    problems.push(format!(
                        "{path}: expected {}, got {}",
                        format!("{:?}", self.ty).to_lowercase(),
                        crate::json::kind(value)
                    ));
                    return;
                }
            }
        }
        match value {
            Value::String(s) => self.check_string(s, path, problems),
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    for (i, v) in items.iter_mut().enumerate() {
                        item.check_at(v, &ItemPath(path, i), coerce, problems);
                    }
                }
            }
            Value::Number(n) => {
                if let Some(allowed) = &self.enum_values {
                    if !allowed.contains(&n.to_string()) {
                        problems.push(format!(
                            "{path}: value {n} is not one of the allowed values"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

impl Prop {
    /// [`Prop::check_at`] without coercion, of a value read from [`Props`] (a borrowed string
    /// is checked where it is).
    pub fn check_ref(
        &self,
        value: PropRef<'_>,
        path: &dyn std::fmt::Display,
        problems: &mut Vec<String>,
    ) {
        match value {
            PropRef::Str(s) if self.ty == PropType::String => self.check_string(s, path, problems),
            PropRef::Str(s) => {
                let mut v = Value::String(s.to_owned());
                self.check_at(&mut v, path, false, problems);
            }
            PropRef::Value(v) => {
                let mut v = v.clone();
                self.check_at(&mut v, path, false, problems);
            }
        }
    }

    /// The rules of a string value: pattern, format, allowed values.
    fn check_string(&self, s: &str, path: &dyn std::fmt::Display, problems: &mut Vec<String>) {
        if let Some(re) = &self.pattern {
            if !re.is_match(s) {
                problems.push(format!("{path}: does not match the pattern {re}"));
            }
        }
        if let Some(f) = self.format {
            if let Err(rule) = check_format(f, s) {
                problems.push(format!("{path}: {rule}"));
            }
        }
        if let Some(allowed) = &self.enum_values {
            if !allowed.contains(s) {
                problems.push(format!(
                    "{path}: value {s:?} is not one of the allowed values"
                ));
            }
        }
    }
}

/// A problem path `<prefix><name>` (e.g. `properties.` + `score`), rendered only on failure.
pub struct PropPath<'a>(pub &'a str, pub &'a str);

impl std::fmt::Display for PropPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

/// The path of an array item: `<path>[<index>]`.
struct ItemPath<'a>(&'a dyn std::fmt::Display, usize);

impl std::fmt::Display for ItemPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// Checks the properties of `map` that `schema` defines and reports missing required ones.
pub fn check_props(
    schema: &NameMap<Prop>,
    map: &mut Map<String, Value>,
    prefix: &str,
    coerce: bool,
    enforce_required: bool,
    problems: &mut Vec<String>,
) {
    // One pass over the keys present, each looked up in the schema (a hash probe is cheaper
    // than a map search); the schema is walked for missing required properties only when some
    // are actually missing.
    let mut required_seen = 0usize;
    for (name, v) in map.iter_mut() {
        if let Some(prop) = schema.get(name.as_str()) {
            required_seen += usize::from(prop.required);
            prop.check_at(v, &PropPath(prefix, name), coerce, problems);
        }
    }
    if enforce_required {
        report_missing(
            schema,
            required_seen,
            |n| map.contains_key(n),
            prefix,
            problems,
        );
    }
}

/// Reports each required property of `schema` that `present` lacks; `seen` (the required ones
/// met while checking) skips the walk when none is missing.
fn report_missing(
    schema: &NameMap<Prop>,
    seen: usize,
    present: impl Fn(&str) -> bool,
    prefix: &str,
    problems: &mut Vec<String>,
) {
    if seen < schema.values().filter(|p| p.required).count() {
        for (name, prop) in schema {
            if prop.required && !present(name) {
                problems.push(format!("{prefix}{name}: required property missing"));
            }
        }
    }
}

/// [`check_props`] of borrowed properties, without coercion, missing required ones reported.
pub fn check_props_ref(
    schema: &NameMap<Prop>,
    props: &Props,
    prefix: &str,
    problems: &mut Vec<String>,
) {
    let mut required_seen = 0usize;
    for (name, v) in props.iter() {
        if let Some(prop) = schema.get(name) {
            required_seen += usize::from(prop.required);
            prop.check_ref(v, &PropPath(prefix, name), problems);
        }
    }
    report_missing(
        schema,
        required_seen,
        |n| props.contains_key(n),
        prefix,
        problems,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalogs;

    #[test]
    fn uuid_check_agrees_with_the_uuid_crate() {
        let cases = [
            "0fdbb943-511c-4220-9266-31465374f43b",
            "0FDBB943-511C-4220-9266-31465374F43B",
            "0fdbb943-511c-4220-9266-31465374f43",
            "0fdbb943-511c-4220-9266-31465374f43bb",
            "0fdbb943x511c-4220-9266-31465374f43b",
            "0fdbb943-511c-4220-9266-31465374f43g",
            "0fdbb943511c422092663146-5374f43b-00",
            "{0fdbb943-511c-4220-9266-31465374f4}",
            "urn:uuid:0fdbb943-511c-4220-9266-314",
            "0fdbb943-511c-4220-9266-31465374f4\u{e9}",
            "",
        ];
        for s in cases {
            let crate_says = s.len() == 36 && uuid::Uuid::parse_str(s).is_ok();
            assert_eq!(is_hyphenated_uuid(s), crate_says, "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn uuid_check_agrees_with_the_uuid_crate_on_random_input(
            s in "[0-9a-fA-F-]{36}|[0-9a-gA-G{}:-]{30,40}|\\PC{36}"
        ) {
            let crate_says = s.len() == 36 && uuid::Uuid::parse_str(&s).is_ok();
            proptest::prop_assert_eq!(is_hyphenated_uuid(&s), crate_says, "{:?}", s);
        }
    }

    #[test]
    fn rules_reject_and_coerce() {
        let c = Catalogs::builtin().unwrap();
        let score = &c.komo.events["CardViewed"].properties["score"];
        let mut v = Value::from("7");
        let mut p = vec![];
        score.check(&mut v, "score", true, &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(v, Value::from(7));
        let mut bad = Value::from("abc");
        score.check(&mut bad, "score", true, &mut p);
        assert_eq!(p, vec!["score: expected number, got string".to_string()]);
        let mut p = vec![];
        let email = &c.acemate.identify["email"];
        email.check(&mut Value::from("nope"), "email", false, &mut p);
        assert!(p[0].contains("email"), "{p:?}");
    }
}
