//! Routing end to end with the real relay (fan-out, `continue = false`, default targets,
//! negation globs, `where` conditions on typed properties, unrouted events counted and
//! committed) and the `event-relay route` dry run.

use crate::fixtures::receiver::{Receiver, Req};
use crate::fixtures::*;
use event_relay::config::{BodyFormat, Config, EventNames, SourceFormat, TargetConfig};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A valid fixture event of that name with `id` as its id (Komo `id`, acemate `uuid`).
fn fixture(event: &str, id: &str) -> Value {
    let line = include_str!("../fixtures/valid_events.jsonl")
        .lines()
        .find(|l| serde_json::from_str::<Value>(l).unwrap()["event"] == event)
        .unwrap_or_else(|| panic!("no fixture for {event}"));
    let mut v: Value = serde_json::from_str(line).unwrap();
    if v.get("uuid").is_some() {
        v["uuid"] = id.into();
    } else {
        v["id"] = id.into();
    }
    v
}

fn exam(id: &str, event: &str, course_type: &str, score: i64) -> Value {
    let mut v = fixture(event, id);
    v["properties"]["courseType"] = course_type.into();
    if event == "exam_completed" {
        v["properties"]["score"] = score.into();
    }
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Webhook targets named `names` at `<url>/<name>`, 3 attempts with 50 ms to 100 ms backoff.
fn webhook_targets(url: &str, names: &[&str]) -> Vec<TargetConfig> {
    names
        .iter()
        .map(|n| {
            let mut t =
                target(json!({ "name": n, "kind": "webhook", "url": format!("{url}/{n}") }));
            t.retry.max_attempts = Some(3);
            t.retry.initial_backoff = ms(50);
            t.retry.max_backoff = ms(100);
            t
        })
        .collect()
}

/// Target name (the request path) → ids of the envelopes it received.
fn received(reqs: &[Req]) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for r in reqs {
        out.entry(r.path.trim_start_matches('/').to_string())
            .or_default()
            .insert(r.json()["id"].as_str().unwrap().to_string());
    }
    out
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_continue_defaults_negation_and_where() {
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::start("g-routing", SourceFormat::Auto, 1).await;
    env.config.targets = webhook_targets(&rx.url, &["a", "b", "c", "d", "e"]);
    env.config.default_targets = vec!["e".to_string()];
    env.config.routes = [
        json!({
            "name": "drop-results",
            "events": ["WebhookSuccess", "WebhookError"],
            "targets": [],
            "continue": false,
        }),
        json!({
            "name": "cards-but-shares",
            "sources": ["komo"],
            "events": ["Card*", "!CardShared"],
            "targets": ["a"],
        }),
        json!({
            "name": "all-cards",
            "sources": ["komo"],
            "events": ["Card*"],
            "targets": ["b"],
        }),
        json!({
            "name": "classroom-exams",
            "sources": ["acemate"],
            "events": ["exam_*", "!exam_hint_requested"],
            "where": [
                { "field": "properties.courseType", "in": ["classroom", "demo"] },
                { "field": "properties.score", "gte": 5 },
            ],
            "targets": ["c"],
            "continue": false,
        }),
        json!({ "name": "acemate-rest", "sources": ["acemate"], "targets": ["d"] }),
    ]
    .into_iter()
    .map(route)
    .collect();
    let relay = env.relay();
    let id = ids(9);
    let [viewed, shared, site, result, classroom8, private8, demo3, demo5, hint] =
        std::array::from_fn(|i| &id[i]);
    env.produce_concurrently(&[
        bytes(&fixture("CardViewed", viewed)),
        bytes(&fixture("CardShared", shared)),
        bytes(&fixture("SiteViewed", site)),
        bytes(&fixture("WebhookError", result)),
        bytes(&exam(classroom8, "exam_completed", "classroom", 8)),
        bytes(&exam(private8, "exam_completed", "private", 8)),
        bytes(&exam(demo3, "exam_completed", "demo", 3)),
        bytes(&exam(demo5, "exam_completed", "demo", 5)),
        bytes(&exam(hint, "exam_hint_requested", "classroom", 0)),
    ])
    .await;

    // a:1 + b:2 + c:2 + d:3 + e:1 deliveries; the dropped result event none.
    let res = env
        .broker
        .read(&env.topics.results, 9, Duration::from_secs(60))
        .await;
    assert_eq!(res.len(), 9);
    assert!(res.iter().all(|r| r.json()["event"] == "WebhookSuccess"));
    relay.stop().await.unwrap();
    assert_eq!(
        env.committed(1),
        vec![9],
        "every message final, the dropped one too"
    );

    let got = received(&rx.requests());
    let expect: HashMap<String, BTreeSet<String>> = [
        ("a", set(&[viewed])),                // Card*, !CardShared
        ("b", set(&[viewed, shared])),        // fan-out with "cards-but-shares"
        ("c", set(&[classroom8, demo5])),     // in + gte (5 >= 5), continue = false
        ("d", set(&[private8, demo3, hint])), // where failed / negated event
        ("e", set(&[site])),                  // no route matched: default_targets
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, expect);
    assert_eq!(rx.count(), 9, "each delivery exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_events_are_counted_and_committed() {
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-unrouted", 1).await;
    env.config.targets = webhook_targets(&rx.url, &["a"]);
    env.config.routes = vec![route(json!({
        "name": "cards",
        "events": ["Card*"],
        "targets": ["a"],
    }))];
    let relay = env.relay();
    let id = ids(3);
    env.produce_concurrently(&[
        bytes(&fixture("SiteViewed", &id[0])),
        bytes(&fixture("SignUpSuccess", &id[1])),
    ])
    .await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            relay
                .metric("event_relay_unrouted_total{source=\"komo\"}")
                .await
                == 2.0
        })
        .await,
        "unrouted events counted"
    );
    let committed = || tokio::task::block_in_place(|| env.committed(1));
    assert!(
        eventually(Duration::from_secs(20), || async { committed() == vec![2] }).await,
        "unrouted offsets committed with nothing delivered: {:?}",
        committed()
    );
    assert_eq!(rx.count(), 0);

    env.produce_concurrently(&[bytes(&fixture("CardViewed", &id[2]))])
        .await;
    assert!(eventually(Duration::from_secs(30), || async { rx.count() == 1 }).await);
    let res = env
        .broker
        .read(&env.topics.results, 2, Duration::from_secs(10))
        .await;
    assert_eq!(res.len(), 1, "only the routed event has a result");
    assert_eq!(res[0].json()["source_event_id"], id[2].as_str());
    relay.stop().await.unwrap();
    assert_eq!(env.committed(1), vec![3]);
}

