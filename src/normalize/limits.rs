//! Hard limits on hostile input, checked before anything else looks at a message.

use super::NormalizeError;
use serde_json::Value;

/// Deepest JSON nesting accepted (objects + arrays).
pub const MAX_DEPTH: usize = 64;

/// Size, UTF-8, nesting and JSON syntax checks, then the parse.
pub(crate) fn parse_checked(raw: &[u8], max_bytes: usize) -> Result<Value, NormalizeError> {
    if raw.len() > max_bytes {
        return Err(NormalizeError::TooLarge {
            size: raw.len(),
            limit: max_bytes,
        });
    }
    let text =
        std::str::from_utf8(raw).map_err(|e| NormalizeError::InvalidUtf8(e.valid_up_to()))?;
    check_depth(text.as_bytes(), MAX_DEPTH)?;
    parse_str(text)
}

/// Parses JSON text (depth already bounded by the caller).
pub(crate) fn parse_str(text: &str) -> Result<Value, NormalizeError> {
    if text.trim().is_empty() {
        return Err(NormalizeError::NotJson("empty message".into()));
    }
    serde_json::from_str(text).map_err(|e| NormalizeError::NotJson(e.to_string()))
}

/// Scans bracket depth outside strings without parsing, so a 10,000-deep document is refused
/// in linear time and constant memory.
pub(crate) fn check_depth(bytes: &[u8], max: usize) -> Result<(), NormalizeError> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in bytes {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(NormalizeError::TooDeep(max));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// JSON kind name for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
