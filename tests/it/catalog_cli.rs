//! The tracking plan from a data team's side, on the real binary: `event-relay catalog list`,
//! `catalog show`, `catalog infer` (capture → infer → review → load), `normalize --summary`;
//! and the running relay's `event_relay_validation_problems_total`.

use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use event_relay::catalog::Catalog;
use serde_json::{json, Value};
use std::process::Output;
use std::time::Duration;

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A Komo webhook body: the common fields, then `extra`.
fn komo(event: &str, extra: Value) -> Value {
    let mut m = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "event": event,
        "timestamp": "2024-05-01T12:00:00.000Z",
        "site_id": "2d5776b8-158a-4216-aaa1-edbc249e005b",
        "site_name": "My site",
        "user_session_id": "d40cc0e7-7243-4060-a75f-b2062c94462a",
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn jsonl(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| format!("{e}\n").into_bytes())
        .collect()
}

/// Three unknown event types (each four times, with varied values), every one carrying the
/// hub's user attributes `favourite_team` and `postcode`; plus known events, not drafted.
fn unknown_sample() -> Vec<Value> {
    let mut events = vec![];
    for i in 0..4 {
        let attrs = json!({"favourite_team": (["Lions", "Tigers"][i % 2]), "postcode": format!("{}", 2000 + i)});
        let with = |mut v: Value| {
            v.as_object_mut()
                .unwrap()
                .extend(attrs.as_object().unwrap().clone());
            v
        };
        events.push(komo(
            "PrizeAwarded",
            with(json!({
                "prize_name": format!("Prize {i}"), "prize_value": format!("{}.5", 10 + i),
                "prize_id": uuid::Uuid::new_v4().to_string(), "claimed": (["true", "false"][i % 2]),
            })),
        ));
        events.push(komo(
            "CompetitionEntrySuccess",
            with(json!({
                "competition_id": uuid::Uuid::new_v4().to_string(), "entries": format!("{i}"),
                "entered_at": "2024-05-01T12:00:00Z", "contact_email": format!("u{i}@example.com"),
            })),
        ));
        events.push(komo(
            "LeaderboardViewed",
            with(json!({
                "leaderboard_url": format!("https://hub.example/board/{i}"), "rank": i + 1,
            })),
        ));
        events.push(komo("SiteViewed", json!({"favourite_team": "Lions"})));
    }
    events
}

#[test]
fn infer_drafts_the_unknown_types_and_their_shared_user_attributes() {
    let out = run(
        &["catalog", "infer", "--source", "komo"],
        jsonl(&unknown_sample()),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let draft: Value = serde_json::from_str(&text).expect("the draft is JSON");
    // The catalog format's keys, and the loader compiles the draft.
    assert_eq!(draft["catalog"], "komo");
    assert!(draft["events"].is_object(), "{draft}");
    Catalog::from_json(&text).expect("the draft loads as a catalog file");
    assert_eq!(
        draft["user_attributes"],
        json!(["favourite_team", "postcode"])
    );
    let events = draft["events"].as_object().unwrap();
    let names: Vec<&str> = events.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "CompetitionEntrySuccess",
            "LeaderboardViewed",
            "PrizeAwarded"
        ],
        "known events are not drafted"
    );
    let ty = |event: &str, prop: &str| {
        let p = &events[event]["properties"][prop];
        assert_eq!(p["required"], true, "{event}.{prop}: {p}");
        (
            p["type"]
                .as_str()
                .unwrap_or_else(|| panic!("{event}.{prop}: {p}"))
                .to_string(),
            p["format"].as_str().map(str::to_string),
        )
    };
    let s = |t: &str| (t.to_string(), None);
    let f = |t: &str| ("string".to_string(), Some(t.to_string()));
    assert_eq!(ty("PrizeAwarded", "prize_name"), s("string"));
    assert_eq!(ty("PrizeAwarded", "prize_value"), s("number"));
    assert_eq!(ty("PrizeAwarded", "prize_id"), f("guid"));
    assert_eq!(ty("PrizeAwarded", "claimed"), s("boolean"));
    assert_eq!(ty("CompetitionEntrySuccess", "competition_id"), f("guid"));
    assert_eq!(ty("CompetitionEntrySuccess", "entries"), s("integer"));
    assert_eq!(ty("CompetitionEntrySuccess", "entered_at"), f("date-time"));
    assert_eq!(ty("CompetitionEntrySuccess", "contact_email"), f("email"));
    assert_eq!(ty("LeaderboardViewed", "leaderboard_url"), f("uri"));
    assert_eq!(ty("LeaderboardViewed", "rank"), s("integer"));
    for (name, ev) in events {
        let props = ev["properties"].as_object().unwrap();
        assert_eq!(
            props.len(),
            4 - usize::from(name == "LeaderboardViewed") * 2,
            "{name}: {ev}"
        );
        assert!(!props.contains_key("favourite_team") && !props.contains_key("site_id"));
    }
}

#[test]
fn infer_with_nothing_unknown_says_so() {
    let sample = jsonl(&[komo("SiteViewed", json!({}))]);
    let out = run(&["catalog", "infer"], sample);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to draft"), "{err}");
}

