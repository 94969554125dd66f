//! What a program gets as `.`, as a VRL value. For `body = "envelope"` targets (the common
//! case) it is built straight from the envelope instead of writing its JSON and parsing it
//! again; a test holds it equal to that JSON parsed, value for value.

use crate::envelope::Envelope;
use vrl::value::{ObjectMap, Value};

/// The envelope as its JSON (`Envelope::write_json`) parses into a VRL value.
pub fn envelope(env: &Envelope) -> Value {
    let site = match &env.site {
        Some(s) => object([("id", opt(&s.id)), ("name", opt(&s.name))]),
        None => Value::Null,
    };
    let user = object([
        ("profile_id", opt(&env.user.profile_id)),
        ("session_id", opt(&env.user.session_id)),
        ("email", opt(&env.user.email)),
        ("traits", props(&env.user.traits)),
    ]);
    let origin = object([
        ("topic", text(&env.origin.topic)),
        ("partition", Value::Integer(env.origin.partition.into())),
        ("offset", Value::Integer(env.origin.offset)),
        ("key", opt(&env.origin.key)),
    ]);
    let v = &env.validation;
    let validation = object([
        ("catalog", text(&v.catalog)),
        (
            "catalog_version",
            v.catalog_version.as_deref().map_or(Value::Null, text),
        ),
        ("status", text(v.status.as_str())),
        (
            "problems",
            Value::Array(v.problems.iter().map(|p| text(p)).collect()),
        ),
    ]);
    object([
        (
            "envelope_version",
            Value::Integer(env.envelope_version.into()),
        ),
        ("id", text(&env.id)),
        ("source", text(env.source.as_str())),
        ("event", text(&env.event)),
        ("timestamp", text(&env.timestamp)),
        ("received_at", text(&env.received_at)),
        ("distinct_id", opt(&env.distinct_id)),
        ("session_id", opt(&env.session_id)),
        ("site", site),
        ("user", user),
        ("properties", props(&env.properties)),
        ("origin", origin),
        ("validation", validation),
    ])
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn text(s: &str) -> Value {
    Value::Bytes(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn opt(s: &Option<String>) -> Value {
    s.as_deref().map_or(Value::Null, text)
}

fn map(m: &serde_json::Map<String, serde_json::Value>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.as_str().into(), json(v)))
            .collect::<ObjectMap>(),
    )
}

/// Properties or traits: a borrowed string is copied into the program's value once.
fn props(p: &crate::envelope::Props) -> Value {
    use crate::envelope::PropRef;
    Value::Object(
        p.iter()
            .map(|(k, v)| {
                let v = match v {
                    PropRef::Str(s) => text(s),
                    PropRef::Value(v) => json(v),
                };
                (k.into(), v)
            })
            .collect::<ObjectMap>(),
    )
}

/// A JSON value as VRL's deserializer makes it: integers that fit `i64` as integers, other
/// numbers as floats.
fn json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => n.as_f64().map_or(Value::Null, Value::from_f64_or_zero),
        },
        J::String(s) => text(s),
        J::Array(a) => Value::Array(a.iter().map(json).collect()),
        J::Object(m) => map(m),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::envelope::Envelope;
    use crate::normalize::{Normalizer, SourceSettings};

    /// The envelopes of every fixture event, with (line number, envelope); every third line's
    /// gets a number beyond i64 and a float among its properties.
    pub(in crate::transform) fn fixture_envelopes() -> Vec<(usize, Envelope)> {
        let normalizer = Normalizer::builtin().unwrap();
        let settings = SourceSettings::standalone(crate::config::SourceFormat::Auto);
        // Read at run time: the image's build (deploy/Dockerfile) has no tests/ to embed.
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/valid_events.jsonl"
        );
        let text = std::fs::read_to_string(file).unwrap();
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let origin = crate::envelope::Origin {
                topic: "t".into(),
                partition: 3,
                offset: n as i64,
                key: (n % 2 == 0).then(|| "k".into()),
            };
            let Ok(normalized) = normalizer.normalize(line.as_bytes(), &settings, origin) else {
                continue;
            };
            for (mut env, _) in normalized.events {
                if n % 3 == 0 {
                    env.properties
                        .insert("big".into(), serde_json::json!(u64::MAX));
                    env.properties.insert("f".into(), serde_json::json!(1.5));
                }
                out.push((n + 1, env));
            }
        }
        assert!(out.len() > 70, "only {} envelopes", out.len());
        out
    }

    /// Every fixture event's envelope, built directly, equals its JSON parsed.
    #[test]
    fn the_envelope_value_is_its_json_parsed() {
        for (line, env) in fixture_envelopes() {
            let mut buf = Vec::new();
            env.write_json(&mut buf);
            let parsed: vrl::value::Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(super::envelope(&env), parsed, "line {line}");
        }
    }
}
