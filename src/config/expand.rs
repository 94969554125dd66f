//! Layering (TOML file + `EVENT_RELAY__SECTION__KEY` environment) and `${VAR}` expansion.
//!
//! The `config` crate merges the file and the environment into one tree; we take that tree as
//! JSON, expand `${VAR}` references inside every string (so secrets never sit in the file), and
//! hand it to serde. A reference to an unset variable is an error naming its key path.

use super::problem::{ConfigError, Problem};
use serde_json::Value;
use std::collections::BTreeMap;

/// A `${VAR}` reference that cannot be expanded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated ${{...}} reference")]
    Unterminated,
    #[error("invalid variable name {0:?} in ${{...}} reference")]
    InvalidName(String),
    #[error("environment variable {0} is not set")]
    Unset(String),
}

/// An `EVENT_RELAY__...` override that names no place in the tree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("empty key segment (two separators in a row?)")]
    EmptySegment,
    #[error("{path} has {len} elements, no element {index}")]
    NoElement {
        path: String,
        len: usize,
        index: usize,
    },
    #[error("{0} is not a list")]
    NotAList(String),
    #[error("{0} is not a table")]
    NotATable(String),
    #[error("{path} is a list: name an element by its index, e.g. {example}")]
    NeedsAnIndex { path: String, example: String },
}

/// Prefix of environment overrides: `EVENT_RELAY__KAFKA__BROKERS=...`.
pub const ENV_PREFIX: &str = "EVENT_RELAY";

/// Where an `EVENT_RELAY__...` variable put its value: the key paths a problem with that
/// value is reported at, and the table it made when the file had none there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Override {
    pub variable: String,
    pub paths: Vec<String>,
}

/// The file and the environment as one tree, with what is known of where its values came
/// from.
pub(super) struct Layered {
    /// The file's tree with the overrides applied and `${VAR}` references expanded.
    pub tree: Value,
    /// Overrides that name no place in the tree, and references that cannot be expanded.
    pub problems: Vec<Problem>,
    /// The overrides applied.
    pub overrides: Vec<Override>,
}

/// The file as a JSON tree with the environment's overrides applied and `${VAR}` references
/// expanded. `Err` only when the file is not TOML; problems with overrides or references are
/// returned beside the tree (which is still usable), so `check` can report them with the rest.
/// An override that names no place changes nothing; a reference that cannot be expanded
/// stays as written, and its problem names its key path.
pub(super) fn layered_tree(
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<Layered, ConfigError> {
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::single("", format!("cannot parse config: {e}")))?;
    let mut tree: Value = built
        .try_deserialize()
        .map_err(|e| ConfigError::single("", format!("cannot parse config: {e}")))?;
    if !tree.is_object() {
        tree = Value::Object(Default::default());
    }
    let mut problems = Vec::new();
    let mut overrides = Vec::new();
    let prefix = format!("{ENV_PREFIX}__");
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        // All or nothing: a failed override leaves no table it made on the way.
        let mut changed = tree.clone();
        match apply_override(&mut changed, rest, value) {
            Ok(made) => {
                tree = changed;
                let mut paths = override_paths(rest);
                paths.extend(made);
                overrides.push(Override {
                    variable: name.clone(),
                    paths,
                });
            }
            Err(msg) => problems.push(Problem::new(name, msg)),
        }
    }
    expand_value(&mut tree, String::new(), env, &mut problems);
    Ok(Layered {
        tree,
        problems,
        overrides,
    })
}

/// The key paths the variable `EVENT_RELAY__{rest}` sets, as problems name them
/// (`TARGETS__0__URL` → `targets[0].url`; a librdkafka property both as
/// `kafka.options.sasl.password` and `kafka.options."sasl.password"`).
pub(super) fn override_paths(rest: &str) -> Vec<String> {
    let segs: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if segs.len() > 2 && segs[0] == "kafka" && segs[1] == "options" {
        let key = segs[2..].join(".").replace('_', ".");
        return vec![
            format!("kafka.options.{key}"),
            format!("kafka.options.\"{key}\""),
        ];
    }
    vec![segs
        .iter()
        .fold(String::new(), |path, seg| step(&path, seg))]
}

/// `path` one segment further: `targets` + `0` → `targets[0]`, `targets[0]` + `url` →
/// `targets[0].url`.
fn step(path: &str, seg: &str) -> String {
    match seg.parse::<usize>() {
        Ok(i) => format!("{path}[{i}]"),
        Err(_) if path.is_empty() => seg.to_string(),
        Err(_) => format!("{path}.{seg}"),
    }
}

