//! `event-relay catalog infer`: draft catalog entries for the events of a captured sample that
//! the catalog does not know, so adding an event is capture → infer → review → load.
//!
//! Each line goes through the real [`Normalizer`]; only envelopes it judges `unknown_event` are
//! drafted. A property's type is the most specific catalog rule that every value seen passes,
//! checked by the catalog checker itself (with the source's coercions: Komo sends numbers and
//! booleans as strings); the type and format names come from a probe catalog compiled by the
//! catalog loader, so the draft uses exactly the names a catalog file takes. Keys present in
//! every unknown event type (two or more types) are drafted as `user_attributes`, not as event
//! properties: an attribute of the user rides along on every event, a field of the event does not.

use super::{Normalizer, SourceSettings};
use crate::catalog::{Catalog, Catalogs, Prop};
use crate::config::{SourceFormat, UnknownEvents, ValidationMode};
use crate::envelope::{Envelope, Origin, Source, ValidationStatus};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The rules a value is tried against, most specific first: (type, format).
const CANDIDATES: [(&str, Option<&str>); 11] = [
    ("integer", None),
    ("number", None),
    ("boolean", None),
    ("string", Some("uuid")),
    ("string", Some("guid")),
    ("string", Some("date-time")),
    ("string", Some("email")),
    ("string", Some("uri")),
    ("string", None),
    ("object", None),
    ("array", None),
];

/// The probe catalog's property name of candidate `i`.
fn probe_name(i: usize) -> String {
    let (ty, format) = CANDIDATES[i];
    format!("{ty}/{}", format.unwrap_or(""))
}

/// One candidate rule per [`CANDIDATES`] entry, compiled by the catalog loader.
fn probes() -> Vec<Prop> {
    let props: serde_json::Map<String, Value> = CANDIDATES
        .iter()
        .enumerate()
        .map(|(i, (ty, format))| {
            let mut p = serde_json::json!({ "type": ty });
            if let Some(f) = format {
                p["format"] = Value::from(*f);
            }
            (probe_name(i), p)
        })
        .collect();
    let text = serde_json::json!({"catalog": "probe", "events": {"probe": {"properties": props}}});
    let mut catalog = Catalog::from_json(&text.to_string()).expect("the candidate rules compile");
    let mut table = catalog
        .events
        .remove("probe")
        .expect("probe event")
        .properties;
    (0..CANDIDATES.len())
        .map(|i| table.remove(&probe_name(i)).expect("probe property"))
        .collect()
}

/// What was seen of one key of one event type.
#[derive(Default)]
struct KeySeen {
    /// Events of the type that had the key.
    present: usize,
    nulls: usize,
    /// Per candidate: every non-null value so far passed it.
    fits: Option<Vec<bool>>,
    /// JSON kinds of the values, for a key no single rule fits.
    kinds: BTreeMap<&'static str, usize>,
}

#[derive(Default)]
struct EventSeen {
    count: usize,
    keys: BTreeMap<String, KeySeen>,
}

/// How the sample's lines fared.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InferStats {
    /// Non-blank lines read.
    pub lines: usize,
    /// Events the catalog knows (not drafted).
    pub known: usize,
    /// Events the catalog does not know (drafted).
    pub unknown: usize,
    /// Lines or batch events the normalizer rejected before judging them.
    pub rejected: usize,
}

/// A draft catalog file: the catalog format (`catalog/komo.json`) with only what it adds.
#[derive(Debug, Serialize)]
pub struct Draft {
    pub catalog: String,
    /// Keys that recur across every unknown event type of the sample.
    pub user_attributes: Vec<String>,
    pub events: BTreeMap<String, DraftEvent>,
    /// What a reviewer should look at (a key seen with several types, only as null).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// One drafted event.
#[derive(Debug, Serialize)]
pub struct DraftEvent {
    pub description: String,
    /// Komo: the keys that are not the event's fields are user attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_keys: Option<&'static str>,
    pub properties: BTreeMap<String, DraftProp>,
}

/// One drafted property rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DraftProp {
    #[serde(rename = "type")]
    pub ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    /// Present in every event of the type.
    pub required: bool,
    /// Seen as `null` at least once.
    pub nullable: bool,
}

