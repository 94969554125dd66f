//! serde's messages in the words of the person who wrote the config file: `a number`, not
//! `f64`; `a list`, not `a sequence`; `unknown key (did you mean "brokers"?)`; and, where an
//! unquoted dotted key made a table (`sasl.mechanism = "PLAIN"` under `[kafka.options]`), how
//! to quote it.

use super::salvage::Seg;
use serde_json::Value;

/// The message for a problem serde found in the value at `at` (`raw`: that value as written).
pub(super) fn message(serde: &str, at: &[Seg], raw: Option<&Value>) -> String {
    if let Some(rest) = serde.strip_prefix("unknown field `") {
        return unknown("key", rest);
    }
    if let Some(rest) = serde.strip_prefix("unknown variant `") {
        return unknown("value", rest);
    }
    let wrong = ["invalid type: ", "invalid value: "]
        .iter()
        .find_map(|prefix| serde.strip_prefix(prefix))
        .and_then(|rest| rest.rsplit_once(", expected "));
    let Some((found, expected)) = wrong else {
        return serde.to_string();
    };
    let plain = format!(
        "must be {}, not {}",
        expected_words(expected),
        found_words(found)
    );
    match raw.and_then(|raw| dotted_key_hint(at, raw)) {
        Some(hint) => format!("{plain}: {hint}"),
        None => plain,
    }
}

/// The message for a required key that is missing; a top-level one is a section.
pub(super) fn missing(top_level: bool) -> &'static str {
    if top_level {
        "missing (required section)"
    } else {
        "missing (required key)"
    }
}

/// For serde's "unknown field `x`, expected one of ...": `x`.
pub(super) fn unknown_key(serde: &str) -> Option<String> {
    let rest = serde.strip_prefix("unknown field `")?;
    Some(split_unknown(rest).0)
}

/// For serde's "unknown field `x`, expected one of ...": the known key `x` was most likely
/// meant to be (`taget` → `targets`).
pub(super) fn meant_key(serde: &str) -> Option<String> {
    let rest = serde.strip_prefix("unknown field `")?;
    let (written, known) = split_unknown(rest);
    closest(&written, &known)
}

/// `what` is "key" or "value"; `rest` is serde's message after "unknown field `" or
/// "unknown variant `".
fn unknown(what: &str, rest: &str) -> String {
    let (written, known) = split_unknown(rest);
    let head = match what {
        "value" => format!("unknown value {written:?}"),
        _ => format!("unknown {what}"),
    };
    let quoted: Vec<String> = known.iter().map(|k| format!("{k:?}")).collect();
    match (what, closest(&written, &known)) {
        (_, Some(meant)) => format!("{head} (did you mean {meant:?}?)"),
        (_, None) if known.is_empty() => head,
        ("value", None) => format!("{head} (expected {})", or_list(&quoted)),
        (_, None) => format!("{head} (known keys: {})", known.join(", ")),
    }
}

/// `x`, expected one of `a`, `b` → ("x", ["a", "b"]).
fn split_unknown(rest: &str) -> (String, Vec<String>) {
    let (written, tail) = rest.split_once('`').unwrap_or((rest, ""));
    let known = tail
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    (written.to_string(), known)
}

