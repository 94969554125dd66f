//! [`Props`]: an envelope's `properties` or `user.traits`, borrowing from the message.
//!
//! The normalizer parses a message once; a name and a string value without escapes (of the top
//! level, and of a capture event's `properties`) stay where they are in the message text (a
//! span into it, which the envelope holds by an `Arc`), and only what is not a plain string
//! (numbers, booleans, nested values) or was changed (coerced, merged, added) is an owned
//! [`Value`]. A string read out of the message without escapes is exactly what `serde_json`
//! writes for it, so the writers copy the span as it is. Entries are kept sorted by name with no
//! duplicates (the order `serde_json::Map` iterates in), so every writer and serializer gives
//! the bytes a `Map` gave before.

use serde::ser::SerializeMap;
use serde_json::{Map, Value};
use std::sync::Arc;

/// A byte range of the message text (on `char` boundaries: made from `&str` slices of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The span of `part` within `text`, if `part` is a slice of it (a message is far below
    /// 4 GiB: the size limit is checked first).
    pub fn of(text: &str, part: &str) -> Option<Span> {
        let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        if end > text.len() {
            return None;
        }
        Some(Span {
            start: u32::try_from(start).ok()?,
            len: u32::try_from(part.len()).ok()?,
        })
    }

    /// The span's text in `text` (the text it was made from).
    pub fn get(self, text: &str) -> &str {
        let start = self.start as usize;
        &text[start..start + self.len as usize]
    }
}

/// A property's name: a span of the message, or owned.
#[derive(Clone, Debug)]
pub enum PropName {
    At(Span),
    Own(String),
}

/// A property's value: a string's contents in the message (no escapes), or owned.
#[derive(Clone, Debug)]
pub enum PropSlot {
    At(Span),
    Own(Value),
}

/// A property value as read: a borrowed string or a [`Value`].
#[derive(Clone, Copy, Debug)]
pub enum PropRef<'a> {
    Str(&'a str),
    Value(&'a Value),
}

impl<'a> PropRef<'a> {
    /// The string, if the value is one.
    pub fn as_str(self) -> Option<&'a str> {
        match self {
            PropRef::Str(s) => Some(s),
            PropRef::Value(Value::String(s)) => Some(s),
            PropRef::Value(_) => None,
        }
    }

    /// An owned copy.
    pub fn to_value(self) -> Value {
        match self {
            PropRef::Str(s) => Value::String(s.to_owned()),
            PropRef::Value(v) => v.clone(),
        }
    }

    /// The value's JSON, byte-for-byte what `serde_json` writes for it.
    pub fn write(self, buf: &mut Vec<u8>) {
        match self {
            PropRef::Str(s) => crate::json::write_str(buf, s),
            PropRef::Value(v) => crate::json::write_value(buf, v),
        }
    }
}

impl PartialEq for PropRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PropRef::Value(a), PropRef::Value(b)) => a == b,
            _ => self.as_str().is_some() && self.as_str() == other.as_str(),
        }
    }
}

impl serde::Serialize for PropRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PropRef::Str(v) => s.serialize_str(v),
            PropRef::Value(v) => v.serialize(s),
        }
    }
}

/// Named values sorted by name, unique; borrowed from `src` where unchanged.
#[derive(Clone, Default)]
pub struct Props {
    /// The message text the spans point into (`None` when every entry is owned).
    src: Option<Arc<str>>,
    entries: Vec<(PropName, PropSlot)>,
}

impl Props {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries read from `src` in message order: sorted by name, the last of equal names kept
    /// (as `serde_json::Map` does with a repeated key).
    pub fn from_parsed(src: Arc<str>, mut entries: Vec<(PropName, PropSlot)>) -> Self {
        entries.sort_by(|a, b| name_str(&src, &a.0).cmp(name_str(&src, &b.0)));
        dedup_keep_last(&mut entries, &src);
        Self {
            src: Some(src),
            entries,
        }
    }

    /// Entries already sorted by name and unique (as [`Props::into_parts`] gives them, filtered
    /// or with values replaced), over `src`.
    pub fn from_sorted(src: Option<Arc<str>>, entries: Vec<(PropName, PropSlot)>) -> Self {
        let props = Self { src, entries };
        debug_assert!(props.keys().zip(props.keys().skip(1)).all(|(a, b)| a < b));
        props
    }

