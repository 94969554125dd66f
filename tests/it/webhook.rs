//! Webhook targets against a real broker and real loopback receivers: body formats, method,
//! URL/header templates (and that an event cannot redirect a delivery to another host),
//! Standard Webhooks signatures checked with the independent `standardwebhooks` crate, batching,
//! per-target concurrency and rate limits, isolation between targets, and the circuit breaker.

use base64::Engine;
use crate::fixtures::receiver::{Receiver, Reply, Req};
use crate::fixtures::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SITE_ID: &str = "2d5776b8-158a-4216-aaa1-edbc249e005b";

/// Fast retries for tests.
const FAST_RETRY: &str = r#"
[targets.retry]
max_attempts = 5
initial_backoff = "50ms"
max_backoff = "200ms"
max_elapsed = "60s"
"#;

/// A webhook target `name` at `url` with `extra` keys and fast retries.
fn target(name: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[[targets]]
name = "{name}"
kind = "webhook"
url = "{url}"
timeout = "5s"
{extra}
{FAST_RETRY}
"#
    )
}

fn route_all(targets: &[&str]) -> String {
    format!(
        "[[routes]]\nname = \"all\"\ntargets = {}\n",
        serde_json::to_string(targets).unwrap()
    )
}

fn cards(ids: &[String]) -> Vec<Vec<u8>> {
    ids.iter().map(|i| komo_event(i, "CardViewed")).collect()
}

/// The envelope ids carried by a request body (an envelope or an array of them).
fn body_ids(r: &Req) -> Vec<String> {
    match r.json() {
        Value::Array(items) => items
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect(),
        v => vec![v["id"].as_str().unwrap().to_string()],
    }
}

