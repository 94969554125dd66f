//! acemate's PostHog-style events → envelopes.
//!
//! Accepts a single capture event `{event, distinct_id, properties, timestamp, uuid, $set?,
//! $set_once?}`, a batch `{api_key, batch: [...]}` (one envelope per event; a bad event is
//! rejected alone) and PostHog's Kafka ingestion record `{uuid, distinct_id, data: "<json>"}`.
//! Identify properties (email, userType, ...) found in `properties`, `$set` or `$set_once`
//! move to `user.traits`; the event's catalog properties are validated and kept typed.

use super::{
    apply_policy, as_text, event_id, event_name_of, into_text, limits, timestamp_checked,
    validation, Ctx, NormalizeError, Normalized, Rejected,
};
use crate::catalog::{check_props_ref, Catalog, PropPath};
use crate::envelope::{Envelope, Origin, PropRef, Props, Source, User, ENVELOPE_VERSION};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Most events accepted in one PostHog-style batch message (PostHog's own SDKs send ≤ 100).
pub const MAX_BATCH_EVENTS: usize = 1000;

/// `props`: the message's top-level `properties`, read borrowed from `src` (the message text),
/// when it is a single capture event with an object there.
pub(super) fn normalize(
    catalog: &Catalog,
    mut map: Props,
    props: Option<Props>,
    src: &Arc<str>,
    ctx: &Ctx<'_>,
    origin: Origin,
) -> Result<Normalized, NormalizeError> {
    if let Some(batch) = map.remove("batch") {
        let Value::Array(items) = batch else {
            return Err(NormalizeError::BadShape(format!(
                "`batch` must be an array, got {}",
                limits::kind(&batch)
            )));
        };
        if items.is_empty() {
            return Err(NormalizeError::BadShape("`batch` is empty".into()));
        }
        if items.len() > MAX_BATCH_EVENTS {
            // One message must not fan out into unbounded work (dead letters, tasks).
            return Err(NormalizeError::BadShape(format!(
                "`batch` has {} events, more than the limit of {MAX_BATCH_EVENTS}",
                items.len()
            )));
        }
        let mut out = Normalized::default();
        for (index, item) in items.into_iter().enumerate() {
            let raw: Vec<u8> = serde_json::to_vec(&item).unwrap_or_default();
            let result = match item {
                Value::Object(m) => one(
                    catalog,
                    Top::take(m),
                    None,
                    ctx,
                    &raw,
                    index + 1,
                    origin.clone(),
                )
                .and_then(|e| apply_policy(e, ctx.settings)),
                other => Err(NormalizeError::NotObject(limits::kind(&other))),
            };
            match result {
                Ok(env) => out.events.push((env, Arc::from(raw))),
                Err(error) => out.rejected.push(Rejected { index, raw, error }),
            }
        }
        return Ok(out);
    }
    if let Some(data) = map.get("data").and_then(|d| d.as_str()) {
        // PostHog's ingestion record: the event is a JSON string in `data`.
        limits::check_depth(data.as_bytes(), limits::MAX_DEPTH)?;
        let inner = limits::parse_str(data)?;
        let Value::Object(mut inner) = inner else {
            return Err(NormalizeError::NotObject(limits::kind(&inner)));
        };
        for (key, outer) in [
            ("uuid", "uuid"),
            ("distinct_id", "distinct_id"),
            ("event", "event"),
            ("timestamp", "now"),
        ] {
            if !inner.contains_key(key) {
                if let Some(v) = map.get(outer) {
                    inner.insert(key.into(), v.to_value());
                }
            }
        }
        let env = one(catalog, Top::take(inner), None, ctx, ctx.raw, 0, origin)?;
        let env = apply_policy(env, ctx.settings)?;
        return Ok(Normalized {
            events: vec![(env, Arc::from(Arc::clone(src)))],
            rejected: vec![],
        });
    }
    let env = apply_policy(
        one(
            catalog,
            Top::from_props(map),
            props,
            ctx,
            ctx.raw,
            0,
            origin,
        )?,
        ctx.settings,
    )?;
    Ok(Normalized {
        events: vec![(env, Arc::from(Arc::clone(src)))],
        rejected: vec![],
    })
}

/// For an event the catalog does not know: moves the declared user attributes (the source's
/// and the catalog files') from `properties` to the traits.
fn declared_attributes(
    catalog: &Catalog,
    ctx: &Ctx<'_>,
    properties: &mut Props,
    moved: &mut Props,
) {
    let (source, files) = (&ctx.settings.user_attributes, &catalog.user_attributes);
    if source.is_empty() && files.is_empty() {
        return;
    }
    moved.absorb(properties.split_off_by(|key| source.matches(key) || files.matches(key)));
}

/// The top-level fields of a capture event, moved out of its map in one pass (cheaper than a
/// search per field); the map's other keys are dropped with it.
#[derive(Default)]
struct Top {
    event: Option<Value>,
    timestamp: Option<Value>,
    uuid: Option<Value>,
    distinct_id: Option<Value>,
    properties: Option<Value>,
    set: Option<Value>,
    set_once: Option<Value>,
}

impl Top {
    /// The fields out of the message's top level (borrowed): only these are made values.
    fn from_props(mut top: Props) -> Self {
        let mut take = |key: &str| top.remove(key);
        Top {
            event: take("event"),
            timestamp: take("timestamp"),
            uuid: take("uuid"),
            distinct_id: take("distinct_id"),
            properties: take("properties"),
            set: take("$set"),
            set_once: take("$set_once"),
        }
    }

    fn take(map: Map<String, Value>) -> Self {
        let mut top = Top::default();
        for (key, value) in map {
            let slot = match key.as_str() {
                "event" => &mut top.event,
                "timestamp" => &mut top.timestamp,
                "uuid" => &mut top.uuid,
                "distinct_id" => &mut top.distinct_id,
                "properties" => &mut top.properties,
                "$set" => &mut top.set,
                "$set_once" => &mut top.set_once,
                _ => continue,
            };
            *slot = Some(value);
        }
        top
    }
}

/// An object-valued field (`key` names it in a problem): absent or null is empty.
fn object_of(value: Option<Value>, key: &str, problems: &mut Vec<String>) -> Map<String, Value> {
    match value {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            problems.push(format!(
                "{key}: expected object, got {}",
                limits::kind(&other)
            ));
            Map::new()
        }
    }
}

