//! The common envelope every source event is normalized into (documented in `docs/envelope.md`).
//!
//! Komo's flat webhook bodies and acemate's PostHog-style events both become an [`Envelope`];
//! routes, targets and result events only ever look at envelopes.

mod attrs;
mod props;
pub use attrs::{
    AttributePatternError, UserAttributes, MAX_USER_ATTRIBUTES, MAX_USER_ATTRIBUTE_LEN,
};
pub use props::{PropName, PropRef, PropSlot, Props, Span};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// Version of the envelope layout; bumped on incompatible changes.
pub const ENVELOPE_VERSION: u32 = 1;

/// Namespace for the relay's UUIDv5 ids (target GUIDs, result ids, ids of id-less payloads).
pub const RELAY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c1f_4a9e_2b7d_4f0e_9d35_8a7e_61c2_d0b4);

/// `uuid::Uuid::new_v5(&RELAY_NAMESPACE, name)`, hashed by the `sha1` crate (SHA-NI where the
/// CPU has it) instead of uuid's portable SHA-1: the same id, for the one computed per
/// delivery (a result event's id).
pub fn relay_uuid(name: &[u8]) -> uuid::Uuid {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    hasher.update(RELAY_NAMESPACE.as_bytes());
    hasher.update(name);
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// The top-level keys every Komo webhook body has, which become envelope fields (not
/// properties or traits); result events leave user attributes of these names out.
pub const KOMO_COMMON_KEYS: [&str; 7] = [
    "id",
    "event",
    "timestamp",
    "site_id",
    "site_name",
    "user_session_id",
    "user_profile_id",
];

/// Which upstream shape an event came from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Komo webhook events (cards, watch-to-win, site).
    Komo,
    /// acemate's PostHog-style events.
    Acemate,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Komo => "komo",
            Source::Acemate => "acemate",
        }
    }
}

/// A Komo site (null for acemate unless configured per source).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Site {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// Who the event is about.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub profile_id: Option<String>,
    pub session_id: Option<String>,
    pub email: Option<String>,
    /// User attributes, data-capture fields, Identify properties and `$set` values.
    pub traits: Props,
}

/// Where the event was read from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
}

/// Outcome of catalog validation.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValidationStatus {
    Valid,
    UnknownEvent,
    Invalid,
}

impl ValidationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationStatus::Valid => "valid",
            ValidationStatus::UnknownEvent => "unknown_event",
            ValidationStatus::Invalid => "invalid",
        }
    }
}

/// Catalog validation result carried on the envelope.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Validation {
    /// Catalog consulted (`komo` or `acemate`).
    pub catalog: String,
    /// The version of the catalog entry that judged the event (a loaded catalog file's
    /// `version`, an event's own `version`); `null` for the built-in catalogs.
    #[serde(default)]
    pub catalog_version: Option<std::sync::Arc<str>>,
    pub status: ValidationStatus,
    /// One entry per problem: `<property path>: <rule>`.
    pub problems: Vec<String>,
}

/// The normalized event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub envelope_version: u32,
    /// The source event's id / uuid, else a UUIDv5 of the raw bytes.
    pub id: String,
    pub source: Source,
    /// The original event name.
    pub event: String,
    /// RFC 3339 UTC, from the payload, else the received time.
    pub timestamp: String,
    /// RFC 3339 UTC time the relay read the message.
    pub received_at: String,
    pub distinct_id: Option<String>,
    pub session_id: Option<String>,
    pub site: Option<Site>,
    pub user: User,
    /// The event's properties, typed by the catalog; unknown non-identity properties kept.
    pub properties: Props,
    pub origin: Origin,
    pub validation: Validation,
}

fn opt_str(v: &Option<String>) -> Option<Cow<'_, Value>> {
    v.as_ref().map(|s| Cow::Owned(Value::String(s.clone())))
}

/// `props[key]` and then the `rest` of a dotted path inside it.
fn lookup<'a>(props: &'a Props, key: &str, rest: &[&str]) -> Option<Cow<'a, Value>> {
    match props.get(key)? {
        PropRef::Str(s) if rest.is_empty() => Some(Cow::Owned(Value::String(s.to_owned()))),
        PropRef::Str(_) => None,
        PropRef::Value(v) => walk(v, rest).map(Cow::Borrowed),
    }
}

