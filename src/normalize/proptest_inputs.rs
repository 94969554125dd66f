//! Input strategies for the normalizer's property tests (`proptests.rs`, `parse_proptests.rs`):
//! random JSON biased towards the keys and odd values the normalizer looks at, payload-shaped
//! objects, deep nesting, and byte-level mutations of fixture lines.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Keys the normalizer looks at, so random objects hit its branches, plus arbitrary ones.
pub(super) fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "event", "distinct_id", "properties", "batch", "data", "uuid", "id", "timestamp",
            "now", "api_key", "site_id", "site_name", "user_session_id", "user_profile_id",
            "$set", "$set_once", "$session_id", "email", "userType", "usageReasons",
            "universityId", "isPartOfAnyClassroom", "score", "correct", "card_id", "optin",
            "courseId", "courseType", "first_name",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// Odd strings: empty, control characters, look-alikes of booleans, numbers, dates and uuids.
pub(super) fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "\u{0}",
            "\u{feff}",
            "true",
            "false",
            "True",
            "1",
            "0",
            "-0",
            "1e400",
            "NaN",
            "inf",
            "3.5",
            "  42  ",
            "CardViewed",
            "$identify",
            "$pageview",
            "node_clicked",
            "PrizeAwarded",
            "2024-05-01T12:00:00.000Z",
            "2024-05-01T12:00:00+14:00",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "0000-01-01T00:00:00+14:00",
            "2016-12-31T23:59:60Z",
            "2024-13-45T99:00:00Z",
            "yesterday",
            "0fdbb943-511c-4220-9266-31465374f43b",
            "0fdbb943-511c-9220-9266-31465374f43b",
            "a@b.co",
            "@",
            "a@.",
            "student",
            "free",
            "\u{1F600}\u{200D}",
            "\\",
            "\"",
        ])
        .prop_map(str::to_string),
        any::<String>(),
        "[a-z]{0,3}".prop_map(|s| s.repeat(500)),
    ]
}

pub(super) fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![f64::MAX, f64::MIN, f64::MIN_POSITIVE, 1e300, -1e-300])
            .prop_map(Value::from),
        odd_string().prop_map(Value::String),
    ]
}

pub(super) fn arb_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(8, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An object shaped like one of the accepted payloads, with arbitrary values inside.
pub(super) fn shaped() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((key(), arb_json()), 0..12),
        prop::sample::select(vec!["CardViewed", "node_clicked", "$identify", "Prize", ""]),
        0..5u8,
    )
        .prop_map(|(kv, event, shape)| {
            let mut m: Map<String, Value> = kv.into_iter().collect();
            if shape != 4 {
                m.entry("event").or_insert_with(|| Value::from(event));
            }
            let obj = Value::Object(m);
            match shape {
                0 => serde_json::json!({"api_key": "k", "batch": [obj.clone(), obj, 5]}),
                1 => serde_json::json!({"uuid": "x", "distinct_id": "u", "data": obj.to_string()}),
                2 => serde_json::json!({"distinct_id": "u", "event": event, "properties": obj}),
                _ => obj,
            }
        })
}

/// `depth` levels of alternating arrays/objects around a value, inside an event.
pub(super) fn deep(depth: usize, inner: Value, key_side: bool) -> Vec<u8> {
    let mut v = inner;
    for i in 0..depth {
        v = if (i % 2 == 0) == key_side {
            Value::Array(vec![v])
        } else {
            serde_json::json!({ "k": v })
        };
    }
    // Built as text: serde_json's own Value drop/serialize would recurse as deep as we nest.
    let text = serde_json::to_string(&v).unwrap_or_default();
    format!(r#"{{"event":"node_clicked","distinct_id":"u","properties":{{"x":{text}}}}}"#)
        .into_bytes()
}

/// Raw nesting beyond what a `Value` could hold safely.
pub(super) fn raw_deep(depth: usize, open: u8, close: u8, closed: bool) -> Vec<u8> {
    let mut out = br#"{"event":"x","distinct_id":"u","properties":{"p":"#.to_vec();
    out.extend(std::iter::repeat_n(open, depth));
    if closed {
        out.extend(std::iter::repeat_n(close, depth));
    }
    out.extend_from_slice(b"}}");
    out
}

#[derive(Debug, Clone)]
pub(super) enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Splice(usize, String),
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "\"",
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "null",
                "\"\"",
                "\\u0000",
                "\\ud800",
                "1e999",
                "-",
                "99999999999999999999999",
                "\"event\":null,",
                "\"batch\":[],",
                "\"properties\":7,",
                "\"timestamp\":\"x\",",
                "\"$set\":[],",
            ])
            .prop_map(str::to_string)
        )
            .prop_map(|(i, s)| Mutation::Splice(i, s)),
    ]
}

pub(super) fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    bytes[i] ^= b | 1;
                }
            }
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), *b),
            Mutation::Delete(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % len);
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            Mutation::Splice(i, s) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, s.bytes());
            }
        }
    }
    bytes
}
