//! `event-relay normalize --summary`: a tracking-plan report of a sample — events per name ×
//! validation status, and the most frequent problems per property and rule — the view a data
//! team uses to fix an emitter. Problems are grouped with the same rule mapping as the
//! `event_relay_validation_problems_total` metric ([`rule_of`]).

use super::{NormalizeError, Normalized};
use crate::catalog::rule::{rule_of, split_problem, Rule};
use crate::envelope::ValidationStatus;
use std::collections::{BTreeMap, HashMap};

/// The statuses a summary counts: the catalog's verdicts, then `rejected` (the message broke
/// a hard limit before any catalog judged it: not JSON, no `event`, ...).
pub const STATUSES: [&str; 4] = ["valid", "invalid", "unknown_event", "rejected"];

/// The event name shown for a message rejected before its name was read.
pub const NO_EVENT: &str = "-";

/// A problem group: the event, the property path (array indexes folded to `[]`), the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProblemKey {
    pub event: String,
    pub path: String,
    pub rule: Rule,
}

/// How often a problem group was seen, with its first message as an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemCount {
    pub key: ProblemKey,
    pub count: u64,
    pub example: String,
}

/// Counts for one sample.
#[derive(Debug, Default)]
pub struct Summary {
    /// Per event name: counts in [`STATUSES`] order.
    pub by_event: BTreeMap<String, [u64; 4]>,
    /// Messages rejected before validation, per reason code.
    pub rejected_reasons: BTreeMap<&'static str, u64>,
    problems: HashMap<ProblemKey, (u64, String)>,
}

impl Summary {
    /// Adds the outcome of normalizing one message.
    pub fn add(&mut self, result: &Result<Normalized, NormalizeError>) {
        match result {
            Ok(n) => {
                for (env, _) in &n.events {
                    let status = match env.validation.status {
                        ValidationStatus::Valid => 0,
                        ValidationStatus::Invalid => 1,
                        ValidationStatus::UnknownEvent => 2,
                    };
                    self.count(&env.event, status);
                    if env.validation.status == ValidationStatus::UnknownEvent {
                        self.problem(&env.event, "", Rule::UnknownEvent, "not in the catalog");
                    }
                    for p in &env.validation.problems {
                        self.add_problem(&env.event, p);
                    }
                }
                for r in &n.rejected {
                    self.add_error(&r.error);
                }
            }
            Err(e) => self.add_error(e),
        }
    }

    fn add_error(&mut self, e: &NormalizeError) {
        match e {
            NormalizeError::Invalid {
                event, problems, ..
            } => {
                self.count(event, 1);
                for p in problems {
                    self.add_problem(event, p);
                }
            }
            NormalizeError::UnknownEvent(event, _) => {
                self.count(event, 2);
                self.problem(event, "", Rule::UnknownEvent, "not in the catalog");
            }
            other => {
                self.count(NO_EVENT, 3);
                *self.rejected_reasons.entry(other.reason()).or_default() += 1;
            }
        }
    }

    fn count(&mut self, event: &str, status: usize) {
        self.by_event.entry(event.to_string()).or_default()[status] += 1;
    }

    fn add_problem(&mut self, event: &str, problem: &str) {
        let (path, message) = split_problem(problem);
        self.problem(event, &fold_indexes(path), rule_of(problem), message);
    }

    fn problem(&mut self, event: &str, path: &str, rule: Rule, example: &str) {
        let key = ProblemKey {
            event: event.to_string(),
            path: path.to_string(),
            rule,
        };
        self.problems
            .entry(key)
            .or_insert_with(|| (0, example.to_string()))
            .0 += 1;
    }

    /// Totals per status, in [`STATUSES`] order.
    pub fn totals(&self) -> [u64; 4] {
        let mut t = [0; 4];
        for counts in self.by_event.values() {
            for (i, c) in counts.iter().enumerate() {
                t[i] += c;
            }
        }
        t
    }

