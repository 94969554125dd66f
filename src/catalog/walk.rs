//! The structural check of a catalog file: walks the parsed JSON and records every problem
//! with its JSON path (unknown keys, wrong types, unknown `type`/`format`, bounds), so one run
//! of `event-relay catalog check` lists them all. `docs/catalog.schema.json` describes the same
//! format for editors and other tools.

use super::compile::{compile_pattern, parse_format, TYPES};
use super::file::{CatalogProblem, MAX_ENUM_VALUES, MAX_PATTERN_LEN, MAX_PROBLEMS};
use crate::envelope::UserAttributes;
use serde_json::{Map, Value};

/// Most events one catalog file may hold, and most properties one map may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest `version` text.
const MAX_VERSION_LEN: usize = 100;

const TOP_KEYS: &[&str] = &[
    "catalog",
    "version",
    "description",
    "spec_files",
    "common",
    "identify",
    "events",
    "user_attributes",
];
const EVENT_KEYS: &[&str] = &[
    "description",
    "note",
    "properties",
    "extra_keys",
    "deprecated",
    "version",
];
const PROP_KEYS: &[&str] = &[
    "type",
    "required",
    "nullable",
    "format",
    "enum",
    "items",
    "pattern",
    "description",
    "note",
    "default",
];
const EXTRA_KEYS: &[&str] = &["none", "user_attributes", "user_attributes+data_capture"];

struct Walk<'a> {
    problems: &'a mut Vec<CatalogProblem>,
    /// Problems found past [`MAX_PROBLEMS`] (counted, not kept: a hostile file must not turn
    /// into millions of messages).
    more: usize,
}

/// `path` + `.key` (or `["key"]` when the key is not a plain name).
fn child(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '-'));
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::from(key))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Walk<'_> {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.more += 1;
            return;
        }
        self.problems.push(CatalogProblem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.push(path, format!("expected an object, got {}", kind(other)));
                None
            }
        }
    }

    fn string<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.push(path, format!("expected a string, got {}", kind(other)));
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value, path: &str) {
        if !v.is_boolean() {
            self.push(path, format!("expected a boolean, got {}", kind(v)));
        }
    }

    fn keys(&mut self, m: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for k in m.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.push(
                &child(path, k),
                format!("unknown key (expected one of: {})", allowed.join(", ")),
            );
        }
    }

    fn bounded<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        let m = self.object(v, path)?;
        if m.len() > MAX_ENTRIES {
            self.push(
                path,
                format!("{} entries, more than the limit of {MAX_ENTRIES}", m.len()),
            );
            return None;
        }
        Some(m)
    }

    fn version(&mut self, v: &Value, path: &str) {
        if let Some(s) = self.string(v, path) {
            if s.is_empty() || s.chars().count() > MAX_VERSION_LEN {
                self.push(path, format!("must be 1 to {MAX_VERSION_LEN} characters"));
            }
        }
    }

    fn props(&mut self, v: &Value, path: &str) {
        let Some(m) = self.bounded(v, path) else {
            return;
        };
        for (name, p) in m {
            self.prop(p, &child(path, name));
        }
    }

    fn prop(&mut self, v: &Value, path: &str) {
        let Some(m) = self.object(v, path) else {
            return;
        };
        self.keys(m, path, PROP_KEYS);
        let ty = match m.get("type") {
            None => {
                self.push(path, "`type` is missing");
                None
            }
            Some(t) => self.string(t, &child(path, "type")),
        };
        if let Some(t) = ty.filter(|t| !TYPES.contains(t)) {
            let msg = format!("unknown type {t:?} (expected one of: {})", TYPES.join(", "));
            self.push(&child(path, "type"), msg);
        }
        for key in ["required", "nullable"] {
            if let Some(b) = m.get(key) {
                self.boolean(b, &child(path, key));
            }
        }
        if let Some(f) = m.get("format") {
            let at = child(path, "format");
            if let Some(f) = self.string(f, &at).filter(|f| parse_format(f).is_none()) {
                let msg =
                    format!("unknown format {f:?} (expected uuid, guid, email, date-time or uri)");
                self.push(&at, msg);
            }
        }
        if let Some(e) = m.get("enum") {
            self.enumeration(e, &child(path, "enum"));
        }
        if let Some(items) = m.get("items") {
            if ty.is_some_and(|t| t != "array") {
                self.push(&child(path, "items"), "only an array property has `items`");
            }
            self.prop(items, &child(path, "items"));
        }
        if let Some(p) = m.get("pattern") {
            if ty.is_some_and(|t| t != "string") {
                self.push(
                    &child(path, "pattern"),
                    "only a string property has a `pattern`",
                );
            }
            self.pattern(p, &child(path, "pattern"));
        }
    }

    fn enumeration(&mut self, v: &Value, path: &str) {
        let Value::Array(values) = v else {
            self.push(path, format!("expected an array, got {}", kind(v)));
            return;
        };
        if values.len() > MAX_ENUM_VALUES {
            let msg = format!(
                "{} values, more than the limit of {MAX_ENUM_VALUES}",
                values.len()
            );
            self.push(path, msg);
            return;
        }
        for (i, x) in values.iter().enumerate() {
            if !matches!(x, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                let msg = format!("expected a string, number or boolean, got {}", kind(x));
                self.push(&format!("{path}[{i}]"), msg);
            }
        }
    }

    fn pattern(&mut self, v: &Value, path: &str) {
        let Some(p) = self.string(v, path) else {
            return;
        };
        let len = p.chars().count();
        if len > MAX_PATTERN_LEN {
            let msg = format!("{len} characters, longer than the limit of {MAX_PATTERN_LEN}");
            self.push(path, msg);
        } else if let Err(e) = compile_pattern(p) {
            // The regex crate's message spans lines (it draws the position); keep one line.
            let first = e.to_string().lines().last().unwrap_or_default().to_string();
            self.push(path, format!("not a usable regular expression: {first}"));
        }
    }

    fn event(&mut self, v: &Value, path: &str) {
        let Some(m) = self.object(v, path) else {
            return;
        };
        self.keys(m, path, EVENT_KEYS);
        if let Some(p) = m.get("properties") {
            self.props(p, &child(path, "properties"));
        }
        if let Some(x) = m.get("extra_keys") {
            let at = child(path, "extra_keys");
            if let Some(x) = self.string(x, &at).filter(|x| !EXTRA_KEYS.contains(x)) {
                let msg = format!(
                    "unknown value {x:?} (expected one of: {})",
                    EXTRA_KEYS.join(", ")
                );
                self.push(&at, msg);
            }
        }
        if let Some(d) = m.get("deprecated") {
            self.boolean(d, &child(path, "deprecated"));
        }
        if let Some(ver) = m.get("version") {
            self.version(ver, &child(path, "version"));
        }
    }

    fn user_attributes(&mut self, v: &Value, path: &str) {
        let Value::Array(items) = v else {
            self.push(path, format!("expected an array, got {}", kind(v)));
            return;
        };
        if items.len() > crate::envelope::MAX_USER_ATTRIBUTES {
            let e = crate::envelope::AttributePatternError::TooMany(items.len());
            self.push(path, e.to_string());
            return;
        }
        let mut names = Vec::with_capacity(items.len().min(MAX_ENTRIES));
        for (i, x) in items.iter().enumerate() {
            if let Some(s) = self.string(x, &format!("{path}[{i}]")) {
                names.push(s);
            }
        }
        if let Err(e) = UserAttributes::new(&names) {
            match e.index() {
                Some(i) => self.push(&format!("{path}[{i}]"), e.to_string()),
                None => self.push(path, e.to_string()),
            }
        }
    }
}

