//! `event-relay trace` against a real broker: an event delivered to one target and parked
//! then delivered for another, and a dead-lettered one, each traced by id (and by a result
//! event's id); an unknown id is exit 1, a bad `--since` exit 2.

use crate::fixtures::receiver::{Receiver, Reply};
use crate::fixtures::*;
use crate::redrive::cli;
use crate::tiers::{healthy, parking};
use event_relay::config::ValidationMode;
use serde_json::{json, Value};
use std::time::Duration;

fn steps(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_parked_and_dead_lettered_events_are_traced() {
    let up = Receiver::start(vec![]).await;
    // One failure: the only in-memory attempt (2 attempts, 1 tier), then the tier's succeeds.
    let flaky = Receiver::start(vec![Reply::status(503)]).await;
    let mut slow = parking("slow", &flaky.url);
    slow.retry.max_attempts = Some(2);
    let mut env = TestEnv::komo("g-trace", 1).await;
    env.config.sources[0].validation = ValidationMode::Strict;
    env.with_tiers(&[secs(1)]).await;
    env.config.targets = vec![healthy("up", &up.url), slow];
    env.config.routes.push(route_all(&["up", "slow"]));
    let relay = env.relay();
    let (good, bad) = (ids(1).remove(0), ids(1).remove(0));
    let mut bad_event: Value = serde_json::from_slice(&komo_event(&bad, "CardViewed")).unwrap();
    bad_event["score"] = json!("abc");
    env.produce(&[
        komo_event(&good, "CardViewed"),
        serde_json::to_vec(&bad_event).unwrap(),
    ])
    .await;
    let results = env.results(2, Duration::from_secs(90)).await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(env.dead_letters(1, Duration::from_secs(30)).await.len(), 1);
    relay.stop().await.unwrap();
    let file = ConfigFile::write(&env.config);

    let (code, out, err) = cli("trace", &file.path, &[&good, "--json"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let journey = steps(&out);
    let of = |target: &str| -> Vec<&Value> {
        journey.iter().filter(|s| s["target"] == target).collect()
    };
    let up_steps: Vec<&str> = of("up")
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(up_steps, ["WebhookSuccess"], "{out}");
    let slow_steps: Vec<&str> = of("slow")
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        slow_steps,
        ["parked", "WebhookSuccess"],
        "in time order: {out}"
    );
    let parked = of("slow")[0];
    assert_eq!(parked["tier"], "1s", "{out}");
    assert!(
        parked["last_error"].as_str().unwrap().contains("503"),
        "{out}"
    );
    assert_eq!(of("slow")[1]["parked"], 1, "{out}");
    assert!(err.contains("records read"), "progress on stderr: {err}");

    // By a result event's id: the same journey.
    let result_id = results[0]["id"].as_str().unwrap();
    let (code, by_result, _) = cli("trace", &file.path, &[result_id, "--json"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(steps(&by_result).len(), journey.len(), "{by_result}");

    let (code, out, err) = cli("trace", &file.path, &[&bad]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let line = out.lines().next().unwrap_or_default();
    assert!(
        line.contains("dead_lettered") && line.contains("reason=invalid") && line.contains("score"),
        "{out}"
    );

    let (code, _, err) = cli("trace", &file.path, &["no-such-event"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nothing about"), "{err}");
    let (code, _, err) = cli("trace", &file.path, &[&good, "--since", "yesterday"]).await;
    assert_eq!(code, Some(2), "{err}");
    // A window that ends before the event: nothing.
    let (code, _, _) = cli("trace", &file.path, &[&good, "--until", "1h"]).await;
    assert_eq!(code, Some(1));
}