/// Applies one `EVENT_RELAY__...` override; returns the path of the table it made where the
/// file had none (the top-most), if any. Segments are separated by `__` and matched
/// case-insensitively; a number selects an array element (`TARGETS__0__URL`); a value for a
/// key that holds a list is split on commas (`DEFAULT_TARGETS=crm,posthog`); under
/// `KAFKA__OPTIONS__` the rest names a librdkafka property with `_` for `.`
/// (`KAFKA__OPTIONS__SASL_PASSWORD` → `sasl.password`).
fn apply_override(
    tree: &mut Value,
    rest: &str,
    value: &str,
) -> Result<Option<String>, OverrideError> {
    let segs: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if segs.iter().any(String::is_empty) {
        return Err(OverrideError::EmptySegment);
    }
    let mut made = None;
    if segs.len() > 2 && segs[0] == "kafka" && segs[1] == "options" {
        let key = segs[2..].join(".").replace('_', ".");
        let kafka = object_entry(tree, "kafka", "", &mut made)?;
        let options = object_entry(kafka, "options", "kafka", &mut made)?;
        options
            .as_object_mut()
            .ok_or_else(|| OverrideError::NotATable("kafka.options".into()))?
            .insert(key, Value::String(value.to_string()));
        return Ok(made);
    }
    let (last, parents) = segs.split_last().expect("split never yields nothing");
    let mut cur = tree;
    let mut path = String::new();
    for (n, seg) in parents.iter().enumerate() {
        let index_next = segs[n + 1].parse::<usize>().ok();
        cur = match (seg.parse::<usize>(), index_next) {
            (Ok(i), _) => element(cur, i, &path)?,
            // No list to take an element of: the file has none there.
            (Err(_), Some(index)) if cur.get(seg.as_str()).is_none() => {
                return Err(OverrideError::NoElement {
                    path: step(&path, seg),
                    len: 0,
                    index,
                });
            }
            (Err(_), _) => object_entry(cur, seg, &path, &mut made)?,
        };
        path = step(&path, seg);
        if cur.is_array() && index_next.is_none() {
            let example = with_index(&segs, n);
            return Err(OverrideError::NeedsAnIndex { path, example });
        }
    }
    let new = |old: Option<&Value>| match old {
        Some(Value::Array(_)) => Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| Value::String(v.to_string()))
                .collect(),
        ),
        _ => Value::String(value.to_string()),
    };
    match last.parse::<usize>() {
        Ok(i) => {
            let slot = element(cur, i, &path)?;
            *slot = new(Some(slot));
        }
        Err(_) => {
            let obj = cur
                .as_object_mut()
                .ok_or_else(|| OverrideError::NotATable(path.clone()))?;
            let v = new(obj.get(last.as_str()));
            obj.insert(last.clone(), v);
        }
    }
    Ok(made)
}

/// The variable with an index after segment `n`, which holds a list (`TARGETS__NAME` →
/// `EVENT_RELAY__TARGETS__0__NAME`).
fn with_index(segs: &[String], n: usize) -> String {
    let mut upper: Vec<String> = segs.iter().map(|s| s.to_ascii_uppercase()).collect();
    upper.insert(n + 1, "0".into());
    format!("{ENV_PREFIX}__{}", upper.join("__"))
}

/// The table under `key` of the table `v` (at `path`), created when missing (its path then
/// kept in `made`, unless a table above it was made already).
fn object_entry<'a>(
    v: &'a mut Value,
    key: &str,
    path: &str,
    made: &mut Option<String>,
) -> Result<&'a mut Value, OverrideError> {
    let obj = v
        .as_object_mut()
        .ok_or_else(|| OverrideError::NotATable(path.to_string()))?;
    if !obj.contains_key(key) {
        made.get_or_insert_with(|| step(path, key));
    }
    Ok(obj
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Default::default())))
}

/// Element `index` of the list `v` (at `path`).
fn element<'a>(v: &'a mut Value, index: usize, path: &str) -> Result<&'a mut Value, OverrideError> {
    let list = v
        .as_array_mut()
        .ok_or_else(|| OverrideError::NotAList(path.to_string()))?;
    let len = list.len();
    list.get_mut(index).ok_or(OverrideError::NoElement {
        path: path.to_string(),
        len,
        index,
    })
}

