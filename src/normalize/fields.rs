//! The fields every source's event has, read from its body: the event name, the timestamp
//! (normalized to RFC 3339 UTC), the id, and string-ish values as text.

use super::{limits, Ctx, NormalizeError};
use crate::catalog::{canonical_instant, is_canonical_utc_millis};
use crate::envelope::RELAY_NAMESPACE;
use serde_json::{Map, Value};

/// The `event` field: a non-empty string, else a hard error.
pub(crate) fn event_name(map: &Map<String, Value>) -> Result<&str, NormalizeError> {
    event_name_of(map.get("event"))
}

/// [`event_name`] of the `event` value already taken out of its map.
pub(crate) fn event_name_of(event: Option<&Value>) -> Result<&str, NormalizeError> {
    match event {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(NormalizeError::MissingEvent("`event` is empty".into())),
        Some(other) => Err(NormalizeError::MissingEvent(format!(
            "`event` must be a string, got {}",
            limits::kind(other)
        ))),
        None => Err(NormalizeError::MissingEvent("`event` is missing".into())),
    }
}

/// Normalizes a payload timestamp to RFC 3339 UTC; absent → received time.
pub(crate) fn timestamp(
    map: &Map<String, Value>,
    key: &str,
    ctx: &Ctx<'_>,
) -> Result<String, NormalizeError> {
    let value = map.get(key);
    Ok(match timestamp_checked(value, key, ctx)? {
        Some(t) => t,
        None => as_text(value).unwrap_or_default(), // the payload's string as sent
    })
}

/// [`timestamp`] of the value of `key`, except that `Ok(None)` means the payload's own string
/// is already exactly the normalized form (the caller may then move it out instead of copying
/// it).
pub(crate) fn timestamp_checked(
    value: Option<&Value>,
    key: &str,
    ctx: &Ctx<'_>,
) -> Result<Option<String>, NormalizeError> {
    match value {
        None | Some(Value::Null) => Ok(Some(ctx.received_at.to_string())),
        Some(Value::String(s)) => {
            let utc = match canonical_instant(s) {
                Some(utc) => utc,
                None => chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|_| {
                        NormalizeError::InvalidTimestamp(format!(
                            "`{key}` {s:?} is not an RFC 3339 date-time"
                        ))
                    })?
                    .with_timezone(&chrono::Utc),
            };
            let limit = ctx.now + chrono::Duration::days(7);
            if utc > limit {
                return Err(NormalizeError::InvalidTimestamp(format!(
                    "`{key}` {s:?} is more than 7 days in the future"
                )));
            }
            if chrono::Datelike::year(&utc) < 0 {
                // e.g. 0000-01-01T00:00:00+14:00: in UTC before year 0000, not RFC 3339.
                return Err(NormalizeError::InvalidTimestamp(format!(
                    "`{key}` {s:?} is before the year 0000 in UTC"
                )));
            }
            if is_canonical_utc_millis(s) {
                // Already exactly what formatting would produce: skip the re-format.
                return Ok(None);
            }
            Ok(Some(
                utc.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ))
        }
        Some(other) => Err(NormalizeError::InvalidTimestamp(format!(
            "`{key}` must be an RFC 3339 string, got {}",
            limits::kind(other)
        ))),
    }
}

/// The event id: the payload's id (moved) if it is a non-empty string, else a UUIDv5 of the
/// raw bytes.
pub(crate) fn event_id(v: Option<Value>, raw: &[u8], salt: usize) -> String {
    match v {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            let mut bytes = raw.to_vec();
            bytes.extend_from_slice(&salt.to_le_bytes());
            uuid::Uuid::new_v5(&RELAY_NAMESPACE, &bytes).to_string()
        }
    }
}

/// A string-ish value as text (numbers become their decimal text).
pub(crate) fn as_text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// [`as_text`] of a value the caller owns: a string is moved, not copied.
pub(crate) fn into_text(v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s),
        other => as_text(other.as_ref()),
    }
}
