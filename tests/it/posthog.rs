//! The PostHog target against a real broker and a loopback server acting as PostHog: the exact
//! `/batch/` request (gzip, body shape, `$set`, `$identify`, event names), batching, bad-event
//! isolation by splitting, and PostHog's status rules (401 final, 503/429 retried).

use crate::fixtures::receiver::{Receiver, Reply, Req};
use crate::fixtures::*;
use event_relay::config::{EventNames, SourceFormat, TargetConfig};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SITE_ID: &str = "2d5776b8-158a-4216-aaa1-edbc249e005b";
const ACEMATE_SITE_ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const TARGET_GUID: &str = "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b";

/// A PostHog target `ph` at `url` (retries fast).
fn ph(url: &str) -> TargetConfig {
    quick_target(json!({
        "name": "ph",
        "kind": "posthog",
        "url": url,
        "api_key": "phc_test_token",
    }))
}

/// [`ph`] batching up to 100 events, lingering 1 s.
fn batched(url: &str) -> TargetConfig {
    let mut t = ph(url);
    t.batch_max_events = Some(100);
    t.batch_linger = Some(secs(1));
    t
}

/// A Komo relay for `group` sending every event to `target`.
async fn env(group: &str, partitions: i32, target: TargetConfig) -> TestEnv {
    with_target(TestEnv::komo(group, partitions).await, target)
}

fn with_target(mut env: TestEnv, target: TargetConfig) -> TestEnv {
    env.config.routes.push(route_all(&[target.name.as_str()]));
    env.config.targets.push(target);
    env
}

/// The user profile id (a UUID, as Komo requires) for a readable name.
fn pid(name: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// A Komo event with the user profile (= PostHog distinct_id) `pid(profile)`.
fn komo(id: &str, event: &str, profile: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&komo_event(id, event)).unwrap();
    v["user_profile_id"] = pid(profile).into();
    serde_json::to_vec(&v).unwrap()
}

/// One CardViewed of user "u" per id.
async fn produce_cards(env: &TestEnv, ids: &[String]) {
    let events: Vec<_> = ids.iter().map(|id| komo(id, "CardViewed", "u")).collect();
    env.produce_concurrently(&events).await;
}

/// An acemate event from the valid fixtures, with a fresh uuid.
fn acemate(event: &str, uuid: &str) -> Vec<u8> {
    let line = include_str!("../fixtures/valid_events.jsonl")
        .lines()
        .find(|l| serde_json::from_str::<Value>(l).unwrap()["event"] == event)
        .unwrap_or_else(|| panic!("no fixture for {event}"));
    let mut v: Value = serde_json::from_str(line).unwrap();
    v["uuid"] = uuid.into();
    serde_json::to_vec(&v).unwrap()
}

/// The events of a recorded `/batch/` request.
fn batch_of(r: &Req) -> Vec<Value> {
    r.json()["batch"].as_array().cloned().unwrap_or_default()
}

fn uuids_of(r: &Req) -> Vec<String> {
    batch_of(r)
        .iter()
        .map(|e| e["uuid"].as_str().unwrap().to_string())
        .collect()
}