const ACEMATE_SITE: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

/// Runs `event-relay route --config <cfg> [args]` with `stdin`; returns (exit code, stdout lines
/// as JSON, stderr). Fails if it does not finish promptly (it must not connect anywhere).
fn run_route(cfg: &Config, args: &[&str], stdin: &str) -> (i32, Vec<Value>, String) {
    let file = ConfigFile::write(cfg);
    let mut child = Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .arg("route")
        .arg("--config")
        .arg(&file.path)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`event-relay route` did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.code().unwrap(),
        lines,
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Two sources, a PostHog and two webhook targets and four routes; the broker is never reached.
fn cli_config() -> Config {
    let mut cfg = base_config("127.0.0.1:1", "relay.results", "relay.dlq");
    let mut acemate = source("acemate.events", SourceFormat::Acemate);
    acemate.site_id = Some(ACEMATE_SITE.to_string());
    acemate.site_name = Some("acemate".to_string());
    cfg.sources = vec![source("komo.events", SourceFormat::Komo), acemate];
    let mut ph = target(json!({
        "name": "ph",
        "kind": "posthog",
        "url": "https://eu.i.posthog.com/",
        "api_key": "phc_test",
    }));
    ph.event_names = EventNames::SnakeCase;
    let crm = target(json!({
        "name": "crm",
        "kind": "webhook",
        "url": "https://hooks.example.com/{{source}}/{{event}}",
    }));
    let mut billing = target(json!({
        "name": "billing",
        "kind": "webhook",
        "url": "https://billing.example.com/in",
    }));
    billing.body = BodyFormat::Original;
    cfg.targets = vec![ph, crm, billing];
    cfg.routes = [
        json!({
            "name": "drop-results",
            "events": ["WebhookSuccess", "WebhookError"],
            "targets": [],
            "continue": false,
        }),
        json!({ "name": "everything", "targets": ["ph"] }),
        json!({
            "name": "cards-to-crm",
            "sources": ["komo"],
            "events": ["Card*"],
            "targets": ["crm"],
        }),
        json!({
            "name": "checkout",
            "sources": ["acemate"],
            "events": ["checkout_*"],
            "targets": ["billing"],
        }),
    ]
    .into_iter()
    .map(route)
    .collect();
    cfg
}

#[test]
fn route_cli_prints_routes_targets_urls_and_bodies() {
    let card_id = uuid::Uuid::new_v4().to_string();
    let checkout_id = uuid::Uuid::new_v4().to_string();
    let result_id = uuid::Uuid::new_v4().to_string();
    let card = fixture("CardViewed", &card_id);
    let checkout = fixture("checkout_started", &checkout_id);
    let input = format!(
        "{card}\n{{not json\n\n{checkout}\n{}\n",
        fixture("WebhookError", &result_id)
    );
    let (code, out, err) = run_route(&cli_config(), &[], &input);
    assert_eq!(
        code, 1,
        "a rejected line makes the exit code 1; stderr: {err}"
    );
    assert!(
        err.contains("line 2:"),
        "bad line reported on stderr: {err}"
    );
    assert!(err.contains("not_json"), "{err}");
    assert_eq!(out.len(), 3, "one JSON line per event: {out:?}");

    // Komo card: both matching routes, a PostHog and a webhook target.
    let c = &out[0];
    assert_eq!(c["line"], 1);
    assert_eq!(c["id"], card_id.as_str());
    assert_eq!(c["event"], "CardViewed");
    assert_eq!(
        c["routes"],
        serde_json::json!(["everything", "cards-to-crm"])
    );
    assert_eq!(c["unrouted"], false);
    let t = c["targets"].as_array().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0]["target"], "ph");
    assert_eq!(t[0]["kind"], "posthog");
    assert_eq!(t[0]["url"], "https://eu.i.posthog.com/batch/");
    assert_eq!(t[0]["body"]["event"], "card_viewed");
    assert_eq!(t[0]["body"]["uuid"], card_id.as_str());
    assert_eq!(t[0]["body"]["properties"]["$lib"], "event-relay");
    assert_eq!(t[1]["target"], "crm");
    assert_eq!(t[1]["kind"], "webhook");
    assert_eq!(t[1]["url"], "https://hooks.example.com/komo/CardViewed");
    assert_eq!(t[1]["body"]["id"], card_id.as_str());
    assert_eq!(t[1]["body"]["envelope_version"], 1);

    // acemate checkout, read as the acemate source (without --topic every line goes to the
    // source whose format fits it): PostHog with the configured site, billing with the original.
    let k = &out[1];
    assert_eq!(k["line"], 4);
    assert_eq!(k["id"], checkout_id.as_str());
    assert_eq!(k["event"], "checkout_started");
    assert_eq!(k["validation"], "valid");
    assert_eq!(k["routes"], serde_json::json!(["everything", "checkout"]));
    let t = k["targets"].as_array().unwrap();
    assert_eq!(t[0]["target"], "ph");
    assert_eq!(t[0]["body"]["event"], "checkout_started");
    assert_eq!(t[0]["body"]["properties"]["site_id"], ACEMATE_SITE);
    assert_eq!(
        t[0]["body"]["properties"]["$set"]["email"],
        "student0@uni-example.de"
    );
    assert_eq!(t[1]["target"], "billing");
    assert_eq!(t[1]["url"], "https://billing.example.com/in");
    assert_eq!(t[1]["body"], checkout, "original body");

    // A relay result event is dropped: it matches the drop route and reaches no target.
    let r = &out[2];
    assert_eq!(r["id"], result_id.as_str());
    assert_eq!(r["routes"], serde_json::json!(["drop-results"]));
    assert_eq!(r["targets"], serde_json::json!([]));
    assert_eq!(r["default_targets"], false);
}

