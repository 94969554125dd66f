//! Komo's flat webhook body → envelope.
//!
//! Common keys (`id`, `event`, `timestamp`, `site_id`, `site_name`, `user_session_id`,
//! `user_profile_id`) fill the envelope's top level; the event's catalog fields become typed
//! `properties` (Komo sends numbers/booleans as strings, coerced here); every other key is a
//! user attribute or data-capture field and goes to `user.traits`. For an event the catalog
//! does not know, only identity keys and declared user attributes (the source's and the
//! catalog files') go to `user.traits`; the rest stays in `properties`.

use super::{event_id, event_name, into_text, timestamp, validation, Ctx, NormalizeError};
use crate::catalog::{check_props, Catalog, EventSchema, PropPath};
use crate::envelope::{
    Envelope, Origin, PropName, PropSlot, Props, Site, Source, User, ENVELOPE_VERSION,
};
use serde_json::Value;

use crate::envelope::KOMO_COMMON_KEYS as COMMON;

/// Keys that identify a person; for events not in the catalog they still go to `user.traits`.
const IDENTITY_KEYS: [&str; 6] = ["email", "first_name", "last_name", "name", "phone", "optin"];

/// The common keys' values, moved out of the body as it is taken apart (copied before).
#[derive(Default)]
struct Common {
    id: Option<Value>,
    session_id: Option<String>,
    profile_id: Option<String>,
    site_id: Option<String>,
    site_name: Option<String>,
}

impl Common {
    /// Keeps `value` if `key` is one of [`COMMON`] (a `match`: a length switch, then one
    /// comparison), else hands it back.
    fn take(&mut self, key: &str, value: Value) -> Option<Value> {
        let slot = match key {
            "id" => {
                self.id = Some(value);
                return None;
            }
            "user_session_id" => &mut self.session_id,
            "user_profile_id" => &mut self.profile_id,
            "site_id" => &mut self.site_id,
            "site_name" => &mut self.site_name,
            // Read (and copied) before the body is taken apart.
            "event" | "timestamp" => return None,
            _ => {
                debug_assert!(!COMMON.contains(&key));
                return Some(value);
            }
        };
        *slot = into_text(Some(value));
        None
    }
}

pub(super) fn normalize(
    catalog: &Catalog,
    mut body: Props,
    ctx: &Ctx<'_>,
    origin: Origin,
) -> Result<Envelope, NormalizeError> {
    // The common keys (and any other key the catalog's common rules name) are taken out as
    // values: they are read, checked and coerced, and become the envelope's own fields; every
    // other key stays where it is in the message until `split` sorts it.
    let mut head = body
        .split_off_by(|key| COMMON.contains(&key) || catalog.common.contains_key(key))
        .into_map();
    let event = event_name(&head)?.to_owned();
    let ts = timestamp(&head, "timestamp", ctx)?;
    let mut problems = Vec::new();
    check_props(&catalog.common, &mut head, "", true, true, &mut problems);

    let schema = catalog.events.get(&event);
    let mut common = Common::default();
    for (key, value) in head {
        if let Some(value) = common.take(&key, value) {
            body.insert(key, value); // a common rule's key that is no envelope field
        }
    }
    let (properties, traits) = split(catalog, schema, body, ctx, &mut problems);
    let Common {
        id,
        session_id,
        profile_id,
        site_id,
        site_name,
    } = common;
    let id = event_id(id, ctx.raw, 0);
    let site = if site_id.is_some() || site_name.is_some() {
        Some(Site {
            id: site_id.or_else(|| ctx.settings.site_id.clone()),
            name: site_name.or_else(|| ctx.settings.site_name.clone()),
        })
    } else {
        ctx.settings.configured_site()
    };
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
    let email = traits
        .get("email")
        .and_then(|e| e.as_str().map(str::to_owned));
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
        origin,
        validation: validation(catalog, schema, schema.is_some(), problems),
    })
}

/// Sorts the body's other keys in one pass, in name order: the event's catalog fields (checked,
/// coerced: owned values) into the properties, the rest into the traits or properties, each
/// left where it is in the message unless a coercion changes it.
fn split(
    catalog: &Catalog,
    schema: Option<&EventSchema>,
    body: Props,
    ctx: &Ctx<'_>,
    problems: &mut Vec<String>,
) -> (Props, Props) {
    let (src, entries) = body.into_parts();
    let text = src.as_deref().unwrap_or("");
    let mut properties = Vec::with_capacity(entries.len());
    let mut traits = Vec::with_capacity(entries.len());
    for (name, slot) in entries {
        let key = match &name {
            PropName::At(span) => span.get(text),
            PropName::Own(s) => s.as_str(),
        };
        match schema {
            Some(s) => match s.properties.get(key) {
                Some(prop) => {
                    let mut value = match slot {
                        PropSlot::At(span) => Value::String(span.get(text).to_owned()),
                        PropSlot::Own(v) => v,
                    };
                    prop.check_at(&mut value, &PropPath("properties.", key), true, problems);
                    properties.push((name, PropSlot::Own(value)));
                }
                None => traits.push((name, coerce_trait(slot, text))),
            },
            None if IDENTITY_KEYS.contains(&key)
                || ctx.settings.user_attributes.matches(key)
                || catalog.user_attributes.matches(key) =>
            {
                traits.push((name, coerce_trait(slot, text)));
            }
            None => properties.push((name, slot)),
        }
    }
    (
        Props::from_sorted(src.clone(), properties),
        Props::from_sorted(src, traits),
    )
}

/// Komo sends booleans as `"true"`/`"false"` (any case, as for catalog booleans); attribute
/// values are otherwise kept as sent (a postcode like `"0200"` must stay a string, and `"1"`
/// may be a number, so only the words are taken as booleans).
fn coerce_trait(slot: PropSlot, text: &str) -> PropSlot {
    let s = match &slot {
        PropSlot::At(span) => span.get(text),
        PropSlot::Own(Value::String(s)) => s.as_str(),
        PropSlot::Own(_) => return slot,
    };
    match s.trim() {
        w if w.eq_ignore_ascii_case("true") => PropSlot::Own(Value::Bool(true)),
        w if w.eq_ignore_ascii_case("false") => PropSlot::Own(Value::Bool(false)),
        _ => slot,
    }
}
