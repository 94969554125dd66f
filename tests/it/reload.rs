//! Reload without restart, on the running binary: SIGHUP after adding a route and a target,
//! SIGHUP with an invalid config and with one that needs a restart, and `--watch-config`.
//!
//! "No rebalance" is read from the relay's own log: the source consumer logs every assignment
//! (`partitions assigned`) and revocation (`partitions revoked`); across a reload there is
//! exactly one assignment (the start) and no revocation — a new consumer, a resubscribe or a
//! group rejoin would each log another.

use crate::fixtures::accounting;
use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use event_relay::config::Config;
use event_relay::pipeline::config_hash;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Reads the results topic until every id has a result for each of `targets`.
pub async fn results_for(env: &TestEnv, ids: &[String], targets: &[&str]) -> Vec<Record> {
    let want: HashSet<(&str, &str)> = ids
        .iter()
        .flat_map(|id| targets.iter().map(move |t| (id.as_str(), *t)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = env
            .broker
            .read(&env.topics.results, usize::MAX, Duration::from_secs(5))
            .await;
        let got: HashSet<(String, String)> = all
            .iter()
            .map(|r| {
                let v = r.json();
                (
                    r.source_event_id(),
                    v["target"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let done = want
            .iter()
            .all(|(i, t)| got.contains(&(i.to_string(), t.to_string())));
        if done || Instant::now() > deadline {
            return all;
        }
    }
}

/// Writes `cfg` over the relay's config file; returns the new file's hash.
pub fn rewrite(file: &ConfigFile, cfg: &Config) -> String {
    let text = to_toml(cfg);
    std::fs::write(&file.path, &text).unwrap();
    config_hash(text.as_bytes())
}

/// Waits until the relay logged `needle` `n` times.
pub async fn logged(relay: &LoggedRelay, needle: &str, n: usize) -> bool {
    eventually(Duration::from_secs(30), || async {
        relay.log_count(needle) >= n
    })
    .await
}

async fn metric(cfg: &Config, series: &str) -> Option<f64> {
    let url = format!("http://{}/metrics", cfg.server.listen);
    let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
    metric_series(&text, series)
}

/// How many times each id reached a receiver.
fn deliveries(rx: &Receiver) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for r in rx.requests().iter().filter(|r| r.status == 200) {
        for id in accounting::ids_in(r) {
            *n.entry(id).or_default() += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_route_and_a_target_without_a_rebalance() {
    let (rx_a, rx_b) = (Receiver::start(vec![]).await, Receiver::start(vec![]).await);
    let mut env = TestEnv::komo("g-reload-add", 2).await;
    env.config
        .targets
        .push(webhook("a", &format!("{}/a", rx_a.url)));
    env.config.routes.push(route_all(&["a"]));
    let file = ConfigFile::write(&env.config);
    let start_hash = config_hash(std::fs::read(&file.path).unwrap().as_slice());
    let relay = LoggedRelay::spawn(&file, &[]);
    let before = ids(50);
    env.produce(&cards(&before)).await;
    results_for(&env, &before, &["a"]).await;

    // Reload while events flow: `around` is produced concurrently with the SIGHUP.
    let mut added = env.config.clone();
    added.targets.push(webhook("b", &format!("{}/b", rx_b.url)));
    added
        .routes
        .push(route(json!({ "name": "to-b", "targets": ["b"] })));
    let new_hash = rewrite(&file, &added);
    let around = ids(200);
    let hup = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        relay.signal("HUP");
    };
    let payloads = cards(&around);
    tokio::join!(env.produce(&payloads), hup);
    assert!(
        logged(&relay, "config reloaded", 1).await,
        "{}",
        relay.log_text()
    );
    let after = ids(50);
    env.produce(&cards(&after)).await;

    let all: Vec<String> = [&before[..], &around[..], &after[..]].concat();
    results_for(&env, &all, &["a"]).await;
    let results = results_for(&env, &after, &["b"]).await; // the whole topic, again
                                                           // Every event reached `a` exactly once; every event produced after the reload reached `b`
                                                           // exactly once; none produced before it did; one around it did at most once.
    accounting::check(&all, &["a"], &rx_a.requests(), &results).assert_complete(0);
    accounting::check(&after, &["b"], &rx_b.requests(), &results).assert_complete(0);
    let at_b = deliveries(&rx_b);
    assert!(before.iter().all(|id| !at_b.contains_key(id)));
    assert!(around
        .iter()
        .all(|id| at_b.get(id).copied().unwrap_or(0) <= 1));
    let cfg = &env.config;
    assert_eq!(
        metric(cfg, "event_relay_config_reloads_total{outcome=\"success\"}").await,
        Some(1.0)
    );
    let info = |h: &str| format!("event_relay_config_info{{hash=\"{h}\"}}");
    assert_eq!(metric(cfg, &info(&new_hash)).await, Some(1.0));
    assert_eq!(
        metric(cfg, &info(&start_hash)).await,
        None,
        "old series removed"
    );
    assert_eq!(relay.log_count("partitions assigned"), 1, "one assignment");
    assert_eq!(relay.log_count("partitions revoked"), 0, "no revocation");
    assert!(relay.stop(), "clean exit after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_invalid_or_restart_only_config_keeps_the_running_one() {
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-reload-bad", 1).await;
    env.config
        .targets
        .push(webhook("a", &format!("{}/a", rx.url)));
    env.config.routes.push(route_all(&["a"]));
    let file = ConfigFile::write(&env.config);
    let relay = LoggedRelay::spawn(&file, &[]);
    let first = ids(20);
    env.produce(&cards(&first)).await;
    results_for(&env, &first, &["a"]).await;

    // Two problems: a route to an unknown target, a target URL that is not one.
    let mut bad = env.config.clone();
    bad.routes
        .push(route(json!({ "name": "broken", "targets": ["nope"] })));
    bad.targets.push(webhook("c", "not a url"));
    let problems = event_relay::config::load_str(&to_toml(&bad), std::env::vars())
        .expect_err("the bad config is invalid")
        .problems;
    assert!(problems.len() >= 2, "{problems:?}");
    rewrite(&file, &bad);
    relay.signal("HUP");
    assert!(logged(&relay, "invalid config", problems.len()).await);
    let log = relay.log_text();
    for p in &problems {
        let line = p.to_string();
        assert_eq!(
            log.lines().filter(|l| l.contains(&line)).count(),
            1,
            "logged once: {line}\n{log}"
        );
    }

    // Valid, but changes the group and the results topic (and adds a route): refused whole.
    let mut restart = env.config.clone();
    restart.kafka.group_id = "another-group".into();
    restart.results.topic = "elsewhere".into();
    restart
        .routes
        .push(route(json!({ "name": "again", "targets": ["a"] })));
    rewrite(&file, &restart);
    relay.signal("HUP");
    assert!(logged(&relay, "only with a restart", 2).await);
    for key in ["kafka.group_id", "results.topic"] {
        assert_eq!(relay.log_count(key), 1, "{key} named once");
    }

    // The running config still delivers, once each, and nothing was reloaded.
    let second = ids(20);
    env.produce(&cards(&second)).await;
    let all: Vec<String> = [&first[..], &second[..]].concat();
    let results = results_for(&env, &all, &["a"]).await;
    accounting::check(&all, &["a"], &rx.requests(), &results).assert_complete(0);
    let cfg = &env.config;
    let reloads = |o: &str| format!("event_relay_config_reloads_total{{outcome=\"{o}\"}}");
    assert_eq!(metric(cfg, &reloads("invalid")).await, Some(1.0));
    assert_eq!(metric(cfg, &reloads("failed")).await, Some(1.0));
    assert_eq!(metric(cfg, &reloads("success")).await, None);
    assert_eq!(relay.log_count("partitions assigned"), 1);
    assert!(relay.stop(), "clean exit after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_reloads_a_changed_file_and_removes_a_target() {
    let (rx_a, rx_b) = (Receiver::start(vec![]).await, Receiver::start(vec![]).await);
    let mut env = TestEnv::komo("g-reload-watch", 1).await;
    env.config
        .targets
        .push(webhook("a", &format!("{}/a", rx_a.url)));
    env.config.routes.push(route_all(&["a"]));
    let file = ConfigFile::write(&env.config);
    let relay = LoggedRelay::spawn(&file, &["--watch-config"]);
    let first = ids(20);
    env.produce(&cards(&first)).await;
    results_for(&env, &first, &["a"]).await;

    // `a` removed, everything to `b`: no signal, only the file changes.
    let mut moved = env.config.clone();
    moved.targets = vec![webhook("b", &format!("{}/b", rx_b.url))];
    moved.routes = vec![route_all(&["b"])];
    let hash = rewrite(&file, &moved);
    assert!(
        logged(&relay, "config reloaded", 1).await,
        "{}",
        relay.log_text()
    );
    let second = ids(20);
    env.produce(&cards(&second)).await;
    let results = results_for(&env, &second, &["b"]).await;
    accounting::check(&second, &["b"], &rx_b.requests(), &results).assert_complete(0);
    accounting::check(&first, &["a"], &rx_a.requests(), &results).assert_complete(0);
    let at_a = deliveries(&rx_a);
    assert!(second.iter().all(|id| !at_a.contains_key(id)), "a removed");
    let info = format!("event_relay_config_info{{hash=\"{hash}\"}}");
    assert_eq!(metric(&env.config, &info).await, Some(1.0));
    // The removed target's series go away with its workers.
    let cfg = &env.config;
    let gone = eventually(Duration::from_secs(30), || async {
        metric(cfg, "event_relay_circuit_open{target=\"a\"}")
            .await
            .is_none()
            && metric(cfg, "event_relay_circuit_open{target=\"b\"}").await == Some(0.0)
    });
    assert!(gone.await, "circuit series of `a` removed, of `b` present");
    assert!(relay.stop(), "clean exit after SIGTERM");
}

/// The library call the signal handler makes, in-process: what each outcome returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reload_reports_what_changed_or_why_not() {
    use event_relay::pipeline::ReloadError;
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-reload-api", 1).await;
    env.config
        .targets
        .push(webhook("a", &format!("{}/a", rx.url)));
    env.config
        .targets
        .push(webhook("gone", &format!("{}/gone", rx.url)));
    env.config.routes.push(route_all(&["a", "gone"]));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = event_relay::Relay::start(env.config.clone(), shutdown.clone())
        .await
        .unwrap();

    let mut bad = env.config.clone();
    bad.default_targets = vec!["nope".into()];
    match relay.reload(bad, "bad") {
        Err(ReloadError::Invalid(e)) => assert_eq!(e.problems.len(), 1, "{e}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let mut restart = env.config.clone();
    restart.dead_letter.topic = "elsewhere".into();
    match relay.reload(restart, "restart") {
        Err(ReloadError::RestartNeeded { keys }) => assert_eq!(keys, vec!["dead_letter.topic"]),
        other => panic!("expected RestartNeeded, got {other:?}"),
    }
    let mut next = env.config.clone();
    next.targets.retain(|t| t.name != "gone");
    next.targets[0].timeout = secs(3);
    next.targets.push(webhook("b", &format!("{}/b", rx.url)));
    next.routes = vec![route_all(&["a", "b"])];
    let report = relay.reload(next, "next").unwrap();
    assert_eq!(report.targets_added, vec!["b"]);
    assert_eq!(report.targets_removed, vec!["gone"]);
    assert_eq!(report.targets_changed, vec!["a"]);
    assert_eq!(report.routes, 1);
    shutdown.cancel();
    relay.consume().await;
    let unfinished = relay.drain().await;
    relay.stop(unfinished).await;
}

/// A target removed by a reload while deliveries to it wait on a retry tier: when they come
/// due, the tier loop (which looks targets up in the running config) writes each to the failed
/// topic with a WebhookError — reported, not dropped — and new events go to the new target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_deliveries_of_a_removed_target_are_reported() {
    use crate::fixtures::receiver::Reply;
    let (down, up) = (Receiver::start(vec![]).await, Receiver::start(vec![]).await);
    down.set_default(Reply::status(503));
    let mut target = webhook("down", &format!("{}/down", down.url));
    target.retry.max_elapsed = None;
    target.retry.hold = ms(300);
    target.circuit.failure_threshold = 0;
    let mut env = TestEnv::komo("g-reload-parked", 1).await;
    env.with_tiers(&[secs(20)]).await; // long enough for the reload to come first
    env.config.targets = vec![target];
    env.config.routes.push(route_all(&["down"]));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = event_relay::Relay::start(env.config.clone(), shutdown.clone())
        .await
        .unwrap();
    let consuming = async {
        relay.consume().await;
    };
    let scenario = async {
        let parked_ids = ids(10);
        env.produce(&cards(&parked_ids)).await;
        let url = format!("http://{}/metrics", relay.addr);
        let parked = "event_relay_parked_total{target=\"down\",tier=\"20s\"}";
        let all_parked = eventually(Duration::from_secs(60), || async {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            metric_value(&text, parked) >= 10.0
        });
        assert!(all_parked.await, "every delivery to `down` parked");
        let mut next = env.config.clone();
        next.targets = vec![webhook("up", &format!("{}/up", up.url))];
        next.routes = vec![route_all(&["up"])];
        relay.reload(next, "next").unwrap();
        let fresh = ids(10);
        env.produce(&cards(&fresh)).await;

        let failed = env.failed(10, Duration::from_secs(90)).await;
        let failed_ids: HashSet<String> = failed
            .iter()
            .filter_map(|r| r.header("source_event_id").map(String::from))
            .collect();
        assert_eq!(failed_ids, parked_ids.iter().cloned().collect());
        assert!(failed
            .iter()
            .all(|r| r.header("reason") == Some("target_removed")));
        results_for(&env, &parked_ids, &["down"]).await;
        let results = results_for(&env, &fresh, &["up"]).await; // the whole topic
        accounting::check(&fresh, &["up"], &up.requests(), &results).assert_complete(0);
        let errors: HashSet<String> = results
            .iter()
            .filter(|r| r.json()["event"] == "WebhookError" && r.json()["target"] == "down")
            .map(|r| r.source_event_id())
            .collect();
        assert_eq!(errors, parked_ids.iter().cloned().collect());
        shutdown.cancel();
    };
    tokio::join!(consuming, scenario);
    let unfinished = relay.drain().await;
    relay.stop(unfinished).await;
}
