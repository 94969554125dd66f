//! Retry tiers without opting in: a config without `[retry_tiers]` isolates a dead target
//! from a healthy one on tier topics the relay created itself (named after the group,
//! partitioned like the source), and a journey on the last tier goes on until its time budget
//! ends it, each pass decided by the rule `elapsed + delay <= max_elapsed`.

use crate::fixtures::receiver::{Receiver, Reply};
use crate::fixtures::*;
use crate::tiers::{by_id, healthy, parking};
use event_relay::config::{Config, SourceFormat};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// The default tiers' topics of `config` (no `[retry_tiers]`) and its failed topic.
fn default_topics(config: &Config) -> (Vec<String>, String) {
    let tiering = config.tiering().expect("tiers on without a section");
    assert!(!tiering.explicit);
    let tiers = tiering.tiers.iter().map(|t| t.topic.clone()).collect();
    (tiers, tiering.failed_topic)
}

/// The done-when case of isolation by default: the tiers acceptance case (one target answering
/// 503, an in-flight bound of 200, its 400 events first) with no `[retry_tiers]` section. Every
/// event for the healthy target arrives while the other is down, and the tier topics exist
/// because the relay made them: `{group}.retry.{delay}` with the source's two partitions, the
/// failed topic with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_section_a_dead_target_costs_a_healthy_one_nothing() {
    let down = Receiver::start(vec![]).await;
    down.set_default(Reply::status(503));
    let up = Receiver::start(vec![]).await;
    let group = format!("g-default-{}", uuid::Uuid::new_v4().simple());
    let mut env = TestEnv::start(&group, SourceFormat::Komo, 2).await;
    env.config.retry_tiers = None;
    env.config.pipeline.max_in_flight_events = 200;
    let mut dead = parking("down", &down.url);
    dead.circuit.failure_threshold = 20;
    dead.max_queued_events = Some(20);
    env.config.targets = vec![dead, healthy("up", &up.url)];
    for (event, target) in [("CardViewed", "down"), ("CardCoverClicked", "up")] {
        env.config.routes.push(route(json!({
            "name": target, "events": [event], "targets": [target]
        })));
    }
    let (tiers, failed) = default_topics(&env.config);
    assert_eq!(tiers[0], format!("{group}.retry.1m"));
    assert_eq!(failed, format!("{group}.failed"));
    for t in tiers.iter().chain([&failed]) {
        assert_eq!(
            env.broker.partitions(t),
            None,
            "{t} exists before the relay"
        );
    }

    let relay = env.relay();
    let (down_ids, up_ids) = (ids(400), ids(100));
    let payloads: Vec<Vec<u8>> = down_ids
        .iter()
        .map(|d| komo_event(d, "CardViewed"))
        .chain(up_ids.iter().map(|u| komo_event(u, "CardCoverClicked")))
        .collect();
    env.produce(&payloads).await;

    let results = env.results_json(up_ids.len()).await;
    assert_eq!(
        results.len(),
        up_ids.len(),
        "one result per healthy delivery"
    );
    assert!(results.iter().all(|r| r["target"] == "up"), "{results:?}");
    let got: HashSet<String> = up.requests().iter().map(crate::tiers::id_of).collect();
    assert_eq!(got, up_ids.iter().cloned().collect());
    // The dead target's deliveries went to the first default tier, which the relay created.
    let parked = env
        .broker
        .read(&tiers[0], down_ids.len(), Duration::from_secs(90))
        .await;
    let parked_ids: HashSet<String> = parked
        .iter()
        .map(|r| r.header("source_event_id").unwrap().to_string())
        .collect();
    assert_eq!(parked_ids, down_ids.iter().cloned().collect());
    for t in &tiers {
        assert_eq!(
            env.broker.partitions(t),
            Some(2),
            "{t}: the source's partitions"
        );
    }
    assert_eq!(env.broker.partitions(&failed), Some(1));
    relay.stop().await.unwrap();
}

/// Tiers of 1s and 2s and a budget of 12s, a target that always answers 503: after the 2s tier
/// the delivery goes back to it, pass after pass, until one more would end after 12s. Each
/// decision is checked against the rule from the relay's own records: every pass was allowed
/// (`due_at - first_attempt_at`, which is the elapsed time at the decision plus the tier's
/// delay, is within 12s, to the headers' millisecond), and the relay did not stop while a pass
/// still fitted (the final result is written after its decision, so at least 10s = 12s - 2s
/// after the first attempt). One WebhookError, whose `attempts` is every request the target
/// saw and whose `parked` is every tier record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_tier_repeats_until_the_time_budget_ends() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let mut target = parking("hook", &rx.url);
    target.retry.max_elapsed = Some(secs(12));
    // No max_attempts (the fixture sets one): with tiers the time budget decides.
    target.retry.max_attempts = None;
    let mut env = crate::tiers::tiered("g-tier-repeat", &[secs(1), secs(2)], target).await;
    env.config.targets[0].retry.hold = ms(300);
    let relay = env.relay();
    let id = ids(1).remove(0);
    env.produce(&[komo_event(&id, "CardViewed")]).await;

    let results = env.results(1, Duration::from_secs(90)).await;
    assert_eq!(results.len(), 1, "{results:?}");
    let r = &results[0];
    assert_eq!(r["event"], "WebhookError", "{r}");
    let on = |delay| {
        let topic = env.tier_topic(delay);
        let broker = &env.broker;
        async move { broker.read(&topic, 100, Duration::from_secs(5)).await }
    };
    let (first_tier, last_tier) = (on(secs(1)).await, on(secs(2)).await);
    assert_eq!(first_tier.len(), 1, "one pass on the 1s tier");
    assert!(
        last_tier.len() >= 2,
        "the 2s tier repeated: {} passes",
        last_tier.len()
    );
    let time = |s: &str| SystemTime::from(chrono::DateTime::parse_from_rfc3339(s).unwrap());
    let first = time(r["first_attempt_at"].as_str().unwrap());
    let budget = Duration::from_secs(12);
    let ms1 = Duration::from_millis(1);
    for rec in first_tier.iter().chain(&last_tier) {
        let due = time(rec.header("due_at").unwrap());
        let at = due.duration_since(first).unwrap();
        assert!(
            at <= budget + ms1,
            "a pass due {at:?} after the first attempt"
        );
    }
    let ended = time(r["timestamp"].as_str().unwrap());
    let elapsed = ended.duration_since(first).unwrap();
    assert!(
        elapsed + Duration::from_secs(2) > budget - ms1,
        "gave up {elapsed:?} after the first attempt, with room for another 2s pass"
    );
    let requests = by_id(&rx).remove(&id).unwrap_or_default().len();
    assert_eq!(r["attempts"], json!(requests), "{r}");
    assert_eq!(
        r["parked"],
        json!(first_tier.len() + last_tier.len()),
        "{r}"
    );
    let failed = env.failed(1, Duration::from_secs(30)).await;
    assert_eq!(failed.len(), 1, "the journey ends on the failed topic");
    relay.stop().await.unwrap();
}
