//! What a program left in `.`, written as the JSON body: byte-for-byte what `serde_json`
//! writes for a VRL value (tested below), with the relay's string fast path
//! ([`crate::json::write_str`]) for keys and text, which are most of an event. Measured with
//! `cargo bench --bench transform`: writing through `serde_json` took about as long as
//! building the program's input.

use crate::json::write_str;
use vrl::value::Value;

/// A body's first allocation: most events' bodies fit, so it is written without growing
/// (growing from empty, the copies took a fifth of the writing in the bench above).
pub const FIRST_CAPACITY: usize = 2048;

/// Appends `v` as compact JSON.
pub fn write(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Boolean(true) => buf.extend_from_slice(b"true"),
        Value::Boolean(false) => buf.extend_from_slice(b"false"),
        Value::Bytes(b) => write_str(buf, &String::from_utf8_lossy(b)),
        Value::Object(map) => {
            buf.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, k);
                buf.push(b':');
                write(buf, v);
            }
            buf.push(b'}');
        }
        Value::Array(items) => {
            buf.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write(buf, item);
            }
            buf.push(b']');
        }
        // Numbers, timestamps, regexes and VRL's other text forms: as its serde writes them.
        other => serde_json::to_writer(&mut *buf, other).expect("a VRL scalar serializes"),
    }
}

#[cfg(test)]
mod tests {
    use super::write;
    use vrl::value::{ObjectMap, Value};

    fn same_as_serde(v: &Value) {
        let mut ours = Vec::new();
        write(&mut ours, v);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            serde_json::to_string(v).unwrap()
        );
    }

    #[test]
    fn every_kind_is_written_as_serde_json_writes_it() {
        let ts = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut obj = ObjectMap::new();
        obj.insert("plain".into(), Value::from("text"));
        obj.insert("quote\"d\n".into(), Value::from("tab\there \u{1} é 😀"));
        obj.insert(
            "bad utf8".into(),
            Value::Bytes(vec![b'a', 0xff, b'b'].into()),
        );
        obj.insert("int".into(), Value::Integer(i64::MIN));
        obj.insert("float".into(), Value::from_f64_or_zero(1.5e-7));
        obj.insert("inf".into(), Value::from_f64_or_zero(f64::INFINITY));
        obj.insert("whole float".into(), Value::from_f64_or_zero(3.0));
        obj.insert("ts".into(), Value::Timestamp(ts));
        obj.insert("null".into(), Value::Null);
        obj.insert(
            "list".into(),
            Value::Array(vec![true.into(), false.into(), Value::Array(vec![])]),
        );
        obj.insert("empty".into(), Value::Object(ObjectMap::new()));
        same_as_serde(&Value::Object(obj));
        same_as_serde(&Value::from("top-level string"));
    }

    /// Every fixture envelope, as a program gets it, is written as serde writes it.
    #[test]
    fn envelopes_are_written_as_serde_json_writes_them() {
        for (_, env) in super::super::input::tests::fixture_envelopes() {
            same_as_serde(&super::super::input::envelope(&env));
        }
    }
}
