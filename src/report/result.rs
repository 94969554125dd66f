//! The WebhookSuccess / WebhookError result event: the Komo site-event shape
//! (`komo-site-events.txt`) plus the relay's delivery fields, written straight into a buffer.

use super::{cut_str, rfc3339, Journey, Outcome, TargetRef, CUT_FIELD_BYTES};
use crate::envelope::{now_rfc3339, relay_uuid, Envelope, Props};
use crate::json::{write_opt_str as put_opt, write_str as put_str};
use serde_json::Value;
use std::io::Write;

/// The envelope as a result event may carry it when the full one is too large for Kafka: no
/// user attributes or properties, ids and names cut to [`CUT_FIELD_BYTES`].
pub(super) fn cut_envelope(env: &Envelope) -> Envelope {
    let cut = |s: &Option<String>| {
        s.as_deref()
            .map(|s| cut_str(s, CUT_FIELD_BYTES).to_string())
    };
    Envelope {
        envelope_version: env.envelope_version,
        source: env.source,
        timestamp: env.timestamp.clone(),
        received_at: env.received_at.clone(),
        origin: env.origin.clone(),
        id: cut_str(&env.id, CUT_FIELD_BYTES).to_string(),
        event: cut_str(&env.event, CUT_FIELD_BYTES).to_string(),
        session_id: cut(&env.session_id),
        distinct_id: cut(&env.distinct_id),
        site: env.site.as_ref().map(|s| crate::envelope::Site {
            id: cut(&s.id),
            name: cut(&s.name),
        }),
        user: crate::envelope::User {
            profile_id: cut(&env.user.profile_id),
            session_id: cut(&env.user.session_id),
            email: cut(&env.user.email),
            traits: Props::new(),
        },
        properties: Props::new(),
        validation: crate::envelope::Validation {
            catalog: env.validation.catalog.clone(),
            catalog_version: env.validation.catalog_version.clone(),
            status: env.validation.status,
            problems: Vec::new(),
        },
    }
}

/// Builds the result event JSON for one outcome (pure; unit-tested).
pub fn result_event(
    env: &Envelope,
    target: &TargetRef,
    outcome: &Outcome,
    journey: &Journey,
) -> (String, Value) {
    let mut buf = Vec::with_capacity(1024);
    let kind = write_result_event(&mut buf, env, target, outcome, journey, &now_rfc3339());
    (
        kind.to_string(),
        serde_json::from_slice(&buf).expect("valid JSON"),
    )
}

/// Keys of a result event that the relay sets besides the Komo site-event keys
/// ([`crate::envelope::KOMO_COMMON_KEYS`]); user attributes with any of these names are left out.
const RELAY_RESULT_KEYS: [&str; 12] = [
    "integration_id",
    "webhook_trigger",
    "target",
    "source",
    "source_event_id",
    "attempts",
    "status_code",
    "error",
    "duration_ms",
    "email",
    "first_attempt_at",
    "parked",
];

fn is_result_key(k: &str) -> bool {
    crate::envelope::KOMO_COMMON_KEYS.contains(&k) || RELAY_RESULT_KEYS.contains(&k)
}

