//! Table-driven tests over the fixtures generated from the specs.

use super::*;
use crate::envelope::Source;

pub(super) fn origin() -> Origin {
    Origin {
        topic: "t".into(),
        partition: 0,
        offset: 1,
        key: None,
    }
}

pub(super) fn settings(format: SourceFormat, validation: ValidationMode) -> SourceSettings {
    SourceSettings {
        validation,
        ..SourceSettings::standalone(format)
    }
}

pub(super) fn normalizer() -> Normalizer {
    Normalizer::builtin().unwrap()
}

pub(super) fn fixture_lines(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_valid_fixture_normalizes_as_valid_in_auto_mode() {
    let n = normalizer();
    let lines = fixture_lines("valid_events.jsonl");
    assert_eq!(lines.len(), 82);
    let s = settings(SourceFormat::Auto, ValidationMode::Strict);
    for line in lines {
        let raw = serde_json::to_vec(&line).unwrap();
        let out = n
            .normalize(&raw, &s, origin())
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(out.events.len(), 1);
        let env = &out.events[0].0;
        assert_eq!(
            env.validation.status,
            ValidationStatus::Valid,
            "{line}: {:?}",
            env.validation
        );
        assert_eq!(env.event, line["event"].as_str().unwrap());
        let expected_source = if line.get("distinct_id").is_some() {
            Source::Acemate
        } else {
            Source::Komo
        };
        assert_eq!(env.source, expected_source);
        assert!(env.distinct_id.is_some());
    }
}

#[test]
fn every_invalid_fixture_is_rejected_naming_the_property() {
    let n = normalizer();
    let lines = fixture_lines("invalid_events.jsonl");
    assert!(lines.len() >= 7);
    for case in lines {
        let format = if case["source"] == "komo" {
            SourceFormat::Komo
        } else {
            SourceFormat::Acemate
        };
        let raw = serde_json::to_vec(&case["payload"]).unwrap();
        let strict = n.normalize(&raw, &settings(format, ValidationMode::Strict), origin());
        let prop = case["expect_problem_property"].as_str().unwrap_or_default();
        if case["expect_valid"] == true {
            let out = strict.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(
                out.events[0].0.validation.status,
                ValidationStatus::Valid,
                "{case}"
            );
            continue;
        }
        let err = strict.expect_err(&case.to_string());
        if prop == "timestamp" {
            // An unparseable envelope timestamp is a hard limit: dead-lettered in every mode.
            assert_eq!(err.reason(), "invalid_timestamp", "{case}: {err}");
            continue;
        }
        assert_eq!(err.reason(), "invalid", "{case}: {err}");
        let bare = prop.trim_start_matches("properties.");
        assert!(
            err.problems().iter().any(|p| p.contains(bare)),
            "{case}: {:?}",
            err.problems()
        );
        // lenient forwards the same event, flagged
        let lenient = n
            .normalize(&raw, &settings(format, ValidationMode::Lenient), origin())
            .unwrap();
        let v = &lenient.events[0].0.validation;
        assert_eq!(v.status, ValidationStatus::Invalid);
        assert!(v.problems.iter().any(|p| p.contains(bare)));
    }
}

#[test]
fn komo_strings_are_coerced_and_attributes_become_traits() {
    let raw = br#"{"id":"54e635de-92f5-4419-a498-5f69323db34c","event":"CardViewed","timestamp":"2000-01-01T00:00:00.000Z","site_id":"2d5776b8-158a-4216-aaa1-edbc249e005b","site_name":"My site","user_session_id":"d40cc0e7-7243-4060-a75f-b2062c94462a","card_id":"dd0b77cd-35ca-404e-8b23-1d86a7471f78","card_name":"card name","card_type":"Quiz","score":"1","correct":"1","team":"Lions","optin":"true"}"#;
    let out = normalizer()
        .normalize(
            raw,
            &settings(SourceFormat::Komo, ValidationMode::Strict),
            origin(),
        )
        .unwrap();
    let env = &out.events[0].0;
    assert_eq!(env.properties.to_map()["score"], Value::from(1));
    assert_eq!(env.user.traits.to_map()["team"], "Lions");
    assert_eq!(env.user.traits.to_map()["optin"], Value::Bool(true));
    assert_eq!(
        env.distinct_id.as_deref(),
        Some("d40cc0e7-7243-4060-a75f-b2062c94462a")
    );
    assert_eq!(env.site.as_ref().unwrap().name.as_deref(), Some("My site"));
}

#[test]
fn acemate_batch_and_ingestion_record() {
    let n = normalizer();
    let s = settings(SourceFormat::Auto, ValidationMode::Strict);
    let batch = br#"{"api_key":"phc_x","batch":[{"event":"$pageview","distinct_id":"u1","properties":{"$session_id":"s9"}},{"event":"","distinct_id":"u2"},{"event":"$pageleave","distinct_id":"u3"}]}"#;
    let out = n.normalize(batch, &s, origin()).unwrap();
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].index, 1);
    assert_eq!(out.events[0].0.session_id.as_deref(), Some("s9"));
    assert_ne!(out.events[0].0.id, out.events[1].0.id);

    let data =
        serde_json::json!({"event":"$pageview","distinct_id":"u1","properties":{"email":"a@b.co"}})
            .to_string();
    let rec = serde_json::json!({"uuid":"0190a4b2-7c1e-7d2a-9a1b-1c2d3e4f5a6b","distinct_id":"u1","ip":"127.0.0.1","data":data,"now":"2024-01-01T00:00:00Z","token":"phc"});
    let out = n
        .normalize(rec.to_string().as_bytes(), &s, origin())
        .unwrap();
    let env = &out.events[0].0;
    assert_eq!(env.id, "0190a4b2-7c1e-7d2a-9a1b-1c2d3e4f5a6b");
    assert_eq!(env.user.email.as_deref(), Some("a@b.co"));
    assert_eq!(env.source, Source::Acemate);
}

