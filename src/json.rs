//! Writing JSON straight into a byte buffer: the PostHog bodies and result events of the hot
//! path.
//!
//! The output is byte-for-byte what `serde_json` writes (tested below); the difference is the
//! string fast path. Most strings of an event (ids, names, timestamps, property values) need no
//! escaping, and checking that 8 bytes at a time (word-wide SWAR tests, see `needs_escape`)
//! and then copying the whole string is several times cheaper than `serde_json`'s byte-by-byte
//! escape loop, which was ~11% of the relay's CPU in the batch benchmark.

use serde_json::Value;

/// Whether any byte must be escaped in a JSON string: `"`, `\` or a control character.
///
/// Eight bytes at a time with the classic SWAR tests ("has a byte less than n", "has a zero
/// byte" after an XOR), which are exact as yes/no answers; the tail is padded with a harmless
/// byte. Short strings (names, ids) thus take one or a few word tests instead of a byte loop.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    #[inline(always)]
    fn special(x: u64) -> bool {
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let q = x ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let b = x ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b;
        (control | quote | backslash) & HIGH != 0
    }
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        if special(u64::from_le_bytes(w.try_into().expect("8 bytes"))) {
            return true;
        }
    }
    let tail = words.remainder();
    if tail.is_empty() {
        return false;
    }
    let mut padded = [b'a'; 8];
    padded[..tail.len()].copy_from_slice(tail);
    special(u64::from_le_bytes(padded))
}

/// Appends `s` as a JSON string (quoted, escaped exactly like `serde_json`).
#[inline]
pub fn write_str(buf: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(&mut *buf, s).expect("writing to a Vec cannot fail");
        return;
    }
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
}

/// Appends `s` as a JSON string, or `null`.
pub fn write_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// Appends a value in `serde_json`'s compact form.
pub fn write_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Bool(true) => buf.extend_from_slice(b"true"),
        Value::Bool(false) => buf.extend_from_slice(b"false"),
        Value::Number(n) => {
            serde_json::to_writer(&mut *buf, n).expect("writing to a Vec cannot fail");
        }
        Value::String(s) => write_str(buf, s),
        Value::Array(items) => {
            buf.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_value(buf, item);
            }
            buf.push(b']');
        }
        Value::Object(map) => write_map(buf, map),
    }
}

/// Appends an object in `serde_json`'s compact form.
pub fn write_map(buf: &mut Vec<u8>, map: &serde_json::Map<String, Value>) {
    write_object(buf, map.iter(), write_value);
}

/// Appends `{"k":v,...}` of `entries` (names in the order given), each value by `write`.
pub fn write_object<'a, K: AsRef<str> + 'a, V>(
    buf: &mut Vec<u8>,
    entries: impl Iterator<Item = (K, V)>,
    write: impl Fn(&mut Vec<u8>, V),
) {
    buf.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_str(buf, k.as_ref());
        buf.push(b':');
        write(buf, v);
    }
    buf.push(b'}');
}

/// JSON kind name of a value, for error messages ("expected number, got string").
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Appends `"key":`, after a comma unless `first` (which it then clears).
#[inline]
pub fn write_key(buf: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        buf.push(b',');
    }
    write_str(buf, key);
    buf.push(b':');
}

/// Appends `id` as a JSON string if it already is a UUID in the form
/// `uuid::Uuid::hyphenated().encode_lower` writes (36 bytes, lowercase hex, hyphens at 8, 13,
/// 18 and 23), which parsing and re-encoding it would give back unchanged; false (nothing
/// written) otherwise. Most event ids are: their parse and encode are skipped.
pub fn write_canonical_uuid(buf: &mut Vec<u8>, id: &str) -> bool {
    let bytes = id.as_bytes();
    let canonical = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        });
    if canonical {
        buf.reserve(38);
        buf.push(b'"');
        buf.extend_from_slice(bytes);
        buf.push(b'"');
    }
    canonical
}

/// The plain scan: bracket depth outside strings stays within `max`.
pub(crate) fn depth_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in bytes {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours(v: &Value) -> Vec<u8> {
        let mut buf = Vec::new();
        write_value(&mut buf, v);
        buf
    }

    #[test]
    fn strings_match_serde_json() {
        for s in [
            "",
            "plain ascii",
            "exactly sixteen!",
            "a \"quoted\" word",
            "back\\slash",
            "tab\there, newline\n, nul\u{0}, bell\u{7}, del\u{7f}",
            "unicode: zürich, 日本語, emoji 🎉, line sep \u{2028}",
            "long string without anything to escape in it at all, more than sixteen bytes",
            "long string with the one escape at the very end of it, more than 16 bytes\"",
        ] {
            let mut buf = Vec::new();
            write_str(&mut buf, s);
            assert_eq!(buf, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn every_special_byte_is_found_at_every_position() {
        let specials = (0u8..0x20).chain([b'"', b'\\']);
        for special in specials {
            for len in 1..=40 {
                for at in 0..len {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = special;
                    let s = std::str::from_utf8(&bytes).unwrap();
                    assert!(needs_escape(s.as_bytes()), "{s:?}");
                    let mut buf = Vec::new();
                    write_str(&mut buf, s);
                    assert_eq!(buf, serde_json::to_vec(s).unwrap());
                }
            }
        }
        for plain in [
            "",
            "a",
            "0123456789abcdef0",
            "é€🎉 ~\u{7f}",
            "!#$%&'()*+,-./[]^_`{|}",
        ] {
            assert!(!needs_escape(plain.as_bytes()), "{plain:?}");
        }
    }

    /// Written exactly when parsing and re-encoding gives the id back, and then as that.
    #[test]
    fn canonical_uuids_are_written_as_they_are() {
        for id in [
            "54e635de-92f5-4419-a498-5f69323db34c",
            "00000000-0000-0000-0000-000000000000",
            "54E635DE-92F5-4419-A498-5F69323DB34C",
            "54e635de92f54419a4985f69323db34c",
            "{54e635de-92f5-4419-a498-5f69323db34c}",
            "urn:uuid:54e635de-92f5-4419-a498-5f69323db34c",
            "54e635de-92f5-4419-a498-5f69323db34g",
            "54e635de-92f5-4419-a498x5f69323db34c",
            "54e635de-92f5-4419-a498-5f69323db34",
            "not a uuid",
            "",
        ] {
            let mut buf = Vec::new();
            let written = write_canonical_uuid(&mut buf, id);
            let reencoded = uuid::Uuid::parse_str(id)
                .ok()
                .map(|u| u.hyphenated().to_string());
            assert_eq!(written, reencoded.as_deref() == Some(id), "{id:?}");
            if written {
                assert_eq!(buf, serde_json::to_vec(id).unwrap());
            } else {
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn values_match_serde_json() {
        let v = serde_json::json!({
            "n": null, "t": true, "f": false, "i": -7, "u": 18446744073709551615u64,
            "x": 1.5e300, "s": "a\"b", "a": [1, "two", {"three": [3.25]}], "e": {}, "ea": []
        });
        assert_eq!(ours(&v), serde_json::to_vec(&v).unwrap());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_is_written_like_serde_json(v in arb_value()) {
            prop_assert_eq!(ours(&v), serde_json::to_vec(&v).unwrap());
        }
    }
}
