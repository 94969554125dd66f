//! Reading a message without copying it: the top level's names and values, and a capture
//! event's `properties`, become entries whose names, and string values without escapes, are
//! [`Span`]s of the message text (the parser hands such strings over as slices of its input);
//! other values are built as [`Value`]s the way the rest of the message is. The envelope then
//! holds the text by an `Arc` ([`Props`]).

use super::limits::FastValue;
use crate::envelope::{PropName, PropSlot, Props, Span};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::sync::Arc;

/// The top level of the message being parsed, read as borrowed entries, and its `properties`
/// object (when it is one) as borrowed entries of their own.
pub(crate) struct Borrowed<'t> {
    text: &'t str,
    /// The top-level object's entries (`properties`, when an object, as `null`).
    entries: Vec<(PropName, PropSlot)>,
    /// Set when the (last) top-level `properties` was an object.
    pub props: Option<Vec<(PropName, PropSlot)>>,
}

impl<'t> Borrowed<'t> {
    pub fn new(text: &'t str) -> Self {
        Self {
            text,
            entries: Vec::new(),
            props: None,
        }
    }

    /// Forgets what a failed parse read.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.props = None;
    }

    /// The top level and its `properties` as [`Props`] over `src`, which must be the text
    /// this read.
    pub fn into_props(self, src: &Arc<str>) -> (Props, Option<Props>) {
        debug_assert!(std::ptr::eq(self.text, &**src));
        let top = Props::from_parsed(Arc::clone(src), self.entries);
        (
            top,
            self.props.map(|e| Props::from_parsed(Arc::clone(src), e)),
        )
    }

    /// Reads the top-level object into `self.entries`; the value that stands for it is an
    /// empty object.
    pub(super) fn read_object<'de, A: MapAccess<'de>>(
        &mut self,
        mut map: A,
        scratch: &mut Vec<(String, Value)>,
    ) -> Result<Value, A::Error> {
        while let Some(name) = map.next_key_seed(NameSeed(self.text))? {
            let properties = match &name {
                PropName::At(span) => span.get(self.text) == "properties",
                PropName::Own(s) => s == "properties",
            };
            let slot = if properties {
                PropSlot::Own(self.read(&mut map, scratch)?)
            } else {
                map.next_value_seed(Read {
                    text: self.text,
                    scratch: &mut *scratch,
                    what: What::Property,
                })?
                .into_slot()
            };
            self.entries.push((name, slot));
        }
        Ok(Value::Object(serde_json::Map::new()))
    }

    /// Reads the value of a top-level `properties` key: an object goes into `self.props` and
    /// `null` stands in the message's value; anything else is the value itself.
    pub(super) fn read<'de, A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        scratch: &mut Vec<(String, Value)>,
    ) -> Result<Value, A::Error> {
        let seed = Read {
            text: self.text,
            scratch,
            what: What::Properties,
        };
        match map.next_value_seed(seed)? {
            Parsed::Entries(entries) => {
                self.props = Some(entries);
                Ok(Value::Null)
            }
            Parsed::Span(_) => unreachable!("only a property value is read as a span"),
            Parsed::Value(v) => {
                self.props = None;
                Ok(v)
            }
        }
    }
}

/// What a [`Read`] is reading: the `properties` object (its entries) or one value of it (a
/// span if it is a string the parser lends).
#[derive(Clone, Copy, PartialEq)]
enum What {
    Properties,
    Property,
}

enum Parsed {
    Entries(Vec<(PropName, PropSlot)>),
    Span(Span),
    Value(Value),
}

impl Parsed {
    fn into_slot(self) -> PropSlot {
        match self {
            Parsed::Span(span) => PropSlot::At(span),
            Parsed::Value(v) => PropSlot::Own(v),
            Parsed::Entries(_) => unreachable!("a property value is never read as entries"),
        }
    }
}

/// Reads `properties` or one of its values; whatever is not borrowed is built as any other
/// value is (a `properties` that is not an object then gets `properties: expected object`).
struct Read<'s, 't> {
    text: &'t str,
    scratch: &'s mut Vec<(String, Value)>,
    what: What,
}

impl<'s> Read<'s, '_> {
    fn value(self) -> FastValue<'s, 'static> {
        FastValue {
            scratch: self.scratch,
            top: None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Read<'_, '_> {
    type Value = Parsed;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! as_value {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name<E: serde::de::Error>(self, $($arg: $ty),*) -> Result<Parsed, E> {
            self.value().$name($($arg),*).map(Parsed::Value)
        })*
    };
}

impl<'de> Visitor<'de> for Read<'_, '_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Parsed, E> {
        match Span::of(self.text, v) {
            Some(span) if self.what == What::Property => Ok(Parsed::Span(span)),
            _ => self.visit_str(v),
        }
    }

    as_value! {
        visit_bool(v: bool);
        visit_i64(v: i64);
        visit_u64(v: u64);
        visit_f64(v: f64);
        visit_str(v: &str);
        visit_string(v: String);
        visit_unit();
        visit_none();
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Parsed, A::Error> {
        self.value().visit_seq(seq).map(Parsed::Value)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        if self.what == What::Property {
            return self.value().visit_map(map).map(Parsed::Value);
        }
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(name) = map.next_key_seed(NameSeed(self.text))? {
            let value = map.next_value_seed(Read {
                text: self.text,
                scratch: &mut *self.scratch,
                what: What::Property,
            })?;
            entries.push((name, value.into_slot()));
        }
        Ok(Parsed::Entries(entries))
    }
}

/// A property name: a span when the parser lends it from the text.
struct NameSeed<'t>(&'t str);

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = PropName;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PropName, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = PropName;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a property name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<PropName, E> {
        Ok(Span::of(self.0, v).map_or_else(|| PropName::Own(v.to_owned()), PropName::At))
    }

    fn visit_str<E>(self, v: &str) -> Result<PropName, E> {
        Ok(PropName::Own(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<PropName, E> {
        Ok(PropName::Own(v))
    }
}
