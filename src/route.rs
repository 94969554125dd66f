//! Routing: which targets receive an envelope, compiled once from `[[routes]]`.
//!
//! Every matching route fires (fan-out) unless a matching route says `continue = false`;
//! events no route matched go to `default_targets`, else they are unrouted (final at once).

use crate::config::{Condition, Config, Operator, RouteConfig};
use crate::envelope::{Envelope, Source};
use regex::Regex;
use serde_json::Value;

/// Why routes cannot be compiled; `Config::validate` reports the same problems, so a loaded
/// config never has them.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("routes[{route}].targets[{index}]: unknown target {name:?}")]
    UnknownTarget {
        route: usize,
        index: usize,
        name: String,
    },
    #[error("default_targets[{index}]: unknown target {name:?}")]
    UnknownDefaultTarget { index: usize, name: String },
    #[error("routes[{route}].events: {source}")]
    Glob { route: usize, source: regex::Error },
}

/// The event-name globs of one route, compiled once: `*` matches any run of characters, `?`
/// exactly one character, everything else itself; a leading `!` makes a glob exclude. Also
/// `event-relay redrive --event`'s matcher, so both read a glob the same way.
///
/// Each side is one anchored regex (`^(?:glob|glob)$`). `globset` was the other candidate, but
/// it matches bytes, so its `?` would not match one non-ASCII character as this syntax does.
#[derive(Debug)]
pub struct EventGlobs {
    /// Names must match one of these (`None`: no include globs, every name does).
    include: Option<Regex>,
    /// Names matching one of these are excluded.
    exclude: Option<Regex>,
}

impl EventGlobs {
    /// Compiles `globs` (an empty list matches every name).
    pub fn new(globs: &[String]) -> Result<Self, regex::Error> {
        let (exclude, include): (Vec<&str>, Vec<&str>) = globs
            .iter()
            .map(String::as_str)
            .partition(|g| g.starts_with('!'));
        let exclude: Vec<&str> = exclude.iter().map(|g| &g[1..]).collect();
        Ok(Self {
            include: any_of(&include)?,
            exclude: any_of(&exclude)?,
        })
    }

    /// Whether the event name `name` is matched.
    pub fn matches(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|re| re.is_match(name))
            && !self.exclude.as_ref().is_some_and(|re| re.is_match(name))
    }
}

/// One regex matching exactly the names that match any of `globs`; `None` for no globs.
fn any_of(globs: &[&str]) -> Result<Option<Regex>, regex::Error> {
    if globs.is_empty() {
        return Ok(None);
    }
    let alternatives: Vec<String> = globs.iter().map(|g| glob_regex(g)).collect();
    Regex::new(&format!("^(?s:{})$", alternatives.join("|"))).map(Some)
}

/// The regex of one glob: `*` → `.*`, `?` → `.`, anything else literally.
fn glob_regex(glob: &str) -> String {
    let mut re = String::with_capacity(glob.len() + 8);
    let mut buf = [0u8; 4];
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut buf))),
        }
    }
    format!("(?:{re})")
}

/// Whether `text` matches `glob` (the matcher a route uses, for tests of the glob syntax).
#[cfg(test)]
fn glob_match(glob: &[char], text: &[char]) -> bool {
    let glob: String = glob.iter().collect();
    let text: String = text.iter().collect();
    EventGlobs::new(&[glob]).unwrap().matches(&text)
}

