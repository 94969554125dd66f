//! The in-flight bound in bytes (`pipeline.max_in_flight_bytes`): large events are held to it
//! whatever the event bound allows, and a message larger than the whole bound is still relayed
//! (admitted alone).

use crate::fixtures::accounting;
use crate::fixtures::receiver::{Receiver, Reply};
use crate::fixtures::*;
use std::time::Duration;

const KIB: usize = 1024;

/// A Komo card event of `bytes` bytes (a long user attribute pads it).
fn padded(id: &str, bytes: usize) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&komo_event(id, "CardViewed")).expect("fixture is JSON");
    v["notes"] = serde_json::Value::from("");
    let bare = v.to_string().len();
    v["notes"] = serde_json::Value::from("x".repeat(bytes - bare));
    let out = v.to_string().into_bytes();
    assert_eq!(out.len(), bytes);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_are_held_to_the_byte_bound_and_one_above_it_still_goes() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let mut env = TestEnv::komo("g-bytes", 1).await;
    let mut hook = webhook("hook", &format!("{}/hook", rx.url));
    hook.retry.max_attempts = Some(1000);
    hook.retry.max_elapsed = Some(secs(600));
    hook.circuit.failure_threshold = 0;
    env.config.targets.push(hook);
    env.config.routes.push(route_all(&["hook"]));
    // The event bound (1,000) never binds here; the byte bound does.
    env.config.pipeline.max_in_flight_events = 1000;
    env.config.pipeline.max_in_flight_bytes = 16 * KIB;
    let ids = ids(12);
    // Eleven events of 5 KiB + 100 bytes (6 started KiB each: two fit in 16 KiB), then one of
    // 40 KiB, more than the whole bound.
    let mut payloads: Vec<Vec<u8>> = ids[..11].iter().map(|i| padded(i, 5 * KIB + 100)).collect();
    payloads.push(padded(&ids[11], 40 * KIB));
    let relay = env.relay();
    env.produce(&payloads).await;

    // Every request fails, so nothing in flight finishes: the relay stops at the byte bound.
    assert!(
        eventually(Duration::from_secs(60), || async {
            relay.metric("event_relay_backpressure_paused").await == 1.0
        })
        .await,
        "the relay never waited on the bound"
    );
    let held = 16 / 6;
    assert_eq!(
        relay.metric("event_relay_in_flight_events").await,
        held as f64,
        "two 6-KiB messages fit in 16 KiB, a third does not"
    );
    assert_eq!(
        relay.metric("event_relay_in_flight_bytes").await,
        (held * 6 * KIB) as f64
    );

    rx.set_default(Reply::status(200));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let results = loop {
        let results = env
            .broker
            .read(&env.topics.results, ids.len(), Duration::from_secs(5))
            .await;
        if results.len() >= ids.len() || std::time::Instant::now() > deadline {
            break results;
        }
    };
    accounting::check(&ids, &["hook"], &rx.requests(), &results).assert_complete(0);
    assert!(results
        .iter()
        .all(|r| r.json()["event"] == "WebhookSuccess"));
    relay.stop().await.expect("relay stops");
}