/// The result event's id: a UUIDv5 of `{source event id}|{target guid}|{kind}`, the name
/// written at the end of `buf` (and taken off again) instead of into a new string.
fn result_id(buf: &mut Vec<u8>, env: &Envelope, target: &TargetRef, kind: &str) -> uuid::Uuid {
    let start = buf.len();
    buf.extend_from_slice(env.id.as_bytes());
    buf.push(b'|');
    buf.extend_from_slice(
        target
            .guid
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    buf.push(b'|');
    buf.extend_from_slice(kind.as_bytes());
    let id = relay_uuid(&buf[start..]);
    buf.truncate(start);
    id
}

/// Writes the result event JSON for one outcome straight into `buf`; returns its kind.
/// User attributes come first as separate keys; the relay's keys win on a name clash.
pub fn write_result_event(
    buf: &mut Vec<u8>,
    env: &Envelope,
    target: &TargetRef,
    outcome: &Outcome,
    journey: &Journey,
    now: &str,
) -> &'static str {
    let kind = outcome.result_kind();
    let id = result_id(buf, env, target, kind);
    buf.push(b'{');
    for (k, v) in env.user.traits.iter() {
        if is_result_key(k) {
            continue;
        }
        put_str(buf, k);
        buf.push(b':');
        v.write(buf);
        buf.push(b',');
    }
    let site = env.site.as_ref();
    buf.extend_from_slice(b"\"id\":");
    put_str(
        buf,
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    buf.extend_from_slice(b",\"event\":");
    put_str(buf, kind);
    buf.extend_from_slice(b",\"timestamp\":");
    put_str(buf, now);
    buf.extend_from_slice(b",\"site_id\":");
    put_opt(buf, site.and_then(|s| s.id.as_deref()));
    buf.extend_from_slice(b",\"site_name\":");
    put_opt(buf, site.and_then(|s| s.name.as_deref()));
    buf.extend_from_slice(b",\"user_session_id\":");
    put_opt(buf, env.session_id.as_deref());
    buf.extend_from_slice(b",\"user_profile_id\":");
    put_opt(buf, env.user.profile_id.as_deref());
    buf.extend_from_slice(b",\"integration_id\":");
    put_str(
        buf,
        target
            .guid
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    buf.extend_from_slice(b",\"webhook_trigger\":");
    put_str(buf, &env.event);
    buf.extend_from_slice(b",\"target\":");
    put_str(buf, &target.name);
    buf.extend_from_slice(b",\"source\":");
    put_str(buf, env.source.as_str());
    buf.extend_from_slice(b",\"source_event_id\":");
    put_str(buf, &env.id);
    write!(buf, ",\"attempts\":{}", outcome.attempts()).expect("writing to a Vec cannot fail");
    match outcome.status_code() {
        Some(c) => write!(buf, ",\"status_code\":{c}").expect("writing to a Vec cannot fail"),
        None => buf.extend_from_slice(b",\"status_code\":null"),
    }
    buf.extend_from_slice(b",\"error\":");
    match outcome.error() {
        Some(e) => put_str(buf, &e.to_string()),
        None => buf.extend_from_slice(b"null"),
    }
    write!(buf, ",\"duration_ms\":{}", outcome.duration().as_millis())
        .expect("writing to a Vec cannot fail");
    buf.extend_from_slice(b",\"first_attempt_at\":");
    match journey.first_attempt_at {
        Some(t) => put_str(buf, &rfc3339(t)),
        None => buf.extend_from_slice(b"null"),
    }
    write!(buf, ",\"parked\":{}", journey.parked).expect("writing to a Vec cannot fail");
    let email = env
        .user
        .email
        .as_deref()
        .or(env.user.traits.get("email").and_then(|e| e.as_str()));
    if let Some(e) = email {
        buf.extend_from_slice(b",\"email\":");
        put_str(buf, e);
    }
    buf.push(b'}');
    kind
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Failure;
    use std::time::Duration;

    #[test]
    fn result_event_shape() {
        let env = crate::envelope::sample();
        let target = TargetRef {
            name: "crm".into(),
            guid: uuid::Uuid::parse_str("e772b5f1-47f4-4c43-ac01-8ef81990fa7d").unwrap(),
        };
        let outcome = Outcome::Failed {
            error: Failure::Status {
                status: 400,
                hint: String::new(),
            },
            attempts: 3,
            duration: Duration::from_millis(12),
        };
        let (kind, v) = result_event(&env, &target, &outcome, &Journey::default());
        assert_eq!(kind, "WebhookError");
        assert_eq!(v["event"], "WebhookError");
        assert_eq!(v["integration_id"], "e772b5f1-47f4-4c43-ac01-8ef81990fa7d");
        assert_eq!(v["webhook_trigger"], "CardViewed");
        assert_eq!(v["site_id"], "2d5776b8-158a-4216-aaa1-edbc249e005b");
        assert_eq!(v["tenant"], "acemate");
        assert_eq!(v["attempts"], 3);
        assert_eq!(v["status_code"], 400);
        assert_eq!(v["error"], "HTTP 400");
        assert_eq!(v["duration_ms"], 12);
        assert_eq!(v["source_event_id"], env.id.as_str());
        assert_eq!(v["parked"], 0);
        assert_eq!(v["first_attempt_at"], Value::Null);
        let journey = Journey {
            parked: 2,
            first_attempt_at: Some(std::time::UNIX_EPOCH + Duration::from_millis(1_500)),
            ..Journey::default()
        };
        let (_, parked) = result_event(&env, &target, &outcome, &journey);
        assert_eq!(parked["parked"], 2);
        assert_eq!(parked["first_attempt_at"], "1970-01-01T00:00:01.500Z");
        let (_, again) = result_event(&env, &target, &outcome, &Journey::default());
        assert_eq!(v["id"], again["id"], "replays yield the same id");
        let expected = uuid::Uuid::new_v5(
            &crate::envelope::RELAY_NAMESPACE,
            format!("{}|{}|WebhookError", env.id, target.guid).as_bytes(),
        );
        assert_eq!(v["id"], expected.to_string(), "the UUIDv5 of id|guid|kind");
        let ok = Outcome::Delivered {
            status: 200,
            attempts: 3,
            duration: Duration::from_millis(12),
        };
        let (kind, ok) = result_event(&env, &target, &ok, &Journey::default());
        assert_eq!(kind, "WebhookSuccess");
        assert_eq!(ok["event"], "WebhookSuccess");
        assert_eq!(ok["status_code"], 200);
        assert_eq!(ok["error"], Value::Null);
        assert_ne!(ok["id"], v["id"]);
    }

    #[test]
    fn cut_down_result_events_are_small_and_keep_their_identity() {
        assert_eq!(cut_str("héllo", 2), "h", "cut at a character boundary");
        assert_eq!(cut_str("abc", 10), "abc");
        let mut env = crate::envelope::sample();
        let huge = "x".repeat(2 * 1024 * 1024);
        env.user
            .traits
            .insert("favourite_team".into(), Value::from(huge.clone()));
        env.user.email = Some(huge.clone());
        env.event = huge.clone();
        let target = TargetRef {
            name: "crm".into(),
            guid: uuid::Uuid::nil(),
        };
        let outcome = Outcome::Delivered {
            status: 200,
            attempts: 1,
            duration: Duration::from_millis(1),
        };
        let small = cut_envelope(&env);
        let (_, v) = result_event(&small, &target, &outcome, &Journey::default());
        assert!(serde_json::to_vec(&v).unwrap().len() < 16 * 1024);
        assert!(v.get("favourite_team").is_none(), "user attributes dropped");
        assert_eq!(
            v["source_event_id"],
            env.id.as_str(),
            "short ids kept whole"
        );
        assert_eq!(
            v["id"],
            result_event(&env, &target, &outcome, &Journey::default()).1["id"],
            "same result id as the full event"
        );
    }
}
