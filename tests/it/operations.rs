//! Operating the relay: every metric after a known workload, backpressure, health endpoints
//! turning red for the right reasons, and logs free of secrets and personal data.

use crate::fixtures::receiver::{Receiver, Reply};
use crate::fixtures::*;
use event_relay::config::{SourceFormat, TargetConfig};
use serde_json::json;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The webhook `hook` at `<url>/hook` (5 attempts, 20 ms to 50 ms backoff).
fn hook(url: &str) -> TargetConfig {
    let mut t = target(json!({ "name": "hook", "kind": "webhook", "url": format!("{url}/hook") }));
    t.retry.max_attempts = Some(5);
    t.retry.initial_backoff = ms(20);
    t.retry.max_backoff = ms(50);
    t
}

/// A Komo relay for `group` sending `Card*` events to [`hook`].
async fn env(group: &str, partitions: i32, url: &str) -> TestEnv {
    let mut env = TestEnv::komo(group, partitions).await;
    env.config.targets.push(hook(url));
    env.config.routes.push(route(json!({
        "name": "cards",
        "events": ["Card*"],
        "targets": ["hook"],
    })));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_a_known_workload() {
    // The first request is retried (503), the second is refused for good (400): whichever
    // events they hit, one delivery fails and the rest succeed.
    let rx = Receiver::start(vec![Reply::status(503), Reply::status(400)]).await;
    let env = env("g-metrics", 2, &rx.url).await;
    let relay = env.relay();
    let n = 6;
    let mut payloads: Vec<Vec<u8>> = ids(n).iter().map(|i| komo_event(i, "CardViewed")).collect();
    payloads.push(b"not json".to_vec()); // dead letter: not_json
    let mut invalid: serde_json::Value =
        serde_json::from_slice(&komo_event(&uuid::Uuid::new_v4().to_string(), "CardViewed"))
            .unwrap();
    invalid["score"] = "lots".into();
    payloads.push(invalid.to_string().into_bytes()); // dead letter: invalid (strict)
    payloads.push(komo_event(&uuid::Uuid::new_v4().to_string(), "SiteViewed")); // unrouted
    payloads.push(komo_event(
        &uuid::Uuid::new_v4().to_string(),
        "PrizeAwarded",
    )); // unknown event, unrouted
    env.produce(&payloads).await;
    let total = payloads.len() as f64;

    let results = env
        .broker
        .read(&env.topics.results, n, Duration::from_secs(60))
        .await;
    assert_eq!(results.len(), n);
    let src = &env.topics.source;
    let ok = eventually(Duration::from_secs(20), || async {
        let text = relay.get("/metrics").await.1;
        metric_value(
            &text,
            &format!("event_relay_messages_consumed_total{{topic=\"{src}\"}}"),
        ) == total
            && metric_value(
                &text,
                "event_relay_results_produced_total{event=\"WebhookSuccess\"}",
            ) == (n - 1) as f64
            && metric_value(
                &text,
                "event_relay_results_produced_total{event=\"WebhookError\"}",
            ) == 1.0
            && metric_value(
                &text,
                "event_relay_dead_letters_total{reason=\"invalid\",source=\"komo\"}",
            ) == 1.0
    })
    .await;
    let text = relay.get("/metrics").await.1;
    assert!(ok, "{text}");
    // Every asserted series must exist (a misspelled name or label fails instead of reading 0).
    let m = |k: &str| metric_series(&text, k).unwrap_or_else(|| panic!("no series {k}\n{text}"));
    assert_eq!(m("event_relay_events_normalized_total{event=\"CardViewed\",source=\"komo\",status=\"valid\"}"), n as f64);
    assert_eq!(m("event_relay_events_normalized_total{event=\"CardViewed\",source=\"komo\",status=\"invalid\"}"), 1.0);
    assert_eq!(m("event_relay_events_normalized_total{event=\"SiteViewed\",source=\"komo\",status=\"valid\"}"), 1.0);
    assert_eq!(m("event_relay_events_normalized_total{event=\"other\",source=\"komo\",status=\"unknown_event\"}"), 1.0);
    assert_eq!(
        m("event_relay_dead_letters_total{reason=\"not_json\",source=\"komo\"}"),
        1.0
    );
    assert_eq!(
        m("event_relay_deliveries_total{outcome=\"success\",target=\"hook\"}"),
        (n - 1) as f64
    );
    assert_eq!(
        m("event_relay_deliveries_total{outcome=\"error\",target=\"hook\"}"),
        1.0
    );
    assert_eq!(m("event_relay_delivery_attempts_total{result=\"ok\",status_class=\"2xx\",target=\"hook\"}"), (n - 1) as f64);
    assert_eq!(m("event_relay_delivery_attempts_total{result=\"retryable\",status_class=\"5xx\",target=\"hook\"}"), 1.0);
    assert_eq!(m("event_relay_delivery_attempts_total{result=\"fatal\",status_class=\"4xx\",target=\"hook\"}"), 1.0);
    assert_eq!(
        m("event_relay_delivery_duration_seconds_count{target=\"hook\"}"),
        n as f64
    );
    assert_eq!(
        m("event_relay_request_duration_seconds_count{target=\"hook\"}"),
        n as f64 + 1.0
    );
    assert_eq!(
        m("event_relay_batch_size_count{target=\"hook\"}"),
        n as f64 + 1.0
    );
    assert_eq!(
        m("event_relay_batch_size_sum{target=\"hook\"}"),
        n as f64 + 1.0
    );
    assert_eq!(m("event_relay_unrouted_total{source=\"komo\"}"), 2.0);
    assert_eq!(
        m("event_relay_results_produced_total{event=\"WebhookSuccess\"}"),
        (n - 1) as f64
    );
    assert_eq!(
        m("event_relay_results_produced_total{event=\"WebhookError\"}"),
        1.0
    );
    assert_eq!(m("event_relay_circuit_open{target=\"hook\"}"), 0.0);
    assert_eq!(m("event_relay_backpressure_paused"), 0.0);
    assert_eq!(
        m(&format!(
            "event_relay_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert!(m("event_relay_in_flight_events") <= total);
    // Commits and lag arrive asynchronously (commit interval, statistics interval).
    let committed = eventually(Duration::from_secs(20), || async {
        let text = relay.get("/metrics").await.1;
        (0..2)
            .map(|p| {
                metric_value(
                    &text,
                    &format!(
                        "event_relay_offsets_committed_total{{partition=\"{p}\",topic=\"{src}\"}}"
                    ),
                )
            })
            .sum::<f64>()
            >= 1.0
            && text.contains(&format!(
                "event_relay_consumer_lag{{partition=\"0\",topic=\"{src}\"}} 0"
            ))
            // Every event final: nothing left in flight.
            && metric_series(&text, "event_relay_in_flight_events") == Some(0.0)
    })
    .await;
    assert!(committed, "{}", relay.get("/metrics").await.1);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_in_flight_pauses_consumption_and_loses_nothing() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(200).delay(Duration::from_millis(300)));
    let mut env = env("g-bp", 1, &rx.url).await;
    env.config.pipeline.max_in_flight_events = 2;
    let relay = env.relay();
    let ids = ids(12);
    env.produce(&cards(&ids)).await;
    let paused = eventually(Duration::from_secs(30), || async {
        relay.metric("event_relay_backpressure_paused").await == 1.0
    })
    .await;
    assert!(paused, "consumption paused while in-flight was full");
    assert!(relay.metric("event_relay_in_flight_events").await <= 2.0);
    let results = env
        .broker
        .read(&env.topics.results, 12, Duration::from_secs(60))
        .await;
    assert_eq!(results.len(), 12);
    assert_results_for_exactly(&results, &ids);
    relay.stop().await.unwrap();
}

/// `max_in_flight_events` bounds events, not messages: a PostHog-style batch message takes one
/// permit per event, so three 3-event messages do not fit under a bound of 4 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_messages_take_one_in_flight_permit_per_event() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(200).delay(Duration::from_millis(400)));
    let mut env = TestEnv::start("g-bp-batch", SourceFormat::Acemate, 1).await;
    env.config.targets.push(target(
        json!({ "name": "hook", "kind": "webhook", "url": format!("{}/hook", rx.url) }),
    ));
    env.config.routes.push(route(json!({
        "name": "all",
        "events": ["*"],
        "targets": ["hook"],
    })));
    env.config.pipeline.max_in_flight_events = 4;
    let relay = env.relay();
    let ids = ids(9);
    let messages: Vec<Vec<u8>> = ids
        .chunks(3)
        .map(|chunk| {
            let batch: Vec<serde_json::Value> = chunk
                .iter()
                .map(|id| serde_json::json!({"event": "custom_action", "distinct_id": "u1", "uuid": id}))
                .collect();
            serde_json::json!({"api_key": "phc_test", "batch": batch})
                .to_string()
                .into_bytes()
        })
        .collect();
    env.produce(&messages).await;
    let paused = eventually(Duration::from_secs(30), || async {
        relay.metric("event_relay_backpressure_paused").await == 1.0
    })
    .await;
    assert!(
        paused,
        "the second batch did not fit next to the first: paused"
    );
    assert!(relay.metric("event_relay_in_flight_events").await <= 4.0);
    let results = env
        .broker
        .read(&env.topics.results, 9, Duration::from_secs(60))
        .await;
    assert_results_for_exactly(&results, &ids);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_red_when_the_broker_goes_away() {
    let rx = Receiver::start(vec![]).await;
    let env = env("g-ready", 1, &rx.url).await;
    let relay = env.relay();
    assert!(
        eventually(Duration::from_secs(30), || async {
            relay.get("/readyz").await.0 == 200
        })
        .await
    );
    let (_, body) = relay.get("/readyz").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["group_joined"], true);
    assert_eq!(v["circuits"]["hook"], "closed");
    drop(env.broker); // kills tansu
    let red = eventually(Duration::from_secs(30), || async {
        relay.get("/readyz").await.0 == 503
    })
    .await;
    let (_, body) = relay.get("/readyz").await;
    assert!(red, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["broker_reachable"], false, "{body}");
    assert_eq!(
        relay.get("/healthz").await.0,
        200,
        "liveness stays green: the loop is alive"
    );
    relay.shutdown.cancel();
}

/// Ready once the group is joined: with statistics every hour, the first statistics callback
/// (where reachability used to be learned) cannot come during the test, so only the
/// assignment can make `/readyz` green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_green_once_the_group_is_joined_before_any_statistics() {
    let rx = Receiver::start(vec![]).await;
    let mut env = env("g-ready-join", 1, &rx.url).await;
    let hour = "3600000".to_string();
    env.config
        .kafka
        .options
        .insert("statistics.interval.ms".into(), hour);
    let relay = env.relay();
    let ready = eventually(Duration::from_secs(60), || async {
        relay.get("/readyz").await.0 == 200
    })
    .await;
    let (_, body) = relay.get("/readyz").await;
    assert!(ready, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["group_joined"], true, "{body}");
    assert_eq!(v["broker_reachable"], true, "{body}");
    relay.stop().await.unwrap();
}

/// Runs the real binary with debug logging and checks that nothing it wrote contains a secret
/// or the payload's personal data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_secrets_or_personal_data() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(400));
    let secret_header = "Bearer hdr-secret-7f3a";
    let signing = "whsec_c2lnbmluZy1zZWNyZXQtdmFsdWUtZm9yLXRlc3Q=";
    let api_key = "phc_apikey_secret_91b2";
    let mut env = env("g-logs", 1, &rx.url).await;
    let hook = &mut env.config.targets[0];
    hook.signing_secret = Some(signing.to_string().into());
    // Expanded from the environment by the loader.
    hook.headers
        .insert("Authorization".to_string(), "${TEST_AUTH}".to_string());
    env.config.targets.push(target(json!({
        "name": "ph",
        "kind": "posthog",
        "url": rx.url,
        "api_key": api_key,
    })));
    env.config
        .routes
        .push(route(json!({ "name": "ph", "targets": ["ph"] })));
    env.config.kafka.options.insert(
        "sasl.password".to_string(),
        "kafka-pw-secret-55".to_string(),
    );
    let file = ConfigFile::write(&env.config);
    let path = &file.path;
    let listen = &env.config.server.listen;
    let check = Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(["check", "--config"])
        .arg(path)
        .env("TEST_AUTH", secret_header)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(["run", "--config"])
        .arg(path)
        .env("TEST_AUTH", secret_header)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let email = "jane.private@example.org";
    let mut ev: serde_json::Value =
        serde_json::from_slice(&komo_event(&uuid::Uuid::new_v4().to_string(), "CardViewed"))
            .unwrap();
    ev["email"] = email.into();
    ev["first_name"] = "Janeprivate".into();
    let mut bad = ev.clone();
    bad["score"] = "not-a-number".into();
    env.produce(&[ev.to_string().into_bytes(), bad.to_string().into_bytes()])
        .await;
    let results = env
        .broker
        .read(&env.topics.results, 2, Duration::from_secs(60))
        .await;
    assert_eq!(results.len(), 2, "the WebhookError results were produced");
    let dl = env.dead_letters(1, Duration::from_secs(30)).await;
    assert_eq!(dl.len(), 1);
    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("event_relay_deliveries_total"),
        "{metrics}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM ends the relay with exit 0: {status:?}"
    );
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    logs.push_str(&String::from_utf8_lossy(&check.stdout));
    logs.push_str(&String::from_utf8_lossy(&check.stderr));
    assert!(
        logs.contains("delivery failed for good"),
        "the run was logged: {logs}"
    );
    assert!(logs.contains("message dead-lettered"));
    for secret in [
        "hdr-secret-7f3a",
        "c2lnbmluZy1zZWNyZXQtdmFsdWUtZm9yLXRlc3Q",
        api_key,
        "kafka-pw-secret-55",
        email,
        "Janeprivate",
    ] {
        assert!(!logs.contains(secret), "{secret} appeared in the logs");
    }
    // ...nor in result events, dead letters (headers included) or metrics.
    let mut written: Vec<(String, String)> = vec![("metrics".into(), metrics)];
    for r in results.iter().chain(&dl) {
        written.push((
            format!("record at offset {} (results or dead letters)", r.offset),
            format!("{} {:?}", String::from_utf8_lossy(&r.value), r.headers),
        ));
    }
    for (what, text) in &written {
        for secret in [
            "hdr-secret-7f3a",
            "c2lnbmluZy1zZWNyZXQtdmFsdWUtZm9yLXRlc3Q",
            api_key,
            "kafka-pw-secret-55",
        ] {
            assert!(!text.contains(secret), "{secret} appeared in {what}");
        }
    }
}

/// The results name exactly these source events, each once.
fn assert_results_for_exactly(results: &[Record], ids: &[String]) {
    let mut got: Vec<String> = results.iter().map(Record::source_event_id).collect();
    got.sort_unstable();
    let mut want = ids.to_vec();
    want.sort_unstable();
    assert_eq!(got, want);
}