fn expand_value(
    value: &mut Value,
    path: String,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(e) => problems.push(Problem::new(&path, e)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, format!("{path}[{i}]"), env, problems);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expand_value(v, child, env, problems);
            }
        }
        _ => {}
    }
}

/// Expands `${VAR}` references in `s` (a `$` not followed by `{` stays as it is).
pub fn expand_str(s: &str, env: &BTreeMap<String, String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after.find('}').ok_or(ExpandError::Unterminated)?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ExpandError::InvalidName(name.to_string()));
        }
        match env.get(name) {
            Some(v) => out.push_str(v),
            None => return Err(ExpandError::Unset(name.to_string())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_references() {
        let e = env(&[("TOKEN", "s3cret")]);
        assert_eq!(expand_str("Bearer ${TOKEN}", &e).unwrap(), "Bearer s3cret");
        assert_eq!(expand_str("plain", &e).unwrap(), "plain");
        assert_eq!(
            expand_str("${MISSING}", &e).unwrap_err(),
            ExpandError::Unset("MISSING".into())
        );
        assert!(expand_str("${OPEN", &e).is_err());
    }

    #[test]
    fn env_overrides_file() {
        let e = env(&[("EVENT_RELAY__KAFKA__BROKERS", "other:9092")]);
        let layered = layered_tree("[kafka]\nbrokers = \"a:1\"\n", &e).unwrap();
        assert!(layered.problems.is_empty());
        assert_eq!(layered.tree["kafka"]["brokers"], "other:9092");
    }

    #[test]
    fn env_overrides_list_elements_lists_and_librdkafka_keys() {
        let text = "default_targets = [\"a\"]\n[[targets]]\nname = \"crm\"\nurl = \"http://x\"\n";
        let e = env(&[
            ("EVENT_RELAY__TARGETS__0__URL", "https://crm.example.com"),
            ("EVENT_RELAY__DEFAULT_TARGETS", "crm, posthog"),
            ("EVENT_RELAY__KAFKA__OPTIONS__SASL_PASSWORD", "pw"),
            ("EVENT_RELAY__KAFKA__OPTIONS__SECURITY_PROTOCOL", "SASL_SSL"),
            ("EVENT_RELAY__TARGETS__3__URL", "https://nowhere"),
        ]);
        let Layered { tree, problems, .. } = layered_tree(text, &e).unwrap();
        assert_eq!(tree["targets"][0]["url"], "https://crm.example.com");
        assert_eq!(tree["targets"][0]["name"], "crm");
        assert_eq!(
            tree["default_targets"],
            serde_json::json!(["crm", "posthog"])
        );
        assert_eq!(tree["kafka"]["options"]["sasl.password"], "pw");
        assert_eq!(tree["kafka"]["options"]["security.protocol"], "SASL_SSL");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "EVENT_RELAY__TARGETS__3__URL");
        assert!(problems[0].message.contains("no element 3"), "{problems:?}");
    }

    #[test]
    fn a_failed_override_changes_nothing_and_each_names_the_paths_it_sets() {
        let e = env(&[
            ("EVENT_RELAY__TARGETS__0__URL", "https://x"),
            ("EVENT_RELAY__KAFKA__BROKERS__HOST", "x"),
            ("EVENT_RELAY__LOG__LEVEL", "debug"),
        ]);
        let layered = layered_tree("[kafka]\nbrokers = \"a:1\"\n", &e).unwrap();
        assert_eq!(
            layered.tree,
            serde_json::json!({ "kafka": { "brokers": "a:1" }, "log": { "level": "debug" } }),
            "no `targets` table left behind"
        );
        let failed: Vec<&str> = layered.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            failed,
            [
                "EVENT_RELAY__KAFKA__BROKERS__HOST",
                "EVENT_RELAY__TARGETS__0__URL"
            ]
        );
        assert_eq!(
            layered.overrides,
            [Override {
                variable: "EVENT_RELAY__LOG__LEVEL".into(),
                paths: vec!["log.level".into(), "log".into()],
            }]
        );
        assert_eq!(
            override_paths("TARGETS__2__RETRY__HOLD"),
            ["targets[2].retry.hold"]
        );
        assert_eq!(
            override_paths("KAFKA__OPTIONS__SASL_MECHANISM"),
            [
                "kafka.options.sasl.mechanism",
                "kafka.options.\"sasl.mechanism\""
            ]
        );
    }
}