/// Reads a sample event by event and drafts the unknown ones.
pub struct Inferrer<'a> {
    normalizer: &'a Normalizer,
    settings: SourceSettings,
    probes: Vec<Prop>,
    /// Per catalog name, per unknown event name.
    seen: BTreeMap<&'static str, BTreeMap<String, EventSeen>>,
    pub stats: InferStats,
}

impl<'a> Inferrer<'a> {
    /// An inferrer reading `format` (`Auto`: per line) with `normalizer`'s catalogs.
    pub fn new(normalizer: &'a Normalizer, format: SourceFormat) -> Self {
        let mut settings = SourceSettings::standalone(format);
        settings.validation = ValidationMode::Lenient;
        settings.unknown_events = UnknownEvents::Forward;
        Self {
            normalizer,
            settings,
            probes: probes(),
            seen: BTreeMap::new(),
            stats: InferStats::default(),
        }
    }

    /// Reads one sample line (a raw message, as the source topic carries it).
    pub fn add_line(&mut self, line: &[u8]) {
        self.stats.lines += 1;
        let origin = Origin {
            topic: "sample".into(),
            partition: 0,
            offset: self.stats.lines as i64 - 1,
            key: None,
        };
        match self.normalizer.normalize(line, &self.settings, origin) {
            Ok(n) => {
                self.stats.rejected += n.rejected.len();
                for (env, _) in &n.events {
                    self.add_envelope(env);
                }
            }
            Err(_) => self.stats.rejected += 1,
        }
    }

    fn add_envelope(&mut self, env: &Envelope) {
        if env.validation.status != ValidationStatus::UnknownEvent {
            self.stats.known += 1;
            return;
        }
        self.stats.unknown += 1;
        let coerce = env.source == Source::Komo;
        let seen = self.seen.entry(env.source.as_str()).or_default();
        let event = seen.entry(env.event.clone()).or_default();
        event.count += 1;
        for (key, value) in event_keys(env) {
            let k = event.keys.entry(key.to_owned()).or_default();
            k.present += 1;
            if value.is_null() {
                k.nulls += 1;
                continue;
            }
            *k.kinds.entry(crate::json::kind(&value)).or_default() += 1;
            let fits: Vec<bool> = (0..CANDIDATES.len())
                .map(|i| fits(&self.probes[i], CANDIDATES[i], &value, coerce, env.source))
                .collect();
            k.fits = Some(match k.fits.take() {
                None => fits,
                Some(old) => old.iter().zip(&fits).map(|(a, b)| *a && *b).collect(),
            });
        }
    }

    /// The sources whose unknown events the sample held.
    pub fn sources_seen(&self) -> Vec<Source> {
        [Source::Komo, Source::Acemate]
            .into_iter()
            .filter(|s| self.seen.contains_key(s.as_str()))
            .collect()
    }

    /// The draft for the catalog of `source`.
    pub fn draft(&self, source: Source) -> Draft {
        let catalogs = self.normalizer.catalogs();
        let empty = BTreeMap::new();
        let seen = self.seen.get(source.as_str()).unwrap_or(&empty);
        let user_attributes = shared_keys(seen, catalogs, source);
        let mut warnings = Vec::new();
        let events = seen
            .iter()
            .map(|(name, ev)| {
                let properties = ev
                    .keys
                    .iter()
                    .filter(|(k, _)| !user_attributes.contains(*k))
                    .map(|(k, seen)| {
                        let prop = draft_prop(seen, ev.count, |w| {
                            warnings.push(format!("{name}.{k}: {w}"))
                        });
                        (k.clone(), prop)
                    })
                    .collect();
                let event = DraftEvent {
                    description: format!(
                        "Drafted by `event-relay catalog infer` from {} sample event(s); review before loading.",
                        ev.count
                    ),
                    extra_keys: (source == Source::Komo).then_some("user_attributes"),
                    properties,
                };
                (name.clone(), event)
            })
            .collect();
        Draft {
            catalog: source.as_str().to_string(),
            user_attributes: user_attributes.into_iter().collect(),
            events,
            warnings,
        }
    }
}

