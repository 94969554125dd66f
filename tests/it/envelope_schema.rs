//! Every envelope the normalizer emits validates against `docs/envelope.schema.json`: all lines of
//! both fixture files, under every format that accepts them, in strict and lenient mode, with and
//! without a configured site, plus acemate batches and PostHog ingestion records. A broken
//! envelope must fail, so the check can fail.

use event_relay::config::{SourceFormat, UnknownEvents, ValidationMode};
use event_relay::envelope::Origin;
use event_relay::normalize::{Normalizer, SourceSettings};
use serde_json::{json, Value};

fn schema() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/envelope.schema.json");
    let text = std::fs::read_to_string(path).expect("docs/envelope.schema.json");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn fixture(name: &str) -> Vec<String> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Raw events: every valid line as is, every invalid case's payload.
fn raw_events() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = fixture("valid_events.jsonl")
        .into_iter()
        .map(String::into_bytes)
        .collect();
    for case in fixture("invalid_events.jsonl") {
        let v: Value = serde_json::from_str(&case).unwrap();
        out.push(serde_json::to_vec(&v["payload"]).unwrap());
    }
    // Events of each shape that their catalog does not know (forwarded as `unknown_event`).
    out.push(
        br#"{"event": "PrizeAwarded", "id": "6657fdf0-1111-4a5b-9c3d-1234567890ab", "site_id": "2d5776b8-158a-4216-aaa1-edbc249e005b", "user_session_id": "u1", "timestamp": "2024-05-01T10:00:00Z", "prize": "mug"}"#.to_vec(),
    );
    out.push(br#"{"event": "$pageview", "distinct_id": "u1", "properties": {"$current_url": "https://x.example"}}"#.to_vec());
    out
}

fn origin() -> Origin {
    Origin {
        topic: "events".into(),
        partition: 3,
        offset: 42,
        key: Some("k1".into()),
    }
}

fn all_settings() -> Vec<SourceSettings> {
    let mut out = Vec::new();
    for format in [
        SourceFormat::Komo,
        SourceFormat::Acemate,
        SourceFormat::Auto,
    ] {
        for validation in [ValidationMode::Strict, ValidationMode::Lenient] {
            for site in [false, true] {
                out.push(SourceSettings {
                    validation,
                    unknown_events: UnknownEvents::Forward,
                    site_id: site.then(|| "2d5776b8-158a-4216-aaa1-edbc249e005b".into()),
                    site_name: site.then(|| "Configured site".into()),
                    ..SourceSettings::standalone(format)
                });
            }
        }
    }
    out
}

/// Normalizes `raw` and validates every envelope; returns how many were checked.
fn check(
    v: &jsonschema::Validator,
    n: &Normalizer,
    raw: &[u8],
    s: &SourceSettings,
    failures: &mut Vec<String>,
) -> usize {
    let Ok(out) = n.normalize(raw, s, origin()) else {
        return 0;
    };
    for (env, _) in &out.events {
        let value = serde_json::to_value(env).expect("envelope serializes");
        let errors: Vec<String> = v
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if !errors.is_empty() {
            failures.push(format!(
                "{:?}/{:?}: {}\n  envelope: {value}\n  errors: {errors:?}",
                s.format,
                s.validation,
                String::from_utf8_lossy(raw)
            ));
        }
    }
    out.events.len()
}

