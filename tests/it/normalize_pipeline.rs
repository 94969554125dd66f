//! The validation policies end to end, through a real broker and the real relay: strict sources
//! dead-letter catalog violations (header `reason = invalid`, `problems` naming the property) and
//! keep delivering what follows; lenient sources forward them flagged `invalid`; unknown events
//! are forwarded as `unknown_event` unless `unknown_events = "dead_letter"`.

use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use event_relay::config::{RetryConfig, UnknownEvents, ValidationMode};
use serde_json::{json, Value};
use std::time::Duration;

/// A Komo relay for `group` delivering every event to `hook` (3 attempts, fast backoff);
/// the test sets the source's policy on `config.sources[0]`.
async fn env(group: &str, url: &str) -> TestEnv {
    let mut env = TestEnv::komo(group, 1).await;
    let mut hook = webhook("hook", &format!("{url}/hook"));
    hook.retry.max_attempts = Some(3);
    hook.retry.max_elapsed = RetryConfig::default().max_elapsed;
    env.config.targets.push(hook);
    env.config.routes.push(route_all(&["hook"]));
    env
}

/// A Komo CardViewed whose `score` breaks the catalog (a number field that is not a number).
fn bad_score(id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&komo_event(id, "CardViewed")).unwrap();
    v["score"] = json!("abc");
    serde_json::to_vec(&v).unwrap()
}

/// An event of a type Komo sends but the specs do not list.
fn prize(id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&komo_event(id, "PrizeAwarded")).unwrap();
    v["prize_name"] = json!("Season pass");
    serde_json::to_vec(&v).unwrap()
}

async fn wait_for_requests(rx: &Receiver, n: usize) -> Vec<Value> {
    assert!(
        eventually(Duration::from_secs(60), || async { rx.count() >= n }).await,
        "expected {n} deliveries, got {}",
        rx.count()
    );
    rx.requests().iter().map(|r| r.json()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_dead_letters_the_invalid_event_and_delivers_the_next() {
    let rx = Receiver::start(vec![]).await;
    let mut env = env("g-norm-strict", &rx.url).await;
    env.config.sources[0].validation = ValidationMode::Strict;
    let relay = env.relay();
    let [bad, good, unknown] = [0, 1, 2].map(|_| uuid::Uuid::new_v4().to_string());
    let bad_bytes = bad_score(&bad);
    env.produce(&[
        bad_bytes.clone(),
        komo_event(&good, "CardViewed"),
        prize(&unknown),
    ])
    .await;

    let dl = env.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(dl.len(), 1, "the invalid event is dead-lettered");
    let d = &dl[0];
    assert_eq!(d.value, bad_bytes, "original bytes kept");
    assert_eq!(d.header("reason"), Some("invalid"));
    assert_eq!(d.header("source"), Some("komo"));
    assert_eq!(d.header("source_topic"), Some(env.topics.source.as_str()));
    assert_eq!(d.header("source_offset"), Some("0"));
    assert_eq!(d.header("source_event_id"), Some(bad.as_str()));
    let problems: Vec<String> =
        serde_json::from_str(d.header("problems").expect("problems header")).unwrap();
    assert!(
        problems.iter().any(|p| p.starts_with("properties.score:")),
        "problems name the property: {problems:?}"
    );
    assert!(
        d.header("error").unwrap().contains("CardViewed"),
        "{:?}",
        d.header("error")
    );

    let reqs = wait_for_requests(&rx, 2).await;
    let ids: Vec<&str> = reqs.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&good.as_str()), "the valid event is delivered");
    assert!(!ids.contains(&bad.as_str()), "the invalid one is not");
    let valid = reqs.iter().find(|e| e["id"] == good.as_str()).unwrap();
    assert_eq!(valid["validation"]["status"], "valid");
    assert_eq!(valid["properties"]["score"], 1);
    let unknown_env = reqs.iter().find(|e| e["id"] == unknown.as_str()).unwrap();
    assert_eq!(unknown_env["event"], "PrizeAwarded");
    assert_eq!(unknown_env["validation"]["status"], "unknown_event");
    assert_eq!(unknown_env["properties"]["prize_name"], "Season pass");

    // Nothing else reaches the dead-letter topic, and everything is committed.
    let more = env.dead_letters(2, Duration::from_secs(5)).await;
    assert_eq!(more.len(), 1);
    assert!(
        eventually(Duration::from_secs(20), || async {
            relay
                .metric("event_relay_dead_letters_total{reason=\"invalid\",source=\"komo\"}")
                .await
                == 1.0
        })
        .await
    );
    relay.stop().await.unwrap();
    assert_eq!(env.committed(1), vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_forwards_the_invalid_event_flagged() {
    let rx = Receiver::start(vec![]).await;
    let mut env = env("g-norm-lenient", &rx.url).await;
    env.config.sources[0].validation = ValidationMode::Lenient;
    let relay = env.relay();
    let [bad, good] = [0, 1].map(|_| uuid::Uuid::new_v4().to_string());
    env.produce(&[bad_score(&bad), komo_event(&good, "CardViewed")])
        .await;
    let reqs = wait_for_requests(&rx, 2).await;
    let flagged = reqs
        .iter()
        .find(|e| e["id"] == bad.as_str())
        .expect("the invalid event is delivered");
    assert_eq!(flagged["validation"]["status"], "invalid");
    let problems = flagged["validation"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("properties.score:")),
        "{problems:?}"
    );
    assert_eq!(flagged["properties"]["score"], "abc", "kept as sent");
    let valid = reqs.iter().find(|e| e["id"] == good.as_str()).unwrap();
    assert_eq!(valid["validation"]["status"], "valid");
    let dl = env.dead_letters(1, Duration::from_secs(5)).await;
    assert!(dl.is_empty(), "nothing dead-lettered: {dl:?}");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_events_can_be_dead_lettered() {
    let rx = Receiver::start(vec![]).await;
    let mut env = env("g-norm-unknown", &rx.url).await;
    env.config.sources[0].unknown_events = UnknownEvents::DeadLetter;
    let relay = env.relay();
    let [unknown, good] = [0, 1].map(|_| uuid::Uuid::new_v4().to_string());
    let prize_bytes = prize(&unknown);
    env.produce(&[prize_bytes.clone(), komo_event(&good, "CardViewed")])
        .await;
    let dl = env.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].value, prize_bytes);
    assert_eq!(dl[0].header("reason"), Some("unknown_event"));
    assert_eq!(dl[0].header("source_event_id"), Some(unknown.as_str()));
    assert!(dl[0].header("error").unwrap().contains("PrizeAwarded"));
    let reqs = wait_for_requests(&rx, 1).await;
    assert_eq!(reqs[0]["id"], good.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 1, "the unknown event is not delivered");
    relay.stop().await.unwrap();
    assert_eq!(env.committed(1), vec![2]);
}
