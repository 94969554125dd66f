//! Property tests of the parser and its guards: the depth check's shortcut decides like the
//! plain scan, and parsing gives what `serde_json::from_str` gives (values, errors, duplicate keys).

use super::proptest_inputs::{apply, arb_json, leaf, mutation};
use super::*;
use proptest::prelude::*;

/// Bracket-heavy text: brackets, quotes and escapes in any order.
fn brackety() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![b'{', b'[', b'}', b']', b'"', b'\\', b'a', b':', b',']),
        0..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The depth check with its bracket-count shortcut decides exactly like the plain scan.
    #[test]
    fn depth_check_matches_the_reference(bytes in brackety(), max in 0usize..80) {
        prop_assert_eq!(limits::check_depth(&bytes, max).is_ok(), limits::depth_within(&bytes, max));
    }

    /// The parser gives the same value (or the same error) as `serde_json::from_str`.
    #[test]
    fn parse_matches_serde_json(v in arb_json(), muts in prop::collection::vec(mutation(), 0..3)) {
        let text = String::from_utf8_lossy(&apply(serde_json::to_vec(&v).unwrap(), &muts)).into_owned();
        let ours = limits::parse_str(&text);
        let theirs: Result<Value, _> = serde_json::from_str(&text);
        match (ours, theirs) {
            (Err(NormalizeError::NotJson(a)), _) if text.trim().is_empty() => {
                prop_assert_eq!(a, "empty message")
            }
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(NormalizeError::NotJson(a)), Err(b)) => prop_assert_eq!(a, b.to_string()),
            (a, b) => prop_assert!(false, "{text:?}: ours {a:?}, serde_json {b:?}"),
        }
    }

    /// Duplicate keys: the last one wins, as with `serde_json::from_str`.
    #[test]
    fn duplicate_keys_keep_the_last_value(
        entries in prop::collection::vec((prop::sample::select(vec!["a", "b", "event", "c"]), leaf()), 0..12),
    ) {
        let body: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::from(*k), v))
            .collect();
        let text = format!("{{{}}}", body.join(","));
        let theirs: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(limits::parse_str(&text).unwrap(), theirs);
    }
}