#[test]
fn route_cli_topic_option_unrouted_and_defaults() {
    let mut cfg = cli_config();
    cfg.routes.retain(|r| r.name != "everything");
    let site_id = uuid::Uuid::new_v4().to_string();
    let card_id = uuid::Uuid::new_v4().to_string();
    let input = format!(
        "{}\n{}\n",
        fixture("SiteViewed", &site_id),
        fixture("CardViewed", &card_id)
    );
    let (code, out, err) = run_route(&cfg, &["--topic", "komo.events"], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["routes"], serde_json::json!([]));
    assert_eq!(out[0]["unrouted"], true);
    assert_eq!(out[0]["targets"], serde_json::json!([]));
    assert_eq!(out[1]["routes"], serde_json::json!(["cards-to-crm"]));

    // With default_targets, the unmatched event goes there.
    cfg.default_targets = vec!["billing".to_string()];
    let (code, out, err) = run_route(&cfg, &["--topic", "komo.events"], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out[0]["default_targets"], true);
    assert_eq!(out[0]["unrouted"], false);
    assert_eq!(out[0]["targets"][0]["target"], "billing");
    assert_eq!(out[1]["default_targets"], false);

    // A config mistake is reported with its key path, exit 2.
    let mut bad = cfg.clone();
    for r in bad.routes.iter_mut().filter(|r| r.targets == ["crm"]) {
        r.targets = vec!["nope".to_string()];
    }
    let (code, _, err) = run_route(&bad, &[], &input);
    assert_eq!(code, 2);
    assert!(err.contains("unknown target \"nope\""), "{err}");
}