/// "a", "b" or "c".
fn or_list(items: &[String]) -> String {
    match items {
        [] => "nothing".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// The known name `written` most likely misspells: at most a third of its letters off.
fn closest(written: &str, known: &[String]) -> Option<String> {
    let limit = ((written.chars().count() + 1) / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(&written.to_lowercase(), &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// What serde says it expected (a Rust type or its own words), in a config file's words.
fn expected_words(expected: &str) -> String {
    let integer = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
    ];
    match expected {
        "a string" | "a borrowed string" | "string" | "path string" | "a character" => "text",
        "f32" | "f64" => "a number",
        e if integer.contains(&e) => "a whole number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        e if e.starts_with("a tuple") => "a list",
        "a map" => "a table",
        e if e.starts_with("struct ") => "a table",
        e if e.starts_with("enum ") => "text",
        "variant identifier" | "string or map" => "text",
        other => return other.to_string(),
    }
    .to_string()
}

/// What serde says it found (its `Unexpected`), in a config file's words.
fn found_words(found: &str) -> String {
    let quoted = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .and_then(|v| v.strip_prefix('`'))
            .and_then(|v| v.strip_suffix('`'))
            .map(str::to_string)
    };
    if let Some(v) = quoted("boolean ")
        .or_else(|| quoted("integer "))
        .or_else(|| quoted("floating point "))
    {
        return v;
    }
    if let Some(text) = found.strip_prefix("string ") {
        return format!("text {text}");
    }
    match found {
        "sequence" => "a list",
        "map" => "a table",
        "unit value" => "nothing",
        other => other,
    }
    .to_string()
}

/// Tables whose keys are free-form (a librdkafka property, a header, a variable), where a
/// table value is most likely an unquoted dotted key: `sasl.mechanism = "PLAIN"` is
/// `sasl = { mechanism = "PLAIN" }` in TOML.
fn free_form_parent(at: &[Seg]) -> bool {
    let key = |s: &Seg, k: &str| matches!(s, Seg::Key(x) if x == k);
    match at {
        [kafka, options, _] => key(kafka, "kafka") && key(options, "options"),
        [targets, Seg::Index(_), table, _] => {
            key(targets, "targets") && (key(table, "headers") || key(table, "transform_vars"))
        }
        _ => false,
    }
}

/// `quote it: "sasl.mechanism" = ...` for a table that an unquoted dotted key made.
fn dotted_key_hint(at: &[Seg], raw: &Value) -> Option<String> {
    let (Some(Seg::Key(first)), Value::Object(_)) = (at.last(), raw) else {
        return None;
    };
    if !free_form_parent(at) {
        return None;
    }
    let mut keys = Vec::new();
    dotted_keys(first, raw, &mut keys);
    let assignments: Vec<String> = keys.iter().map(|k| format!("{k:?} = ...")).collect();
    Some(format!(
        "in TOML an unquoted dotted key makes a table; quote {}: {}",
        if keys.len() == 1 { "it" } else { "them" },
        assignments.join(", ")
    ))
}

/// Every leaf of `value` as a dotted key under `prefix` (values are never shown: they may
/// be secrets).
fn dotted_keys(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                dotted_keys(&format!("{prefix}.{k}"), v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(k: &str) -> Seg {
        Seg::Key(k.into())
    }

    fn say(serde: &str) -> String {
        message(serde, &[], None)
    }

    #[test]
    fn rust_types_become_plain_words() {
        for (serde, plain) in [
            (
                "invalid type: string \"a\", expected f64",
                "must be a number, not text \"a\"",
            ),
            (
                "invalid value: integer `-1`, expected usize",
                "must be a whole number, not -1",
            ),
            (
                "invalid type: string \"t\", expected a sequence",
                "must be a list, not text \"t\"",
            ),
            (
                "invalid type: map, expected a string",
                "must be text, not a table",
            ),
            (
                "invalid type: sequence, expected a map",
                "must be a table, not a list",
            ),
            (
                "invalid type: integer `5`, expected struct TargetConfig",
                "must be a table, not 5",
            ),
            (
                "invalid type: string \"yes\", expected a boolean",
                "must be true or false, not text \"yes\"",
            ),
            (
                "invalid type: floating point `1.5`, expected u32",
                "must be a whole number, not 1.5",
            ),
            // serde's own words that are already plain stay.
            (
                "invalid type: integer `5`, expected a \"whsec_...\" secret or a list of them",
                "must be a \"whsec_...\" secret or a list of them, not 5",
            ),
            // An enum of names, which serde_json also reads from a table.
            (
                "invalid type: integer `1`, expected string or map",
                "must be text, not 1",
            ),
        ] {
            assert_eq!(say(serde), plain, "{serde}");
        }
    }

    #[test]
    fn unknown_keys_and_values_say_what_was_meant() {
        assert_eq!(
            say("unknown field `broker`, expected one of `brokers`, `group_id`, `options`"),
            "unknown key (did you mean \"brokers\"?)"
        );
        assert_eq!(
            say("unknown field `like`, expected one of `field`, `equals`, `in`"),
            "unknown key (known keys: field, equals, in)"
        );
        assert_eq!(say("unknown field `x`, there are no fields"), "unknown key");
        assert_eq!(
            say("unknown variant `webhok`, expected `webhook` or `posthog`"),
            "unknown value \"webhok\" (did you mean \"webhook\"?)"
        );
        assert_eq!(
            say("unknown variant `carrier-pigeon`, expected `webhook` or `posthog`"),
            "unknown value \"carrier-pigeon\" (expected \"webhook\" or \"posthog\")"
        );
        assert_eq!(
            meant_key("unknown field `taget`, expected one of `name`, `targets`").as_deref(),
            Some("targets")
        );
        assert_eq!(meant_key("unknown field `zzz`, expected `name`"), None);
    }

    #[test]
    fn a_table_made_by_an_unquoted_dotted_key_says_to_quote_it() {
        let serde = "invalid type: map, expected a string";
        let at = [key("kafka"), key("options"), key("sasl")];
        let raw = json!({ "mechanism": "PLAIN" });
        assert_eq!(
            message(serde, &at, Some(&raw)),
            "must be text, not a table: in TOML an unquoted dotted key makes a table; \
             quote it: \"sasl.mechanism\" = ..."
        );
        let raw = json!({ "mechanism": "PLAIN", "password": "secret" });
        let both = message(serde, &at, Some(&raw));
        assert!(
            both.ends_with("quote them: \"sasl.mechanism\" = ..., \"sasl.password\" = ..."),
            "{both}"
        );
        assert!(!both.contains("secret"), "{both}");
        let header = [key("targets"), Seg::Index(0), key("headers"), key("X")];
        assert!(message(serde, &header, Some(&json!({ "Y": "a" }))).contains("\"X.Y\" = ..."));
        // A key that is not free-form: no hint.
        let format = [key("log"), key("format")];
        assert_eq!(
            message(serde, &format, Some(&json!({ "a": 1 }))),
            "must be text, not a table"
        );
    }
}
