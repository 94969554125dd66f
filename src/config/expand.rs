//! Layering (TOML file + `EVENT_RELAY__SECTION__KEY` environment) and `${VAR}` expansion.
//!
//! The `config` crate merges the file and the environment into one tree; we take that tree as
//! JSON, expand `${VAR}` references inside every string (so secrets never sit in the file), and
//! hand it to serde. A reference to an unset variable is an error naming its key path.

use super::validate::ConfigError;
use serde_json::Value;
use std::collections::BTreeMap;

/// Prefix of environment overrides: `EVENT_RELAY__KAFKA__BROKERS=...`.
pub const ENV_PREFIX: &str = "EVENT_RELAY";

/// The file as a JSON tree with the environment's overrides applied and `${VAR}` references
/// expanded. `Err` only when the file is not TOML; problems with overrides or references are
/// returned beside the tree (which is still usable), so `check` can report them with the rest.
pub(super) fn layered_tree(
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<(Value, Vec<super::Problem>), ConfigError> {
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
    let prefix = format!("{ENV_PREFIX}__");
    for (name, value) in env {
        if let Some(rest) = name.strip_prefix(&prefix) {
            if let Err(msg) = apply_override(&mut tree, rest, value) {
                problems.push(super::Problem::new(name, msg));
            }
        }
    }
    expand_value(&mut tree, String::new(), env, &mut problems);
    Ok((tree, problems))
}

/// Applies one `EVENT_RELAY__...` override. Segments are separated by `__` and matched
/// case-insensitively; a number selects an array element (`TARGETS__0__URL`); a value for a
/// key that holds a list is split on commas (`DEFAULT_TARGETS=crm,posthog`); under
/// `KAFKA__OPTIONS__` the rest names a librdkafka property with `_` for `.`
/// (`KAFKA__OPTIONS__SASL_PASSWORD` → `sasl.password`).
fn apply_override(tree: &mut Value, rest: &str, value: &str) -> Result<(), String> {
    let segs: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if segs.iter().any(String::is_empty) {
        return Err("empty key segment (two separators in a row?)".into());
    }
    if segs.len() > 2 && segs[0] == "kafka" && segs[1] == "options" {
        let key = segs[2..].join(".").replace('_', ".");
        let kafka = object_entry(tree, "kafka")?;
        let options = object_entry(kafka, "options")?;
        options
            .as_object_mut()
            .ok_or("kafka.options is not a table")?
            .insert(key, Value::String(value.to_string()));
        return Ok(());
    }
    let (last, parents) = segs.split_last().expect("split never yields nothing");
    let mut cur = tree;
    let mut path = String::new();
    for seg in parents {
        cur = match seg.parse::<usize>() {
            Ok(i) => {
                let len = cur.as_array().map(Vec::len);
                cur.as_array_mut()
                    .and_then(|a| a.get_mut(i))
                    .ok_or_else(|| match len {
                        Some(n) => format!("{path} has {n} elements, no element {i}"),
                        None => format!("{path} is not a list"),
                    })?
            }
            Err(_) => object_entry(cur, seg)?,
        };
        path = if path.is_empty() {
            seg.clone()
        } else {
            format!("{path}.{seg}")
        };
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
            let slot = cur
                .as_array_mut()
                .and_then(|a| a.get_mut(i))
                .ok_or_else(|| format!("{path} has no element {i}"))?;
            *slot = new(Some(slot));
        }
        Err(_) => {
            let obj = cur
                .as_object_mut()
                .ok_or_else(|| format!("{path} is not a table"))?;
            let v = new(obj.get(last.as_str()));
            obj.insert(last.clone(), v);
        }
    }
    Ok(())
}

/// The table under `key`, created when missing.
fn object_entry<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Value, String> {
    let obj = v
        .as_object_mut()
        .ok_or_else(|| format!("cannot set {key}: its parent is not a table"))?;
    Ok(obj
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Default::default())))
}

fn expand_value(
    value: &mut Value,
    path: String,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<super::Problem>,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(msg) => problems.push(super::Problem::new(&path, msg)),
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
pub fn expand_str(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${...} reference".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid variable name {name:?} in ${{...}} reference"
            ));
        }
        match env.get(name) {
            Some(v) => out.push_str(v),
            None => return Err(format!("environment variable {name} is not set")),
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
        assert!(expand_str("${MISSING}", &e)
            .unwrap_err()
            .contains("MISSING"));
        assert!(expand_str("${OPEN", &e).is_err());
    }

    #[test]
    fn env_overrides_file() {
        let e = env(&[("EVENT_RELAY__KAFKA__BROKERS", "other:9092")]);
        let (tree, problems) = layered_tree("[kafka]\nbrokers = \"a:1\"\n", &e).unwrap();
        assert!(problems.is_empty());
        assert_eq!(tree["kafka"]["brokers"], "other:9092");
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
        let (tree, problems) = layered_tree(text, &e).unwrap();
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
}