/// JSON equality that treats numbers by value (`5` equals `5.0`) and lets a string field
/// equal a number written as text (Komo sends numbers as strings).
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.parse::<f64>().ok() == n.as_f64()
        }
        _ => a == b,
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether `c` holds for the envelope.
fn holds(c: &Condition, env: &Envelope) -> bool {
    let value = env.field(&c.field);
    let v = value.as_deref().filter(|v| !v.is_null());
    match (&c.op, v) {
        (Operator::Exists(want), v) => v.is_some() == *want,
        (Operator::NotEquals(x), None) => !x.is_null(),
        (Operator::NotIn(_), None) => true,
        (_, None) => false,
        (Operator::Equals(x), Some(v)) => loose_eq(v, x),
        (Operator::NotEquals(x), Some(v)) => !loose_eq(v, x),
        (Operator::In(xs), Some(v)) => xs.iter().any(|x| loose_eq(v, x)),
        (Operator::NotIn(xs), Some(v)) => !xs.iter().any(|x| loose_eq(v, x)),
        (Operator::Matches(re), Some(Value::String(s))) => re.0.is_match(s),
        // Komo sends numbers and booleans as strings and the normalizer types them: match
        // their text form, so `matches = "^6$"` still works on a coerced `score`.
        (Operator::Matches(re), Some(v @ (Value::Number(_) | Value::Bool(_)))) => {
            re.0.is_match(&v.to_string())
        }
        (Operator::Matches(_), Some(_)) => false,
        (Operator::Gt(x), Some(v)) => as_number(v).is_some_and(|n| n > *x),
        (Operator::Gte(x), Some(v)) => as_number(v).is_some_and(|n| n >= *x),
        (Operator::Lt(x), Some(v)) => as_number(v).is_some_and(|n| n < *x),
        (Operator::Lte(x), Some(v)) => as_number(v).is_some_and(|n| n <= *x),
    }
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    sources: Vec<Source>,
    events: EventGlobs,
    conditions: Vec<Condition>,
    /// Indices into the config's target list.
    pub targets: Vec<usize>,
    pub continue_: bool,
}

impl Route {
    fn compile(
        i: usize,
        r: &RouteConfig,
        target_index: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<Self, RouteError> {
        let targets = r
            .targets
            .iter()
            .enumerate()
            .map(|(index, t)| {
                target_index(t).ok_or_else(|| RouteError::UnknownTarget {
                    route: i,
                    index,
                    name: t.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: r.name.clone(),
            sources: r.sources.clone(),
            events: EventGlobs::new(&r.events)
                .map_err(|source| RouteError::Glob { route: i, source })?,
            conditions: r.conditions.clone(),
            targets,
            continue_: r.continue_,
        })
    }

    /// Whether this route takes the envelope.
    pub fn matches(&self, env: &Envelope) -> bool {
        (self.sources.is_empty() || self.sources.contains(&env.source))
            && self.events.matches(&env.event)
            && self.conditions.iter().all(|c| holds(c, env))
    }
}

/// The routing table.
#[derive(Debug)]
pub struct Router {
    pub routes: Vec<Route>,
    pub default_targets: Vec<usize>,
}

/// Which routes matched and which targets (indices, deduplicated, in order) receive the event.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub routes: Vec<usize>,
    pub targets: Vec<usize>,
    pub defaulted: bool,
}

impl Router {
    /// Compiles the routes of a validated config.
    pub fn new(config: &Config) -> Result<Self, RouteError> {
        let index = |name: &str| config.targets.iter().position(|t| t.name == name);
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::compile(i, r, &index))
            .collect::<Result<_, _>>()?;
        let default_targets = config
            .default_targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                index(t).ok_or_else(|| RouteError::UnknownDefaultTarget {
                    index: i,
                    name: t.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            routes,
            default_targets,
        })
    }

    /// Evaluates the routes for one envelope.
    pub fn route(&self, env: &Envelope) -> Decision {
        let mut d = Decision::default();
        for (i, r) in self.routes.iter().enumerate() {
            if r.matches(env) {
                d.routes.push(i);
                for t in &r.targets {
                    if !d.targets.contains(t) {
                        d.targets.push(*t);
                    }
                }
                if !r.continue_ {
                    break;
                }
            }
        }
        if d.routes.is_empty() && !self.default_targets.is_empty() {
            d.targets = self.default_targets.clone();
            d.defaulted = true;
        }
        d
    }
}

#[cfg(test)]
mod tests;
