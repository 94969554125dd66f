//! How a journey across retry tiers ends in failure: exhaustion (one WebhookError, the
//! delivery in the failed topic, then `redrive --from failed` delivers it), a final 4xx in a
//! tier, and a target whose circuit stays open (records move on without requests).

use crate::fixtures::receiver::{Receiver, Reply};
use crate::fixtures::*;
use crate::tiers::{by_id, parking, tiered, wait_metric};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// A target that never recovers: with 4 attempts over 2 tiers (2 in memory, one per tier), each
/// event ends in one WebhookError with 4 attempts and 2 parks, and its delivery record is in the
/// failed topic, marked `exhausted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_delivery_ends_in_one_error_and_the_failed_topic() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let mut x = parking("x", &rx.url);
    x.retry.max_attempts = Some(4);
    let env = tiered("g-tier-exhausted", &[secs(1), secs(2)], x).await;
    let relay = env.relay();
    let n = 10;
    let ids = ids(n);
    env.produce(&cards(&ids)).await;

    let results = env.results_json(n).await;
    assert_eq!(results.len(), n);
    for r in &results {
        assert_eq!(r["event"], "WebhookError", "{r}");
        assert_eq!(
            (r["attempts"].as_u64(), r["parked"].as_u64()),
            (Some(4), Some(2)),
            "{r}"
        );
        assert_eq!(r["status_code"], 503);
    }
    let failed = env.failed(n, Duration::from_secs(60)).await;
    let failed_ids: HashSet<String> = failed
        .iter()
        .map(|r| r.header("source_event_id").unwrap().to_string())
        .collect();
    assert_eq!(failed_ids, ids.iter().cloned().collect());
    for f in &failed {
        assert_eq!(f.header("reason"), Some("exhausted"));
        assert_eq!(f.header("target"), Some("x"));
        assert_eq!(f.header("attempts"), Some("4"));
        let env_json: Value = f.json();
        assert_eq!(
            env_json["id"].as_str(),
            f.header("source_event_id"),
            "the payload is the envelope"
        );
    }
    assert!(by_id(&rx).values().all(|reqs| reqs.len() == 4));

    // The partner is fixed: `redrive --from failed` re-enters every delivery into the first
    // tier with its budget reset, and the running relay delivers each once.
    rx.set_default(Reply::status(200));
    let file = ConfigFile::write(&env.config);
    let (code, stdout, stderr) =
        crate::redrive::cli("redrive", &file.path, &["--from", "failed"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let all = env.results_json(2 * n).await;
    let successes: Vec<&Value> = all
        .iter()
        .filter(|r| r["event"] == "WebhookSuccess")
        .collect();
    assert_eq!(
        successes.len(),
        n,
        "one WebhookSuccess per redriven delivery"
    );
    for r in &successes {
        assert_eq!(
            (r["attempts"].as_u64(), r["parked"].as_u64()),
            (Some(1), Some(0)),
            "{r}"
        );
    }
    let ok: HashSet<&str> = successes
        .iter()
        .map(|r| r["source_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ok.len(), n);
    relay.stop().await.unwrap();
}

/// A final answer (404) to a tier's attempt ends the delivery there: one WebhookError, the
/// record in the failed topic marked `final`, no further tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_answer_in_a_tier_ends_the_journey() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let env = tiered("g-tier-final", &[secs(1), secs(2)], parking("x", &rx.url)).await;
    let relay = env.relay();
    let n = 5;
    env.produce(&cards(&ids(n))).await;
    wait_metric(
        &relay,
        "event_relay_parked_total{target=\"x\",tier=\"1s\"}",
        n as f64,
    )
    .await;
    rx.set_default(Reply::status(404));
    let results = env.results_json(n).await;
    assert_eq!(results.len(), n);
    for r in &results {
        assert_eq!(
            (
                r["event"].as_str(),
                r["status_code"].as_u64(),
                r["parked"].as_u64()
            ),
            (Some("WebhookError"), Some(404), Some(1)),
            "{r}"
        );
    }
    let failed = env.failed(n, Duration::from_secs(60)).await;
    assert_eq!(failed.len(), n);
    assert!(failed.iter().all(|f| f.header("reason") == Some("final")));
    assert_eq!(
        relay
            .metric("event_relay_parked_total{target=\"x\",tier=\"2s\"}")
            .await,
        0.0
    );
    relay.stop().await.unwrap();
}

/// A target still down, its circuit open, when its records come due: each record moves on to
/// the next tier without a request (the circuit's cool-down outlasts the test, so not even a
/// probe goes out), then round the last tier until its 6s budget ends it in one WebhookError
/// (at least the two tiers: 300 ms + 1s + 2s fit 6s). A long outage costs the target the
/// requests that opened the circuit, not a retry storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_moves_due_records_on_without_requests() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let mut x = parking("x", &rx.url);
    x.circuit.failure_threshold = 3;
    x.circuit.cool_down = secs(3600);
    x.retry.max_elapsed = Some(secs(6));
    let env = tiered("g-tier-circuit", &[secs(1), secs(2)], x).await;
    let relay = env.relay();
    let n = 20;
    env.produce(&cards(&ids(n))).await;
    wait_metric(
        &relay,
        "event_relay_parked_total{target=\"x\",tier=\"1s\"}",
        n as f64,
    )
    .await;
    let before_tiers = rx.count();
    let results = env.results_json(n).await;
    assert_eq!(results.len(), n);
    for r in &results {
        assert_eq!(r["event"].as_str(), Some("WebhookError"), "{r}");
        assert!(r["parked"].as_u64().unwrap() >= 2, "{r}");
        assert!(r["error"].as_str().unwrap().contains("circuit open"), "{r}");
    }
    assert_eq!(
        rx.count(),
        before_tiers,
        "no request from the tiers while the circuit is open"
    );
    relay.stop().await.unwrap();
}
