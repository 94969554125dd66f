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
fn prizes_file() -> PathBuf {
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
    assert_eq!(env.properties["prize_name"], "Season ticket");
    assert_eq!(env.user.traits["favourite_team"], "Lions");

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
    let traits: Vec<&str> = env.user.traits.keys().map(String::as_str).collect();
    assert_eq!(traits, ["favourite_team", "postcode", "utm_source"]);
    assert_eq!(env.user.traits["postcode"], "0200", "kept as sent");
    let props: Vec<&str> = env.properties.keys().map(String::as_str).collect();
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

fn json_schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("schema compiles")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

#[test]
fn builtin_catalogs_and_the_sample_file_match_the_catalog_schema() {
    let schema = json_schema("catalog.schema.json");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "catalog/komo.json",
        "catalog/acemate.json",
        "config/catalogs/komo-prizes.json",
    ] {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(file)).unwrap()).unwrap();
        assert_eq!(errors(&schema, &doc), Vec::<String>::new(), "{file}");
        // The relay's own check agrees.
        event_relay::catalog::check_file(&root.join(file)).unwrap_or_else(|e| panic!("{e}"));
    }
    // The schema can fail: a typo'd key and an unknown type.
    let bad = json!({"catalog": "komo", "events": {"X": {"properties": {"p": {"type": "text", "requred": true}}}}});
    assert_eq!(
        errors(&schema, &bad).len(),
        2,
        "{:?}",
        errors(&schema, &bad)
    );
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

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn catalog_check_lists_every_problem_with_its_json_path() {
    let sample = prizes_file();
    let (code, out, _) = run(&["catalog", "check", sample.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("OK (komo catalog, version 2024-06, 2 event(s))"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let values: Vec<u32> = (0..20_000).collect();
    std::fs::write(
        &bad,
        json!({"catalog": "komo", "events": {"PrizeAwarded": {"properties": {
            "tier": {"type": "string", "enum": values},
            "code": {"type": "string", "pattern": "(?:\\w{100}){100}"},
            "when": {"type": "date"}
        }}}})
        .to_string(),
    )
    .unwrap();
    let (code, out, _) = run(&["catalog", "check", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for want in [
        "$.events.PrizeAwarded.properties.code.pattern: not a usable regular expression",
        "$.events.PrizeAwarded.properties.tier.enum: 20000 values, more than the limit",
        "$.events.PrizeAwarded.properties.when.type: unknown type \"date\"",
    ] {
        let line = format!("{}: {want}", bad.display());
        assert!(
            lines.iter().any(|l| l.starts_with(&line)),
            "{line} in {out}"
        );
    }

    let missing = dir.path().join("missing.json");
    let (code, _, err) = run(&["catalog", "check", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing.json: cannot read"), "{err}");

    // `check` checks the config's catalog files too, at `catalogs[i].path`, resolved against
    // the config file's directory.
    let mut cfg = base_config("127.0.0.1:9092", "results", "dlq");
    cfg.sources.push(source("komo", SourceFormat::Komo));
    cfg.catalogs
        .push(serde_json::from_value(json!({ "path": "bad.json" })).unwrap());
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, to_toml(&cfg)).unwrap();
    let (code, out, _) = run(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.starts_with(&format!(
            "catalogs[0].path: catalog file {}: ",
            bad.display()
        )),
        "{out}"
    );
    assert!(out.contains("properties.when.type: unknown type"), "{out}");
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
    assert_eq!(env.user.traits["plan"], "pro");
    assert_eq!(env.user.traits["utm_medium"], "mail");
    assert_eq!(env.properties["days"], 7);
    assert!(env.properties.get("plan").is_none());
}
