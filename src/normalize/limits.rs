//! Hard limits on hostile input, checked before anything else looks at a message.

use super::borrow::Borrowed;
use super::NormalizeError;
use serde_json::{Map, Value};

/// Deepest JSON nesting accepted (objects + arrays).
pub const MAX_DEPTH: usize = 64;

/// Size, UTF-8 and nesting checks: the message as text, ready for the parse.
pub(crate) fn checked_text(raw: &[u8], max_bytes: usize) -> Result<&str, NormalizeError> {
    if raw.len() > max_bytes {
        return Err(NormalizeError::TooLarge {
            size: raw.len(),
            limit: max_bytes,
        });
    }
    let text =
        std::str::from_utf8(raw).map_err(|e| NormalizeError::InvalidUtf8(e.valid_up_to()))?;
    check_depth(text.as_bytes(), MAX_DEPTH)?;
    Ok(text)
}

/// Parses JSON text (depth already bounded by the caller).
pub(crate) fn parse_str(text: &str) -> Result<Value, NormalizeError> {
    parse_inner(text, None)
}

/// [`parse_str`], with a top-level object read into `top` as entries borrowed from `text` (and
/// its `properties` object, when it is one, as entries of their own) instead of into the
/// value, which is then an empty object.
pub(crate) fn parse_borrowing<'t>(
    text: &'t str,
    top: &mut Borrowed<'t>,
) -> Result<Value, NormalizeError> {
    parse_inner(text, Some(top))
}

fn parse_inner<'t>(
    text: &'t str,
    mut top: Option<&mut Borrowed<'t>>,
) -> Result<Value, NormalizeError> {
    if text.trim().is_empty() {
        return Err(NormalizeError::NotJson("empty message".into()));
    }
    thread_local! {
        /// Reused between messages (emptied, capacity kept): no allocation per parse.
        static SCRATCH: std::cell::Cell<Vec<(String, Value)>> = const {
            std::cell::Cell::new(Vec::new())
        };
    }
    let mut scratch = SCRATCH.take();
    // sonic-rs scans strings with SIMD; the value it builds (through the same visitor) is
    // serde_json's. Anything it refuses is parsed again by serde_json, whose verdict and error
    // text stand (the property tests hold the two to the same values and errors).
    let value = parse_with(
        &mut sonic_rs::Deserializer::from_str(text),
        &mut scratch,
        top.as_deref_mut(),
    )
    .or_else(|_| {
        scratch.clear();
        if let Some(top) = top.as_deref_mut() {
            top.clear();
        }
        parse_with(
            &mut serde_json::Deserializer::from_str(text),
            &mut scratch,
            top,
        )
        .map_err(|e| NormalizeError::NotJson(e.to_string()))
    });
    // Keep the buffer for the next message unless a huge one blew it up.
    if scratch.capacity() <= 4096 {
        scratch.clear();
        SCRATCH.set(scratch);
    }
    value
}

/// One JSON document through [`FastValue`], refusing trailing text.
trait Document<'de> {
    type Error;
    fn value(&mut self, seed: FastValue<'_, '_>) -> Result<Value, Self::Error>;
    fn end(&mut self) -> Result<(), Self::Error>;
}

impl<'de> Document<'de> for serde_json::Deserializer<serde_json::de::StrRead<'de>> {
    type Error = serde_json::Error;
    fn value(&mut self, seed: FastValue<'_, '_>) -> Result<Value, Self::Error> {
        serde::de::DeserializeSeed::deserialize(seed, self)
    }
    fn end(&mut self) -> Result<(), Self::Error> {
        serde_json::Deserializer::end(self)
    }
}

impl<'de> Document<'de> for sonic_rs::Deserializer<sonic_rs::Read<'de>> {
    type Error = sonic_rs::Error;
    fn value(&mut self, seed: FastValue<'_, '_>) -> Result<Value, Self::Error> {
        serde::de::DeserializeSeed::deserialize(seed, self)
    }
    fn end(&mut self) -> Result<(), Self::Error> {
        sonic_rs::Deserializer::end(self)
    }
}

fn parse_with<'de, 't, D: Document<'de>>(
    de: &mut D,
    scratch: &mut Vec<(String, Value)>,
    top: Option<&mut Borrowed<'t>>,
) -> Result<Value, D::Error> {
    let value = de.value(FastValue { scratch, top })?;
    de.end().map(|()| value)
}

/// Builds a [`Value`] exactly like `serde_json`'s own `Deserialize for Value` (same numbers,
/// strings, duplicate keys: the last one wins), except that each object's entries are gathered
/// on a scratch stack shared by the whole document and the map is then built in one go (a
/// stable sort and a bulk build) instead of one search-and-insert per key — the larger part of
/// parsing an event otherwise.
pub(super) struct FastValue<'s, 't> {
    pub(super) scratch: &'s mut Vec<(String, Value)>,
    /// At the top level: where an object's entries go, borrowed.
    pub(super) top: Option<&'s mut Borrowed<'t>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for FastValue<'_, '_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FastValue<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(FastValue {
            scratch: &mut *self.scratch,
            top: None,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if let Some(top) = self.top {
            return top.read_object(map, self.scratch);
        }
        let start = self.scratch.len();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(FastValue {
                scratch: &mut *self.scratch,
                top: None,
            })?;
            self.scratch.push((key, value));
        }
        let entries = self.scratch.drain(start..);
        if entries.len() <= 8 {
            // Small objects: inserting into the map's single node is cheaper than a bulk build.
            let mut map = Map::new();
            for (key, value) in entries {
                map.insert(key, value);
            }
            return Ok(Value::Object(map));
        }
        // `FromIterator` for the BTreeMap behind `Map`: stable sort, keep the last duplicate.
        Ok(Value::Object(entries.collect()))
    }
}

/// Refuses JSON nested deeper than `max` in linear time and constant memory, before parsing
/// (a 10,000-deep document never reaches the parser).
pub(crate) fn check_depth(bytes: &[u8], max: usize) -> Result<(), NormalizeError> {
    // The depth can't exceed the number of opening brackets (counting those inside strings
    // too); typical events have a handful, so this branch-free count skips the scan.
    if count_opening(bytes) <= max || depth_within(bytes, max) {
        Ok(())
    } else {
        Err(NormalizeError::TooDeep(max))
    }
}

/// Number of `{` and `[` bytes (`{` | 0x20 == `[` | 0x20), counted in chunks whose per-chunk
/// byte counters the compiler vectorizes.
fn count_opening(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|chunk| {
            let n: u8 = chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from((b | 0x20) == b'{'));
            usize::from(n)
        })
        .sum()
}

pub(crate) use crate::json::{depth_within, kind};
