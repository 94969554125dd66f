//! Per-target transforms end to end, against a real broker and real loopback receivers: the
//! body, headers and path a program sets reach the target (signed over the transformed body,
//! checked with the independent `standardwebhooks` crate); skipped events cost no request and
//! no result event and still commit; a program that fails on some events ends each in exactly
//! one final WebhookError, never retried, while other targets and events go on unchanged;
//! PostHog targets keep PostHog's event shape; batching targets never mix requests.

use crate::fixtures::receiver::{Receiver, Req};
use crate::fixtures::*;
use event_relay::config::TargetConfig;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A Komo relay for `group` on a one-partition topic, delivering to `targets` via route `all`.
async fn env(group: &str, targets: Vec<TargetConfig>) -> TestEnv {
    let mut env = TestEnv::komo(group, 1).await;
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    env.config.routes.push(route_all(&names));
    env.config.targets = targets;
    env
}

/// A CardViewed Komo event whose card is named `card_name` (the programs below branch on it).
fn card(id: &str, card_name: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&komo_event(id, "CardViewed")).unwrap();
    v["card_name"] = card_name.into();
    serde_json::to_vec(&v).unwrap()
}

/// A webhook target at `url` running `program`.
fn transformed(name: &str, url: &str, program: &str) -> TargetConfig {
    let mut t = webhook(name, url);
    t.transform = Some(program.to_string());
    t
}

/// Every result event after the relay stopped (nothing more can come), grouped by target.
async fn all_results(env: &TestEnv, at_least: usize) -> HashMap<String, Vec<Value>> {
    let mut by_target: HashMap<String, Vec<Value>> = HashMap::new();
    // The relay has stopped: the timeout only ends the read at the topic's end.
    for r in env.results(at_least + 50, Duration::from_secs(5)).await {
        let r = r.clone();
        by_target
            .entry(r["target"].as_str().unwrap().to_string())
            .or_default()
            .push(r);
    }
    by_target
}

