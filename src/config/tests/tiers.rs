//! `[retry_tiers]` and the per-target keys it brings: what `check` reports, each with its key
//! path, and the derived budgets and journey limits.

use super::super::*;

/// The base config text, `crm` target keys added (the tests are about config text and what
/// `check` says of it).
fn base(crm: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "127.0.0.1:9092"
[[sources]]
topic = "komo"
format = "komo"
[results]
topic = "results"
[dead_letter]
topic = "dlq"
[[targets]]
name = "crm"
kind = "webhook"
url = "https://crm.example.com/hooks"
{crm}
[[targets]]
name = "billing"
kind = "webhook"
url = "https://billing.example.com/hooks"
[[routes]]
name = "all"
targets = ["crm", "billing"]
"#
    )
}

fn problems(extra: &str) -> Vec<String> {
    let text = format!("{}\n{extra}", base(""));
    match load_str(&text, Vec::new()) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

fn loaded(extra: &str) -> Config {
    load_str(&format!("{}\n{extra}", base("")), Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults_are_valid_and_give_a_day_long_journey() {
    let c = loaded("[retry_tiers]\nfailed_topic = \"failed\"");
    assert!(problems("[retry_tiers]\nfailed_topic = \"failed\"").is_empty());
    let t = &c.targets[0];
    assert_eq!(c.target_tiers(t).len(), 5);
    assert_eq!(c.max_elapsed(t), std::time::Duration::from_secs(24 * 3600));
    // Two targets share the default bound equally.
    let half = c.pipeline.max_in_flight_events / 2;
    assert_eq!(c.target_budgets(), vec![half, half]);
    let without = loaded("");
    assert_eq!(
        without.max_elapsed(&without.targets[0]),
        std::time::Duration::from_secs(15 * 60)
    );
}

#[test]
fn a_missing_failed_topic_is_named() {
    let p = problems("[retry_tiers]\ndelays = [\"1m\"]");
    assert!(
        p.iter()
            .any(|p| p.contains("retry_tiers") && p.contains("failed_topic")),
        "{p:?}"
    );
}

#[test]
fn an_unknown_tier_in_a_target_is_named_with_its_path() {
    let p = problems("[retry_tiers]\nfailed_topic = \"failed\"\ndelays = [\"1m\", \"5m\"]\n");
    assert!(p.is_empty(), "{p:?}");
    let text = base("retry = { tiers = [\"1m\", \"3m\"] }");
    let err = load_str(
        &format!("{text}\n[retry_tiers]\nfailed_topic = \"failed\"\ndelays = [\"1m\", \"5m\"]"),
        Vec::new(),
    )
    .unwrap_err();
    let p: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        p.iter()
            .any(|p| p.contains("targets[0].retry.tiers[1]") && p.contains("unknown tier 3m")),
        "{p:?}"
    );
}

#[test]
fn a_schedule_longer_than_max_elapsed_is_named() {
    let text = base("retry = { max_elapsed = \"10m\" }");
    let err = load_str(
        &format!("{text}\n[retry_tiers]\nfailed_topic = \"failed\"\ndelays = [\"1m\", \"30m\"]"),
        Vec::new(),
    )
    .unwrap_err();
    let p: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        p.iter().any(|p| p.contains("targets[0].retry.max_elapsed")
            && p.contains("shorter than the retry schedule")),
        "{p:?}"
    );
}

#[test]
fn tiers_without_a_section_budgets_over_the_bound_and_clashing_topics_are_named() {
    let text = base("max_queued_events = 20000\nretry = { tiers = [\"1m\"] }");
    let err = load_str(&text, Vec::new()).unwrap_err();
    let p: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        p.iter()
            .any(|p| p.contains("targets[0].retry.tiers") && p.contains("[retry_tiers]")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("targets[0].max_queued_events")
            && p.contains("pipeline.max_in_flight_events")),
        "{p:?}"
    );
    let p = problems("[retry_tiers]\nfailed_topic = \"results\"\ndelays = [\"1m\", \"60s\"]");
    assert!(
        p.iter().any(|p| p.contains("retry_tiers.failed_topic")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("retry_tiers.delays[1]") && p.contains("duplicate")),
        "{p:?}"
    );
}

#[test]
fn explicit_budgets_leave_the_rest_to_the_others() {
    let text = base("max_queued_events = 300");
    let c = load_str(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let rest = c.pipeline.max_in_flight_events - 300;
    assert_eq!(c.target_budgets(), vec![300, rest]);
}
