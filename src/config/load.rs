//! Loading: the file, the environment's overrides and `${VAR}` expansion into one tree, then
//! deserialization and `validate()`, collecting every problem with its key path.

use super::problem::ConfigError;
use super::salvage::{Salvage, Seg};
use super::{expand, keypath, Config};
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
    let layered = expand::layered_tree(text, &env)?;
    let mut salvage = Salvage::new(layered.problems);
    let mut config = salvage.deserialize::<Config>(layered.tree, &stand_in);
    if let (Some(config), Some(dir)) = (config.as_mut(), dir) {
        resolve_paths(config, dir);
    }
    if let Some(Err(e)) = config.as_ref().map(Config::validate) {
        salvage.add_semantic(e.problems);
    }
    let mut problems = salvage.into_problems();
    name_overrides(&mut problems, &layered.overrides);
    Ok((config, problems))
}

/// Names the `EVENT_RELAY__...` variable beside each problem with a value it set, so the
/// user looks in the environment, not in the file (`EVENT_RELAY__KAFKA__BROKER →
/// kafka.broker: unknown key`). For problems found after loading (e.g. librdkafka's verdict
/// on `kafka.options`), with the environment the config was loaded with.
pub fn name_variables(
    problems: &mut [super::Problem],
    env: impl IntoIterator<Item = (String, String)>,
) {
    let prefix = format!("{}__", expand::ENV_PREFIX);
    let overrides: Vec<expand::Override> = env
        .into_iter()
        .filter_map(|(name, _)| {
            let paths = expand::override_paths(name.strip_prefix(&prefix)?);
            Some(expand::Override {
                variable: name,
                paths,
            })
        })
        .collect();
    name_overrides(problems, &overrides);
}

fn name_overrides(problems: &mut [super::Problem], overrides: &[expand::Override]) {
    for p in problems.iter_mut().filter(|p| p.variable.is_none()) {
        p.variable = overrides
            .iter()
            .find(|o| o.paths.iter().any(|at| keypath::is_under(&p.path, at)))
            .map(|o| o.variable.clone());
    }
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
/// and never itself checked where it differs from what was written. It is what was written
/// (by now only the keys that deserialize) with each missing required key made up, so the
/// keys beside a broken one are still checked (a target's `url` beside an unknown `kind`), the
/// name or topic written is kept (routes referring to a broken target do not also report it
/// unknown, and duplicates are still found), and what was not written is not reported.
fn stand_in(path: &[Seg], raw: &Value) -> Option<Value> {
    let [Seg::Key(section), rest @ ..] = path else {
        return None;
    };
    let required = match (section.as_str(), rest) {
        ("kafka", []) => json!({ "brokers": "" }),
        ("results" | "dead_letter", []) => json!({ "topic": "" }),
        ("sources", [Seg::Index(_)]) => json!({ "topic": "", "format": "auto" }),
        ("targets", [Seg::Index(_)]) => {
            json!({ "name": "", "kind": "webhook", "url": "http://stand-in" })
        }
        ("catalogs", [Seg::Index(_)]) => json!({ "path": "stand-in" }),
        ("routes", [Seg::Index(_)]) => json!({ "name": "", "targets": [] }),
        _ => return None,
    };
    let (Value::Object(mut written), Value::Object(required)) = (raw.clone(), required.clone())
    else {
        return Some(required);
    };
    if section == "targets" && !written.contains_key("kind") {
        // The made-up kind is not the one meant: leave out what only one kind may have.
        for key in KIND_SPECIFIC {
            written.remove(*key);
        }
    }
    for (key, value) in required {
        written.entry(key).or_insert(value);
    }
    Some(Value::Object(written))
}

/// Target keys that the checks of one kind reject and those of the other accept.
const KIND_SPECIFIC: &[&str] = &["api_key", "batch_max_events"];
