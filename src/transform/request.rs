//! What a program may change about the request besides its body: headers (`%headers.NAME`)
//! and a path suffix (`%path`), read from the metadata after a run and checked here, the
//! one place for those rules.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use vrl::value::Value;

/// The metadata keys a program may set, as the docs and messages name them.
pub(super) const METADATA_KEYS: &str = "%headers.NAME, %path and %skip";

/// Headers a program may not set: the relay's own for signing (Standard Webhooks), auth and
/// the body's framing and encoding, which the transport owns.
pub const RESERVED_HEADERS: [&str; 10] = [
    "webhook-id",
    "webhook-signature",
    "webhook-timestamp",
    "authorization",
    "proxy-authorization",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
];

/// What the program set for the request besides the body. Deliveries of a batching target
/// share a request only when theirs are equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Request {
    /// Headers to add or replace (names lower-cased), in name order.
    pub headers: Vec<(String, String)>,
    /// Percent-encoded path segments to append to the target URL's path (`a/b%20c`), if any.
    pub path: Option<String>,
}

impl Request {
    /// Whether the program changed nothing about the request.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.path.is_none()
    }

    /// `url` with the path suffix appended (`https://h/api?x=1` + `v2/track` →
    /// `https://h/api/v2/track?x=1`); the host, port and query stay.
    pub fn apply_path(&self, url: &mut url::Url) {
        if let Some(suffix) = &self.path {
            let path = format!("{}/{suffix}", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
    }
}

/// Whether a program may set header `name`, or why not.
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a valid HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(format!(
            "the relay sets {lower} itself (signing, auth and body framing headers cannot be \
             set by a transform)"
        ));
    }
    Ok(())
}

/// The request changes a run left in `%headers` and `%path`, or why they cannot be used.
pub(super) fn from_metadata(metadata: &Value) -> Result<Request, String> {
    let mut request = Request::default();
    match field(metadata, "headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                check_header_name(name.as_str())?;
                let text = header_text(value)
                    .ok_or_else(|| format!("%headers.{name} is {}, not text", kind(value)))?;
                if http::HeaderValue::from_str(&text).is_err() {
                    return Err(format!(
                        "%headers.{name} is not a valid HTTP header value (control characters)"
                    ));
                }
                request
                    .headers
                    .push((name.as_str().to_ascii_lowercase(), text));
            }
        }
        Some(other) => return Err(format!("%headers is {}, not an object", kind(other))),
    }
    // In name order once lower-cased (VRL orders the keys as written: `X-B` before `x-a`).
    request.headers.sort();
    request.path = match field(metadata, "path") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::Bytes(_) | Value::String(_))) => {
            Some(encode_path(&v.to_str_lossy().unwrap_or_default())?)
        }
        Some(other) => return Err(format!("%path is {}, not text", kind(other))),
    };
    Ok(request)
}

/// The value at `key` of an object.
pub(super) fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_object()?.get(key)
}

/// A header value from text, a number or a boolean.
fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::Bytes(_) | Value::String(_) => value.to_str_lossy().map(|s| s.into_owned()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// VRL's name of a value's type, for messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Bytes(_) | Value::String(_) => "text",
        Value::Regex(_) => "a regex",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Timestamp(_) => "a timestamp",
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::Null => "null",
    }
}

/// What is percent-encoded in a path segment: controls, space and the characters that would
/// end the path or the segment (`?`, `#`, `/` inside a segment) or start an escape (`%`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// `%path` as encoded segments: split on `/`, each segment percent-encoded (so it cannot add a
/// query, a fragment or an escape); `.` and `..` refused (they would climb out of the target's
/// path: URL parsers resolve them, encoded or not).
fn encode_path(text: &str) -> Result<String, String> {
    let trimmed = text.trim_start_matches('/');
    let mut out = Vec::new();
    for segment in trimmed.split('/') {
        if segment == "." || segment == ".." {
            return Err(format!(
                "%path {text:?} has a {segment:?} segment; a transform may only add to the \
                 target's path"
            ));
        }
        out.push(utf8_percent_encode(segment, SEGMENT).to_string());
    }
    Ok(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: serde_json::Value) -> Value {
        Value::from(v)
    }

    #[test]
    fn headers_and_path_are_read_and_checked() {
        let r = from_metadata(&meta(serde_json::json!({
            "headers": {"X-Partner": "acme", "x-api": "v2", "X-Count": 3},
            "path": "/users/a b?c#d"
        })))
        .unwrap();
        assert_eq!(
            r.headers,
            vec![
                ("x-api".to_string(), "v2".to_string()),
                ("x-count".to_string(), "3".to_string()),
                ("x-partner".to_string(), "acme".to_string())
            ],
            "in name order once lower-cased"
        );
        assert_eq!(r.path.as_deref(), Some("users/a%20b%3Fc%23d"));
        let mut url = url::Url::parse("https://h.example/api/?k=1").unwrap();
        r.apply_path(&mut url);
        assert_eq!(
            url.as_str(),
            "https://h.example/api/users/a%20b%3Fc%23d?k=1"
        );
    }

    #[test]
    fn reserved_headers_bad_values_and_climbing_paths_are_refused() {
        for (m, part) in [
            (
                serde_json::json!({"headers": {"Webhook-Signature": "x"}}),
                "webhook-signature",
            ),
            (
                serde_json::json!({"headers": {"authorization": "x"}}),
                "authorization",
            ),
            (
                serde_json::json!({"headers": {"x": {"a": 1}}}),
                "%headers.x is an object",
            ),
            (
                serde_json::json!({"headers": {"x": "a\nb"}}),
                "not a valid HTTP header value",
            ),
            (serde_json::json!({"headers": "x"}), "%headers is text"),
            (
                serde_json::json!({"path": "a/../../admin"}),
                "\"..\" segment",
            ),
            (serde_json::json!({"path": 3}), "%path is an integer"),
        ] {
            let err = from_metadata(&meta(m)).unwrap_err();
            assert!(err.contains(part), "{err}");
        }
    }
}
