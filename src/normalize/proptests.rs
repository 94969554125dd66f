//! Property tests: hostile or random input never panics the normalizer, and whatever it accepts
//! comes out as serializable envelopes with a non-empty event name.

use super::proptest_inputs::*;
use super::*;
use crate::catalog::is_canonical_utc_millis;
use proptest::prelude::*;

/// The valid fixture lines (read at run time: test data is not part of the build).
fn valid_lines() -> Vec<&'static str> {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/valid_events.jsonl"
        );
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    });
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

fn normalizer() -> &'static Normalizer {
    static N: std::sync::OnceLock<Normalizer> = std::sync::OnceLock::new();
    N.get_or_init(|| Normalizer::builtin().expect("builtin catalogs"))
}

fn all_settings() -> Vec<SourceSettings> {
    let mut out = Vec::new();
    for format in [
        SourceFormat::Komo,
        SourceFormat::Acemate,
        SourceFormat::Auto,
    ] {
        for validation in [ValidationMode::Strict, ValidationMode::Lenient] {
            out.push(SourceSettings {
                validation,
                ..SourceSettings::standalone(format)
            });
        }
    }
    out.push(SourceSettings {
        unknown_events: UnknownEvents::DeadLetter,
        site_id: Some("site".into()),
        max_message_bytes: 512,
        ..SourceSettings::standalone(SourceFormat::Auto)
    });
    out
}