/// The most requests a receiver answering after `hold` had open at once: request `j` is
/// still open when request `i` arrives if `j` arrived at most `hold` earlier (a client can only
/// reuse the slot after the answer, which comes at least `hold` after the arrival).
fn max_overlap(reqs: &[Req], hold: Duration) -> usize {
    reqs.iter()
        .map(|i| {
            reqs.iter()
                .filter(|j| j.at <= i.at && i.at < j.at + hold)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn header_map(r: &Req) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    for (k, v) in &r.headers {
        h.append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_formats_and_method() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![]).await;
    let targets = [
        target("env", &format!("{}/env", rx.url), "body = \"envelope\""),
        target(
            "orig",
            &format!("{}/orig", rx.url),
            "body = \"original\"\nmethod = \"PUT\"",
        ),
        target("phb", &format!("{}/ph", rx.url), "body = \"posthog\""),
        route_all(&["env", "orig", "phb"]),
    ]
    .concat();
    let relay = Relay::start(&config_text(
        &broker,
        &topics,
        "g-wh-body",
        "komo",
        "",
        &targets,
    ));
    let id = uuid::Uuid::new_v4().to_string();
    // Pretty-printed with a trailing newline: `original` must keep these exact bytes.
    let v: Value = serde_json::from_slice(&komo_event(&id, "CardViewed")).unwrap();
    let mut original = serde_json::to_vec_pretty(&v).unwrap();
    original.extend_from_slice(b"\n");
    broker
        .produce_concurrently(&topics.source, std::slice::from_ref(&original))
        .await;

    let res = broker.results_json(&topics, 3).await;
    assert_eq!(res.len(), 3);
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    let by_path: HashMap<&str, &Req> = reqs.iter().map(|r| (r.path.as_str(), r)).collect();

    let env = by_path["/env"];
    assert_eq!(env.method, "POST");
    assert_eq!(env.header("content-type"), Some("application/json"));
    let e = env.json();
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["envelope_version"], 1);
    assert_eq!(e["source"], "komo");
    assert_eq!(e["event"], "CardViewed");
    assert_eq!(e["site"]["id"], SITE_ID);
    assert_eq!(e["user"]["traits"]["favourite_team"], "Lions");
    assert_eq!(e["properties"]["score"], 1);

    let orig = by_path["/orig"];
    assert_eq!(orig.method, "PUT");
    assert_eq!(orig.raw, original, "original bytes, unchanged");

    let ph = by_path["/ph"];
    assert_eq!(ph.method, "POST");
    let p = ph.json();
    assert_eq!(p["event"], "CardViewed");
    assert_eq!(p["uuid"], id.as_str());
    assert_eq!(p["distinct_id"], "0fdbb943-511c-4220-9266-31465374f43b");
    assert_eq!(p["properties"]["$lib"], "event-relay");
    assert_eq!(p["properties"]["site_id"], SITE_ID);
    assert_eq!(p["properties"]["$set"]["favourite_team"], "Lions");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_and_header_templates_never_change_the_host() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![]).await;
    let targets = [
        target(
            "tpl",
            &format!("{}/hooks/{{{{source}}}}/{{{{event}}}}?site={{{{site.id}}}}", rx.url),
            r#"headers = { "X-Event-Id" = "{{id}}", "X-Site" = "{{site.id}}", "X-Event" = "{{event}}", "X-Static" = "yes" }"#,
        ),
        route_all(&["tpl"]),
    ]
    .concat();
    let relay = Relay::start(&config_text(
        &broker, &topics, "g-wh-tpl", "komo", "", &targets,
    ));
    let good = uuid::Uuid::new_v4().to_string();
    let evil = uuid::Uuid::new_v4().to_string();
    let evil_name = "CardViewed/../@evil.example";
    broker
        .produce_concurrently(
            &topics.source,
            &[
                komo_event(&good, "CardViewed"),
                komo_event(&evil, evil_name),
            ],
        )
        .await;
    let res = broker.results_json(&topics, 2).await;
    assert_eq!(res.len(), 2);
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "both requests reached this receiver");
    let by_id: HashMap<String, &Req> = reqs.iter().map(|r| (body_ids(r)[0].clone(), r)).collect();

    let g = by_id[&good];
    assert_eq!(g.path, format!("/hooks/komo/CardViewed?site={SITE_ID}"));
    assert_eq!(g.header("x-event-id"), Some(good.as_str()));
    assert_eq!(g.header("x-site"), Some(SITE_ID));
    assert_eq!(g.header("x-event"), Some("CardViewed"));
    assert_eq!(g.header("x-static"), Some("yes"));

    let e = by_id[&evil];
    assert_eq!(
        e.path,
        format!("/hooks/komo/CardViewed%2F..%2F%40evil.example?site={SITE_ID}"),
        "the event name is one encoded path segment"
    );
    assert_eq!(e.header("x-event"), Some(evil_name));
    assert_eq!(
        e.header("host"),
        Some(rx.url.trim_start_matches("http://")),
        "host unchanged"
    );
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_independently_and_the_id_is_stable_across_retries() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![Reply::status(503), Reply::status(503)]).await;
    let key: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(&key)
    );
    let targets = [
        target(
            "signed",
            &format!("{}/signed", rx.url),
            &format!("signing_secret = \"{secret}\""),
        ),
        route_all(&["signed"]),
    ]
    .concat();
    let relay = Relay::start(&config_text(
        &broker,
        &topics,
        "g-wh-sign",
        "komo",
        "",
        &targets,
    ));
    let id = uuid::Uuid::new_v4().to_string();
    broker
        .produce_concurrently(&topics.source, &[komo_event(&id, "CardViewed")])
        .await;
    let res = broker.results_json(&topics, 1).await;
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["event"], "WebhookSuccess");
    assert_eq!(res[0]["attempts"], 3);

    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "503, 503, 200");
    for r in &reqs {
        assert_eq!(
            r.header("webhook-id"),
            Some(id.as_str()),
            "webhook-id = envelope id"
        );
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 300);
        assert!(r.header("webhook-signature").unwrap().starts_with("v1,"));
        verifier
            .verify(&r.raw, &header_map(r))
            .unwrap_or_else(|e| panic!("signature does not verify: {e:?}"));
        // The signature covers the body: a changed body fails verification.
        let mut tampered = r.raw.clone();
        tampered.push(b' ');
        assert!(verifier.verify(&tampered, &header_map(r)).is_err());
        // ... and the key: another secret fails too.
        let other = standardwebhooks::Webhook::new(&format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        ))
        .unwrap();
        assert!(other.verify(&r.raw, &header_map(r)).is_err());
    }
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_sends_json_arrays() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![]).await;
    let targets = [
        target(
            "batched",
            &format!("{}/batch", rx.url),
            "batch_max_events = 10\nbatch_linger = \"1s\"",
        ),
        route_all(&["batched"]),
    ]
    .concat();
    let relay = Relay::start(&config_text(
        &broker,
        &topics,
        "g-wh-batch",
        "komo",
        "",
        &targets,
    ));
    let first = ids(25);
    broker
        .produce_concurrently(&topics.source, &cards(&first))
        .await;
    let res = broker.results_json(&topics, 25).await;
    assert_eq!(res.len(), 25);
    assert!(res.iter().all(|r| r["event"] == "WebhookSuccess"));
    // A lone event later still arrives as an array: receivers of a batching target always
    // get the same shape.
    let lone = uuid::Uuid::new_v4().to_string();
    broker
        .produce_concurrently(&topics.source, &[komo_event(&lone, "CardViewed")])
        .await;
    assert_eq!(broker.results_json(&topics, 26).await.len(), 26);

    let reqs = rx.requests();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &reqs {
        let arr = r.json();
        let items = arr
            .as_array()
            .unwrap_or_else(|| panic!("array body: {arr}"));
        assert!((1..=10).contains(&items.len()), "{} events", items.len());
        for e in items {
            assert_eq!(e["source"], "komo", "array of envelopes");
            *seen
                .entry(e["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for id in first.iter().chain([&lone]) {
        assert_eq!(seen.get(id), Some(&1), "{id} delivered once");
    }
    assert!(
        reqs.iter().any(|r| body_ids(r).len() > 1),
        "events were batched"
    );
    assert_eq!(body_ids(reqs.last().unwrap()), vec![lone]);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_bounds_concurrent_requests() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![]).await;
    let hold = Duration::from_millis(400);
    rx.set_default(Reply::status(200).delay(hold));
    let targets = [
        target("slow", &format!("{}/slow", rx.url), "max_in_flight = 2"),
        route_all(&["slow"]),
    ]
    .concat();
    let relay = Relay::start(&config_text(
        &broker,
        &topics,
        "g-wh-inflight",
        "komo",
        "",
        &targets,
    ));
    let ids = ids(8);
    broker
        .produce_concurrently(&topics.source, &cards(&ids))
        .await;
    let res = broker.results_json(&topics, 8).await;
    assert_eq!(res.len(), 8);
    assert!(res.iter().all(|r| r["event"] == "WebhookSuccess"));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 8);
    let most = max_overlap(&reqs, hold);
    assert_eq!(most, 2, "never more than max_in_flight = 2 open requests");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spaces_requests() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![]).await;
    let targets = [
        target(
            "paced",
            &format!("{}/paced", rx.url),
            "rate_limit_per_sec = 4",
        ),
        route_all(&["paced"]),
    ]
    .concat();
    let relay = Relay::start(&config_text(
        &broker,
        &topics,
        "g-wh-rate",
        "komo",
        "",
        &targets,
    ));
    broker
        .produce_concurrently(&topics.source, &cards(&ids(5)))
        .await;
    assert_eq!(broker.results_json(&topics, 5).await.len(), 5);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 5);
    let span = reqs.last().unwrap().at - reqs[0].at;
    // 5 requests at 4/s: at least 4 intervals of 250ms between the first and the last.
    assert!(span >= Duration::from_millis(950), "span {span:?}");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_does_not_hold_up_another() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let down = Receiver::start(vec![]).await;
    down.set_default(Reply::status(503));
    let up = Receiver::start(vec![]).await;
    let slow_retry = FAST_RETRY
        .replace("max_attempts = 5", "max_attempts = 1000")
        .replace("max_backoff = \"200ms\"", "max_backoff = \"1s\"")
        .replace("max_elapsed = \"60s\"", "max_elapsed = \"1h\"");
    let targets = [
        target("down", &format!("{}/down", down.url), "").replace(FAST_RETRY, &slow_retry),
        target("up", &format!("{}/up", up.url), ""),
        route_all(&["down", "up"]),
    ]
    .concat();
    let relay = Relay::start(&config_text(
        &broker,
        &topics,
        "g-wh-isolation",
        "komo",
        "",
        &targets,
    ));
    let ids = ids(10);
    broker
        .produce_concurrently(&topics.source, &cards(&ids))
        .await;
    let res = broker.results_json(&topics, 10).await;
    assert_eq!(res.len(), 10);
    for r in &res {
        assert_eq!(r["target"], "up", "{r}");
        assert_eq!(r["event"], "WebhookSuccess");
    }
    let got: HashSet<String> = up.requests().iter().flat_map(body_ids).collect();
    assert_eq!(got, ids.iter().cloned().collect::<HashSet<_>>());
    assert!(down.count() >= 10, "the failing target is being retried");
    relay.stop().await.unwrap();
    // Nothing was given up on: the messages still owed to "down" stay uncommitted.
    let committed = broker.committed("g-wh-isolation", &topics.source, 1);
    assert!(committed[0] <= 0, "committed {committed:?}");
}

