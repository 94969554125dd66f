//! Routing: which targets receive an envelope, compiled once from `[[routes]]`.
//!
//! Every matching route fires (fan-out) unless a matching route says `continue = false`;
//! events no route matched go to `default_targets`, else they are unrouted (final at once).

use crate::config::{ConditionConfig, Config, RouteConfig};
use crate::envelope::Envelope;
use serde_json::Value;

/// A compiled glob over event names (`*` any run, `?` one char); `!` prefix negates.
#[derive(Debug, Clone)]
struct Glob {
    pattern: Vec<char>,
    negate: bool,
}

impl Glob {
    fn new(text: &str) -> Self {
        let (negate, body) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        Self {
            pattern: body.chars().collect(),
            negate,
        }
    }

    fn matches(&self, name: &str) -> bool {
        let text: Vec<char> = name.chars().collect();
        glob_match(&self.pattern, &text)
    }
}

fn glob_match(p: &[char], t: &[char]) -> bool {
    // Iterative wildcard matching with single-star backtracking: O(p*t) worst case.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[derive(Debug)]
enum Op {
    Equals(Value),
    NotEquals(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Exists(bool),
    Matches(regex::Regex),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
}

#[derive(Debug)]
struct Condition {
    field: String,
    op: Op,
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

impl Condition {
    fn compile(c: &ConditionConfig) -> Result<Self, String> {
        let op = if let Some(v) = &c.equals {
            Op::Equals(v.clone())
        } else if let Some(v) = &c.not_equals {
            Op::NotEquals(v.clone())
        } else if let Some(v) = &c.in_ {
            Op::In(v.clone())
        } else if let Some(v) = &c.not_in {
            Op::NotIn(v.clone())
        } else if let Some(v) = c.exists {
            Op::Exists(v)
        } else if let Some(re) = &c.matches {
            Op::Matches(regex::Regex::new(re).map_err(|e| format!("invalid regex: {e}"))?)
        } else if let Some(v) = c.gt {
            Op::Gt(v)
        } else if let Some(v) = c.gte {
            Op::Gte(v)
        } else if let Some(v) = c.lt {
            Op::Lt(v)
        } else if let Some(v) = c.lte {
            Op::Lte(v)
        } else {
            return Err("no operator".into());
        };
        Ok(Self {
            field: c.field.clone(),
            op,
        })
    }

    fn holds(&self, env: &Envelope) -> bool {
        let value = env.field(&self.field);
        let v = value.as_deref().filter(|v| !v.is_null());
        match (&self.op, v) {
            (Op::Exists(want), v) => v.is_some() == *want,
            (Op::NotEquals(x), None) => !x.is_null(),
            (Op::NotIn(_), None) => true,
            (_, None) => false,
            (Op::Equals(x), Some(v)) => loose_eq(v, x),
            (Op::NotEquals(x), Some(v)) => !loose_eq(v, x),
            (Op::In(xs), Some(v)) => xs.iter().any(|x| loose_eq(v, x)),
            (Op::NotIn(xs), Some(v)) => !xs.iter().any(|x| loose_eq(v, x)),
            (Op::Matches(re), Some(Value::String(s))) => re.is_match(s),
            // Komo sends numbers and booleans as strings and the normalizer types them: match
            // their text form, so `matches = "^6$"` still works on a coerced `score`.
            (Op::Matches(re), Some(v @ (Value::Number(_) | Value::Bool(_)))) => {
                re.is_match(&v.to_string())
            }
            (Op::Matches(_), Some(_)) => false,
            (Op::Gt(x), Some(v)) => as_number(v).is_some_and(|n| n > *x),
            (Op::Gte(x), Some(v)) => as_number(v).is_some_and(|n| n >= *x),
            (Op::Lt(x), Some(v)) => as_number(v).is_some_and(|n| n < *x),
            (Op::Lte(x), Some(v)) => as_number(v).is_some_and(|n| n <= *x),
        }
    }
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    sources: Vec<String>,
    include: Vec<Glob>,
    exclude: Vec<Glob>,
    conditions: Vec<Condition>,
    /// Indices into the config's target list.
    pub targets: Vec<usize>,
    pub continue_: bool,
}

impl Route {
    fn compile(
        r: &RouteConfig,
        target_index: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<Self, String> {
        let globs: Vec<Glob> = r.events.iter().map(|g| Glob::new(g)).collect();
        let (exclude, include): (Vec<Glob>, Vec<Glob>) = globs.into_iter().partition(|g| g.negate);
        Ok(Self {
            name: r.name.clone(),
            sources: r.sources.clone(),
            include,
            exclude,
            conditions: r
                .conditions
                .iter()
                .map(Condition::compile)
                .collect::<Result<_, _>>()?,
            targets: r
                .targets
                .iter()
                .map(|t| target_index(t).ok_or_else(|| format!("unknown target {t:?}")))
                .collect::<Result<_, _>>()?,
            continue_: r.continue_,
        })
    }

    /// Whether this route takes the envelope.
    pub fn matches(&self, env: &Envelope) -> bool {
        (self.sources.is_empty() || self.sources.iter().any(|s| s == env.source.as_str()))
            && (self.include.is_empty() || self.include.iter().any(|g| g.matches(&env.event)))
            && !self.exclude.iter().any(|g| g.matches(&env.event))
            && self.conditions.iter().all(|c| c.holds(env))
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
    pub fn new(config: &Config) -> Result<Self, String> {
        let index = |name: &str| config.targets.iter().position(|t| t.name == name);
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::compile(r, &index).map_err(|e| format!("routes[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        let default_targets = config
            .default_targets
            .iter()
            .map(|t| index(t).ok_or_else(|| format!("default_targets: unknown target {t:?}")))
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
