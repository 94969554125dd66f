//! A readable difference of two JSON values, one line per differing path (`$.a.b[2]`), for
//! `event-relay test`'s failure report.

use serde_json::Value;

/// The differences between `expected` and `actual`, each on one line: `- path: expected X,
/// missing`, `+ path: not expected, got Y`, `~ path: expected X, got Y`. Empty when equal
/// (numbers compare by value: `1` equals `1.0`).
pub(super) fn diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("$", expected, actual, &mut out);
    out
}

fn walk(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let at = format!("{path}{}", key(k));
                match a.get(k) {
                    Some(av) => walk(&at, ev, av, out),
                    None => out.push(format!("- {at}: expected {ev}, missing")),
                }
            }
            for (k, av) in a.iter().filter(|(k, _)| !e.contains_key(*k)) {
                out.push(format!("+ {path}{}: not expected, got {av}", key(k)));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                walk(&format!("{path}[{i}]"), ev, av, out);
            }
            for (i, ev) in e.iter().enumerate().skip(a.len()) {
                out.push(format!("- {path}[{i}]: expected {ev}, missing"));
            }
            for (i, av) in a.iter().enumerate().skip(e.len()) {
                out.push(format!("+ {path}[{i}]: not expected, got {av}"));
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        (e, a) if e == a => {}
        (e, a) => out.push(format!("~ {path}: expected {e}, got {a}")),
    }
}

/// `.name`, or `["odd key"]` for keys that are not plain identifiers.
fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!(".{k}")
    } else {
        format!("[{}]", Value::from(k))
    }
}

#[cfg(test)]
mod tests {
    use super::diff;
    use serde_json::json;

    #[test]
    fn each_difference_is_one_line_with_its_path() {
        let expected =
            json!({"event_type": "sign_up", "time": 1, "props": {"a": [1, 2]}, "x y": 1});
        let actual = json!({"event_type": "SignUp", "time": 1.0, "props": {"a": [1]}, "extra": true, "x y": 1});
        assert_eq!(
            diff(&expected, &actual),
            vec![
                "~ $.event_type: expected \"sign_up\", got \"SignUp\"",
                "- $.props.a[1]: expected 2, missing",
                "+ $.extra: not expected, got true",
            ]
        );
        assert!(diff(&expected, &expected).is_empty());
        assert_eq!(
            diff(&json!({"x y": 1}), &json!({"x y": 2})),
            vec!["~ $[\"x y\"]: expected 1, got 2"]
        );
    }
}