#[test]
fn hard_limits_have_reasons() {
    let n = normalizer();
    let s = SourceSettings {
        max_message_bytes: 100_000,
        ..settings(SourceFormat::Auto, ValidationMode::Lenient)
    };
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![b'x'; 200_000], "too_large"),
        (vec![0xff, 0xfe, b'{'], "invalid_utf8"),
        (b"not json".to_vec(), "not_json"),
        (b"{\"event\": \"x\"".to_vec(), "not_json"),
        (b"[1,2]".to_vec(), "not_object"),
        (b"42".to_vec(), "not_object"),
        (deep.into_bytes(), "too_deep"),
        (b"{\"distinct_id\":\"u\"}".to_vec(), "missing_event"),
        (
            b"{\"event\":7,\"distinct_id\":\"u\"}".to_vec(),
            "missing_event",
        ),
        (
            b"{\"event\":\"\",\"site_id\":\"x\"}".to_vec(),
            "missing_event",
        ),
        (
            b"{\"event\":\"e\",\"distinct_id\":\"u\",\"timestamp\":12}".to_vec(),
            "invalid_timestamp",
        ),
        (
            b"{\"event\":\"e\",\"distinct_id\":\"u\",\"timestamp\":\"9999-01-01T00:00:00Z\"}"
                .to_vec(),
            "invalid_timestamp",
        ),
        (
            b"{\"event\":\"e\",\"distinct_id\":\"u\",\"timestamp\":\"yesterday\"}".to_vec(),
            "invalid_timestamp",
        ),
        (b"{\"batch\":[]}".to_vec(), "bad_shape"),
    ];
    for (raw, reason) in cases {
        let err = n.normalize(&raw, &s, origin()).expect_err(reason);
        assert_eq!(err.reason(), reason, "{err}");
    }
}

#[test]
fn unknown_events_follow_policy() {
    let n = normalizer();
    let raw = br#"{"id":"54e635de-92f5-4419-a498-5f69323db34c","event":"PrizeAwarded","timestamp":"2000-01-01T00:00:00.000Z","site_id":"2d5776b8-158a-4216-aaa1-edbc249e005b","site_name":"s","user_session_id":"d40cc0e7-7243-4060-a75f-b2062c94462a","prize":"car"}"#;
    let s = settings(SourceFormat::Komo, ValidationMode::Strict);
    let out = n.normalize(raw, &s, origin()).unwrap();
    assert_eq!(
        out.events[0].0.validation.status,
        ValidationStatus::UnknownEvent
    );
    assert_eq!(out.events[0].0.properties.to_map()["prize"], "car");
    let dl = SourceSettings {
        unknown_events: UnknownEvents::DeadLetter,
        ..s
    };
    assert_eq!(
        n.normalize(raw, &dl, origin()).unwrap_err().reason(),
        "unknown_event"
    );
}

