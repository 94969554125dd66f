//! Deserialization that reports every structural problem of a config tree, not only the first.
//!
//! serde stops at the first error. [`Salvage::deserialize`] records it with its key path, repairs
//! the tree (takes the offending value out, or puts a stand-in in place of a broken section or
//! list element) and tries again, until the tree deserializes. Every problem is reported once:
//! not again as the "missing field" left by a value taken out, nor as a complaint about the
//! table that held it, nor as a semantic problem of a stand-in or of a value already reported
//! (e.g. the `${VAR}` text an unset variable leaves behind).
//!
//! Paths are reported as the user wrote them: a list element taken out shifts its followers
//! down by one in the tree, and [`Salvage::original`] shifts them back.

use super::problem::Problem;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Upper bound on repair rounds (each takes one value out or puts one stand-in in).
const MAX_ROUNDS: usize = 512;

/// One step of a key path in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// Supplies stand-ins: for a section or list element (by path) that cannot be deserialized,
/// a value that can, built from what was written there (e.g. its name, so references to it
/// still resolve); `None` for paths that are not such units.
pub(super) type StandIn = dyn Fn(&[Seg], &Value) -> Option<Value>;

/// The problems found so far and the repairs made to the tree.
#[derive(Default)]
pub(super) struct Salvage {
    problems: Vec<Problem>,
    /// Key paths (as written) already reported or replaced: nothing at or under them is
    /// reported again.
    covered: Vec<String>,
    /// Key paths (as written) whose value was taken out for a reason other than being an
    /// unknown key: a complaint about a table above them is a consequence, not news.
    emptied: Vec<String>,
    /// List elements taken out, in order: the list's path at that time and the index.
    shifts: Vec<(String, usize)>,
    /// Paths (in the tree) where a stand-in was put.
    stood_in: Vec<Vec<Seg>>,
    /// The same paths as written: a stand-in keeps the element's `name` as written, so a
    /// problem with that name (a duplicate) is still news.
    stood_in_at: Vec<String>,
}

impl Salvage {
    /// Starts from problems already found (e.g. unset `${VAR}` references), whose paths are
    /// covered from the start.
    pub(super) fn new(problems: Vec<Problem>) -> Self {
        Self {
            covered: problems.iter().map(|p| p.path.clone()).collect(),
            problems,
            ..Default::default()
        }
    }

    /// Deserializes `tree` as a `T`, recording every problem on the way; `None` only when the
    /// tree cannot be repaired.
    pub(super) fn deserialize<T: DeserializeOwned>(
        &mut self,
        mut tree: Value,
        stand_in: &StandIn,
    ) -> Option<T> {
        for _ in 0..MAX_ROUNDS {
            let err = match serde_path_to_error::deserialize::<_, T>(tree.clone()) {
                Ok(value) => return Some(value),
                Err(e) => e,
            };
            let at = segments(err.path());
            let message = err.into_inner().to_string();
            let missing = missing_field(&message).map(str::to_string);
            let reported = self.report(&at, &message, missing.as_deref());
            let unknown_key = message.starts_with("unknown field `");
            let path = display(&at);
            if !self.repair(&mut tree, at, missing, unknown_key, stand_in) {
                if !reported {
                    // Loading stops here: this error must be seen even if it looked like a repeat.
                    self.problems
                        .push(Problem::new(&self.original(&path), message));
                }
                return None;
            }
        }
        self.problems.push(Problem::new(
            "",
            format!("too many problems: stopped after {MAX_ROUNDS}"),
        ));
        None
    }

    /// Adds the semantic problems of the repaired config, except those about covered paths.
    pub(super) fn add_semantic(&mut self, problems: Vec<Problem>) {
        for mut p in problems {
            p.path = self.original(&p.path);
            if !self.is_covered(&p.path) || self.is_kept_name(&p.path) {
                self.problems.push(p);
            }
        }
    }

    /// Everything found, in the order found.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Records the error unless it repeats one already reported; whether it was recorded.
    fn report(&mut self, at: &[Seg], message: &str, missing: Option<&str>) -> bool {
        let path = self.original(&display(at));
        let repeat = match missing {
            // A required key we took out (or whose value was reported) is no news.
            Some(field) => self.is_covered(&join(&path, field)),
            // Nor is a complaint about a table whose content we took out.
            None => self.is_covered(&path) || self.emptied.iter().any(|c| is_under(c, &path)),
        };
        if !repeat {
            self.problems.push(Problem::new(&path, message));
            self.covered.push(match missing {
                Some(field) => join(&path, field),
                None => path,
            });
        }
        !repeat
    }

    /// Makes the tree get past the error at `at`; `false` when it cannot.
    fn repair(
        &mut self,
        tree: &mut Value,
        mut at: Vec<Seg>,
        missing: Option<String>,
        unknown_key: bool,
        stand_in: &StandIn,
    ) -> bool {
        if let Some(field) = missing {
            let mut child = at.clone();
            child.push(Seg::Key(field));
            // A required section missing altogether: put a stand-in in its place.
            if stand_in(&child, &Value::Null).is_some() {
                at = child;
            }
        }
        if at.is_empty() || self.stood_in.contains(&at) {
            return false;
        }
        let raw = get(tree, &at).cloned().unwrap_or(Value::Null);
        let path = self.original(&display(&at));
        match stand_in(&at, &raw) {
            Some(value) => {
                self.stood_in_at.push(path.clone());
                self.covered.push(path);
                self.stood_in.push(at.clone());
                put(tree, &at, value)
            }
            None => {
                if !unknown_key {
                    self.emptied.push(path.clone());
                }
                self.covered.push(path);
                self.take_out(tree, &at)
            }
        }
    }

