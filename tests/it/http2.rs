//! `targets[].http2`: HTTP/2 with prior knowledge (h2c) against the scripted receiver, which
//! serves HTTP/1.1 and h2c on one port. With `http2 = true` every request of a target (webhook or
//! PostHog) arrives over HTTP/2, all on one connection, with the same bodies, headers and
//! verifiable Standard Webhooks signatures as its HTTP/1.1 twin; without it requests stay
//! HTTP/1.1. `check` and the `route` dry run accept the key.

use crate::fixtures::receiver::{Receiver, Req};
use crate::fixtures::*;
use axum::http::Version;
use base64::Engine;
use event_relay::config::TargetConfig;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Headers whose values depend on when the request was sent, not on what it carries.
const TIMED: &[&str] = &["webhook-timestamp", "webhook-signature"];

/// A signed webhook target `name` at `{url}/{name}` with templated headers.
fn hook(name: &str, url: &str, secret: &str, http2: bool) -> TargetConfig {
    let mut t = webhook(name, &format!("{url}/{name}"));
    t.signing_secret = Some(secret.into());
    t.headers = [("X-Event", "{{event}}"), ("X-Static", "yes")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    t.http2 = http2;
    t
}

/// A PostHog target `name` posting to `{url}/{name}/batch/`.
fn posthog(name: &str, url: &str, http2: bool) -> TargetConfig {
    quick_target(json!({
        "name": name,
        "kind": "posthog",
        "url": format!("{url}/{name}"),
        "api_key": "phc_test_token",
        "http2": http2,
    }))
}

/// The requests that went to `path` (a target's path prefix).
fn to(reqs: &[Req], path: &str) -> Vec<Req> {
    reqs.iter()
        .filter(|r| r.path.starts_with(path))
        .cloned()
        .collect()
}

/// Header names and values as sent, lower-cased names, without `host` (HTTP/2 carries it as
/// the `:authority` pseudo-header) and the time-dependent ones.
fn stable_headers(r: &Req) -> BTreeMap<String, String> {
    r.headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k != "host" && !TIMED.contains(&k.as_str()))
        .collect()
}

/// Webhook requests by their `webhook-id` (the event id).
fn by_id(reqs: &[Req]) -> HashMap<String, Req> {
    reqs.iter()
        .map(|r| (r.header("webhook-id").unwrap().to_string(), r.clone()))
        .collect()
}

/// PostHog batch entries by uuid, with the request headers they came with.
fn posthog_events(reqs: &[Req]) -> HashMap<String, (Value, BTreeMap<String, String>)> {
    let mut events = HashMap::new();
    for r in reqs {
        let body = r.json();
        assert_eq!(body["api_key"], "phc_test_token", "{body}");
        // Which events share a batch depends on timing (the linger), so the compressed
        // body's length does too: it is not compared.
        let mut headers = stable_headers(r);
        headers.remove("content-length");
        for e in body["batch"].as_array().unwrap() {
            let uuid = e["uuid"].as_str().unwrap().to_string();
            events.insert(uuid, (e.clone(), headers.clone()));
        }
    }
    events
}

fn versions(reqs: &[Req]) -> HashSet<Version> {
    reqs.iter().map(|r| r.version).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_targets_send_every_request_over_one_http2_connection_and_the_rest_stay_http1() {
    let rx = Receiver::start(vec![]).await;
    let key: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(&key)
    );
    let targets = vec![
        hook("h2", &rx.url, &secret, true),
        hook("h1", &rx.url, &secret, false),
        posthog("ph2", &rx.url, true),
        posthog("ph1", &rx.url, false),
    ];
    let mut env = TestEnv::komo("g-http2", 2).await;
    env.config
        .routes
        .push(route_all(&["h2", "h1", "ph2", "ph1"]));
    env.config.targets = targets;

    // `check` and the `route` dry run take the key.
    let file = ConfigFile::write(&env.config);
    let path = file.path.to_str().unwrap();
    let check = run(&["check", "--config", path], vec![]);
    assert!(check.status.success(), "{check:?}");
    let dry = run(
        &["route", "--config", path],
        komo_event(&uuid::Uuid::new_v4().to_string(), "CardViewed"),
    );
    assert!(dry.status.success(), "{dry:?}");
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        ["h2", "h1", "ph2", "ph1"]
            .iter()
            .all(|t| printed.contains(&format!("\"{t}\""))),
        "{printed}"
    );

    let relay = env.relay();
    let ids = ids(40);
    env.produce_concurrently(&cards(&ids)).await;
    let res = env.results_json(ids.len() * 4).await;
    assert_eq!(res.len(), ids.len() * 4);
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    relay.stop().await.unwrap();

    let reqs = rx.requests();
    let (h2, h1) = (to(&reqs, "/h2"), to(&reqs, "/h1"));
    let (ph2, ph1) = (to(&reqs, "/ph2/batch/"), to(&reqs, "/ph1/batch/"));
    assert_eq!(versions(&h2), HashSet::from([Version::HTTP_2]));
    assert_eq!(versions(&ph2), HashSet::from([Version::HTTP_2]));
    assert_eq!(versions(&h1), HashSet::from([Version::HTTP_11]));
    assert_eq!(versions(&ph1), HashSet::from([Version::HTTP_11]));
    // One connection carries every request of an HTTP/2 target.
    for reqs in [&h2, &ph2] {
        let peers: BTreeSet<_> = reqs.iter().map(|r| r.peer).collect();
        assert_eq!(peers.len(), 1, "{peers:?}");
    }

    // Webhooks: per event, the same body and headers over both versions, and each signature
    // verifies on its own.
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    let (h2, h1) = (by_id(&h2), by_id(&h1));
    let expected: HashSet<&String> = ids.iter().collect();
    assert_eq!(h2.keys().collect::<HashSet<_>>(), expected);
    assert_eq!(h1.keys().collect::<HashSet<_>>(), expected);
    for id in &ids {
        let (a, b) = (&h2[id], &h1[id]);
        assert_eq!(a.method, b.method);
        assert_eq!(a.raw, b.raw, "body of {id}");
        assert_eq!(stable_headers(a), stable_headers(b), "headers of {id}");
        assert_eq!(a.header("x-event"), Some("CardViewed"));
        for r in [a, b] {
            verifier
                .verify(&r.raw, &r.header_map())
                .unwrap_or_else(|e| panic!("{:?} signature of {id}: {e:?}", r.version));
        }
    }

    // PostHog: per event, the same batch entry and request headers (gzip) over both versions.
    let (ph2, ph1) = (posthog_events(&ph2), posthog_events(&ph1));
    assert_eq!(ph2.keys().collect::<HashSet<_>>(), expected);
    for id in &ids {
        assert_eq!(ph2[id], ph1[id], "PostHog entry of {id}");
        assert_eq!(
            ph2[id].1.get("content-encoding").map(String::as_str),
            Some("gzip")
        );
    }
}