/// Checks a parsed catalog file, pushing every problem (the first [`MAX_PROBLEMS`]); returns
/// how many more were found.
pub(super) fn catalog(v: &Value, problems: &mut Vec<CatalogProblem>) -> usize {
    let mut w = Walk { problems, more: 0 };
    w.top(v);
    w.more
}

impl Walk<'_> {
    fn top(&mut self, v: &Value) {
        let w = self;
        let Some(m) = w.object(v, "$") else {
            return;
        };
        w.keys(m, "$", TOP_KEYS);
        match m.get("catalog") {
            None => w.push("$", "`catalog` is missing (komo or acemate)"),
            Some(c) => {
                if let Some(c) = w
                    .string(c, "$.catalog")
                    .filter(|c| !matches!(*c, "komo" | "acemate"))
                {
                    w.push(
                        "$.catalog",
                        format!("unknown catalog {c:?} (expected komo or acemate)"),
                    );
                }
            }
        }
        if let Some(ver) = m.get("version") {
            w.version(ver, "$.version");
        }
        if let Some(d) = m.get("description") {
            w.string(d, "$.description");
        }
        for key in ["common", "identify"] {
            if let Some(p) = m.get(key) {
                w.props(p, &child("$", key));
            }
        }
        if let Some(events) = m.get("events") {
            if let Some(events) = w.bounded(events, "$.events") {
                for (name, ev) in events {
                    if name.trim().is_empty() {
                        w.push(&child("$.events", name), "an event name must not be empty");
                    }
                    w.event(ev, &child("$.events", name));
                }
            }
        }
        if let Some(u) = m.get("user_attributes") {
            w.user_attributes(u, "$.user_attributes");
        }
    }
}
