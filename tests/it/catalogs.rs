//! Catalog files loaded at run time (`[[catalogs]]`) and declared user attributes
//! (`sources[].user_attributes`), through the normalizer and through the running relay: a
//! loaded file's event is judged by it (strict: an invalid one is dead-lettered with its
//! problems), without the file it is `unknown_event`; declared attributes of an unknown Komo
//! event reach `user.traits`, the result events and PostHog's `$set`.

use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use event_relay::catalog::Catalogs;
use event_relay::config::{SourceFormat, ValidationMode};
use event_relay::envelope::{Origin, ValidationStatus};
use event_relay::normalize::{NormalizeError, Normalizer, SourceSettings};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The sample catalog file shipped with the example config (declares `PrizeAwarded`).
pub fn prizes_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/catalogs/komo-prizes.json")
}

/// A Komo `event` with the common fields, user `profile`, and `extra` keys.
fn komo(id: &str, event: &str, extra: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&komo_event(id, event)).unwrap();
    let m = v.as_object_mut().unwrap();
    for k in ["card_id", "card_name", "card_type", "score", "correct"] {
        m.remove(k);
    }
    for (k, x) in extra.as_object().unwrap() {
        m.insert(k.clone(), x.clone());
    }
    serde_json::to_vec(&v).unwrap()
}

fn valid_prize(id: &str) -> Vec<u8> {
    komo(
        id,
        "PrizeAwarded",
        json!({
            "prize_id": "6657fdf0-1111-4a5b-9c3d-1234567890ab",
            "prize_name": "Season ticket",
            "tier": "gold",
            "code": "ABCD-1234",
        }),
    )
}

/// Missing the required `prize_id`, a `tier` outside the enum, a `code` off the pattern.
fn invalid_prize(id: &str) -> Vec<u8> {
    komo(
        id,
        "PrizeAwarded",
        json!({"prize_name": "Mug", "tier": "platinum", "code": "abc"}),
    )
}

fn origin() -> Origin {
    Origin {
        topic: "komo".into(),
        partition: 0,
        offset: 0,
        key: None,
    }
}

fn strict_komo() -> SourceSettings {
    SourceSettings {
        validation: ValidationMode::Strict,
        ..SourceSettings::standalone(SourceFormat::Komo)
    }
}

#[test]
fn a_loaded_catalog_judges_its_events_and_without_it_they_are_unknown() {
    let loaded = Normalizer::new(Catalogs::load(&[prizes_file()]).unwrap());
    let builtin = Normalizer::builtin().unwrap();
    let id = uuid::Uuid::new_v4().to_string();

    let out = loaded
        .normalize(&valid_prize(&id), &strict_komo(), origin())
        .unwrap();
    let env = &out.events[0].0;
    assert_eq!(
        env.validation.status,
        ValidationStatus::Valid,
        "{:?}",
        env.validation
    );
    assert_eq!(env.validation.catalog, "komo");
    assert_eq!(env.validation.catalog_version.as_deref(), Some("2024-06"));
    assert_eq!(env.properties.to_map()["prize_name"], "Season ticket");
    assert_eq!(env.user.traits.to_map()["favourite_team"], "Lions");

    let err = loaded
        .normalize(&invalid_prize(&id), &strict_komo(), origin())
        .unwrap_err();
    let NormalizeError::Invalid { problems, .. } = &err else {
        panic!("expected invalid, got {err}");
    };
    for want in [
        "properties.prize_id: required property missing",
        "properties.tier: value \"platinum\" is not one of the allowed values",
        "properties.code: does not match the pattern",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "{want}: {problems:?}"
        );
    }

    for raw in [valid_prize(&id), invalid_prize(&id)] {
        let out = builtin.normalize(&raw, &strict_komo(), origin()).unwrap();
        let env = &out.events[0].0;
        assert_eq!(env.validation.status, ValidationStatus::UnknownEvent);
        assert_eq!(env.validation.catalog_version, None);
    }
}