#[test]
fn id_less_payloads_get_a_deterministic_id() {
    let n = normalizer();
    let s = settings(SourceFormat::Acemate, ValidationMode::Lenient);
    let raw = br#"{"event":"$pageview","distinct_id":"u1"}"#;
    let a = n.normalize(raw, &s, origin()).unwrap().events[0]
        .0
        .id
        .clone();
    let b = n.normalize(raw, &s, origin()).unwrap().events[0]
        .0
        .id
        .clone();
    assert_eq!(a, b);
    assert!(uuid::Uuid::parse_str(&a).is_ok());
}

#[test]
fn set_once_stays_set_once() {
    let raw = serde_json::json!({
        "event": "custom_thing", "distinct_id": "u1",
        "uuid": "0190a4b2-7c1e-7d2a-9a1b-1c2d3e4f5a6b",
        "$set": {"plan": "pro"},
        "$set_once": {"first_seen": "2024-05-01", "plan": "free"},
        "properties": {"$set_once": {"initial_referrer": "x"}}
    })
    .to_string();
    let out = normalizer()
        .normalize(
            raw.as_bytes(),
            &settings(SourceFormat::Acemate, ValidationMode::Lenient),
            origin(),
        )
        .unwrap();
    let env = &out.events[0].0;
    assert_eq!(
        env.user.traits.to_map().get("plan"),
        Some(&Value::from("pro"))
    );
    assert!(env.user.traits.get("first_seen").is_none(), "{env:?}");
    let once = &env.properties.to_map()["$set_once"];
    assert_eq!(once["first_seen"], "2024-05-01");
    assert_eq!(once["initial_referrer"], "x");
    assert_eq!(once["plan"], "free");
    // PostHog gets `$set_once` as a property and only `$set` traits in `$set`.
    let ph = crate::deliver::posthog::event_json(env, crate::config::EventNames::Original);
    assert_eq!(ph["properties"]["$set_once"]["first_seen"], "2024-05-01");
    assert_eq!(ph["properties"]["$set"]["plan"], "pro");
    assert!(ph["properties"]["$set"].get("first_seen").is_none());
}

#[test]
fn sign_up_success_needs_its_data_capture_fields() {
    let mut line = fixture_lines("valid_events.jsonl")
        .into_iter()
        .find(|l| l["event"] == "SignUpSuccess")
        .expect("a SignUpSuccess fixture");
    line.as_object_mut()
        .unwrap()
        .retain(|k, _| crate::envelope::KOMO_COMMON_KEYS.contains(&k.as_str()));
    let raw = line.to_string();
    let err = normalizer()
        .normalize(
            raw.as_bytes(),
            &settings(SourceFormat::Komo, ValidationMode::Strict),
            origin(),
        )
        .unwrap_err();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.starts_with("data_capture_fields:")),
        "{err}"
    );
}

#[test]
fn a_payload_of_the_other_sources_shape_is_a_wrong_shape() {
    let n = normalizer();
    let komo = br#"{"event": "SignUpSuccess", "id": "6657fdf0-1111-4a5b-9c3d-1234567890ab", "site_id": "s", "user_session_id": "u", "timestamp": "2024-05-01T10:00:00Z"}"#;
    let err = n
        .normalize(
            komo,
            &settings(SourceFormat::Acemate, ValidationMode::Strict),
            origin(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), "wrong_shape");
    let text = err.to_string();
    assert!(text.contains("a Komo event"), "{text}");
    assert!(text.contains("site_id, user_session_id"), "{text}");
    assert!(text.contains("format is acemate"), "{text}");

    let acemate = br#"{"event": "exam_started", "distinct_id": "u1", "properties": {}}"#;
    let err = n
        .normalize(
            acemate,
            &settings(SourceFormat::Komo, ValidationMode::Lenient),
            origin(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), "wrong_shape");
    assert!(err.to_string().contains("distinct_id"), "{err}");

    // Auto decides by shape, so neither is wrong there.
    for raw in [&komo[..], &acemate[..]] {
        let r = n.normalize(
            raw,
            &settings(SourceFormat::Auto, ValidationMode::Lenient),
            origin(),
        );
        assert!(r.is_ok(), "{r:?}");
    }
}
