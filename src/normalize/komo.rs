//! Komo's flat webhook body → envelope.
//!
//! Common keys (`id`, `event`, `timestamp`, `site_id`, `site_name`, `user_session_id`,
//! `user_profile_id`) fill the envelope's top level; the event's catalog fields become typed
//! `properties` (Komo sends numbers/booleans as strings, coerced here); every other key is a
//! user attribute or data-capture field and goes to `user.traits`. For an event the catalog
//! does not know, only identity keys and declared user attributes (the source's and the
//! catalog files') go to `user.traits`; the rest stays in `properties`.

use super::{as_text, event_id, event_name, timestamp, validation, Ctx, NormalizeError};
use crate::catalog::{check_props, Catalog, PropPath};
use crate::envelope::{Envelope, Site, Source, User, ENVELOPE_VERSION};
use serde_json::{Map, Value};

pub const COMMON: [&str; 7] = [
    "id",
    "event",
    "timestamp",
    "site_id",
    "site_name",
    "user_session_id",
    "user_profile_id",
];

/// Keys that identify a person; for events not in the catalog they still go to `user.traits`.
const IDENTITY_KEYS: [&str; 6] = ["email", "first_name", "last_name", "name", "phone", "optin"];

pub(super) fn normalize(
    catalog: &Catalog,
    mut map: Map<String, Value>,
    ctx: &Ctx<'_>,
) -> Result<Envelope, NormalizeError> {
    let event = event_name(&map)?;
    let ts = timestamp(&map, "timestamp", ctx)?;
    let mut problems = Vec::new();
    check_props(&catalog.common, &mut map, "", true, true, &mut problems);

    let id = event_id(map.get("id"), ctx.raw, 0);
    let session_id = as_text(map.get("user_session_id"));
    let profile_id = as_text(map.get("user_profile_id"));
    let site_id = as_text(map.get("site_id"));
    let site_name = as_text(map.get("site_name"));
    let site = if site_id.is_some() || site_name.is_some() {
        Some(Site {
            id: site_id.or_else(|| ctx.settings.site_id.clone()),
            name: site_name.or_else(|| ctx.settings.site_name.clone()),
        })
    } else {
        ctx.settings.configured_site()
    };

    let schema = catalog.events.get(&event);
    // Gathered in key order, then each map is built in one go.
    let mut properties = Vec::with_capacity(map.len());
    let mut traits = Vec::with_capacity(map.len());
    for (key, mut value) in map {
        if COMMON.contains(&key.as_str()) {
            continue;
        }
        match schema {
            Some(s) => match s.properties.get(&key) {
                Some(prop) => {
                    prop.check_at(
                        &mut value,
                        &PropPath("properties.", &key),
                        true,
                        &mut problems,
                    );
                    properties.push((key, value));
                }
                None => {
                    traits.push((key, coerce_trait(value)));
                }
            },
            None if IDENTITY_KEYS.contains(&key.as_str())
                || ctx.settings.user_attributes.matches(&key)
                || catalog.user_attributes.matches(&key) =>
            {
                traits.push((key, coerce_trait(value)));
            }
            None => {
                properties.push((key, value));
            }
        }
    }
    let properties: Map<String, Value> = properties.into_iter().collect();
    let traits: Map<String, Value> = traits.into_iter().collect();
    if let Some(s) = schema {
        for (name, prop) in &s.properties {
            if prop.required && !properties.contains_key(name) {
                problems.push(format!("properties.{name}: required property missing"));
            }
        }
        if s.requires_data_capture && traits.is_empty() {
            problems.push(
                "data_capture_fields: required property missing (the submitted form's fields, sent as separate keys)"
                    .into(),
            );
        }
    }
    let email = match traits.get("email") {
        Some(Value::String(e)) => Some(e.clone()),
        _ => None,
    };
    Ok(Envelope {
        envelope_version: ENVELOPE_VERSION,
        id,
        source: Source::Komo,
        event,
        timestamp: ts,
        received_at: ctx.received_at.to_string(),
        distinct_id: profile_id.clone().or_else(|| session_id.clone()),
        session_id: session_id.clone(),
        site,
        user: User {
            profile_id,
            session_id,
            email,
            traits,
        },
        properties,
        origin: ctx.origin.clone(),
        validation: validation(catalog, schema, schema.is_some(), problems),
    })
}

/// Komo sends booleans as `"true"`/`"false"` (any case, as for catalog booleans); attribute
/// values are otherwise kept as sent (a postcode like `"0200"` must stay a string, and `"1"`
/// may be a number, so only the words are taken as booleans).
fn coerce_trait(v: Value) -> Value {
    match &v {
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Value::Bool(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => v,
    }
}
