//! Loading: the file, the environment's overrides and `${VAR}` expansion into one tree, then
//! deserialization and `validate()`, collecting every problem with its key path.

use super::problem::ConfigError;
use super::salvage::{Salvage, Seg};
use super::{expand, Config};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Loads a config file with environment overrides and `${VAR}` expansion, then validates it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match load_partial(path) {
        (Some(config), problems) if problems.is_empty() => Ok(config),
        (_, problems) => Err(ConfigError { problems }),
    }
}

/// [`load`], keeping what loaded even when there are problems (broken parts replaced by
/// stand-ins), so checks that need the config (its programs, its catalog files) can still
/// run and `check` reports every problem at once.
pub fn load_partial(path: &Path) -> (Option<Config>, Vec<super::Problem>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let message = format!("cannot read config file {}: {e}", path.display());
            return (None, ConfigError::single("", message).problems);
        }
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    match load_salvaged(&text, std::env::vars(), Some(dir)) {
        Ok((config, problems)) => (config, problems),
        Err(e) => (None, e.problems),
    }
}

/// Loads config text with the given environment (tests pass their own).
///
/// Every problem is reported at once, each once: a structural problem (unknown key, wrong
/// type, unknown variant, bad duration) is recorded and loading goes on without the offending
/// value — a broken section or list element is replaced by a stand-in — so the semantic checks
/// of `validate()` still run on everything else.
///
/// Relative `[[catalogs]]`, `targets[].transform_file`, `targets[].tls` file paths and
/// `targets[].auth.token_file` stay as they are written ([`load`] resolves them against the
/// config file's directory).
pub fn load_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    load_in(text, env, None)
}

/// [`load_str`], with relative file paths resolved against `dir` when given.
fn load_in(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    match load_salvaged(text, env, dir)? {
        (Some(config), problems) if problems.is_empty() => Ok(config),
        (_, problems) => Err(ConfigError { problems }),
    }
}

/// What loaded (if anything) and every problem found; `Err` when the text is not TOML.
fn load_salvaged(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    dir: Option<&Path>,
) -> Result<(Option<Config>, Vec<super::Problem>), ConfigError> {
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let (tree, problems) = expand::layered_tree(text, &env)?;
    let mut salvage = Salvage::new(problems);
    let mut config = salvage.deserialize::<Config>(tree, &stand_in);
    if let (Some(config), Some(dir)) = (config.as_mut(), dir) {
        resolve_paths(config, dir);
    }
    if let Some(Err(e)) = config.as_ref().map(Config::validate) {
        salvage.add_semantic(e.problems);
    }
    Ok((config, salvage.into_problems()))
}

/// Relative file paths made relative to the config file's directory `dir`: `[[catalogs]]`,
/// `targets[].transform_file` and the `targets[].tls` files.
fn resolve_paths(config: &mut Config, dir: &Path) {
    let resolve = |file: &mut std::path::PathBuf| {
        if file.is_relative() && !file.as_os_str().is_empty() {
            *file = dir.join(&*file);
        }
    };
    for c in &mut config.catalogs {
        resolve(&mut c.path);
    }
    for t in &mut config.targets {
        let tls = &mut t.tls;
        let token_file = match t.auth.as_mut() {
            Some(super::AuthConfig::Bearer(b)) => Some(&mut b.token_file),
            _ => None,
        };
        let files = [
            t.transform_file.as_mut(),
            tls.ca_file.as_mut(),
            tls.client_cert_file.as_mut(),
            tls.client_key_file.as_mut(),
            token_file,
        ];
        files.into_iter().flatten().for_each(resolve);
    }
}

/// A stand-in for a required section or a list element that cannot be deserialized: valid,
/// keeping the name or topic that was written (so routes referring to a broken target do not
/// also report it unknown, and duplicates are still found), and never itself checked.
fn stand_in(path: &[Seg], raw: &Value) -> Option<Value> {
    let text = |key: &str| raw.get(key).and_then(Value::as_str).unwrap_or_default();
    let [Seg::Key(section), rest @ ..] = path else {
        return None;
    };
    Some(match (section.as_str(), rest) {
        ("kafka", []) => json!({ "brokers": "" }),
        ("results" | "dead_letter", []) => json!({ "topic": "" }),
        ("sources", [Seg::Index(_)]) => json!({ "topic": text("topic"), "format": "auto" }),
        ("targets", [Seg::Index(_)]) => {
            json!({ "name": text("name"), "kind": "webhook", "url": "http://stand-in" })
        }
        ("catalogs", [Seg::Index(_)]) => json!({ "path": "stand-in" }),
        ("routes", [Seg::Index(_)]) => {
            json!({ "name": text("name"), "targets": [], "continue": false })
        }
        _ => return None,
    })
}
