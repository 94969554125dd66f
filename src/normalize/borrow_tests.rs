//! Borrowed properties and traits (`borrow.rs`, `envelope/props.rs`) against the same events
//! read as values: a capture event alone against the same event in a batch, plain text against
//! the same JSON with every character escaped (nothing the parser can lend).

use super::tests::{fixture_lines, normalizer, origin, settings};
use super::*;
use crate::envelope::Source;

/// A single capture event's properties are read borrowed from the message (names and strings
/// without escapes as spans of it); the same event inside a batch goes through `Value`s. Both
/// must give the same envelope, byte for byte, for every fixture and for the awkward cases.
#[test]
fn borrowed_properties_equal_the_parsed_ones() {
    let n = normalizer();
    let s = settings(SourceFormat::Auto, ValidationMode::Lenient);
    let mut events: Vec<Value> = fixture_lines("valid_events.jsonl")
        .into_iter()
        .filter(|e| e.get("properties").is_some())
        .collect();
    events.push(serde_json::json!({
        "event": "$identify", "distinct_id": "d", "uuid": "0fdbb943-511c-4220-9266-31465374f43b",
        "properties": {"z": "plain", "esc": "quote \" and \\u00e9", "n": 1.5, "i": -3,
            "nested": {"b": [1, "x"], "a": null}, "email": "a@b.c", "$set": {"plan": "pro"},
            "$session_id": "s", "dup": "first", "dup": "second", "back\\slash key": "v"}
    }));
    let borrowed: usize = events
        .iter()
        .map(|e| borrowed_equals_parsed(&n, &s, e))
        .sum();
    assert!(borrowed > 100, "only {borrowed} values were borrowed");
}

/// Normalizes `event` alone (its properties borrowed) and as the one event of a batch (built
/// as `Value`s): asserts the same outcome, properties, traits (as serialized and as written),
/// validation, session id and email. Returns how many values the single event borrowed.
pub(super) fn borrowed_equals_parsed(n: &Normalizer, s: &SourceSettings, event: &Value) -> usize {
    let single = serde_json::to_vec(event).unwrap();
    let batch = serde_json::to_vec(&serde_json::json!({ "batch": [event] })).unwrap();
    let b = n
        .normalize(&batch, s, origin())
        .expect("a batch of one object");
    let a = match n.normalize(&single, s, origin()) {
        Ok(mut a) => a.events.remove(0).0,
        Err(e) => {
            let r = &b.rejected[0];
            assert_eq!(
                (e.reason(), e.problems()),
                (r.error.reason(), r.error.problems())
            );
            return 0;
        }
    };
    let b = &b.events[0].0;
    assert_eq!(b.properties.borrowed() + b.user.traits.borrowed(), 0);
    for (x, y) in [
        (&a.properties, &b.properties),
        (&a.user.traits, &b.user.traits),
    ] {
        assert_eq!(
            serde_json::to_vec(x).unwrap(),
            serde_json::to_vec(y).unwrap()
        );
        let (mut bx, mut by) = (Vec::new(), Vec::new());
        x.write_json(&mut bx);
        y.write_json(&mut by);
        assert_eq!(bx, by);
    }
    assert_eq!(a.validation, b.validation, "{}", a.event);
    assert_eq!(
        (&a.session_id, &a.user.email),
        (&b.session_id, &b.user.email)
    );
    a.properties.borrowed() + a.user.traits.borrowed()
}

/// The one envelope of `raw` on a lenient source of `format`.
fn lenient_envelope(raw: &[u8], format: SourceFormat) -> Envelope {
    let s = settings(format, ValidationMode::Lenient);
    let mut out = normalizer().normalize(raw, &s, origin()).unwrap();
    out.events.remove(0).0
}

/// A repeated property name in the message text: the last one wins, as in a parsed map.
#[test]
fn a_repeated_borrowed_property_keeps_the_last_value() {
    let raw = br#"{"event":"x","distinct_id":"d","properties":{"a":"one","b":2,"a":"two"}}"#;
    let env = lenient_envelope(raw, SourceFormat::Acemate);
    let parsed: Value = serde_json::from_slice(raw).unwrap();
    assert_eq!(Value::Object(env.properties.to_map()), parsed["properties"]);
    assert_eq!(env.properties.borrowed(), 1);
}

/// Writes every string (names and values) with each character as a `\u` escape: the same JSON
/// value as `serde_json` writes, but nothing the parser can lend, so nothing is borrowed.
struct EscapeAll;

impl serde_json::ser::Formatter for EscapeAll {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(w, "\\u{u:04x}")?;
            }
        }
        Ok(())
    }
}

fn escaped(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, EscapeAll);
    serde::Serialize::serialize(v, &mut ser).unwrap();
    out
}

/// Every fixture, Komo and acemate: read from plain text (names and strings borrowed) and from
/// the same JSON with every character escaped (nothing borrowed), the envelopes agree.
#[test]
fn borrowed_and_escaped_text_give_the_same_envelope() {
    let n = normalizer();
    let s = settings(SourceFormat::Auto, ValidationMode::Lenient);
    let mut borrowed = [0usize; 2];
    for event in fixture_lines("valid_events.jsonl") {
        let plain = serde_json::to_vec(&event).unwrap();
        let a = n
            .normalize(&plain, &s, origin())
            .unwrap()
            .events
            .remove(0)
            .0;
        let b = n
            .normalize(&escaped(&event), &s, origin())
            .unwrap()
            .events
            .remove(0)
            .0;
        assert_eq!(b.properties.borrowed() + b.user.traits.borrowed(), 0);
        borrowed[usize::from(a.source == Source::Komo)] +=
            a.properties.borrowed() + a.user.traits.borrowed();
        let fields = |e: &Envelope| {
            let (mut p, mut t) = (Vec::new(), Vec::new());
            e.properties.write_json(&mut p);
            e.user.traits.write_json(&mut t);
            let ser = serde_json::to_vec(&(&e.properties, &e.user.traits)).unwrap();
            let top = (&e.id, &e.event, &e.timestamp, &e.distinct_id, &e.session_id);
            let top =
                serde_json::to_vec(&(top, &e.site, &e.user.profile_id, &e.user.email)).unwrap();
            (p, t, ser, top, e.validation.clone())
        };
        assert_eq!(fields(&a), fields(&b), "{}", a.event);
    }
    // Komo's catalog fields are coerced (owned); its attributes are borrowed.
    assert!(
        borrowed[0] > 100 && borrowed[1] > 10,
        "borrowed (acemate, komo): {borrowed:?}"
    );
}

/// A Komo attribute sent as a boolean word becomes a boolean; other attributes stay as sent.
#[test]
fn komo_attribute_words_become_booleans_and_the_rest_stays_borrowed() {
    let raw = br#"{"event":"NotInTheCatalog","id":"x","email":"a@b.c","optin":" TRUE ","first_name":"Ann","postcode":"0200"}"#;
    let env = lenient_envelope(raw, SourceFormat::Komo);
    let traits = env.user.traits.to_map();
    assert_eq!(traits["optin"], Value::Bool(true));
    assert_eq!(traits["first_name"], "Ann");
    assert_eq!(env.user.email.as_deref(), Some("a@b.c"));
    assert_eq!(env.properties.to_map()["postcode"], "0200");
    assert_eq!(env.user.traits.borrowed() + env.properties.borrowed(), 3);
}