    /// The `n` most frequent problem groups (ties: by event, path, rule), and how many groups
    /// there are in all.
    pub fn top_problems(&self, n: usize) -> (Vec<ProblemCount>, usize) {
        let mut all: Vec<ProblemCount> = self
            .problems
            .iter()
            .map(|(key, (count, example))| ProblemCount {
                key: key.clone(),
                count: *count,
                example: example.clone(),
            })
            .collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        let groups = all.len();
        all.truncate(n);
        (all, groups)
    }
}

/// `properties.tags[3]` → `properties.tags[]`: one group for every item of an array.
fn fold_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' if in_index => {
                in_index = false;
                out.push(']');
            }
            c if in_index && c.is_ascii_digit() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFormat;
    use crate::envelope::Origin;
    use crate::normalize::{Normalizer, SourceSettings};
    use serde_json::json;

    fn card_viewed(score: serde_json::Value, card_id: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "1e9b2c8a-0d4c-4d3b-9a51-8f0c6f1f6a01", "event": "CardViewed",
            "timestamp": "2026-01-05T10:00:00Z", "site_id": "0fdbb943-511c-4220-9266-31465374f43b",
            "site_name": "Hub", "user_session_id": "2e9b2c8a-0d4c-4d3b-9a51-8f0c6f1f6a02",
            "card_id": card_id, "card_name": "c", "card_type": "t", "correct": 1, "score": score
        }))
        .unwrap()
    }

    #[test]
    fn counts_statuses_and_ranks_problems_by_property_and_rule() {
        let n = Normalizer::builtin().unwrap();
        let mut s = SourceSettings::standalone(SourceFormat::Komo);
        s.validation = crate::config::ValidationMode::Lenient;
        let guid = "3e9b2c8a-0d4c-4d3b-9a51-8f0c6f1f6a03";
        let mut lines = vec![
            card_viewed(json!(5), guid),
            card_viewed(json!("x"), guid),
            card_viewed(json!("y"), "nope"),
            b"{not json".to_vec(),
        ];
        let mut unknown = card_viewed(json!(1), guid);
        unknown = String::from_utf8(unknown)
            .unwrap()
            .replace("CardViewed", "PrizeAwarded")
            .into_bytes();
        lines.push(unknown);
        let mut sum = Summary::default();
        for (i, l) in lines.iter().enumerate() {
            let origin = Origin {
                topic: "t".into(),
                partition: 0,
                offset: i as i64,
                key: None,
            };
            sum.add(&n.normalize(l, &s, origin));
        }
        assert_eq!(sum.by_event["CardViewed"], [1, 2, 0, 0]);
        assert_eq!(sum.by_event["PrizeAwarded"], [0, 0, 1, 0]);
        assert_eq!(sum.by_event[NO_EVENT], [0, 0, 0, 1]);
        assert_eq!(sum.totals(), [1, 2, 1, 1]);
        assert_eq!(sum.rejected_reasons["not_json"], 1);
        let (top, groups) = sum.top_problems(1);
        assert_eq!(groups, 3);
        assert_eq!(
            top,
            vec![ProblemCount {
                key: ProblemKey {
                    event: "CardViewed".into(),
                    path: "properties.score".into(),
                    rule: Rule::Type
                },
                count: 2,
                example: "expected number, got string".into()
            }]
        );
        let (all, _) = sum.top_problems(10);
        let rules: Vec<Rule> = all.iter().map(|p| p.key.rule).collect();
        assert_eq!(rules, vec![Rule::Type, Rule::Format, Rule::UnknownEvent]);
    }

    #[test]
    fn array_indexes_fold_into_one_group() {
        assert_eq!(fold_indexes("properties.tags[3]"), "properties.tags[]");
        assert_eq!(fold_indexes("a[10].b[2]"), "a[].b[]");
        assert_eq!(fold_indexes("plain"), "plain");
    }
}