const RENAME: &str = r#"
.event_type = del(.event)
del(.properties.correct)
.properties.relay = "event-relay"
.traits = del(.user.traits)
%headers."X-Partner" = "acme-" + %target
%path = "v2/" + string!(.event_type)
if .properties.card_name == "skip me" { %skip = true }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_sets_body_headers_and_path_and_skips_without_a_result() {
    let rx = Receiver::start(vec![]).await;
    let secret = format!("whsec_{}", base64_key());
    let mut shaped = transformed("shaped", &format!("{}/hooks", rx.url), RENAME);
    shaped.signing_secret = Some(secret.clone().into());
    let plain = webhook("plain", &format!("{}/plain", rx.url));
    let env = env("g-tf-shape", vec![shaped, plain]).await;
    let relay = env.relay();
    let skipped = ids(4);
    let actions = ids(6);
    let mut events: Vec<Vec<u8>> = skipped.iter().map(|i| card(i, "skip me")).collect();
    events.extend(actions.iter().map(|i| card(i, "quiz")));
    env.produce(&events).await;

    // 10 for `plain`, 6 for `shaped` (its 4 "skip me" cards are skipped).
    let res = env.results_json(16).await;
    assert_eq!(res.len(), 16, "{res:#?}");
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:#?}"
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            relay
                .metric("event_relay_transform_skipped_total{target=\"shaped\"}")
                .await
                == 4.0
        })
        .await
    );
    relay.stop().await.unwrap();
    assert_eq!(
        env.committed(1),
        vec![10],
        "skipped events are final: all committed"
    );
    let results = all_results(&env, 16).await;
    let shaped_ids: HashSet<_> = results["shaped"]
        .iter()
        .map(|r| r["source_event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        shaped_ids,
        actions.iter().cloned().collect(),
        "no result for a skip"
    );
    assert_eq!(results["plain"].len(), 10);

    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    let reqs = rx.requests();
    let hooks: Vec<&Req> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/hooks"))
        .collect();
    assert_eq!(hooks.len(), 6, "no request for a skipped event");
    for r in hooks {
        assert_eq!(
            r.path, "/hooks/v2/CardViewed",
            "%path appended to the URL's path"
        );
        assert_eq!(r.header("x-partner"), Some("acme-shaped"));
        verifier
            .verify(&r.raw, &r.header_map())
            .unwrap_or_else(|e| panic!("the signature covers the transformed body: {e:?}"));
        let b = r.json();
        assert_eq!(b["event_type"], "CardViewed");
        assert!(b.get("event").is_none() && b["properties"].get("correct").is_none());
        assert_eq!(b["properties"]["relay"], "event-relay");
        assert_eq!(b["traits"]["favourite_team"], "Lions");
        assert!(b["user"].get("traits").is_none());
    }
    // The target without a transform sends the envelope as before.
    let plain: Vec<&Req> = reqs.iter().filter(|r| r.path == "/plain").collect();
    assert_eq!(plain.len(), 10);
    for r in plain {
        let b = r.json();
        assert_eq!(b["event"], "CardViewed");
        assert_eq!(b["properties"]["correct"], 1);
    }
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

/// Fails on the cards named "broken" only: `parse_json!` of a card name that is not JSON.
const FRAGILE: &str = r#"
if .properties.card_name == "broken" {
  .parsed = parse_json!(string!(.properties.card_name))
}
.checked = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_failing_on_some_events_loses_nothing_and_stalls_nothing() {
    let rx = Receiver::start(vec![]).await;
    let fragile = transformed("fragile", &format!("{}/fragile", rx.url), FRAGILE);
    let healthy = webhook("healthy", &format!("{}/healthy", rx.url));
    let env = env("g-tf-fail", vec![fragile, healthy]).await;
    let relay = env.relay();
    let good = ids(5);
    let bad = ids(5);
    // Interleaved: the failures sit between events that must still go out.
    let mut events = Vec::new();
    for (g, b) in good.iter().zip(&bad) {
        events.push(card(b, "broken"));
        events.push(card(g, "quiz"));
    }
    env.produce(&events).await;
    let res = env.results_json(20).await;
    assert_eq!(res.len(), 20, "{res:#?}");
    assert!(
        eventually(Duration::from_secs(30), || async {
            relay
                .metric("event_relay_transform_errors_total{target=\"fragile\"}")
                .await
                == 5.0
        })
        .await
    );
    relay.stop().await.unwrap();
    assert_eq!(
        env.committed(1),
        vec![10],
        "failed transforms are final: all committed"
    );

    let results = all_results(&env, 20).await;
    assert_eq!(
        results["healthy"].len(),
        10,
        "the other target is unaffected"
    );
    assert!(results["healthy"]
        .iter()
        .all(|r| r["event"] == "WebhookSuccess"));
    let fragile = &results["fragile"];
    assert_eq!(
        fragile.len(),
        10,
        "exactly one result per event: {fragile:#?}"
    );
    for r in fragile {
        let id = r["source_event_id"].as_str().unwrap().to_string();
        if bad.contains(&id) {
            assert_eq!(r["event"], "WebhookError", "{r}");
            let error = r["error"].as_str().unwrap();
            assert!(
                error.starts_with("transform failed: line 3, column "),
                "{error}"
            );
            assert!(error.contains("parse_json"), "{error}");
            assert_eq!(r["attempts"], 0, "never sent, never retried: {r}");
            assert_eq!(r["parked"], 0);
        } else {
            assert_eq!(r["event"], "WebhookSuccess", "{r}");
        }
    }
    let sent: Vec<Value> = rx
        .requests()
        .iter()
        .filter(|r| r.path == "/fragile")
        .map(Req::json)
        .collect();
    assert_eq!(sent.len(), 5, "only the events the program did not fail on");
    assert!(sent
        .iter()
        .all(|b| b["checked"] == true && b["properties"]["card_name"] == "quiz"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posthog_transform_keeps_the_event_shape_and_its_uuid() {
    let rx = Receiver::start(vec![]).await;
    let mut ph = quick_target(json!({
        "name": "ph", "kind": "posthog", "url": rx.url, "api_key": "phc_test", "gzip": false,
        "batch_linger": "50ms",
        "transform": "del(.uuid)\ndel(.properties.favourite_team)\n.event = \"komo_\" + string!(.event)\nif .properties.card_name == \"bad card\" { .distinct_id = \"\" }\n%headers.\"X-Tenant\" = \"acme\"",
    }));
    ph.batch_max_events = Some(10);
    let env = env("g-tf-ph", vec![ph]).await;
    let relay = env.relay();
    let quiz = ids(3);
    let mut events = cards(&quiz);
    let poll = uuid::Uuid::new_v4().to_string();
    let mut bad: Value = serde_json::from_slice(&komo_event(&poll, "CardViewed")).unwrap();
    bad["card_name"] = "bad card".into();
    events.push(serde_json::to_vec(&bad).unwrap());
    env.produce(&events).await;
    let res = env.results_json(4).await;
    assert_eq!(res.len(), 4);
    relay.stop().await.unwrap();
    for r in &res {
        if r["source_event_id"] == poll.as_str() {
            assert_eq!(r["event"], "WebhookError");
            let error = r["error"].as_str().unwrap();
            assert!(
                error.starts_with("transform failed: ") && error.contains("distinct_id"),
                "{error}"
            );
        } else {
            assert_eq!(r["event"], "WebhookSuccess", "{r}");
        }
    }
    let events: Vec<Value> = rx
        .requests()
        .iter()
        .inspect(|r| assert_eq!(r.header("x-tenant"), Some("acme")))
        .flat_map(|r| r.json()["batch"].as_array().unwrap().clone())
        .collect();
    assert_eq!(events.len(), 3);
    for e in &events {
        assert!(
            quiz.contains(&e["uuid"].as_str().unwrap().to_string()),
            "uuid put back: {e}"
        );
        assert_eq!(e["event"], "komo_CardViewed");
        assert!(e["properties"].get("favourite_team").is_none());
        assert_eq!(e["properties"]["$lib"], "event-relay");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_target_sends_different_paths_and_headers_in_different_requests() {
    let rx = Receiver::start(vec![]).await;
    let mut t = transformed(
        "batched",
        &format!("{}/in", rx.url),
        "%path = string!(.properties.card_name)\n%headers.\"X-Card\" = string!(.properties.card_name)",
    );
    t.batch_max_events = Some(50);
    t.batch_linger = Some(ms(500));
    let env = env("g-tf-batch", vec![t]).await;
    let relay = env.relay();
    let events: Vec<Vec<u8>> = ids(10)
        .iter()
        .enumerate()
        .map(|(n, i)| card(i, if n % 2 == 0 { "alpha" } else { "beta" }))
        .collect();
    env.produce_concurrently(&events).await;
    let res = env.results_json(10).await;
    assert_eq!(res.len(), 10);
    relay.stop().await.unwrap();
    let mut seen = 0;
    for r in rx.requests() {
        let body = r.json();
        let items = body.as_array().expect("a batching target sends arrays");
        let name = r.path.trim_start_matches("/in/");
        assert_eq!(r.header("x-card"), Some(name));
        for item in items {
            assert_eq!(
                item["properties"]["card_name"], name,
                "one request, one path and headers"
            );
        }
        seen += items.len();
    }
    assert_eq!(seen, 10);
}

/// The fixture message whose `event` is `name` (tests/fixtures/valid_events.jsonl).
fn fixture(name: &str) -> (String, Vec<u8>) {
    let text = include_str!("../fixtures/valid_events.jsonl");
    let line = text
        .lines()
        .find(|l| serde_json::from_str::<Value>(l).unwrap()["event"] == name)
        .unwrap_or_else(|| panic!("no {name} fixture"));
    let v: Value = serde_json::from_str(line).unwrap();
    let id = v["id"]
        .as_str()
        .or(v["uuid"].as_str())
        .unwrap_or_default()
        .to_string();
    (id, line.as_bytes().to_vec())
}

/// A webhook target running one of the shipped programs in `config/transforms/`.
fn shipped(name: &str, url: &str, file: &str, vars: &[(&str, &str)]) -> TargetConfig {
    let mut t = webhook(name, url);
    t.transform_file =
        Some(format!("{}/config/transforms/{file}", env!("CARGO_MANIFEST_DIR")).into());
    t.transform_vars = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    t
}

/// Real Komo and acemate messages through the relay to receivers standing in for Segment,
/// Amplitude and a partner that must not get personal data, with the shipped programs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_examples_deliver_partner_shaped_bodies() {
    let rx = Receiver::start(vec![]).await;
    let targets = vec![
        shipped(
            "segment",
            &format!("{}/v1", rx.url),
            "segment.vrl",
            &[("write_key", "wk-1")],
        ),
        shipped(
            "amplitude",
            &format!("{}/2/httpapi", rx.url),
            "amplitude.vrl",
            &[("api_key", "ak-1")],
        ),
        shipped(
            "privacy",
            &format!("{}/privacy", rx.url),
            "strip-personal-data.vrl",
            &[],
        ),
    ];
    let mut env = TestEnv::start("g-tf-shipped", event_relay::config::SourceFormat::Auto, 1).await;
    env.config
        .routes
        .push(route_all(&["segment", "amplitude", "privacy"]));
    env.config.targets = targets;
    let relay = env.relay();
    let messages = [
        fixture("SignUpSuccess"),
        fixture("$identify"),
        fixture("exam_completed"),
    ];
    env.produce(&messages.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>())
        .await;
    let res = env.results_json(9).await;
    assert_eq!(res.len(), 9, "{res:#?}");
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:#?}"
    );
    relay.stop().await.unwrap();

    let reqs = rx.requests();
    let segment: Vec<Value> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .map(Req::json)
        .collect();
    assert_eq!(segment.len(), 3);
    for call in &segment {
        assert_eq!(call["writeKey"], "wk-1");
        assert!(
            call["userId"].is_string() || call["anonymousId"].is_string(),
            "{call}"
        );
    }
    let identify = reqs
        .iter()
        .find(|r| r.path == "/v1/identify")
        .expect("an identify call");
    assert_eq!(identify.json()["type"], "identify");
    assert_eq!(
        identify.json()["traits"]["email"],
        "student2@uni-example.de"
    );
    let tracks: Vec<Value> = reqs
        .iter()
        .filter(|r| r.path == "/v1/track")
        .map(Req::json)
        .collect();
    assert_eq!(tracks.len(), 2);
    assert!(tracks
        .iter()
        .all(|t| t["type"] == "track" && t["event"].is_string()));

    let amplitude: Vec<Value> = reqs
        .iter()
        .filter(|r| r.path == "/2/httpapi")
        .map(Req::json)
        .collect();
    assert_eq!(amplitude.len(), 3);
    for upload in &amplitude {
        assert_eq!(upload["api_key"], "ak-1");
        let e = &upload["events"][0];
        assert!(
            e["event_type"].is_string() && e["insert_id"].is_string(),
            "{e}"
        );
        assert!(e["time"].is_i64(), "time in ms since epoch: {e}");
    }

    let privacy: Vec<&Req> = reqs.iter().filter(|r| r.path == "/privacy").collect();
    assert_eq!(privacy.len(), 3);
    for r in privacy {
        let text = String::from_utf8_lossy(&r.raw);
        for personal in [
            "joe@bloggs.com",
            "student2@uni-example.de",
            "\"Joe\"",
            "Bloggs",
        ] {
            assert!(
                !text.contains(personal),
                "{personal} reached the partner: {text}"
            );
        }
        assert!(r.json()["id"].is_string(), "the rest of the envelope stays");
    }
}
