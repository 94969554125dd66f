//! Normalization: raw Kafka message bytes → zero or more [`Envelope`]s, or a dead-letter reason.
//!
//! Hard limits (size, UTF-8, JSON, nesting depth, object shape, `event`, timestamp) are checked
//! first and always reject; catalog validation then applies the source's policy
//! (`strict`: reject, `lenient`: forward with `validation.status = "invalid"`).

mod acemate;
mod borrow;
mod catalogs;
mod fields;
pub mod infer;
mod komo;
mod limits;
mod shape;
pub mod summary;

pub use crate::envelope::KOMO_COMMON_KEYS;
pub use catalogs::catalog_problems;

use crate::catalog::{Catalog, CatalogError, Catalogs, EventSchema};
use crate::config::{SourceConfig, SourceFormat, UnknownEvents, ValidationMode};
use crate::envelope::{
    Envelope, Origin, Site, Source, UserAttributes, Validation, ValidationStatus,
};
use serde_json::Value;
use std::sync::Arc;

pub(crate) use fields::{
    as_text, event_id, event_name, event_name_of, into_text, timestamp, timestamp_checked,
};
pub use limits::MAX_DEPTH;

/// Why a message (or one event of a batch) cannot be relayed. The `reason()` code goes into the
/// dead-letter header `reason` and the `event_relay_dead_letters_total{reason}` label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormalizeError {
    #[error("message is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("message is not valid UTF-8 (at byte {0})")]
    InvalidUtf8(usize),
    #[error("message is not JSON: {0}")]
    NotJson(String),
    #[error("JSON nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("message is JSON {0}, expected an object (or a batch)")]
    NotObject(&'static str),
    #[error("{0}")]
    MissingEvent(String),
    #[error("{0}")]
    InvalidTimestamp(String),
    #[error("{0}")]
    BadShape(String),
    #[error("{0}")]
    WrongShape(String),
    #[error("event {event:?} breaks the {} catalog: {}", catalog.as_str(), problems.join("; "))]
    Invalid {
        event: String,
        catalog: Source,
        problems: Vec<String>,
        /// The source event's id (for the dead-letter log line).
        id: String,
    },
    #[error("event {0:?} is not in the catalog and unknown_events = \"dead_letter\"")]
    UnknownEvent(String, String),
}

impl NormalizeError {
    /// The source event's id, when the message got far enough to have one.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            NormalizeError::Invalid { id, .. } | NormalizeError::UnknownEvent(_, id) => Some(id),
            _ => None,
        }
    }

    /// Short, low-cardinality reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            NormalizeError::TooLarge { .. } => "too_large",
            NormalizeError::InvalidUtf8(_) => "invalid_utf8",
            NormalizeError::NotJson(_) => "not_json",
            NormalizeError::TooDeep(_) => "too_deep",
            NormalizeError::NotObject(_) => "not_object",
            NormalizeError::MissingEvent(_) => "missing_event",
            NormalizeError::InvalidTimestamp(_) => "invalid_timestamp",
            NormalizeError::BadShape(_) => "bad_shape",
            NormalizeError::WrongShape(_) => "wrong_shape",
            NormalizeError::Invalid { .. } => "invalid",
            NormalizeError::UnknownEvent(..) => "unknown_event",
        }
    }

    /// Problems listed for the dead-letter header (catalog violations), else the message.
    pub fn problems(&self) -> Vec<String> {
        match self {
            NormalizeError::Invalid { problems, .. } => problems.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// One event of a batch that was rejected while its siblings went on.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Index within the batch.
    pub index: usize,
    /// The rejected event's own JSON (re-serialized).
    pub raw: Vec<u8>,
    pub error: NormalizeError,
}

/// Result of normalizing one message.
#[derive(Debug, Default)]
pub struct Normalized {
    /// Envelopes with the raw bytes each came from (for `body = "original"`).
    pub events: Vec<(Envelope, Arc<[u8]>)>,
    pub rejected: Vec<Rejected>,
}

/// Per-source settings the normalizer needs.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    pub format: SourceFormat,
    pub site_id: Option<String>,
    pub site_name: Option<String>,
    pub validation: ValidationMode,
    pub unknown_events: UnknownEvents,
    pub max_message_bytes: usize,
    /// The source's declared user attributes (`sources[].user_attributes`): for events the
    /// catalog does not know, these keys go to `user.traits`.
    pub user_attributes: Arc<UserAttributes>,
}

impl SourceSettings {
    pub fn from_config(s: &SourceConfig, max_message_bytes: usize) -> Self {
        Self {
            format: s.format,
            site_id: s.site_id.clone(),
            site_name: s.site_name.clone(),
            validation: s.validation,
            unknown_events: s.unknown_events,
            max_message_bytes,
            // Checked by `Config::validate`; a config that skipped it declares none.
            user_attributes: Arc::new(UserAttributes::new(&s.user_attributes).unwrap_or_default()),
        }
    }

    /// Settings for `event-relay normalize` without a config.
    pub fn standalone(format: SourceFormat) -> Self {
        Self {
            format,
            site_id: None,
            site_name: None,
            validation: ValidationMode::Strict,
            unknown_events: UnknownEvents::Forward,
            max_message_bytes: 1024 * 1024,
            user_attributes: Arc::default(),
        }
    }

    fn configured_site(&self) -> Option<Site> {
        if self.site_id.is_none() && self.site_name.is_none() {
            None
        } else {
            Some(Site {
                id: self.site_id.clone(),
                name: self.site_name.clone(),
            })
        }
    }
}