fn walk<'a>(mut v: &'a Value, rest: &[&str]) -> Option<&'a Value> {
    for part in rest {
        v = v.get(part)?;
    }
    Some(v)
}

impl Envelope {
    /// Looks up a field by dotted path (`properties.score`, `site.id`, `user.traits.tenant`).
    /// Used by routing conditions and URL/header templates.
    pub fn field(&self, path: &str) -> Option<Cow<'_, Value>> {
        let parts: Vec<&str> = path.split('.').collect();
        let owned = |v: Value| Some(Cow::Owned(v));
        match parts.as_slice() {
            ["envelope_version"] => owned(Value::from(self.envelope_version)),
            ["id"] => owned(Value::String(self.id.clone())),
            ["source"] => owned(Value::String(self.source.as_str().into())),
            ["event"] => owned(Value::String(self.event.clone())),
            ["timestamp"] => owned(Value::String(self.timestamp.clone())),
            ["received_at"] => owned(Value::String(self.received_at.clone())),
            ["distinct_id"] => opt_str(&self.distinct_id),
            ["session_id"] => opt_str(&self.session_id),
            ["site", "id"] => self.site.as_ref().and_then(|s| opt_str(&s.id)),
            ["site", "name"] => self.site.as_ref().and_then(|s| opt_str(&s.name)),
            ["user", "profile_id"] => opt_str(&self.user.profile_id),
            ["user", "session_id"] => opt_str(&self.user.session_id),
            ["user", "email"] => opt_str(&self.user.email),
            ["user", "traits", key, rest @ ..] => lookup(&self.user.traits, key, rest),
            ["properties", key, rest @ ..] => lookup(&self.properties, key, rest),
            ["origin", "topic"] => owned(Value::String(self.origin.topic.clone())),
            ["origin", "partition"] => owned(Value::from(self.origin.partition)),
            ["origin", "offset"] => owned(Value::from(self.origin.offset)),
            ["origin", "key"] => opt_str(&self.origin.key),
            ["validation", "catalog"] => owned(Value::String(self.validation.catalog.clone())),
            ["validation", "catalog_version"] => (self.validation.catalog_version.as_deref())
                .map(|v| Cow::Owned(Value::String(v.to_string()))),
            ["validation", "status"] => {
                owned(Value::String(self.validation.status.as_str().into()))
            }
            _ => None,
        }
    }

    /// Appends the envelope's JSON, byte-for-byte what `serde_json` writes for it (the
    /// webhook body of `body = "envelope"`), through the fast writers of [`crate::json`].
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        use crate::json::{write_opt_str as opt, write_str as put};
        use std::io::Write;
        // Numbers through `write!` into the buffer itself (no string per number).
        write!(
            buf,
            "{{\"envelope_version\":{},\"id\":",
            self.envelope_version
        )
        .expect("writing to a Vec cannot fail");
        put(buf, &self.id);
        buf.extend_from_slice(b",\"source\":");
        put(buf, self.source.as_str());
        buf.extend_from_slice(b",\"event\":");
        put(buf, &self.event);
        buf.extend_from_slice(b",\"timestamp\":");
        put(buf, &self.timestamp);
        buf.extend_from_slice(b",\"received_at\":");
        put(buf, &self.received_at);
        buf.extend_from_slice(b",\"distinct_id\":");
        opt(buf, self.distinct_id.as_deref());
        buf.extend_from_slice(b",\"session_id\":");
        opt(buf, self.session_id.as_deref());
        buf.extend_from_slice(b",\"site\":");
        match &self.site {
            Some(site) => {
                buf.extend_from_slice(b"{\"id\":");
                opt(buf, site.id.as_deref());
                buf.extend_from_slice(b",\"name\":");
                opt(buf, site.name.as_deref());
                buf.push(b'}');
            }
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"user\":{\"profile_id\":");
        opt(buf, self.user.profile_id.as_deref());
        buf.extend_from_slice(b",\"session_id\":");
        opt(buf, self.user.session_id.as_deref());
        buf.extend_from_slice(b",\"email\":");
        opt(buf, self.user.email.as_deref());
        buf.extend_from_slice(b",\"traits\":");
        self.user.traits.write_json(buf);
        buf.extend_from_slice(b"},\"properties\":");
        self.properties.write_json(buf);
        buf.extend_from_slice(b",\"origin\":{\"topic\":");
        put(buf, &self.origin.topic);
        write!(
            buf,
            ",\"partition\":{},\"offset\":{},\"key\":",
            self.origin.partition, self.origin.offset
        )
        .expect("writing to a Vec cannot fail");
        opt(buf, self.origin.key.as_deref());
        buf.extend_from_slice(b"},\"validation\":{\"catalog\":");
        put(buf, &self.validation.catalog);
        buf.extend_from_slice(b",\"catalog_version\":");
        opt(buf, self.validation.catalog_version.as_deref());
        buf.extend_from_slice(b",\"status\":");
        put(buf, self.validation.status.as_str());
        buf.extend_from_slice(b",\"problems\":[");
        for (i, p) in self.validation.problems.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            put(buf, p);
        }
        buf.extend_from_slice(b"]}}");
    }

    /// A field rendered as text for templates (strings unquoted, others as JSON).
    pub fn field_text(&self, path: &str) -> Option<String> {
        self.field(path).and_then(|v| match v.as_ref() {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
    }
}

/// Current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
pub(crate) fn sample() -> Envelope {
    let mut properties = Props::new();
    properties.insert("score".into(), Value::from(7));
    properties.insert("courseType".into(), Value::from("demo"));
    let mut traits = Props::new();
    traits.insert("tenant".into(), Value::from("acemate"));
    Envelope {
        envelope_version: ENVELOPE_VERSION,
        id: "54e635de-92f5-4419-a498-5f69323db34c".into(),
        source: Source::Komo,
        event: "CardViewed".into(),
        timestamp: "2000-01-01T00:00:00.000Z".into(),
        received_at: "2000-01-01T00:00:01.000Z".into(),
        distinct_id: Some("u1".into()),
        session_id: Some("s1".into()),
        site: Some(Site {
            id: Some("2d5776b8-158a-4216-aaa1-edbc249e005b".into()),
            name: Some("My site".into()),
        }),
        user: User {
            profile_id: Some("u1".into()),
            session_id: Some("s1".into()),
            email: None,
            traits,
        },
        properties,
        origin: Origin {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            key: None,
        },
        validation: Validation {
            catalog: "komo".into(),
            catalog_version: None,
            status: ValidationStatus::Valid,
            problems: vec![],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of every length around SHA-1's 64-byte blocks, and arbitrary bytes.
    #[test]
    fn relay_uuid_is_uuids_v5() {
        for len in 0..200 {
            let name: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            assert_eq!(
                relay_uuid(&name),
                uuid::Uuid::new_v5(&RELAY_NAMESPACE, &name),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn field_paths_resolve() {
        let e = sample();
        assert_eq!(e.field("event").unwrap().as_ref(), "CardViewed");
        assert_eq!(
            e.field("site.id").unwrap().as_ref(),
            "2d5776b8-158a-4216-aaa1-edbc249e005b"
        );
        assert_eq!(
            e.field("properties.score").unwrap().as_ref(),
            &Value::from(7)
        );
        assert_eq!(e.field("user.traits.tenant").unwrap().as_ref(), "acemate");
        assert!(e.field("properties.missing").is_none());
        assert!(e.field("nope").is_none());
        assert_eq!(e.field_text("origin.offset").unwrap(), "5");
    }

    #[test]
    fn write_json_is_what_serde_writes() {
        let mut e = sample();
        let mut buf = Vec::new();
        e.write_json(&mut buf);
        assert_eq!(buf, serde_json::to_vec(&e).unwrap());
        e.site = None;
        e.distinct_id = None;
        e.origin.key = Some("k\"ey".into());
        e.origin.offset = -1;
        e.user.email = Some("a@b.c".into());
        e.validation.problems = vec!["x: bad".into(), "y: \\worse".into()];
        e.properties
            .insert("nested".into(), serde_json::json!({"a": [1, 2.5, null]}));
        buf.clear();
        e.write_json(&mut buf);
        assert_eq!(buf, serde_json::to_vec(&e).unwrap());
    }
}
