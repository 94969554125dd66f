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

pub(super) fn layered_tree(
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<Value, ConfigError> {
    let overrides: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(overrides)),
        )
        .build()
        .map_err(|e| ConfigError::single("", format!("cannot parse config: {e}")))?;
    let mut tree: Value = built
        .try_deserialize()
        .map_err(|e| ConfigError::single("", format!("cannot parse config: {e}")))?;
    let mut problems = Vec::new();
    expand_value(&mut tree, String::new(), env, &mut problems);
    if problems.is_empty() {
        Ok(tree)
    } else {
        Err(ConfigError { problems })
    }
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
        let tree = layered_tree("[kafka]\nbrokers = \"a:1\"\n", &e).unwrap();
        assert_eq!(tree["kafka"]["brokers"], "other:9092");
    }
}
