//! Retry tiers against a real broker and real receivers: a dead target costs a healthy one
//! nothing (its deliveries are parked, the source commits on), a long outage is survived across
//! tiers with every event delivered once and never before its due time, fan-out commits once
//! the dead delivery is parked, `run` needs its tier topics, SIGKILLs lose nothing. How a
//! journey ends in failure is in `tiers_failures`.

use crate::fixtures::receiver::{Receiver, Reply, Req};
use crate::fixtures::*;
use event_relay::config::{ConfigDuration, TargetConfig};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A webhook target `name` at `<url>/<name>` that retries fast in memory for 300 ms before it
/// parks, with the circuit breaker off (each tier then makes exactly one request).
pub fn parking(name: &str, url: &str) -> TargetConfig {
    let mut t = healthy(name, url);
    t.retry.initial_backoff = ms(20);
    t.retry.max_backoff = ms(100);
    t.retry.hold = ms(300);
    t.circuit.failure_threshold = 0;
    t
}

/// A webhook target `name` at `<url>/<name>` whose journey limit is the tiered default.
pub fn healthy(name: &str, url: &str) -> TargetConfig {
    let mut t = webhook(name, &format!("{url}/{name}"));
    t.retry.max_elapsed = None;
    t
}

/// A Komo relay for `group` with tiers of `delays`, delivering every event to `target`.
pub async fn tiered(group: &str, delays: &[ConfigDuration], target: TargetConfig) -> TestEnv {
    let mut env = TestEnv::komo(group, 1).await;
    env.with_tiers(delays).await;
    env.config.routes.push(route_all(&[target.name.as_str()]));
    env.config.targets = vec![target];
    env
}

/// The event id a webhook request carries.
pub fn id_of(r: &Req) -> String {
    r.json()["id"].as_str().unwrap_or_default().to_string()
}

/// Requests per event id, in arrival order.
pub fn by_id(rx: &Receiver) -> HashMap<String, Vec<Req>> {
    let mut out: HashMap<String, Vec<Req>> = HashMap::new();
    for r in rx.requests() {
        out.entry(id_of(&r)).or_default().push(r);
    }
    out
}

pub async fn wait_metric(relay: &Relay, series: &str, want: f64) {
    let ok = eventually(Duration::from_secs(90), || async {
        relay.metric(series).await >= want
    })
    .await;
    assert!(ok, "{series} reached {want}");
}

/// The acceptance case of the issue: two targets on disjoint routes, one answering 503 for the
/// whole test, an in-flight bound of 200. The dead target's 400 events come first: held in
/// memory they would take the whole bound. Every event for the healthy target arrives, and the
/// dead target's deliveries do not stay in memory: each is parked on the tier, so the source
/// commits to its end while the target is still down. The healthy target's budget (180, what
/// the dead one's 20 leave) is more than its 100 events: none of them is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_costs_a_healthy_one_nothing() {
    let down = Receiver::start(vec![]).await;
    down.set_default(Reply::status(503));
    let up = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-tier-isolation", 1).await;
    // Nothing comes due during the test: what is parked stays parked.
    env.with_tiers(&[secs(3600)]).await;
    env.config.pipeline.max_in_flight_events = 200;
    let mut dead = parking("down", &down.url);
    dead.circuit.failure_threshold = 20;
    dead.max_queued_events = Some(20);
    env.config.targets = vec![dead, healthy("up", &up.url)];
    for (event, target) in [("CardViewed", "down"), ("CardCoverClicked", "up")] {
        env.config.routes.push(route(json!({
            "name": target, "events": [event], "targets": [target]
        })));
    }
    let relay = env.relay();
    let (n_down, n) = (400, 100);
    let (down_ids, up_ids) = (ids(n_down), ids(n));
    let payloads: Vec<Vec<u8>> = down_ids
        .iter()
        .map(|d| komo_event(d, "CardViewed"))
        .chain(up_ids.iter().map(|u| komo_event(u, "CardCoverClicked")))
        .collect();
    env.produce(&payloads).await;

    let results = env.results_json(n).await;
    assert_eq!(results.len(), n, "one result per healthy delivery");
    for r in &results {
        assert_eq!(
            (r["target"].as_str(), r["event"].as_str()),
            (Some("up"), Some("WebhookSuccess")),
            "{r}"
        );
    }
    let got: HashSet<String> = up.requests().iter().map(id_of).collect();
    assert_eq!(got, up_ids.iter().cloned().collect());

    let parked = env
        .broker
        .read(&env.tier_topic(secs(3600)), n_down, Duration::from_secs(90))
        .await;
    let parked_ids: HashSet<String> = parked
        .iter()
        .map(|r| r.header("source_event_id").unwrap().to_string())
        .collect();
    assert_eq!(
        parked_ids,
        down_ids.iter().cloned().collect(),
        "every dead delivery parked once"
    );
    assert!(parked.iter().all(|r| r.header("target") == Some("down")));
    wait_metric(
        &relay,
        "event_relay_parked_total{target=\"down\",tier=\"1h\"}",
        n_down as f64,
    )
    .await;
    let all = (n_down + n) as i64;
    let committed = eventually(Duration::from_secs(60), || async {
        env.committed(1)[0] == all
    })
    .await;
    assert!(
        committed,
        "the source commits to its end while the target is down: {:?}",
        env.committed(1)
    );
    let waiting = eventually(Duration::from_secs(30), || async {
        relay.metric("event_relay_tier_lag{tier=\"1h\"}").await > 0.0
    });
    assert!(
        waiting.await,
        "the tier's lag shows the parked records waiting"
    );
    let (status, body) = relay.get("/readyz").await;
    assert_eq!(status, 200, "ready while deliveries are parked: {body}");
    // Every offset is final, and only the healthy deliveries produced a result.
    let produced = relay.metric("event_relay_results_produced_total{event=\"WebhookSuccess\"}");
    assert_eq!(produced.await, n as f64, "no result for a parked delivery");
    let errors = relay.metric("event_relay_results_produced_total{event=\"WebhookError\"}");
    assert_eq!(errors.await, 0.0);
    relay.stop().await.unwrap();
}

