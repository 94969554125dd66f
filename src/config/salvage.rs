//! Deserialization that reports every structural problem of a config tree, not only the first.
//!
//! serde stops at the first error. [`Salvage::deserialize`] records it with its key path, repairs
//! the tree (takes the offending value out, or puts a stand-in in place of a broken section or
//! list element) and tries again, until the tree deserializes. Every problem is reported once:
//! not again as the "missing field" left by a value taken out (or by a misspelt key: `taget`
//! for `targets`), nor as a complaint about the table that held it (a `where` condition with
//! an unknown operator key has no operator left), nor as a semantic problem of what a
//! stand-in made up, of a value already reported (e.g. the `${VAR}` text an unset variable
//! leaves behind), of a list that lost an element, or judged against a value with a problem
//! of its own ([`Problem::against`]). A stand-in keeps what was written beside the broken
//! key, so those keys are still checked (a bad `url` beside an unknown `kind`). Messages are
//! in plain words (`plain.rs`), each with its key path.
//!
//! Paths are reported as the user wrote them: a list element taken out shifts its followers
//! down by one in the tree, and [`Salvage::original`] shifts them back.

pub(super) use super::keypath::Seg;
use super::keypath::{display, get, get_mut, is_under, join, parent, put, segments};
use super::plain;
use super::problem::Problem;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Upper bound on repair rounds (each takes one value out or puts one stand-in in).
const MAX_ROUNDS: usize = 512;

/// Supplies stand-ins: for a section or list element (by path) that cannot be deserialized,
/// a value that can, built from what was written there (the keys that deserialize, so they
/// are still checked, and e.g. its name, so references to it still resolve); `None` for
/// paths that are not such units.
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
    /// Unknown keys taken out (paths as written): a complaint about the table that held one
    /// (other than a missing key) is a consequence.
    unknown_keys: Vec<String>,
    /// The keys that unknown keys most likely misspell (`routes[0].targets` for
    /// `routes[0].taget`): their "missing" is the same mistake.
    meant: Vec<String>,
    /// List elements taken out, in order: the list's path at that time and the index.
    shifts: Vec<(String, usize)>,
    /// Paths (in the tree) where a stand-in was put.
    stood_in: Vec<Vec<Seg>>,
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
            let serde = err.into_inner().to_string();
            let missing = missing_field(&serde).map(str::to_string);
            let problem = self.problem(&at, &serde, missing.as_deref(), &tree);
            let reported = self.report(&problem, missing.as_deref());
            let unknown_key = serde.starts_with("unknown field `");
            if unknown_key {
                if let Some(meant) = plain::meant_key(&serde) {
                    self.meant.push(join(parent(&problem.path), &meant));
                }
                self.unknown_keys.push(problem.path.clone());
            }
            if !self.repair(&mut tree, at, missing, unknown_key, stand_in) {
                if !reported {
                    // Loading stops here: this error must be seen even if it looked like a repeat.
                    self.problems.push(problem);
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

    /// Adds the semantic problems of the repaired config, except those about covered paths,
    /// about a list or table that lost a value taken out, or judged against a covered path.
    pub(super) fn add_semantic(&mut self, problems: Vec<Problem>) {
        for mut p in problems {
            p.path = self.original(&p.path);
            let against: Vec<String> = p.against.iter().map(|a| self.original(a)).collect();
            let consequence = self.emptied.iter().any(|e| parent(e) == p.path)
                || against.iter().any(|a| {
                    self.covered
                        .iter()
                        .any(|c| is_under(c, a) || is_under(a, c))
                });
            if !self.is_covered(&p.path) && !consequence {
                self.problems.push(p);
            }
        }
    }

    /// Everything found, in the order found.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// The problem serde found at `at`, in plain words; a missing key is named by its path.
    fn problem(&self, at: &[Seg], serde: &str, missing: Option<&str>, tree: &Value) -> Problem {
        let path = self.original(&display(at));
        let message = plain::message(serde, at, get(tree, at));
        match (missing, plain::unknown_key(serde)) {
            (Some(field), _) => Problem::new(&join(&path, field), plain::missing(path.is_empty())),
            // serde's path stops at the table when the table was read as a whole (a tagged
            // `auth`): the unknown key is under it.
            (None, Some(key)) if at.last() != Some(&Seg::Key(key.clone())) => {
                Problem::new(&join(&path, &key), message)
            }
            (None, _) => Problem::new(&path, message),
        }
    }

    /// Records the problem unless it repeats one already reported; whether it was recorded.
    fn report(&mut self, problem: &Problem, missing: Option<&str>) -> bool {
        let path = &problem.path;
        let repeat = match missing {
            // A required key we took out (or whose value was reported, or that an unknown key
            // misspells) is no news.
            Some(_) => self.is_covered(path) || self.meant.contains(path),
            // Nor is a complaint about a table whose content we took out.
            None => {
                self.is_covered(path)
                    || self.emptied.iter().any(|c| is_under(c, path))
                    || self.unknown_keys.iter().any(|k| parent(k) == path)
            }
        };
        if !repeat {
            self.problems.push(problem.clone());
            self.covered.push(path.clone());
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
                self.cover_stand_in(&path, &raw, &value);
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

    /// Covers what a stand-in made up: the keys it added, changed or left out of the table
    /// as written (the others are checked as written), or all of it when nothing written
    /// was a table. A required key it added that no problem names yet is missing too (serde
    /// names only the first missing key of a table).
    fn cover_stand_in(&mut self, path: &str, raw: &Value, stand_in: &Value) {
        let (Value::Object(written), Value::Object(made)) = (raw, stand_in) else {
            self.covered.push(path.to_string());
            return;
        };
        for key in made.keys().filter(|k| !written.contains_key(*k)) {
            let at = join(path, key);
            if !self.is_covered(&at) && !self.meant.contains(&at) {
                self.problems.push(Problem::new(&at, plain::missing(false)));
            }
        }
        for key in written.keys().chain(made.keys()) {
            if written.get(key) != made.get(key) {
                self.covered.push(join(path, key));
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
}

/// `"missing field `x`"` → `x`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
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
        assert_eq!(p[0].to_string(), "names: missing (required section)");
    }
}
