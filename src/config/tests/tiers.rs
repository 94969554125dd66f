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
    let off = loaded("[retry_tiers]\nenabled = false");
    assert_eq!(
        off.max_elapsed(&off.targets[0]),
        std::time::Duration::from_secs(15 * 60)
    );
    assert!(off.target_tiers(&off.targets[0]).is_empty());
    assert!(off.tiering().is_none());
}

/// Without a section the tiers are on, with every default and topics named after the group.
#[test]
fn without_a_section_the_default_tiers_run_under_the_group_name() {
    let c = loaded("");
    let t = &c.targets[0];
    let tiering = c.tiering().expect("tiers on by default");
    assert!(!tiering.explicit);
    assert!(tiering.create_topics);
    let topics: Vec<&str> = tiering.tiers.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "event-relay.retry.1m",
            "event-relay.retry.5m",
            "event-relay.retry.30m",
            "event-relay.retry.2h",
            "event-relay.retry.6h"
        ],
        "the default group is event-relay"
    );
    assert_eq!(tiering.failed_topic, "event-relay.failed");
    assert_eq!(tiering.group_id, "event-relay.retry");
    assert_eq!(c.target_tiers(t).len(), 5);
    assert_eq!(c.max_elapsed(t), std::time::Duration::from_secs(24 * 3600));
    let named = loaded("[retry_tiers]\ndelays = [\"1m\"]");
    assert_eq!(named.tiering().unwrap().failed_topic, "event-relay.failed");
    assert_eq!(
        named.tiering().unwrap().tiers[0].topic,
        "event-relay.retry.1m"
    );
}

/// A config written before tiers were on by default keeps loading: a target whose budget is
/// shorter than the default schedule gets the default tiers that fit into it (named at
/// start), where a `[retry_tiers]` section is still checked as written.
#[test]
fn without_a_section_a_short_budget_gets_the_default_tiers_that_fit() {
    let labels = |c: &Config| -> Vec<String> {
        c.target_tiers(&c.targets[0])
            .into_iter()
            .map(|t| t.label)
            .collect()
    };
    // hold 30s + 1m + 5m = 6m30s fits 10m; + 30m does not.
    let short = load_str(&base("retry = { max_elapsed = \"10m\" }"), Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labels(&short), ["1m", "5m"]);
    assert_eq!(
        short.shortened_schedules(),
        vec![("crm".to_string(), vec!["1m".to_string(), "5m".to_string()])]
    );
    // Three attempts: one in memory, one on each of two tiers.
    let few = load_str(&base("retry = { max_attempts = 3 }"), Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labels(&few), ["1m", "5m"]);
    // No room for any tier: retries in memory, as before.
    let none = load_str(&base("retry = { max_elapsed = \"45s\" }"), Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(labels(&none).is_empty());
    // The same budget against an explicit section is a problem, as it always was.
    let err = load_str(
        &format!(
            "{}\n[retry_tiers]\n",
            base("retry = { max_elapsed = \"10m\" }")
        ),
        Vec::new(),
    )
    .unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.to_string().contains("targets[0].retry.max_elapsed")),
        "{err}"
    );
}

#[test]
fn topic_names_made_from_an_unfit_group_id_are_named_there() {
    let text = base("").replace("brokers = ", "group_id = \"my group\"\nbrokers = ");
    let err = load_str(&text, Vec::new()).unwrap_err();
    let p: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        p.iter().any(|p| p.starts_with("kafka.group_id: ")
            && p.contains("my group.retry.1m")
            && p.contains("retry_tiers.topic_prefix")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("kafka.group_id: ") && p.contains("retry_tiers.failed_topic")),
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
fn tiers_turned_off_budgets_over_the_bound_and_clashing_topics_are_named() {
    let text = base("max_queued_events = 20000\nretry = { tiers = [\"1m\"] }");
    let err = load_str(
        &format!("{text}\n[retry_tiers]\nenabled = false"),
        Vec::new(),
    )
    .unwrap_err();
    let p: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        p.iter()
            .any(|p| p.contains("targets[0].retry.tiers")
                && p.contains("retry_tiers.enabled = false")),
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