/// A target down for the first part of the test, then back: every event ends in exactly one
/// WebhookSuccess whose `attempts` is the number of requests the receiver saw for it and whose
/// `parked` counts its tiers; the request after each park comes no earlier than the tier's delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_is_survived_across_tiers() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(503));
    let env = tiered(
        "g-tier-outage",
        &[secs(1), secs(2), secs(4)],
        parking("x", &rx.url),
    )
    .await;
    let relay = env.relay();
    let n = 20;
    let ids = ids(n);
    env.produce(&cards(&ids)).await;
    wait_metric(
        &relay,
        "event_relay_parked_total{target=\"x\",tier=\"1s\"}",
        n as f64,
    )
    .await;
    rx.set_default(Reply::status(200));

    let results = env.results_json(n).await;
    assert_eq!(results.len(), n);
    let requests = by_id(&rx);
    for r in &results {
        assert_eq!(r["event"], "WebhookSuccess", "{r}");
        let id = r["source_event_id"].as_str().unwrap();
        let reqs = &requests[id];
        assert_eq!(
            r["attempts"],
            reqs.len(),
            "attempts count every request across tiers: {r}"
        );
        let parked = r["parked"].as_u64().unwrap() as usize;
        assert!(parked >= 1, "{r}");
        assert!(r["first_attempt_at"].is_string(), "{r}");
        // A delay never makes a delivery early: after each park, the next request waited at
        // least the shortest tier's delay.
        let waited = reqs
            .windows(2)
            .filter(|w| w[1].at - w[0].at >= Duration::from_secs(1))
            .count();
        assert!(
            waited >= parked,
            "{parked} parks but {waited} waits of 1 s or more: {r}"
        );
    }
    let got: HashSet<&str> = results
        .iter()
        .map(|r| r["source_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), n, "one result per event");
    // One final outcome each: once the source is committed to its end (every delivery final),
    // the results counted are exactly the ones read.
    let all_final = eventually(Duration::from_secs(60), || async {
        env.committed(1)[0] == n as i64
    });
    assert!(all_final.await, "committed {:?}", env.committed(1));
    let produced = relay.metric("event_relay_results_produced_total{event=\"WebhookSuccess\"}");
    assert_eq!(produced.await, n as f64, "exactly one final outcome each");
    relay.stop().await.unwrap();
    assert_eq!(env.committed(1), vec![n as i64]);
}

/// One event to a healthy and a dead target: the healthy delivery happens at once, and the
/// source offset commits once the dead one is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_commits_once_the_dead_delivery_is_parked() {
    let down = Receiver::start(vec![]).await;
    down.set_default(Reply::status(503));
    let up = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-tier-fanout", 1).await;
    env.with_tiers(&[secs(3600)]).await;
    env.config.targets = vec![parking("down", &down.url), healthy("up", &up.url)];
    env.config.routes.push(route_all(&["down", "up"]));
    let relay = env.relay();
    let id = ids(1);
    env.produce(&cards(&id)).await;
    let results = env.results_json(1).await;
    assert_eq!(results[0]["target"], "up");
    assert_eq!(results[0]["event"], "WebhookSuccess");
    let parked = env
        .broker
        .read(&env.tier_topic(secs(3600)), 1, Duration::from_secs(60))
        .await;
    assert_eq!(parked[0].header("source_event_id"), Some(id[0].as_str()));
    let committed = eventually(Duration::from_secs(60), || async {
        env.committed(1)[0] == 1
    })
    .await;
    assert!(committed, "committed {:?}", env.committed(1));
    relay.stop().await.unwrap();
}