fn default_guid(name: &str) -> String {
    uuid::Uuid::new_v5(&event_relay::envelope::RELAY_NAMESPACE, name.as_bytes()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_request_has_posthogs_exact_shape() {
    let rx = Receiver::start(vec![]).await;
    let mut target = ph(&rx.url);
    target.id = Some(TARGET_GUID.to_string());
    target.batch_linger = Some(ms(500));
    let mut env = with_target(
        TestEnv::start("g-ph-shape", SourceFormat::Auto, 1).await,
        target,
    );
    env.config.sources[0].site_id = Some(ACEMATE_SITE_ID.to_string());
    env.config.sources[0].site_name = Some("acemate".to_string());
    let relay = env.relay();
    let card = uuid::Uuid::new_v4().to_string();
    let identify = uuid::Uuid::new_v4().to_string();
    let exam = uuid::Uuid::new_v4().to_string();
    env.produce_concurrently(&[
        komo(&card, "CardViewed", "profile-1"),
        acemate("$identify", &identify),
        acemate("exam_completed", &exam),
    ])
    .await;

    let res = env.results_json(3).await;
    assert_eq!(res.len(), 3, "one result per event: {res:?}");
    for r in &res {
        assert_eq!(r["event"], "WebhookSuccess", "{r}");
        assert_eq!(r["target"], "ph");
        assert_eq!(r["integration_id"], TARGET_GUID);
        assert_eq!(r["status_code"], 200);
    }
    let got: HashSet<&str> = res
        .iter()
        .map(|r| r["source_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, HashSet::from([&*card, &*identify, &*exam]));

    let reqs = rx.requests();
    assert!(!reqs.is_empty());
    let mut events: HashMap<String, Value> = HashMap::new();
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/batch/");
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(&r.raw[..2], &[0x1f, 0x8b], "gzip magic bytes");
        let body = r.json();
        let keys: HashSet<&str> = body
            .as_object()
            .expect("JSON object body")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from(["api_key", "historical_migration", "sent_at", "batch"])
        );
        assert_eq!(body["api_key"], "phc_test_token");
        assert_eq!(body["historical_migration"], false);
        chrono::DateTime::parse_from_rfc3339(body["sent_at"].as_str().unwrap())
            .expect("sent_at is RFC 3339");
        for e in batch_of(r) {
            let keys: HashSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                HashSet::from(["event", "distinct_id", "uuid", "timestamp", "properties"]),
                "{e}"
            );
            let prev = events.insert(e["uuid"].as_str().unwrap().to_string(), e.clone());
            assert!(prev.is_none(), "event sent twice: {e}");
        }
    }
    assert_eq!(events.len(), 3);

    // Komo: uuid = envelope id, distinct_id = profile, typed properties, site, $set with the
    // user attributes.
    let c = &events[&card];
    assert_eq!(c["event"], "CardViewed");
    assert_eq!(c["distinct_id"], pid("profile-1").as_str());
    assert_eq!(c["timestamp"], "2024-05-01T12:00:00.000Z");
    let p = &c["properties"];
    assert_eq!(p["$lib"], "event-relay");
    assert_eq!(p["$lib_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["$session_id"], "d40cc0e7-7243-4060-a75f-b2062c94462a");
    assert_eq!(p["source"], "komo");
    assert_eq!(p["site_id"], SITE_ID);
    assert_eq!(p["site_name"], "My site");
    assert_eq!(p["card_name"], "card name");
    assert_eq!(p["score"], 1, "catalog-typed number");
    assert_eq!(p["$set"]["favourite_team"], "Lions");

    // acemate $identify: sent as $identify with $set (Identify properties and email), the
    // source's configured site.
    let i = &events[&identify];
    assert_eq!(i["event"], "$identify");
    assert_eq!(i["distinct_id"], "fccd473a-cce0-57e7-bd44-e3ddc7086051");
    let p = &i["properties"];
    assert_eq!(p["$set"]["email"], "student2@uni-example.de");
    assert_eq!(p["$set"]["userType"], "student");
    assert_eq!(p["$set"]["referralSource"], "instagram");
    assert_eq!(p["$session_id"], "6e341a86-06cd-5cc2-8bcc-b21b32896c87");
    assert_eq!(p["source"], "acemate");
    assert_eq!(p["site_id"], ACEMATE_SITE_ID);
    assert_eq!(p["site_name"], "acemate");
    assert_eq!(p["$lib"], "event-relay");

    // acemate ordinary event: catalog properties stay, identity ones go to $set.
    let x = &events[&exam];
    assert_eq!(x["event"], "exam_completed");
    assert_eq!(x["properties"]["score"], 8);
    assert_eq!(x["properties"]["courseType"], "demo");
    assert_eq!(x["properties"]["$set"]["email"], "student2@uni-example.de");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snake_case_names_plain_json_and_historical_flag() {
    let rx = Receiver::start(vec![]).await;
    let mut target = ph(&rx.url);
    target.event_names = EventNames::SnakeCase;
    target.gzip = false;
    target.historical_migration = true;
    let env = with_target(
        TestEnv::start("g-ph-snake", SourceFormat::Auto, 1).await,
        target,
    );
    let relay = env.relay();
    let card = uuid::Uuid::new_v4().to_string();
    let signup = uuid::Uuid::new_v4().to_string();
    let identify = uuid::Uuid::new_v4().to_string();
    env.produce_concurrently(&[
        komo(&card, "CardViewed", "p1"),
        komo(&signup, "SignUpSuccess", "p2"),
        acemate("$identify", &identify),
    ])
    .await;
    let res = env.results_json(3).await;
    assert_eq!(res.len(), 3);
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    let mut names = HashMap::new();
    for r in rx.requests() {
        assert_eq!(r.path, "/batch/");
        assert_eq!(r.header("content-encoding"), None, "gzip = false");
        assert_eq!(r.raw.first(), Some(&b'{'), "plain JSON body");
        assert_eq!(r.raw, r.body);
        assert_eq!(r.json()["historical_migration"], true);
        for e in batch_of(&r) {
            names.insert(
                e["uuid"].as_str().unwrap().to_string(),
                e["event"].as_str().unwrap().to_string(),
            );
        }
    }
    assert_eq!(names[&card], "card_viewed");
    assert_eq!(names[&signup], "sign_up_success");
    assert_eq!(names[&identify], "$identify");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_and_every_event_arrives_once() {
    let rx = Receiver::start(vec![]).await;
    let env = env("g-ph-batch", 2, batched(&rx.url)).await;
    let relay = env.relay();
    let ids = ids(250);
    env.produce_concurrently(
        &ids.iter()
            .enumerate()
            .map(|(i, id)| komo(id, "CardViewed", &format!("p{i}")))
            .collect::<Vec<_>>(),
    )
    .await;
    let res = env.results_json(250).await;
    assert_eq!(res.len(), 250);
    let mut reported = HashSet::new();
    for r in &res {
        assert_eq!(r["event"], "WebhookSuccess");
        assert_eq!(r["integration_id"], default_guid("ph").as_str());
        assert!(reported.insert(r["source_event_id"].as_str().unwrap().to_string()));
    }
    let reqs = rx.requests();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &reqs {
        let n = batch_of(r).len();
        assert!((1..=100).contains(&n), "batch of {n} events");
        for u in uuids_of(r) {
            *seen.entry(u).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "event {id} sent exactly once");
        assert!(reported.contains(id));
    }
    assert_eq!(seen.len(), 250);
    assert!(reqs.len() >= 3, "250 events need at least 3 batches of 100");
    assert!(
        reqs.iter().any(|r| batch_of(r).len() > 1),
        "events were batched"
    );
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_event_fails_alone_the_rest_of_its_batch_is_delivered() {
    let rx = Receiver::start(vec![]).await;
    // PostHog rejects a whole batch with 400 when one event in it is bad.
    rx.set_rule(|r| {
        batch_of(r)
            .iter()
            .any(|e| e["distinct_id"] == pid("poison").as_str())
            .then(|| Reply::status(400))
    });
    let env = env("g-ph-poison", 1, batched(&rx.url)).await;
    let relay = env.relay();
    let ids = ids(20);
    let poison = ids[7].clone();
    env.produce_concurrently(
        &ids.iter()
            .map(|id| {
                let profile = if *id == poison { "poison" } else { "good" };
                komo(id, "CardViewed", profile)
            })
            .collect::<Vec<_>>(),
    )
    .await;
    let res = env.results_json(20).await;
    assert_eq!(res.len(), 20);
    for r in &res {
        let id = r["source_event_id"].as_str().unwrap();
        if id == poison {
            assert_eq!(r["event"], "WebhookError", "{r}");
            assert_eq!(r["status_code"], 400);
            assert!(r["error"].as_str().unwrap().contains("400"));
        } else {
            assert_eq!(r["event"], "WebhookSuccess", "{r}");
            assert_eq!(r["status_code"], 200);
        }
    }
    let reqs = rx.requests();
    let first_with_poison = reqs.iter().find(|r| uuids_of(r).contains(&poison)).unwrap();
    assert!(
        batch_of(first_with_poison).len() > 1,
        "the poison event shared a batch with good ones"
    );
    assert!(
        reqs.iter().any(|r| uuids_of(r) == vec![poison.clone()]),
        "the poison event was isolated into a batch of its own"
    );
    // Every good event was accepted exactly once (in a batch without the poison event).
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for r in &reqs {
        let u = uuids_of(r);
        if !u.contains(&poison) {
            for id in u {
                *accepted.entry(id).or_default() += 1;
            }
        }
    }
    for id in ids.iter().filter(|i| **i != poison) {
        assert_eq!(accepted.get(id), Some(&1), "good event {id}");
    }
    relay.stop().await.unwrap();
    assert_eq!(env.committed(1), vec![20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_too_large_splits_the_batch() {
    let rx = Receiver::start(vec![]).await;
    rx.set_rule(|r| (batch_of(r).len() > 3).then(|| Reply::status(413)));
    let env = env("g-ph-413", 1, batched(&rx.url)).await;
    let relay = env.relay();
    let ids = ids(12);
    produce_cards(&env, &ids).await;
    let res = env.results_json(12).await;
    assert_eq!(res.len(), 12);
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    let reqs = rx.requests();
    assert!(
        reqs.iter().any(|r| batch_of(r).len() > 3),
        "a too-large batch was tried first"
    );
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for r in reqs.iter().filter(|r| batch_of(r).len() <= 3) {
        for id in uuids_of(r) {
            *accepted.entry(id).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(accepted.get(id), Some(&1), "{id} accepted exactly once");
    }
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_is_final_for_the_whole_batch_without_retry_or_split() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(401));
    let env = env("g-ph-401", 1, batched(&rx.url)).await;
    let relay = env.relay();
    let ids = ids(5);
    produce_cards(&env, &ids).await;
    let res = env.results_json(5).await;
    assert_eq!(res.len(), 5);
    for r in &res {
        assert_eq!(r["event"], "WebhookError", "{r}");
        assert_eq!(r["status_code"], 401);
        assert_eq!(r["attempts"], 1);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent: HashMap<String, usize> = HashMap::new();
    for r in rx.requests() {
        for id in uuids_of(&r) {
            *sent.entry(id).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(
            sent.get(id),
            Some(&1),
            "{id}: a 401 is neither retried nor split"
        );
    }
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_answers_are_retried_and_retry_after_is_honoured() {
    let rx = Receiver::start(vec![]).await;
    // Per distinct_id: "flaky" gets one 503, "limited" one 429 with Retry-After: 2.
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    {
        let seen = seen.clone();
        let total = total.clone();
        rx.set_rule(move |r| {
            total.fetch_add(1, Ordering::SeqCst);
            let id = batch_of(r)[0]["distinct_id"].as_str()?.to_string();
            let who = ["flaky", "limited"]
                .into_iter()
                .find(|n| pid(n) == id)
                .unwrap_or("other")
                .to_string();
            let mut seen = seen.lock().unwrap();
            let n = seen.entry(who.clone()).or_default();
            *n += 1;
            match (who.as_str(), *n) {
                ("flaky", 1) => Some(Reply::status(503)),
                ("limited", 1) => Some(Reply::status(429).header("Retry-After", "2")),
                _ => None,
            }
        });
    }
    let mut target = ph(&rx.url);
    target.batch_max_events = Some(1);
    let env = env("g-ph-transient", 1, target).await;
    let relay = env.relay();
    let flaky = uuid::Uuid::new_v4().to_string();
    let limited = uuid::Uuid::new_v4().to_string();
    env.produce_concurrently(&[
        komo(&flaky, "CardViewed", "flaky"),
        komo(&limited, "CardViewed", "limited"),
    ])
    .await;
    let res = env.results_json(2).await;
    assert_eq!(res.len(), 2);
    for r in &res {
        assert_eq!(r["event"], "WebhookSuccess", "{r}");
        assert_eq!(r["attempts"], 2, "{r}");
    }
    let reqs = rx.requests();
    let at = |who: &str| -> Vec<std::time::Instant> {
        reqs.iter()
            .filter(|r| batch_of(r)[0]["distinct_id"] == pid(who).as_str())
            .map(|r| r.at)
            .collect()
    };
    let f = at("flaky");
    let l = at("limited");
    assert_eq!(f.len(), 2);
    assert_eq!(l.len(), 2);
    let gap = l[1] - l[0];
    assert!(
        gap >= Duration::from_secs(2),
        "429 Retry-After: 2 honoured, retried after {gap:?}"
    );
    // The same uuid is sent on the retry (PostHog de-duplicates on it).
    let uuids: HashSet<String> = reqs
        .iter()
        .filter(|r| batch_of(r)[0]["distinct_id"] == pid("flaky").as_str())
        .flat_map(uuids_of)
        .collect();
    assert_eq!(uuids, HashSet::from([flaky.clone()]));
    assert_eq!(total.load(Ordering::SeqCst), 4);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splitting_a_batch_stays_within_max_in_flight() {
    let rx = Receiver::start(vec![]).await;
    let hold = Duration::from_millis(300);
    rx.set_rule(move |r| {
        let poisoned = batch_of(r)
            .iter()
            .any(|e| e["distinct_id"] == pid("poison").as_str());
        Some(Reply::status(if poisoned { 400 } else { 200 }).delay(hold))
    });
    let mut target = batched(&rx.url);
    target.max_in_flight = 1;
    let env = env("g-ph-split-inflight", 1, target).await;
    let relay = env.relay();
    let ids = ids(8);
    env.produce_concurrently(
        &ids.iter()
            .enumerate()
            .map(|(i, id)| komo(id, "CardViewed", if i == 5 { "poison" } else { "good" }))
            .collect::<Vec<_>>(),
    )
    .await;
    let res = env.results_json(8).await;
    assert_eq!(res.len(), 8);
    assert_eq!(
        res.iter()
            .filter(|r| r["event"] == "WebhookSuccess")
            .count(),
        7
    );
    let reqs = rx.requests();
    assert!(reqs.len() > 2, "the batch was split");
    // A request is open for at least `hold` after it arrives; with max_in_flight = 1 the
    // next one can only arrive after the previous answer.
    let overlap = reqs
        .iter()
        .map(|i| {
            reqs.iter()
                .filter(|j| j.at <= i.at && i.at < j.at + hold)
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(overlap, 1, "split halves respect max_in_flight = 1");
    relay.stop().await.unwrap();
}