    /// Removes the value at `at`; a list element's followers move down (recorded in `shifts`).
    fn take_out(&mut self, tree: &mut Value, at: &[Seg]) -> bool {
        let Some((last, parent)) = at.split_last() else {
            return false;
        };
        match (get_mut(tree, parent), last) {
            (Some(Value::Object(m)), Seg::Key(k)) => m.remove(k).is_some(),
            (Some(Value::Array(a)), Seg::Index(i)) if *i < a.len() => {
                a.remove(*i);
                self.shifts.push((display(parent), *i));
                true
            }
            _ => false,
        }
    }

    /// The path as written, from a path in the tree after elements were taken out.
    fn original(&self, path: &str) -> String {
        let mut path = path.to_string();
        for (list, removed) in self.shifts.iter().rev() {
            let Some(rest) = path
                .strip_prefix(list.as_str())
                .and_then(|r| r.strip_prefix('['))
            else {
                continue;
            };
            let Some((index, tail)) = rest.split_once(']') else {
                continue;
            };
            match index.parse::<usize>() {
                Ok(i) if i >= *removed => path = format!("{list}[{}]{tail}", i + 1),
                _ => {}
            }
        }
        path
    }

    fn is_covered(&self, path: &str) -> bool {
        self.covered.iter().any(|c| is_under(path, c))
    }

    /// Whether `path` is the `name` a stand-in kept as written (`targets[2].name` of a
    /// stood-in `targets[2]`) and nothing reported covers the name itself.
    fn is_kept_name(&self, path: &str) -> bool {
        let Some(element) = path.strip_suffix(".name") else {
            return false;
        };
        self.stood_in_at.iter().any(|s| s == element)
            && self
                .covered
                .iter()
                .all(|c| !is_under(path, c) || c == element)
    }
}

/// Whether `path` is `ancestor` or lies under it (`a.b[1].c` under `a.b`, `a.b[1]`).
fn is_under(path: &str, ancestor: &str) -> bool {
    !ancestor.is_empty()
        && path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `"missing field `x`"` → `x`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// `targets[1].retry.max_backoff`
pub(super) fn display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
        }
    }
    out
}

fn get<'a>(mut v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.get(k)?,
            Seg::Index(i) => v.get(i)?,
        };
    }
    Some(v)
}

fn get_mut<'a>(mut v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.get_mut(k)?,
            Seg::Index(i) => v.get_mut(i)?,
        };
    }
    Some(v)
}

/// Sets the value at `at`, adding the key when its table lacks it.
fn put(tree: &mut Value, at: &[Seg], value: Value) -> bool {
    let Some((last, parent)) = at.split_last() else {
        return false;
    };
    match (get_mut(tree, parent), last) {
        (Some(Value::Object(m)), Seg::Key(k)) => {
            m.insert(k.clone(), value);
            true
        }
        (Some(Value::Array(a)), Seg::Index(i)) if *i < a.len() => {
            a[*i] = value;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        names: Vec<String>,
        #[serde(default)]
        n: u32,
    }

    fn paths(s: &Salvage) -> Vec<String> {
        let mut p: Vec<String> = s.problems.iter().map(|p| p.path.clone()).collect();
        p.sort();
        p
    }

    #[test]
    fn list_elements_keep_the_paths_they_were_written_at() {
        let mut s = Salvage::default();
        let tree = json!({ "names": [1, "a", 2, "b"], "n": "x", "extra": true });
        let doc: Doc = s.deserialize(tree, &|_, _| None).unwrap();
        assert_eq!(doc.names, ["a", "b"]);
        assert_eq!(doc.n, 0, "a value taken out leaves the default");
        assert_eq!(paths(&s), ["extra", "n", "names[0]", "names[2]"]);
        // Semantic problems found on the repaired tree name the elements as written.
        s.add_semantic(vec![
            Problem::new("names[0]", "a"),
            Problem::new("names[1]", "b"),
        ]);
        let last: Vec<&Problem> = s.problems.iter().rev().take(2).collect();
        assert_eq!(last[0].path, "names[3]");
        assert_eq!(last[1].path, "names[1]");
    }

    #[test]
    fn covered_paths_are_reported_once() {
        let unset = Problem::new("names[1]", "environment variable X is not set");
        let mut s = Salvage::new(vec![unset]);
        let tree = json!({ "names": ["a", "${X}", 5], "n": "${X}" });
        let doc: Doc = s.deserialize(tree, &|_, _| None).unwrap();
        assert_eq!(doc.names, ["a", "${X}"]);
        s.add_semantic(vec![
            Problem::new("names[1]", "not a name like that"),
            Problem::new("names[0]", "reported"),
        ]);
        assert_eq!(paths(&s), ["n", "names[0]", "names[1]", "names[2]"]);
    }

    #[test]
    fn an_unrepairable_tree_still_says_why() {
        let mut s = Salvage::default();
        assert!(s.deserialize::<Doc>(json!(5), &|_, _| None).is_none());
        assert_eq!(s.into_problems().len(), 1);
        let mut s = Salvage::default();
        assert!(s.deserialize::<Doc>(json!({}), &|_, _| None).is_none());
        let p = s.into_problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("missing field `names`"), "{p:?}");
    }
}