#[test]
fn declared_user_attributes_of_an_unknown_event_go_to_the_traits() {
    let n = Normalizer::builtin().unwrap();
    let mut settings = strict_komo();
    settings.user_attributes = std::sync::Arc::new(
        event_relay::envelope::UserAttributes::new(&["favourite_team", "postcode", "utm_*"])
            .unwrap(),
    );
    let raw = komo(
        &uuid::Uuid::new_v4().to_string(),
        "LeaderboardViewed",
        json!({"postcode": "0200", "utm_source": "newsletter", "colour": "red"}),
    );
    let env = &n.normalize(&raw, &settings, origin()).unwrap().events[0].0;
    let traits: Vec<&str> = env.user.traits.keys().collect();
    assert_eq!(traits, ["favourite_team", "postcode", "utm_source"]);
    assert_eq!(env.user.traits.to_map()["postcode"], "0200", "kept as sent");
    let props: Vec<&str> = env.properties.keys().collect();
    assert_eq!(props, ["colour"]);

    // Undeclared: today's rule, everything but identity keys stays in `properties`.
    let env = &n.normalize(&raw, &strict_komo(), origin()).unwrap().events[0].0;
    assert!(env.user.traits.is_empty(), "{:?}", env.user.traits);
    assert_eq!(env.properties.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_relay_with_a_catalog_file_delivers_valid_and_dead_letters_invalid_events() {
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-catalog-prize", 1).await;
    env.config
        .catalogs
        .push(serde_json::from_value(json!({ "path": prizes_file() })).unwrap());
    env.config.targets.push(webhook("hook", &rx.url));
    env.config.routes.push(route_all(&["hook"]));
    let relay = env.relay();
    let (good, bad) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    env.produce(&[valid_prize(&good), invalid_prize(&bad)])
        .await;

    let res = env.results_json(1).await;
    assert_eq!(res.len(), 1, "{res:?}");
    assert_eq!(res[0]["source_event_id"], good.as_str());
    assert_eq!(res[0]["event"], "WebhookSuccess");
    let dead = env.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("reason"), Some("invalid"));
    let problems = dead[0].header("problems").unwrap_or_default();
    assert!(
        problems.contains("properties.prize_id: required property missing"),
        "{problems}"
    );
    assert!(problems.contains("properties.tier"), "{problems}");

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let body = reqs[0].json();
    assert_eq!(body["id"], good.as_str());
    assert_eq!(body["validation"]["status"], "valid");
    assert_eq!(body["validation"]["catalog_version"], "2024-06");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_attributes_reach_result_events_and_posthog_set() {
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-catalog-attrs", 1).await;
    env.config.sources[0].user_attributes =
        vec!["favourite_team".into(), "postcode".into(), "utm_*".into()];
    env.config.targets.push(quick_target(json!({
        "name": "ph", "kind": "posthog", "url": rx.url, "api_key": "phc_test_token",
    })));
    env.config.routes.push(route_all(&["ph"]));
    let relay = env.relay();
    let id = uuid::Uuid::new_v4().to_string();
    env.produce(&[komo(
        &id,
        "LeaderboardViewed",
        json!({"postcode": "0200", "utm_source": "newsletter", "colour": "red"}),
    )])
    .await;

    let res = env.results_json(1).await;
    assert_eq!(res.len(), 1, "{res:?}");
    let r = &res[0];
    assert_eq!(r["event"], "WebhookSuccess", "{r}");
    assert_eq!(r["favourite_team"], "Lions", "{r}");
    assert_eq!(r["postcode"], "0200", "{r}");
    assert_eq!(r["utm_source"], "newsletter", "{r}");
    assert!(
        r.get("colour").is_none(),
        "undeclared keys are not user attributes: {r}"
    );

    let sent: Vec<Value> = rx
        .requests()
        .iter()
        .flat_map(|q| q.json()["batch"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(sent.len(), 1);
    let p = &sent[0]["properties"];
    assert_eq!(p["$set"]["favourite_team"], "Lions", "{p}");
    assert_eq!(p["$set"]["postcode"], "0200", "{p}");
    assert_eq!(p["$set"]["utm_source"], "newsletter", "{p}");
    assert_eq!(p["colour"], "red", "{p}");
    assert!(p["$set"].get("colour").is_none(), "{p}");
    relay.stop().await.unwrap();
}

pub fn json_schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("schema compiles")
}

pub fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

#[test]
fn envelopes_judged_by_a_loaded_catalog_match_the_envelope_schema() {
    let dir = tempfile::tempdir().unwrap();
    let deprecated = dir.path().join("deprecated.json");
    std::fs::write(
        &deprecated,
        json!({"catalog": "komo", "version": "7", "events": {"PrizeAwarded": {"deprecated": true}}}).to_string(),
    )
    .unwrap();
    let n = Normalizer::new(Catalogs::load(&[prizes_file(), deprecated]).unwrap());
    let schema = json_schema("envelope.schema.json");
    let lenient = SourceSettings {
        validation: ValidationMode::Lenient,
        ..SourceSettings::standalone(SourceFormat::Komo)
    };
    let id = uuid::Uuid::new_v4().to_string();
    let mut statuses = Vec::new();
    for raw in [
        valid_prize(&id),
        invalid_prize(&id),
        komo(&id, "Other", json!({})),
    ] {
        let env = &n.normalize(&raw, &lenient, origin()).unwrap().events[0].0;
        let doc = serde_json::to_value(env).unwrap();
        assert_eq!(errors(&schema, &doc), Vec::<String>::new(), "{doc}");
        assert_eq!(doc["validation"]["catalog_version"], "7", "{doc}");
        statuses.push(env.validation.status);
    }
    assert_eq!(
        statuses,
        [
            ValidationStatus::Valid,
            ValidationStatus::Invalid,
            ValidationStatus::UnknownEvent
        ]
    );
    // A deprecated valid event is forwarded as valid with the notice; strict forwards it too.
    let env = &n
        .normalize(&valid_prize(&id), &strict_komo(), origin())
        .unwrap()
        .events[0]
        .0;
    assert_eq!(
        env.validation.problems,
        ["event: deprecated (PrizeAwarded is deprecated in the komo catalog)"]
    );
}

#[test]
fn a_catalog_files_user_attributes_apply_to_unknown_acemate_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acemate.json");
    std::fs::write(
        &file,
        json!({"catalog": "acemate", "user_attributes": ["plan", "utm_*"]}).to_string(),
    )
    .unwrap();
    let n = Normalizer::new(Catalogs::load(&[file]).unwrap());
    let settings = SourceSettings::standalone(SourceFormat::Acemate);
    let raw = json!({
        "event": "streak_extended", "distinct_id": "u1",
        "uuid": uuid::Uuid::new_v4().to_string(),
        "properties": {"plan": "pro", "utm_medium": "mail", "days": 7},
    });
    let out = n
        .normalize(raw.to_string().as_bytes(), &settings, origin())
        .unwrap();
    let env = &out.events[0].0;
    assert_eq!(env.validation.status, ValidationStatus::UnknownEvent);
    assert_eq!(env.user.traits.to_map()["plan"], "pro");
    assert_eq!(env.user.traits.to_map()["utm_medium"], "mail");
    assert_eq!(env.properties.to_map()["days"], 7);
    assert!(env.properties.get("plan").is_none());
}
