//! Which source's shape a body has: how `format = "auto"` picks the normalizer, and how a
//! source of fixed format recognises a body of the other source's shape (`wrong_shape`).

use super::NormalizeError;
use crate::config::SourceFormat;
use crate::envelope::Props;
use crate::envelope::Source;

/// Komo bodies are flat with `site_id` / `user_session_id`; acemate bodies carry
/// `distinct_id`, `properties`, `batch` or PostHog's `data` string.
/// (Without any of the acemate keys — `distinct_id` among them — a body is Komo.)
pub(super) fn looks_like_komo(map: &Props) -> bool {
    // One pass over the keys rather than a map search per candidate key.
    !map.keys().any(|k| {
        matches!(
            k,
            "distinct_id" | "properties" | "batch" | "data" | "uuid" | "api_key"
        )
    })
}

/// Keys only acemate's (PostHog-style) bodies have, and keys only Komo's have.
const ACEMATE_ONLY: [&str; 3] = ["distinct_id", "batch", "api_key"];
const KOMO_ONLY: [&str; 3] = ["site_id", "user_session_id", "user_profile_id"];

/// A body of the other source's shape on a source of fixed format (a Komo webhook on an acemate
/// topic, or the reverse) is a wrong shape, not an unknown or invalid event: says so, naming
/// the keys that gave it away. A body with marks of both shapes (or neither) is judged by the
/// configured format as before.
pub(super) fn check(map: &Props, format: SourceFormat) -> Result<(), NormalizeError> {
    let has = |keys: &[&'static str]| -> Vec<&'static str> {
        keys.iter()
            .copied()
            .filter(|k| map.contains_key(k))
            .collect()
    };
    let (own, other, this, that) = match format {
        SourceFormat::Auto => return Ok(()),
        SourceFormat::Komo => (
            has(&KOMO_ONLY),
            has(&ACEMATE_ONLY),
            Source::Komo.as_str(),
            "an acemate (PostHog-style) event",
        ),
        SourceFormat::Acemate => (
            has(&ACEMATE_ONLY),
            has(&KOMO_ONLY),
            Source::Acemate.as_str(),
            "a Komo event",
        ),
    };
    if own.is_empty() && !other.is_empty() {
        return Err(NormalizeError::WrongShape(format!(
            "payload has the shape of {that} (keys {}) but the source's format is {this}",
            other.join(", ")
        )));
    }
    Ok(())
}