/// The keys of an unknown event that a draft describes: Komo's non-common keys (the
/// normalizer left them in `properties`, identity keys in `user.traits`); acemate's
/// `properties` without PostHog's own `$` keys (the Identify set is already in `user.traits`).
fn event_keys(env: &Envelope) -> Vec<(&str, Value)> {
    match env.source {
        Source::Komo => (env.properties.iter())
            .chain(env.user.traits.iter())
            .map(|(k, v)| (k, v.to_value()))
            .collect(),
        Source::Acemate => (env.properties.iter())
            .filter(|(k, _)| !k.starts_with('$'))
            .map(|(k, v)| (k, v.to_value()))
            .collect(),
    }
}

/// Whether `value` passes candidate rule `prop`, with inference's own caution on top of the
/// checker: a coerced string is only taken as a number if it reads like one as written (a
/// postcode `"0200"` stays a string), and a URI must name its authority (`x:y` is not a link).
fn fits(
    prop: &Prop,
    (ty, format): (&str, Option<&str>),
    value: &Value,
    coerce: bool,
    source: Source,
) -> bool {
    if let Value::String(s) = value {
        let numeric_text =
            s == s.trim() && !(s.len() > 1 && s.starts_with('0') && !s.starts_with("0."));
        if matches!(ty, "integer" | "number" | "boolean") && !numeric_text {
            return false;
        }
        match format {
            // The Komo spec calls its ids GUIDs, acemate's call them uuids.
            Some("uuid") if source == Source::Komo => return false,
            Some("guid") if source == Source::Acemate => return false,
            Some("uri") if !s.contains("://") => return false,
            _ => {}
        }
    }
    let mut v = value.clone();
    let mut problems = Vec::new();
    prop.check(&mut v, "", coerce, &mut problems);
    problems.is_empty()
}

/// Keys present in every unknown event type (needs two types to mean anything), minus the
/// catalog's common and Identify names.
fn shared_keys(
    seen: &BTreeMap<String, EventSeen>,
    catalogs: &Catalogs,
    source: Source,
) -> BTreeSet<String> {
    if seen.len() < 2 {
        return BTreeSet::new();
    }
    let catalog = catalogs.of(source);
    let mut events = seen.values();
    let first = events.next().expect("two or more");
    first
        .keys
        .keys()
        .filter(|k| events.clone().all(|e| e.keys.contains_key(*k)))
        .filter(|k| !catalog.common.contains_key(*k) && !catalog.identify.contains_key(*k))
        .cloned()
        .collect()
}

fn draft_prop(seen: &KeySeen, events: usize, mut warn: impl FnMut(String)) -> DraftProp {
    let nullable = seen.nulls > 0;
    let required = seen.present == events;
    let chosen = seen.fits.as_ref().and_then(|f| f.iter().position(|ok| *ok));
    let (ty, format) = match (chosen, &seen.fits) {
        (Some(i), _) => CANDIDATES[i],
        (None, None) => {
            warn("only null seen; drafted as a nullable string".into());
            ("string", None)
        }
        (None, Some(_)) => {
            let (kind, _) = seen
                .kinds
                .iter()
                .max_by_key(|(_, n)| **n)
                .expect("a non-null value was seen");
            let listed: Vec<String> = seen
                .kinds
                .iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect();
            warn(format!("seen as {}; drafted as {kind}", listed.join(", ")));
            let i = CANDIDATES
                .iter()
                .position(|(ty, f)| ty == kind && f.is_none())
                .unwrap_or(8);
            CANDIDATES[i]
        }
    };
    DraftProp {
        ty,
        format,
        required,
        nullable: nullable || seen.fits.is_none(),
    }
}

#[cfg(test)]
#[path = "infer_tests.rs"]
mod tests;