fn origin() -> Origin {
    Origin {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        key: None,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the envelope's timestamp form (a leap second allowed).
fn utc_millis(s: &str) -> bool {
    is_canonical_utc_millis(s)
        || (s.len() == 24 && is_canonical_utc_millis(&s.replace(":60.", ":59.")))
}

/// Runs every setting over `raw`; panics (failing the property) on any broken invariant.
fn check_all(raw: &[u8]) {
    let n = normalizer();
    for s in all_settings() {
        match n.normalize(raw, &s, origin()) {
            Ok(out) => {
                for (env, _) in &out.events {
                    assert!(!env.event.is_empty(), "empty event from {raw:?}");
                    assert!(!env.id.is_empty(), "empty id from {raw:?}");
                    assert!(utc_millis(&env.timestamp), "timestamp {:?}", env.timestamp);
                    assert!(
                        utc_millis(&env.received_at),
                        "received_at {:?}",
                        env.received_at
                    );
                    if s.validation == ValidationMode::Strict
                        && env.validation.status != ValidationStatus::UnknownEvent
                    {
                        assert!(
                            env.validation.problems.is_empty(),
                            "strict forwarded {env:?}"
                        );
                    }
                    let text = serde_json::to_string(env).expect("envelope serializes");
                    let back: Value = serde_json::from_str(&text).expect("envelope JSON parses");
                    assert!(back.is_object());
                }
                for r in &out.rejected {
                    assert!(!r.error.reason().is_empty());
                    assert!(!r.error.problems().is_empty());
                }
            }
            Err(e) => {
                assert!(!e.reason().is_empty());
                assert!(!e.problems().is_empty());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        check_all(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn payload_shaped_json_never_panics(v in shaped()) {
        check_all(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_all(&bytes);
    }

    #[test]
    fn deep_nesting_never_panics(
        depth in 0usize..200,
        key_side in any::<bool>(),
        inner in leaf(),
    ) {
        check_all(&deep(depth, inner, key_side));
    }

    #[test]
    fn raw_deep_nesting_never_panics(
        depth in prop_oneof![0usize..130, 1_000usize..50_000],
        brackets in prop::sample::select(vec![(b'[', b']'), (b'{', b'}')]),
        closed in any::<bool>(),
    ) {
        check_all(&raw_deep(depth, brackets.0, brackets.1, closed));
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn huge_and_odd_numbers_never_panic(
        digits in "[1-9][0-9]{0,400}",
        exp in -1000i32..1000,
        line in 0usize..82,
    ) {
        let lines = valid_lines();
        let base: Value = serde_json::from_str(lines[line % lines.len()]).unwrap();
        for num in [digits.clone(), format!("-{digits}"), format!("{digits}e{exp}"), format!("0.{digits}")] {
            // Put the number (as raw JSON text) into every top-level and property slot.
            let obj = base.as_object().unwrap();
            for k in obj.keys() {
                let mut m = obj.clone();
                m.insert(k.clone(), Value::from("__N__"));
                let text = Value::Object(m).to_string().replace("\"__N__\"", &num);
                check_all(text.as_bytes());
            }
            if let Some(props) = base.get("properties").and_then(Value::as_object) {
                for k in props.keys().take(6) {
                    let mut v = base.clone();
                    v["properties"][k] = Value::from("__N__");
                    let text = v.to_string().replace("\"__N__\"", &num);
                    check_all(text.as_bytes());
                }
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixture_lines_never_panic(
        line in 0usize..82,
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let lines = valid_lines();
        let raw = lines[line % lines.len()].as_bytes().to_vec();
        check_all(&apply(raw, &muts));
    }

    #[test]
    fn fixture_lines_with_arbitrary_values_never_panic(
        line in 0usize..82,
        replacements in prop::collection::vec((any::<prop::sample::Index>(), arb_json(), any::<bool>()), 1..4),
        drop_key in any::<Option<prop::sample::Index>>(),
    ) {
        let lines = valid_lines();
        let mut v: Value = serde_json::from_str(lines[line % lines.len()]).unwrap();
        for (idx, value, in_props) in replacements {
            let target = if in_props && v.get("properties").is_some_and(Value::is_object) {
                v["properties"].as_object_mut().unwrap()
            } else {
                v.as_object_mut().unwrap()
            };
            let keys: Vec<String> = target.keys().cloned().collect();
            if !keys.is_empty() {
                target.insert(idx.get(&keys).clone(), value);
            }
        }
        if let Some(idx) = drop_key {
            let m = v.as_object_mut().unwrap();
            let keys: Vec<String> = m.keys().cloned().collect();
            m.remove(idx.get(&keys));
        }
        check_all(&serde_json::to_vec(&v).unwrap());
    }

    /// A capture event's properties read borrowed give what the same event in a batch (read
    /// as `Value`s) gives, whatever its values.
    #[test]
    fn borrowed_properties_equal_parsed_ones_for_any_values(
        line in 0usize..82,
        replacements in prop::collection::vec((any::<prop::sample::Index>(), arb_json()), 1..6),
    ) {
        let lines = valid_lines();
        let mut v: Value = serde_json::from_str(lines[line % lines.len()]).unwrap();
        if let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) {
            for (idx, value) in replacements {
                let keys: Vec<String> = props.keys().cloned().collect();
                if !keys.is_empty() {
                    props.insert(idx.get(&keys).clone(), value);
                }
            }
            let s = SourceSettings {
                validation: ValidationMode::Lenient,
                ..SourceSettings::standalone(crate::config::SourceFormat::Auto)
            };
            super::borrow_tests::borrowed_equals_parsed(normalizer(), &s, &v);
        }
    }
}

#[test]
fn valid_fixture_lines_pass_the_invariants() {
    let lines = valid_lines();
    assert_eq!(lines.len(), 82);
    for l in lines {
        check_all(l.as_bytes());
    }
}

/// Found by the invariants above: a year-0000 time with a positive offset is before 0000 in UTC,
/// which has no RFC 3339 form; it is an invalid timestamp, not an envelope with `-0001-...`.
#[test]
fn timestamps_before_year_zero_in_utc_are_rejected() {
    let raw = br#"{"event":"$pageview","distinct_id":"u","timestamp":"0000-01-01T00:00:00+14:00"}"#;
    let err = normalizer()
        .normalize(
            raw,
            &SourceSettings::standalone(SourceFormat::Auto),
            origin(),
        )
        .unwrap_err();
    assert_eq!(err.reason(), "invalid_timestamp", "{err}");
    let ok = br#"{"event":"$pageview","distinct_id":"u","timestamp":"0000-01-01T00:00:00-01:00"}"#;
    let out = normalizer()
        .normalize(
            ok,
            &SourceSettings::standalone(SourceFormat::Auto),
            origin(),
        )
        .unwrap();
    assert_eq!(out.events[0].0.timestamp, "0000-01-01T01:00:00.000Z");
}

proptest! {
    /// A timestamp already in the canonical form is kept as is; that is exactly what parsing
    /// and re-formatting it would give.
    #[test]
    fn canonical_timestamps_are_kept_exactly_as_formatting_would_give(
        y in 0i32..=2030, mo in 1u32..=12, d in 1u32..=31, h in 0u32..=23, mi in 0u32..=59,
        s in 0u32..=60, ms in 0u32..=999, offset in prop::sample::select(vec!["Z", "+00:00", "-05:30", "+14:00"]),
    ) {
        let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}{offset}");
        let raw = format!(r#"{{"event":"$pageview","distinct_id":"u","timestamp":"{text}"}}"#);
        let out = normalizer().normalize(raw.as_bytes(), &SourceSettings::standalone(SourceFormat::Acemate), origin());
        match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(t) if chrono::Datelike::year(&t.with_timezone(&chrono::Utc)) >= 0
                && t < chrono::Utc::now() + chrono::Duration::days(6) =>
            {
                let expected = t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let out = out.unwrap();
                prop_assert_eq!(&out.events[0].0.timestamp, &expected);
            }
            // Around the 7-days-ahead limit either outcome is right.
            Ok(t) if chrono::Datelike::year(&t.with_timezone(&chrono::Utc)) >= 0
                && t < chrono::Utc::now() + chrono::Duration::days(8) => {}
            _ => prop_assert_eq!(out.unwrap_err().reason(), "invalid_timestamp"),
        }
    }
}