#[test]
fn every_fixture_envelope_validates_in_every_mode() {
    let v = schema();
    let n = Normalizer::builtin().unwrap();
    let raws = raw_events();
    assert!(raws.len() >= 82 + 7, "fixtures present");
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut statuses = std::collections::BTreeSet::new();
    for s in all_settings() {
        for raw in &raws {
            checked += check(&v, &n, raw, &s, &mut failures);
            if let Ok(out) = n.normalize(raw, &s, origin()) {
                for (e, _) in &out.events {
                    statuses.insert(e.validation.status.as_str());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // auto/strict alone accepts all 82 valid lines; lenient accepts nearly every case.
    assert!(checked > 82 * 4, "only {checked} envelopes checked");
    for status in ["valid", "invalid", "unknown_event"] {
        assert!(
            statuses.contains(status),
            "no envelope with status {status}: {statuses:?}"
        );
    }
}

#[test]
fn acemate_batches_and_ingestion_records_validate() {
    let v = schema();
    let n = Normalizer::builtin().unwrap();
    let acemate: Vec<Value> = fixture("valid_events.jsonl")
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e.get("distinct_id").is_some())
        .collect();
    assert!(acemate.len() >= 70);
    let mut failures = Vec::new();
    let mut checked = 0;
    for s in all_settings()
        .into_iter()
        .filter(|s| s.format != SourceFormat::Komo)
    {
        // A batch of 12 events; one without a uuid (gets a UUIDv5) and one unknown event.
        let mut items: Vec<Value> = acemate.iter().take(10).cloned().collect();
        let mut no_uuid = acemate[10].clone();
        no_uuid.as_object_mut().unwrap().remove("uuid");
        items.push(no_uuid);
        items.push(json!({"event": "custom_thing", "distinct_id": "u1", "properties": {"x": 1}}));
        let batch = json!({"api_key": "phc_test", "batch": items});
        let n_batch = check(&v, &n, batch.to_string().as_bytes(), &s, &mut failures);
        assert_eq!(n_batch, 12, "{:?}: every batch event normalizes", s.format);
        checked += n_batch;

        // PostHog's Kafka ingestion record around every acemate line.
        for e in acemate.iter().skip(20).take(15) {
            let rec = json!({
                "uuid": e["uuid"],
                "distinct_id": e["distinct_id"],
                "ip": "127.0.0.1",
                "data": e.to_string(),
                "now": "2024-05-01T12:00:00.000Z",
                "sent_at": "2024-05-01T12:00:00.000Z",
                "token": "phc_test",
            });
            let got = check(&v, &n, rec.to_string().as_bytes(), &s, &mut failures);
            assert_eq!(got, 1, "ingestion record normalizes: {rec}");
            checked += got;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 4 * 27);
}

/// A real envelope, then broken copies: each must fail the schema.
#[test]
fn broken_envelopes_fail_the_schema() {
    let v = schema();
    let n = Normalizer::builtin().unwrap();
    let raw = fixture("valid_events.jsonl")[0].clone().into_bytes();
    let out = n
        .normalize(
            &raw,
            &SourceSettings::standalone(SourceFormat::Auto),
            origin(),
        )
        .unwrap();
    let good = serde_json::to_value(&out.events[0].0).unwrap();
    assert!(v.is_valid(&good), "baseline envelope is valid: {good}");

    type Break = (&'static str, fn(&mut Value));
    let breaks: Vec<Break> = vec![
        ("missing id", |e| {
            e.as_object_mut().unwrap().remove("id");
        }),
        ("wrong status", |e| e["validation"]["status"] = json!("ok")),
        ("valid with problems", |e| {
            e["validation"]["problems"] = json!(["properties.score: expected number, got string"])
        }),
        ("invalid without problems", |e| {
            e["validation"]["status"] = json!("invalid")
        }),
        ("unknown source", |e| e["source"] = json!("segment")),
        ("catalog of the other source", |e| {
            e["validation"]["catalog"] = json!("acemate")
        }),
        ("extra top-level key", |e| e["extra"] = json!(1)),
        ("extra user key", |e| e["user"]["name"] = json!("Joe")),
        ("extra site key", |e| e["site"]["url"] = json!("x")),
        ("extra origin key", |e| e["origin"]["cluster"] = json!("x")),
        ("extra validation key", |e| {
            e["validation"]["checked"] = json!(true)
        }),
        ("non-UTC timestamp", |e| {
            e["timestamp"] = json!("2024-05-01T14:00:00.000+02:00")
        }),
        ("timestamp without millis", |e| {
            e["timestamp"] = json!("2024-05-01T12:00:00Z")
        }),
        ("received_at not a date", |e| {
            e["received_at"] = json!("now")
        }),
        ("partition as string", |e| {
            e["origin"]["partition"] = json!("3")
        }),
        ("traits not an object", |e| e["user"]["traits"] = json!([])),
        ("properties null", |e| e["properties"] = Value::Null),
        ("empty event", |e| e["event"] = json!("")),
        ("version 2", |e| e["envelope_version"] = json!(2)),
    ];
    for (what, f) in breaks {
        let mut bad = good.clone();
        f(&mut bad);
        assert!(!v.is_valid(&bad), "{what}: broken envelope passed: {bad}");
    }
}
