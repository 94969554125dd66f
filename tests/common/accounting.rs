//! The accounting check of the fault tests: nothing lost, exactly one final outcome per
//! (event, target) after de-duplication by result id, duplicates counted.

use super::receiver::Req;
use super::Record;
use std::collections::{HashMap, HashSet};

/// What the check found.
#[derive(Debug)]
pub struct Accounting {
    /// Produced ids that neither reached the receiver nor got a WebhookError.
    pub lost: Vec<String>,
    /// Extra deliveries beyond the first, per the receiver.
    pub duplicate_deliveries: usize,
    /// Result messages beyond the first per result id (replays of the same outcome).
    pub duplicate_results: usize,
    /// (event, target) pairs with more than one distinct final outcome.
    pub conflicting: Vec<String>,
    /// (event, target) pairs with no result event.
    pub missing_results: Vec<String>,
}

/// Ids of events in a receiver request body (envelope, array of envelopes, or PostHog batch).
pub fn ids_in(req: &Req) -> Vec<String> {
    let v = req.json();
    let items: Vec<serde_json::Value> = match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(ref o) if o.contains_key("batch") => {
            o["batch"].as_array().cloned().unwrap_or_default()
        }
        other => vec![other],
    };
    items
        .iter()
        .filter_map(|i| {
            i.get("id")
                .or_else(|| i.get("uuid"))
                .and_then(|x| x.as_str())
                .map(String::from)
        })
        .collect()
}

pub fn check(
    produced: &[String],
    targets: &[&str],
    requests: &[Req],
    results: &[Record],
) -> Accounting {
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for r in requests.iter().filter(|r| (200..300).contains(&r.status)) {
        for id in ids_in(r) {
            *delivered.entry(id).or_default() += 1;
        }
    }
    let mut seen_result_ids = HashSet::new();
    let mut duplicate_results = 0;
    let mut outcomes: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for rec in results {
        let v = rec.json();
        let rid = v["id"].as_str().unwrap_or_default().to_string();
        if !seen_result_ids.insert(rid) {
            duplicate_results += 1;
            continue;
        }
        let key = (
            v["source_event_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            v["target"].as_str().unwrap_or_default().to_string(),
        );
        outcomes
            .entry(key)
            .or_default()
            .insert(v["event"].as_str().unwrap_or_default().to_string());
    }
    let mut lost = Vec::new();
    let mut missing_results = Vec::new();
    let mut conflicting = Vec::new();
    for id in produced {
        for t in targets {
            let o = outcomes.get(&(id.clone(), t.to_string()));
            let errored = o.is_some_and(|s| s.contains("WebhookError"));
            if !delivered.contains_key(id) && !errored {
                lost.push(format!("{id}→{t}"));
            }
            match o {
                None => missing_results.push(format!("{id}→{t}")),
                Some(s) if s.len() > 1 => conflicting.push(format!("{id}→{t}")),
                _ => {}
            }
        }
    }
    let duplicate_deliveries = delivered.values().map(|n| n - 1).sum();
    Accounting {
        lost,
        duplicate_deliveries,
        duplicate_results,
        conflicting,
        missing_results,
    }
}

impl Accounting {
    /// Asserts nothing was lost and every (event, target) has a result; prints the duplicates.
    pub fn assert_complete(&self, bound: usize) {
        eprintln!(
            "accounting: lost={} missing_results={} duplicate_deliveries={} duplicate_results={} conflicting={}",
            self.lost.len(),
            self.missing_results.len(),
            self.duplicate_deliveries,
            self.duplicate_results,
            self.conflicting.len()
        );
        assert!(
            self.lost.is_empty(),
            "lost events: {:?}",
            &self.lost[..self.lost.len().min(10)]
        );
        assert!(
            self.missing_results.is_empty(),
            "no result event for: {:?}",
            &self.missing_results[..self.missing_results.len().min(10)]
        );
        assert!(
            self.conflicting.is_empty(),
            "conflicting outcomes: {:?}",
            self.conflicting
        );
        assert!(
            self.duplicate_deliveries <= bound,
            "{} duplicate deliveries exceed the bound {bound}",
            self.duplicate_deliveries
        );
    }
}
