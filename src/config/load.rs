//! Loading: the file, the environment's overrides and `${VAR}` expansion into one tree, then
//! deserialization and `validate()`, collecting every problem with its key path.

use super::validate::{ConfigError, Problem};
use super::{expand, Config};
use std::collections::BTreeMap;
use std::path::Path;

/// Loads a config file with environment overrides and `${VAR}` expansion, then validates it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::single(
            "",
            format!("cannot read config file {}: {e}", path.display()),
        )
    })?;
    load_str(&text, std::env::vars())
}

/// Loads config text with the given environment (tests pass their own).
///
/// Every problem is reported at once: a structural problem (unknown key, wrong type, bad
/// duration) is recorded, the offending value is taken out and loading goes on, so the
/// semantic checks of `validate()` still run on the rest.
pub fn load_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let (mut tree, mut problems) = expand::layered_tree(text, &env)?;
    // Paths taken out of the tree: a later "missing field" for one of them is the same problem.
    let mut removed: Vec<Vec<String>> = Vec::new();
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(config) => {
                if let Err(e) = config.validate() {
                    problems.extend(e.problems);
                }
                return if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(ConfigError { problems })
                };
            }
            Err(e) => {
                let segments = path_segments(e.path());
                let shown = e.path().to_string();
                let message = e.into_inner().to_string();
                if let Some(field) = missing_field(&message) {
                    let mut full = segments.clone();
                    if full == ["."] || shown == "." {
                        full.clear();
                    }
                    full.push(field.to_string());
                    if !removed.contains(&full) {
                        problems.push(Problem::new(
                            if shown == "." { "" } else { &shown },
                            message,
                        ));
                    }
                    // A required value is missing: nothing further can be loaded.
                    break;
                }
                problems.push(Problem::new(
                    if shown == "." { "" } else { &shown },
                    message,
                ));
                if !remove_at(&mut tree, &segments) {
                    break;
                }
                removed.push(segments);
            }
        }
    }
    Err(ConfigError { problems })
}

/// The path of a deserialization error as plain segments (`targets`, `0`, `url`).
fn path_segments(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// `"missing field `x`"` → `x`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Takes the value at `segments` out of the tree; `false` when there is none.
fn remove_at(tree: &mut serde_json::Value, segments: &[String]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = tree;
    for seg in parents {
        cur = match cur {
            serde_json::Value::Object(m) => match m.get_mut(seg) {
                Some(v) => v,
                None => return false,
            },
            serde_json::Value::Array(a) => {
                match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                    Some(v) => v,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    match cur {
        serde_json::Value::Object(m) => m.remove(last).is_some(),
        serde_json::Value::Array(a) => match last.parse::<usize>() {
            // Replace rather than remove, so the other elements keep their indices.
            Ok(i) if i < a.len() && !a[i].is_null() => {
                a[i] = serde_json::Value::Null;
                true
            }
            _ => false,
        },
        _ => false,
    }
}
