//! Property tests: the catalog-file check never panics on arbitrary JSON or text, every
//! problem has a JSON path, and a file it accepts compiles over the built-in catalogs.

use super::*;
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON, biased towards the catalog format's keys so the walk gets deep.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("catalog".to_string()),
        Just("events".to_string()),
        Just("properties".to_string()),
        Just("type".to_string()),
        Just("enum".to_string()),
        Just("items".to_string()),
        Just("pattern".to_string()),
        Just("format".to_string()),
        Just("user_attributes".to_string()),
        Just("deprecated".to_string()),
        "[a-z ]{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("komo".to_string()),
            Just("string".to_string()),
            Just("array".to_string()),
            Just("date-time".to_string()),
            "\\PC{0,8}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn checked(text: &str) {
    match check_text(text) {
        Ok(file) => {
            if let Err(e) = Catalogs::with_files([file]) {
                panic!("a checked file does not compile: {e}");
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            assert!(problems.iter().all(|p| p.path.starts_with('$')));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_json_never_panics_the_loader(v in json()) {
        checked(&v.to_string());
    }

    #[test]
    fn arbitrary_catalog_shaped_json_never_panics_the_loader(
        events in prop::collection::btree_map("[A-Za-z]{1,8}", json(), 0..4),
        catalog in prop_oneof![Just("komo"), Just("acemate")],
    ) {
        let v = serde_json::json!({"catalog": catalog, "events": events});
        checked(&v.to_string());
    }

    #[test]
    fn arbitrary_text_never_panics_the_loader(s in "\\PC{0,64}") {
        checked(&s);
    }
}