/// A string field (checked to be one by the caller), moved out.
fn string_of(value: Option<Value>) -> String {
    match value {
        Some(Value::String(s)) => s,
        _ => String::new(),
    }
}

#[allow(clippy::too_many_arguments)] // each is one input of the event; a struct would only rename them
fn one(
    catalog: &Catalog,
    top: Top,
    props: Option<Props>,
    ctx: &Ctx<'_>,
    raw: &[u8],
    salt: usize,
    origin: Origin,
) -> Result<Envelope, NormalizeError> {
    event_name_of(top.event.as_ref())?;
    let ts = timestamp_checked(top.timestamp.as_ref(), "timestamp", ctx)?;
    let event = string_of(top.event);
    let ts = ts.unwrap_or_else(|| string_of(top.timestamp));
    let mut problems = Vec::new();
    if let Some(Value::String(u)) = &top.uuid {
        if uuid::Uuid::parse_str(u).is_err() {
            problems.push(format!("uuid: {u:?} is not a valid uuid"));
        }
    }
    let id = event_id(top.uuid, raw, salt);
    let distinct_id = into_text(top.distinct_id);
    if distinct_id.as_deref().is_none_or(str::is_empty) {
        problems.push("distinct_id: required property missing".into());
    }
    let mut properties = match props {
        Some(p) => p,
        None => Props::from(object_of(top.properties, "properties", &mut problems)),
    };
    let mut traits = Props::new();
    // Person properties: top-level and in-properties `$set` become the user's traits. (Keys are
    // sorted: a look at the few up to "$set_once" tells whether `properties` has either.)
    let inner_sets = properties
        .keys()
        .take_while(|k| *k <= "$set_once")
        .any(|k| k == "$set" || k == "$set_once");
    let mut set = object_of(top.set, "$set", &mut problems);
    let mut inner = if inner_sets {
        object_of(properties.remove("$set"), "$set", &mut problems)
    } else {
        Map::new()
    };
    for m in [&mut set, &mut inner] {
        for (k, v) in std::mem::take(m) {
            traits.insert(k, v);
        }
    }
    // `$set_once` must stay set-once: it is kept as the `$set_once` property (PostHog reads it
    // there), never merged into the traits that go out as `$set`.
    let top_once = object_of(top.set_once, "$set_once", &mut problems);
    if !top_once.is_empty() {
        match properties.get_mut("$set_once") {
            Some(Value::Object(inner)) => {
                for (k, v) in top_once {
                    inner.entry(k).or_insert(v);
                }
            }
            _ => {
                properties.insert("$set_once".into(), Value::Object(top_once));
            }
        }
    }
    let schema = catalog.events.get(&event);
    // Identify properties ride along on every event; where the event's own catalog entry
    // defines the same name (e.g. `signup.userType`), the event's rule wins and it stays.
    // The names each event leaves to the Identify set are listed (sorted) once, at start-up;
    // one pass over the (sorted) properties splits them off, merge-join style, moving each
    // entry (no key copied) and building the rest back in one go: cheaper than removing
    // entries from the map one by one.
    let names = schema.map_or(&catalog.identify_names, |s| &s.identify_unclaimed);
    let mut next = names.iter().peekable();
    let mut moved = properties.split_off_by(|key| {
        while next.next_if(|n| n.as_str() < key).is_some() {}
        next.next_if(|n| n.as_str() == key).is_some()
    });
    if schema.is_none() && event != "$identify" {
        declared_attributes(catalog, ctx, &mut properties, &mut moved);
    }
    traits.absorb(moved);
    // The Identify set is attached to every acemate event (spec: "automatically attached to
    // all events"), so its required members are enforced on catalog events and `$identify`.
    let is_identify = event == "$identify";
    let enforce = is_identify || schema.is_some();
    let mut required_seen = 0usize;
    for (name, v) in traits.iter() {
        if let Some(prop) = catalog.identify.get(name) {
            required_seen += usize::from(prop.required);
            prop.check_ref(v, &PropPath("user.traits.", name), &mut problems);
        }
    }
    if enforce && required_seen < catalog.identify.values().filter(|p| p.required).count() {
        for (name, prop) in &catalog.identify {
            // Claimed by the event's own schema and present there: satisfied.
            if prop.required && !traits.contains_key(name) && !properties.contains_key(name) {
                problems.push(format!(
                    "user.traits.{name}: required Identify property missing"
                ));
            }
        }
    }

    if let Some(s) = schema {
        check_props_ref(&s.properties, &properties, "properties.", &mut problems);
    }
    // Only `$identify` (checked against the Identify set) is known besides the catalog's events;
    // other PostHog system events (`$pageview`, ...) are not in the catalog: `unknown_event`.
    let known = schema.is_some() || is_identify;
    let session_id = properties.get("$session_id").and_then(|v| match v {
        PropRef::Str(s) => Some(s.to_owned()),
        PropRef::Value(v) => as_text(Some(v)),
    });
    let email = traits
        .get("email")
        .and_then(|e| e.as_str().map(str::to_owned));
    Ok(Envelope {
        envelope_version: ENVELOPE_VERSION,
        id,
        source: Source::Acemate,
        event,
        timestamp: ts,
        received_at: ctx.received_at.to_string(),
        distinct_id: distinct_id.clone(),
        session_id: session_id.clone(),
        site: ctx.settings.configured_site(),
        user: User {
            profile_id: distinct_id,
            session_id,
            email,
            traits,
        },
        properties,
        origin,
        validation: validation(catalog, schema, known, problems),
    })
}