/// Compiled catalogs + the logic of both shapes. Cheap to share (`Arc`).
pub struct Normalizer {
    catalogs: Catalogs,
}

/// Working state for one message.
pub(crate) struct Ctx<'a> {
    pub settings: &'a SourceSettings,
    pub received_at: &'a str,
    /// The same instant as `received_at`.
    pub now: chrono::DateTime<chrono::Utc>,
    pub raw: &'a [u8],
}

impl Normalizer {
    pub fn new(catalogs: Catalogs) -> Self {
        Self { catalogs }
    }

    pub fn builtin() -> Result<Self, CatalogError> {
        Ok(Self::new(Catalogs::builtin()?))
    }

    pub fn catalogs(&self) -> &Catalogs {
        &self.catalogs
    }

    /// Normalizes one message. `Err` means the whole message is dead-lettered.
    pub fn normalize(
        &self,
        raw: &[u8],
        settings: &SourceSettings,
        origin: Origin,
    ) -> Result<Normalized, NormalizeError> {
        // One copy of the message, shared by every envelope made from it: their `properties`
        // borrow from it, and `body = "original"` sends it.
        let src: Arc<str> = Arc::from(limits::checked_text(raw, settings.max_message_bytes)?);
        let mut borrowed = borrow::Borrowed::new(&src);
        let value = limits::parse_borrowing(&src, &mut borrowed)?;
        if !value.is_object() {
            return Err(NormalizeError::NotObject(limits::kind(&value)));
        }
        let (mut top, mut props) = borrowed.into_props(&src);
        let use_komo = match settings.format {
            SourceFormat::Komo => true,
            SourceFormat::Acemate => false,
            SourceFormat::Auto => shape::looks_like_komo(&top),
        };
        shape::check(&top, settings.format)?;
        let single = !use_komo && !top.contains_key("batch") && !top.contains_key("data");
        if !single {
            // Only a single capture event reads its properties borrowed: elsewhere the message's
            // `properties` is an ordinary value again.
            if let Some(p) = props.take() {
                top.insert("properties".into(), Value::Object(p.into_map()));
            }
        }
        with_received_now(|now, received_at| {
            let ctx = Ctx {
                settings,
                received_at,
                now,
                raw,
            };
            if use_komo {
                let env = komo::normalize(&self.catalogs.komo, top, &ctx, origin)?;
                let env = apply_policy(env, settings)?;
                Ok(Normalized {
                    events: vec![(env, Arc::from(src))],
                    rejected: vec![],
                })
            } else {
                acemate::normalize(&self.catalogs.acemate, top, props, &src, &ctx, origin)
            }
        })
    }
}

/// Runs `f` with the current time and its text as [`crate::envelope::now_rfc3339`] renders
/// it, formatted at most once per millisecond per thread (at hundreds of thousands of messages
/// a second, most share one) and lent, not copied.
fn with_received_now<T>(f: impl FnOnce(chrono::DateTime<chrono::Utc>, &str) -> T) -> T {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const {
            std::cell::RefCell::new((i64::MIN, String::new()))
        };
    }
    let now = chrono::Utc::now();
    let ms = now.timestamp_millis();
    LAST.with_borrow_mut(|(last_ms, text)| {
        if *last_ms != ms {
            *last_ms = ms;
            *text = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        }
        f(now, text)
    })
}

/// Applies the strict/lenient and unknown-event policies to a freshly built envelope.
///
/// An event whose name is not in the catalog (Komo has more event types than the specs list)
/// is forwarded as `unknown_event` in both modes, with any broken common rule of its catalog
/// (Komo's common fields; acemate's `distinct_id`, `uuid` and Identify values) listed in
/// `validation.problems`; only `unknown_events = "dead_letter"` sends it to the dead letters.
pub(crate) fn apply_policy(env: Envelope, s: &SourceSettings) -> Result<Envelope, NormalizeError> {
    let strict = s.validation == ValidationMode::Strict;
    match env.validation.status {
        ValidationStatus::Invalid if strict => Err(invalid(env)),
        ValidationStatus::UnknownEvent if s.unknown_events == UnknownEvents::DeadLetter => {
            Err(NormalizeError::UnknownEvent(env.event, env.id))
        }
        _ => Ok(env),
    }
}

fn invalid(env: Envelope) -> NormalizeError {
    NormalizeError::Invalid {
        catalog: env.source,
        event: env.event,
        problems: env.validation.problems,
        id: env.id,
    }
}

/// Builds the validation block from collected problems. `schema` is the event's catalog entry
/// (`None` for `$identify` and unknown events); its `version` (else the catalog's) is named.
/// A deprecated event is judged as any other, and `event: deprecated ...` is then listed
/// without changing its status: it is forwarded in both modes.
pub(crate) fn validation(
    catalog: &Catalog,
    schema: Option<&EventSchema>,
    known: bool,
    mut problems: Vec<String>,
) -> Validation {
    let status = if !known {
        ValidationStatus::UnknownEvent
    } else if problems.is_empty() {
        ValidationStatus::Valid
    } else {
        ValidationStatus::Invalid
    };
    if let Some(s) = schema.filter(|s| s.deprecated) {
        problems.push(format!(
            "event: deprecated ({} is deprecated in the {} catalog)",
            s.name, catalog.name
        ));
    }
    Validation {
        catalog: catalog.name.clone(),
        catalog_version: schema
            .and_then(|s| s.version.clone())
            .or_else(|| catalog.version.clone()),
        status,
        problems,
    }
}

#[cfg(test)]
mod borrow_tests;
#[cfg(test)]
mod parse_proptests;
#[cfg(test)]
mod proptest_inputs;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