/// A target `x` with a circuit of 3 failures / 1 s cool-down, retried (almost) forever.
fn circuit_target(url: &str) -> String {
    [
        target(
            "x",
            &format!("{url}/x"),
            "[targets.circuit]\nfailure_threshold = 3\ncool_down = \"1s\"",
        )
        .replace("max_attempts = 5", "max_attempts = 1000")
        .replace("max_elapsed = \"60s\"", "max_elapsed = \"1h\""),
        route_all(&["x"]),
    ]
    .concat()
}

async fn circuit_state(relay: &Relay) -> String {
    let (_, body) = relay.get("/readyz").await;
    serde_json::from_str::<Value>(&body).unwrap_or_default()["circuits"]["x"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_open(relay: &Relay) {
    assert!(
        eventually(Duration::from_secs(30), || async {
            relay.metric("event_relay_circuit_open{target=\"x\"}").await == 1.0
        })
        .await,
        "circuit opened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_opens_holds_events_and_recovers() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let relay = Relay::start(
        &config_text(
            &broker,
            &topics,
            "g-wh-circuit",
            "komo",
            "",
            &circuit_target(&rx.url),
        )
        .replace("[server]", "[server]\ncircuit_open_threshold = \"1s\""),
    );
    let ids = ids(4);
    broker
        .produce_concurrently(&topics.source, &cards(&ids))
        .await;
    wait_open(&relay).await;
    let state = circuit_state(&relay).await;
    assert!(state.starts_with("open"), "readyz circuits.x = {state:?}");

    // While open, only probes go out (one per cool-down), not every event's retries.
    let before = rx.count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = rx.count() - before;
    assert!(during <= 8, "{during} requests while the circuit was open");
    // Open longer than server.circuit_open_threshold (1 s): not ready, and the body says why.
    let (code, body) = relay.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("a target circuit has been open too long"),
        "{body}"
    );
    assert_eq!(
        broker
            .read(&topics.results, 1, Duration::from_secs(1))
            .await
            .len(),
        0,
        "nothing given up on while the circuit is open"
    );

    // The receiver recovers: the probe succeeds, everything waiting is delivered.
    rx.set_default(Reply::status(200));
    let res = broker.results_json(&topics, 4).await;
    assert_eq!(res.len(), 4);
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    let got: HashSet<&str> = res
        .iter()
        .map(|r| r["source_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<HashSet<_>>());
    assert!(
        eventually(Duration::from_secs(10), || async {
            let (_, text) = relay.get("/metrics").await;
            text.lines()
                .any(|l| l == "event_relay_circuit_open{target=\"x\"} 0")
        })
        .await,
        "the gauge returns to 0"
    );
    assert_eq!(circuit_state(&relay).await, "closed");
    assert!(
        eventually(Duration::from_secs(10), || async {
            relay.get("/readyz").await.0 == 200
        })
        .await,
        "ready again once the circuit closed"
    );
    relay.stop().await.unwrap();
    assert_eq!(broker.committed("g-wh-circuit", &topics.source, 1), vec![4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_answered_with_a_client_error_does_not_wedge_the_circuit() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let relay = Relay::start(&config_text(
        &broker,
        &topics,
        "g-wh-probe",
        "komo",
        "",
        &circuit_target(&rx.url),
    ));
    let ids = ids(4);
    broker
        .produce_concurrently(&topics.source, &cards(&ids))
        .await;
    wait_open(&relay).await;
    // The target is back but refuses the first request it sees (the probe) with a 400.
    let answered = Arc::new(AtomicUsize::new(0));
    let a = answered.clone();
    rx.set_rule(move |_| {
        Some(Reply::status(if a.fetch_add(1, Ordering::SeqCst) == 0 {
            400
        } else {
            200
        }))
    });
    let res = broker.results_json(&topics, 4).await;
    assert_eq!(res.len(), 4, "every event reaches a final outcome: {res:?}");
    let errors: Vec<&Value> = res
        .iter()
        .filter(|r| r["event"] == "WebhookError")
        .collect();
    assert_eq!(errors.len(), 1, "{res:?}");
    assert_eq!(errors[0]["status_code"], 400);
    assert!(
        eventually(Duration::from_secs(10), || async {
            circuit_state(&relay).await == "closed"
        })
        .await
    );
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_bodies_stay_within_batch_max_bytes() {
    let broker = Broker::start();
    let topics = Topics::create(&broker, 1).await;
    let rx = Receiver::start(vec![]).await;
    // An envelope is about 1 KB here, larger than the raw event it came from.
    let targets = [
        target(
            "sized",
            &format!("{}/sized", rx.url),
            "batch_max_events = 10\nbatch_max_bytes = 2500\nbatch_linger = \"1s\"",
        ),
        route_all(&["sized"]),
    ]
    .concat();
    let relay = Relay::start(&config_text(
        &broker,
        &topics,
        "g-wh-bytes",
        "komo",
        "",
        &targets,
    ));
    let ids = ids(12);
    broker
        .produce_concurrently(&topics.source, &cards(&ids))
        .await;
    let res = broker.results_json(&topics, 12).await;
    assert_eq!(res.len(), 12);
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    let reqs = rx.requests();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &reqs {
        assert!(r.raw.len() <= 2500, "body of {} bytes", r.raw.len());
        for id in body_ids(r) {
            *seen.entry(id).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "{id} delivered once");
    }
    assert!(
        reqs.iter().any(|r| body_ids(r).len() > 1),
        "events were batched"
    );
    relay.stop().await.unwrap();
}