#[test]
fn list_shows_both_catalogs_with_counts_and_origins() {
    let out = run(&["catalog", "list"], vec![]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let builtin = event_relay::catalog::Catalogs::builtin().unwrap();
    for c in [&builtin.komo, &builtin.acemate] {
        let n = c.events.len();
        let head = format!("{}: {n} events (built in: {n})", c.name);
        assert!(
            text.lines().any(|l| l.starts_with(&head)),
            "{head:?} in:\n{text}"
        );
    }
    let card = text
        .lines()
        .find(|l| l.trim_start().starts_with("CardViewed "))
        .unwrap_or_else(|| panic!("no CardViewed line:\n{text}"));
    assert!(
        card.contains("5 properties") && card.ends_with("built in"),
        "{card}"
    );
    assert!(text
        .lines()
        .any(|l| l.trim_start().starts_with("chat_message_sent ")));
}

#[test]
fn show_lists_an_events_properties_and_its_catalogs_common_part() {
    let out = run(&["catalog", "show", "CardViewed"], vec![]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with("CardViewed (komo catalog, built in)"),
        "{text}"
    );
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("card_id"),
        ["card_id", "string", "yes", "no", "guid", "-"]
    );
    assert_eq!(row("score"), ["score", "number", "yes", "no", "-", "-"]);
    assert_eq!(row("timestamp")[4], "date-time", "the common part is shown");
    let out = run(
        &["catalog", "show", "cardviewed", "--catalog", "acemate"],
        vec![],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"cardviewed\" is in no catalog"), "{err}");
}

#[test]
fn normalize_summary_counts_statuses_and_ranks_problems() {
    let card = |score: Value, card_id: &str| {
        komo(
            "CardViewed",
            json!({"card_id": card_id, "card_name": "n", "card_type": "Quiz",
            "correct": "1", "score": score}),
        )
    };
    let good = "dd0b77cd-35ca-404e-8b23-1d86a7471f78";
    let mut input = jsonl(&[
        card(json!("1"), good),
        card(json!("lots"), good),
        card(json!("many"), "not-a-guid"),
        card(json!("2"), good),
        komo("PrizeAwarded", json!({"prize": "car"})),
    ]);
    input.extend_from_slice(b"{not json\n");
    let out = run(&["normalize", "--summary", "--top", "2"], input);
    assert_eq!(
        out.status.code(),
        Some(1),
        "invalid events are rejected (strict): {out:?}"
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("events: 6 (valid 2, invalid 2, unknown_event 1, rejected 1)"),
        "{text}"
    );
    let row = |first: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(first))
            .unwrap_or_else(|| panic!("no row {first}:\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("CardViewed"), ["CardViewed", "2", "2", "0", "0"]);
    assert_eq!(row("PrizeAwarded"), ["PrizeAwarded", "0", "0", "1", "0"]);
    assert!(
        text.contains("rejected before validation (-): not_json 1"),
        "{text}"
    );
    assert!(text.contains("top problems (2 of 3):"), "{text}");
    assert_eq!(
        row("2")[..4],
        ["2", "CardViewed", "properties.score", "type"],
        "the most frequent problem first"
    );
    assert!(
        !text.contains("envelope_version"),
        "no envelopes with --summary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_problems_are_counted_per_event_and_rule() {
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-problems", 1).await;
    env.config.targets.push(target(json!({
        "name": "hook", "kind": "webhook", "url": format!("{}/hook", rx.url)
    })));
    env.config.routes.push(route(
        json!({"name": "cards", "events": ["Card*"], "targets": ["hook"]}),
    ));
    let relay = env.relay();
    let mut invalid: Value =
        serde_json::from_slice(&komo_event(&uuid::Uuid::new_v4().to_string(), "CardViewed"))
            .unwrap();
    invalid["score"] = "lots".into();
    invalid["card_id"] = "not-a-guid".into();
    env.produce(&[
        komo_event(&uuid::Uuid::new_v4().to_string(), "CardViewed"),
        invalid.to_string().into_bytes(),
        komo_event(&uuid::Uuid::new_v4().to_string(), "PrizeAwarded"),
    ])
    .await;
    let series = |event: &str, rule: &str| {
        format!("event_relay_validation_problems_total{{event=\"{event}\",rule=\"{rule}\",source=\"komo\"}}")
    };
    let seen = eventually(Duration::from_secs(30), || async {
        let text = relay.get("/metrics").await.1;
        metric_value(&text, &series("other", "unknown_event")) == 1.0
            && metric_value(&text, &series("CardViewed", "type")) == 1.0
    })
    .await;
    let text = relay.get("/metrics").await.1;
    assert!(seen, "{text}");
    let m = |k: &str| metric_series(&text, k).unwrap_or_else(|| panic!("no series {k}\n{text}"));
    assert_eq!(m(&series("CardViewed", "type")), 1.0);
    assert_eq!(m(&series("CardViewed", "format")), 1.0);
    assert_eq!(m(&series("other", "unknown_event")), 1.0);
    assert_eq!(
        metric_series(&text, &series("CardViewed", "required")),
        None
    );
    relay.stop().await.unwrap();
}

/// An event asked for in the wrong catalog is named where it is; one in no built-in catalog
/// gets the hint that a config's catalog files may know it.
#[test]
fn show_names_the_catalog_an_event_is_in_and_hints_at_config() {
    let out = run(
        &["catalog", "show", "CardViewed", "--catalog", "acemate"],
        vec![],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not in the acemate catalog; it is in the komo catalog"),
        "{err}"
    );
    let out = run(&["catalog", "show", "PrizeClaimed"], vec![]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass --config PATH"), "{err}");
}
