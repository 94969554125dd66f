//! Webhook targets against a real broker and real loopback receivers: body formats, method,
//! URL/header templates (and that an event cannot redirect a delivery to another host),
//! Standard Webhooks signatures checked with the independent `standardwebhooks` crate, batching,
//! per-target concurrency and rate limits, isolation between targets, and the circuit breaker.

use crate::fixtures::receiver::{Receiver, Reply, Req};
use crate::fixtures::*;
use base64::Engine;
use event_relay::config::{BodyFormat, HttpMethod, TargetConfig};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SITE_ID: &str = "2d5776b8-158a-4216-aaa1-edbc249e005b";

/// A Komo relay for `group` on a one-partition topic, delivering to `targets` via the route `all`.
async fn env(group: &str, targets: Vec<TargetConfig>) -> TestEnv {
    let mut env = TestEnv::komo(group, 1).await;
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    env.config.routes.push(route_all(&names));
    env.config.targets = targets;
    env
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_formats_and_method() {
    let rx = Receiver::start(vec![]).await;
    let mut orig = webhook("orig", &format!("{}/orig", rx.url));
    orig.body = BodyFormat::Original;
    orig.method = HttpMethod::Put;
    let mut phb = webhook("phb", &format!("{}/ph", rx.url));
    phb.body = BodyFormat::Posthog;
    let mut envelope = webhook("env", &format!("{}/env", rx.url));
    envelope.body = BodyFormat::Envelope;
    let env = env("g-wh-body", vec![envelope, orig, phb]).await;
    let relay = env.relay();
    let id = uuid::Uuid::new_v4().to_string();
    // Pretty-printed with a trailing newline: `original` must keep these exact bytes.
    let v: Value = serde_json::from_slice(&komo_event(&id, "CardViewed")).unwrap();
    let mut original = serde_json::to_vec_pretty(&v).unwrap();
    original.extend_from_slice(b"\n");
    env.produce_concurrently(std::slice::from_ref(&original))
        .await;

    let res = env.results_json(3).await;
    assert_eq!(res.len(), 3);
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    let by_path: HashMap<&str, &Req> = reqs.iter().map(|r| (r.path.as_str(), r)).collect();

    let enveloped = by_path["/env"];
    assert_eq!(enveloped.method, "POST");
    assert_eq!(enveloped.header("content-type"), Some("application/json"));
    let e = enveloped.json();
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
    let rx = Receiver::start(vec![]).await;
    let mut tpl = webhook(
        "tpl",
        &format!(
            "{}/hooks/{{{{source}}}}/{{{{event}}}}?site={{{{site.id}}}}",
            rx.url
        ),
    );
    tpl.headers = [
        ("X-Event-Id", "{{id}}"),
        ("X-Site", "{{site.id}}"),
        ("X-Event", "{{event}}"),
        ("X-Static", "yes"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let env = env("g-wh-tpl", vec![tpl]).await;
    let relay = env.relay();
    let good = uuid::Uuid::new_v4().to_string();
    let evil = uuid::Uuid::new_v4().to_string();
    let evil_name = "CardViewed/../@evil.example";
    env.produce_concurrently(&[
        komo_event(&good, "CardViewed"),
        komo_event(&evil, evil_name),
    ])
    .await;
    let res = env.results_json(2).await;
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
    let rx = Receiver::start(vec![Reply::status(503), Reply::status(503)]).await;
    let key: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(&key)
    );
    let mut signed = webhook("signed", &format!("{}/signed", rx.url));
    signed.signing_secret = Some(secret.clone().into());
    let env = env("g-wh-sign", vec![signed]).await;
    let relay = env.relay();
    let id = uuid::Uuid::new_v4().to_string();
    env.produce_concurrently(&[komo_event(&id, "CardViewed")])
        .await;
    let res = env.results_json(1).await;
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
            .verify(&r.raw, &r.header_map())
            .unwrap_or_else(|e| panic!("signature does not verify: {e:?}"));
        // The signature covers the body: a changed body fails verification.
        let mut tampered = r.raw.clone();
        tampered.push(b' ');
        assert!(verifier.verify(&tampered, &r.header_map()).is_err());
        // ... and the key: another secret fails too.
        let other = standardwebhooks::Webhook::new(&format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        ))
        .unwrap();
        assert!(other.verify(&r.raw, &r.header_map()).is_err());
    }
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_sends_json_arrays() {
    let rx = Receiver::start(vec![]).await;
    let mut batched = webhook("batched", &format!("{}/batch", rx.url));
    batched.batch_max_events = Some(10);
    batched.batch_linger = Some(secs(1));
    let env = env("g-wh-batch", vec![batched]).await;
    let relay = env.relay();
    let first = ids(25);
    env.produce_concurrently(&cards(&first)).await;
    let res = env.results_json(25).await;
    assert_eq!(res.len(), 25);
    assert!(res.iter().all(|r| r["event"] == "WebhookSuccess"));
    // A lone event later still arrives as an array: receivers of a batching target always
    // get the same shape.
    let lone = uuid::Uuid::new_v4().to_string();
    env.produce_concurrently(&[komo_event(&lone, "CardViewed")])
        .await;
    assert_eq!(env.results_json(26).await.len(), 26);

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
    let rx = Receiver::start(vec![]).await;
    let hold = Duration::from_millis(400);
    rx.set_default(Reply::status(200).delay(hold));
    let mut slow = webhook("slow", &format!("{}/slow", rx.url));
    slow.max_in_flight = 2;
    let env = env("g-wh-inflight", vec![slow]).await;
    let relay = env.relay();
    let ids = ids(8);
    env.produce_concurrently(&cards(&ids)).await;
    let res = env.results_json(8).await;
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
    let rx = Receiver::start(vec![]).await;
    let mut paced = webhook("paced", &format!("{}/paced", rx.url));
    paced.rate_limit_per_sec = Some(4.0);
    let env = env("g-wh-rate", vec![paced]).await;
    let relay = env.relay();
    env.produce_concurrently(&cards(&ids(5))).await;
    assert_eq!(env.results_json(5).await.len(), 5);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 5);
    let span = reqs.last().unwrap().at - reqs[0].at;
    // 5 requests at 4/s: at least 4 intervals of 250ms between the first and the last.
    assert!(span >= Duration::from_millis(950), "span {span:?}");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_does_not_hold_up_another() {
    let down = Receiver::start(vec![]).await;
    down.set_default(Reply::status(503));
    let up = Receiver::start(vec![]).await;
    let mut failing = webhook("down", &format!("{}/down", down.url));
    failing.retry.max_attempts = Some(1000);
    failing.retry.max_backoff = secs(1);
    failing.retry.max_elapsed = Some(secs(3600));
    let env = env(
        "g-wh-isolation",
        vec![failing, webhook("up", &format!("{}/up", up.url))],
    )
    .await;
    let relay = env.relay();
    let ids = ids(10);
    env.produce_concurrently(&cards(&ids)).await;
    let res = env.results_json(10).await;
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
    let committed = env.committed(1);
    assert!(committed[0] <= 0, "committed {committed:?}");
}

/// A Komo relay for `group` delivering to a target `x` at `<url>/x` with a circuit of 3 failures /
/// 1 s cool-down, retried (almost) forever.
async fn circuit_env(group: &str, url: &str) -> TestEnv {
    let mut x = webhook("x", &format!("{url}/x"));
    x.circuit.failure_threshold = 3;
    x.circuit.cool_down = secs(1);
    x.retry.max_attempts = Some(1000);
    x.retry.max_elapsed = Some(secs(3600));
    env(group, vec![x]).await
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
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let mut env = circuit_env("g-wh-circuit", &rx.url).await;
    env.config.server.circuit_open_threshold = secs(1);
    let relay = env.relay();
    let ids = ids(4);
    env.produce_concurrently(&cards(&ids)).await;
    wait_open(&relay).await;
    let state = circuit_state(&relay).await;
    assert!(state.starts_with("open"), "readyz circuits.x = {state:?}");

    // While open, only probes go out (one per cool-down), not every event's retries.
    let before = rx.count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = rx.count() - before;
    assert!(during <= 8, "{during} requests while the circuit was open");
    // Open longer than server.circuit_open_threshold (1 s): listed as such, and the relay
    // stays ready — a partner's outage must not take a sidecar's pod out of service.
    let (code, body) = relay.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["circuits_open_too_long"][0], "x", "{body}");
    assert_eq!(
        env.broker
            .read(&env.topics.results, 1, Duration::from_secs(1))
            .await
            .len(),
        0,
        "nothing given up on while the circuit is open"
    );

    // The receiver recovers: the probe succeeds, everything waiting is delivered.
    rx.set_default(Reply::status(200));
    let res = env.results_json(4).await;
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
    let (code, body) = relay.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""circuits_open_too_long":[]"#), "{body}");
    relay.stop().await.unwrap();
    assert_eq!(env.committed(1), vec![4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_answered_with_a_client_error_does_not_wedge_the_circuit() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let env = circuit_env("g-wh-probe", &rx.url).await;
    let relay = env.relay();
    let ids = ids(4);
    env.produce_concurrently(&cards(&ids)).await;
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
    let res = env.results_json(4).await;
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
    let rx = Receiver::start(vec![]).await;
    // An envelope is about 1 KB here, larger than the raw event it came from.
    let mut sized = webhook("sized", &format!("{}/sized", rx.url));
    sized.batch_max_events = Some(10);
    sized.batch_max_bytes = Some(2500);
    sized.batch_linger = Some(secs(1));
    let env = env("g-wh-bytes", vec![sized]).await;
    let relay = env.relay();
    let ids = ids(12);
    env.produce_concurrently(&cards(&ids)).await;
    let res = env.results_json(12).await;
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