/// SIGKILL while deliveries are being parked and while the tier is being consumed (the crash
/// harness of `faults`, its accounting extended to tiers): nothing lost, one final result per
/// (event, target) after de-duplication by result id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_parking_and_consuming_tiers_loses_nothing() {
    crate::faults::crash_test(3_000, 3, crate::faults::Through::Tier).await;
}

/// `run` refuses to start while a tier or failed topic is missing, naming it; after
/// `topics --create` it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_needs_the_tier_topics_and_topics_create_makes_them() {
    let mut env = TestEnv::komo("g-tier-topics", 1).await;
    env.config.retry_tiers = Some(event_relay::config::RetryTiersConfig {
        topic_prefix: Some(format!("missing-{}", uuid::Uuid::new_v4().simple())),
        delays: vec![secs(60)],
        failed_topic: Some(format!("failed-{}", uuid::Uuid::new_v4().simple())),
        create_topics: false,
        ..Default::default()
    });
    let tiers = env.config.tiering().unwrap();
    let tier = &tiers.tiers[0].topic;
    let file = ConfigFile::write(&env.config);
    let (code, _, stderr) = crate::redrive::cli("run", &file.path, &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(tier.as_str()) && stderr.contains(&tiers.failed_topic),
        "{stderr}"
    );
    assert!(stderr.contains("topics --config"), "{stderr}");

    let (code, stdout, stderr) = crate::redrive::cli("topics", &file.path, &["--create"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("retry-tier") && stdout.contains("failed"),
        "{stdout}"
    );
    let mut child = spawn_relay(&file);
    let url = format!("http://{}/readyz", env.config.server.listen);
    let ready = eventually(Duration::from_secs(60), || async {
        reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let exited = child.try_wait().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        ready,
        "the relay started once its topics exist (exit: {exited:?})"
    );
}

/// A second instance joins and the first leaves gracefully while deliveries go through a tier
/// (the tier consumer's group rebalances too): nothing lost, nothing delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_while_deliveries_go_through_tiers_loses_and_duplicates_nothing() {
    crate::faults::rebalance_test(crate::faults::Through::Tier).await;
}

/// A healthy target is never parked for being busy: with a budget of 1 and a burst of 200
/// events, every delivery goes straight to it (nothing on the tier), none is held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_healthy_target_is_not_parked() {
    let rx = Receiver::start(vec![]).await;
    let mut busy = healthy("busy", &rx.url);
    busy.max_queued_events = Some(1);
    let mut env = tiered("g-tier-busy", &[secs(3600)], busy).await;
    env.config.pipeline.max_in_flight_events = 50;
    let relay = env.relay();
    let n = 200;
    env.produce(&cards(&ids(n))).await;
    let results = env.results_json(n).await;
    assert_eq!(results.len(), n);
    assert!(results
        .iter()
        .all(|r| r["event"] == "WebhookSuccess" && r["parked"] == 0));
    let parked = relay.metric("event_relay_parked_total{target=\"busy\",tier=\"1h\"}");
    assert_eq!(parked.await, 0.0, "no delivery of a healthy target parked");
    relay.stop().await.unwrap();
}