    /// The text the spans point into and the entries, sorted by name.
    pub fn into_parts(self) -> (Option<Arc<str>>, Vec<(PropName, PropSlot)>) {
        (self.src, self.entries)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn text(&self) -> &str {
        self.src.as_deref().unwrap_or("")
    }

    fn name<'a>(&'a self, n: &'a PropName) -> &'a str {
        name_str(self.text(), n)
    }

    fn value<'a>(&'a self, v: &'a PropSlot) -> PropRef<'a> {
        match v {
            PropSlot::At(span) => PropRef::Str(span.get(self.text())),
            PropSlot::Own(v) => PropRef::Value(v),
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(n, _)| self.name(n).cmp(name))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    pub fn get(&self, name: &str) -> Option<PropRef<'_>> {
        let i = self.find(name).ok()?;
        Some(self.value(&self.entries[i].1))
    }

    /// The value, owned from here on (a borrowed string becomes a `Value::String`).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        let i = self.find(name).ok()?;
        let text = self.src.clone();
        let slot = &mut self.entries[i].1;
        if let PropSlot::At(span) = *slot {
            let s = span.get(text.as_deref().unwrap_or("")).to_owned();
            *slot = PropSlot::Own(Value::String(s));
        }
        match slot {
            PropSlot::Own(v) => Some(v),
            PropSlot::At(_) => unreachable!("made owned above"),
        }
    }

    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(&mut self, name: String, value: Value) -> Option<Value> {
        match self.find(&name) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.entries[i].1, PropSlot::Own(value));
                Some(self.owned(old))
            }
            Err(i) => {
                self.entries
                    .insert(i, (PropName::Own(name), PropSlot::Own(value)));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.find(name).ok()?;
        let (_, slot) = self.entries.remove(i);
        Some(self.owned(slot))
    }

    fn owned(&self, slot: PropSlot) -> Value {
        match slot {
            PropSlot::At(span) => Value::String(span.get(self.text()).to_owned()),
            PropSlot::Own(v) => v,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, PropRef<'_>)> + '_ {
        self.entries
            .iter()
            .map(|(n, v)| (self.name(n), self.value(v)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|(n, _)| self.name(n))
    }

    /// Moves the entries whose name `pick` chooses into a new `Props` (sharing the text).
    pub fn split_off_by(&mut self, mut pick: impl FnMut(&str) -> bool) -> Props {
        let text = self.src.clone();
        let all = std::mem::take(&mut self.entries);
        let mut moved = Vec::new();
        for entry in all {
            if pick(name_str(text.as_deref().unwrap_or(""), &entry.0)) {
                moved.push(entry);
            } else {
                self.entries.push(entry);
            }
        }
        Props {
            src: text,
            entries: moved,
        }
    }

    /// Moves every entry of `other` in, replacing same-named ones (as inserting each would).
    pub fn absorb(&mut self, other: Props) {
        if other.is_empty() {
            return;
        }
        let shares = match (&self.src, &other.src) {
            (_, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, Some(_)) => self
                .entries
                .iter()
                .all(|(n, v)| matches!(n, PropName::Own(_)) && matches!(v, PropSlot::Own(_))),
        };
        if shares {
            if self.src.is_none() {
                self.src = other.src.clone();
            }
            if self.entries.is_empty() {
                self.entries = other.entries;
                return;
            }
            for entry in other.entries {
                let name = name_str(self.text(), &entry.0);
                match self.find(name) {
                    Ok(i) => self.entries[i].1 = entry.1,
                    Err(i) => self.entries.insert(i, entry),
                }
            }
            return;
        }
        for (name, value) in other.into_map() {
            self.insert(name, value);
        }
    }

    /// Every entry owned, as a `serde_json::Map`.
    pub fn into_map(self) -> Map<String, Value> {
        let text = self.src.as_deref().unwrap_or("");
        self.entries
            .into_iter()
            .map(|(n, v)| {
                let name = match n {
                    PropName::At(span) => span.get(text).to_owned(),
                    PropName::Own(s) => s,
                };
                let value = match v {
                    PropSlot::At(span) => Value::String(span.get(text).to_owned()),
                    PropSlot::Own(v) => v,
                };
                (name, value)
            })
            .collect()
    }

    /// A copy as a `serde_json::Map`.
    pub fn to_map(&self) -> Map<String, Value> {
        self.clone().into_map()
    }
    /// How many values are borrowed from the message (for tests of the parse).
    pub fn borrowed(&self) -> usize {
        (self.entries.iter())
            .filter(|(_, v)| matches!(v, PropSlot::At(_)))
            .count()
    }

    /// Appends the JSON object, byte-for-byte what `serde_json` writes for the same `Map`.
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        crate::json::write_object(buf, self.iter(), |buf, v| v.write(buf));
    }
}

fn name_str<'a>(text: &'a str, n: &'a PropName) -> &'a str {
    match n {
        PropName::At(span) => span.get(text),
        PropName::Own(s) => s,
    }
}

/// After a stable sort: of each run of equal names, only the last stays.
fn dedup_keep_last(entries: &mut Vec<(PropName, PropSlot)>, text: &str) {
    let has_dup = entries
        .windows(2)
        .any(|w| name_str(text, &w[0].0) == name_str(text, &w[1].0));
    if !has_dup {
        return;
    }
    entries.reverse();
    entries.dedup_by(|later, kept| name_str(text, &later.0) == name_str(text, &kept.0));
    entries.reverse();
}

impl From<Map<String, Value>> for Props {
    fn from(map: Map<String, Value>) -> Self {
        Props {
            src: None,
            entries: map
                .into_iter()
                .map(|(k, v)| (PropName::Own(k), PropSlot::Own(v)))
                .collect(),
        }
    }
}

impl FromIterator<(String, Value)> for Props {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Props::from(iter.into_iter().collect::<Map<String, Value>>())
    }
}

impl PartialEq for Props {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Props {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Props {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, &v)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Props {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Map::<String, Value>::deserialize(d).map(Props::from)
    }
}

#[cfg(test)]
mod tests;
