//! Catalog files: every problem with its JSON path, hostile files bounded, merging over the
//! built-in catalogs.

use super::*;
use serde_json::json;

fn problems(text: &str) -> Vec<String> {
    match check_text(text) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(ToString::to_string).collect(),
    }
}

fn one_prop(prop: serde_json::Value) -> String {
    json!({"catalog": "komo", "events": {"PrizeAwarded": {"properties": {"p": prop}}}}).to_string()
}

const AT: &str = "$.events.PrizeAwarded.properties.p";

#[test]
fn every_problem_is_listed_with_its_json_path() {
    let text = json!({
        "catalog": "komo2",
        "version": 7,
        "evnts": {},
        "events": {
            "PrizeAwarded": {
                "deprecated": "yes",
                "properties": {
                    "prize": {"type": "text"},
                    "when": {"type": "string", "format": "date"},
                    "odd key": {"type": "string", "requred": true}
                }
            }
        },
        "user_attributes": ["ok", ""]
    })
    .to_string();
    let got = problems(&text);
    for want in [
        "$.catalog: unknown catalog \"komo2\"",
        "$.version: expected a string, got a number",
        "$.evnts: unknown key",
        "$.events.PrizeAwarded.deprecated: expected a boolean, got a string",
        "$.events.PrizeAwarded.properties.prize.type: unknown type \"text\"",
        "$.events.PrizeAwarded.properties.when.format: unknown format \"date\"",
        "$.events.PrizeAwarded.properties[\"odd key\"].requred: unknown key",
        "$.user_attributes[1]: entry 1 is empty",
    ] {
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), 8, "{got:#?}");
}

#[test]
fn a_valid_file_is_accepted() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/catalogs/komo-prizes.json"
    ))
    .unwrap();
    let file = check_text(&text).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(file.catalog(), "komo");
    assert_eq!(file.version(), Some("2024-06"));
    assert!(file.event_names().any(|e| e == "PrizeAwarded"));
}

#[test]
fn a_huge_file_is_refused_before_parsing() {
    let text = format!(
        "{{\"catalog\": \"komo\", \"description\": \"{}\"}}",
        "x".repeat(MAX_CATALOG_FILE_BYTES)
    );
    let got = problems(&text);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("$: file is larger than the limit"),
        "{got:?}"
    );
}

#[test]
fn a_huge_file_on_disk_is_read_only_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.json");
    std::fs::write(&path, vec![b' '; MAX_CATALOG_FILE_BYTES + 10]).unwrap();
    let err = check_file(&path).unwrap_err().to_string();
    assert!(err.contains("huge.json"), "{err}");
    assert!(err.contains("$: file is larger than the limit"), "{err}");
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 100_000;
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let got = problems(&text);
    assert_eq!(
        got,
        vec![format!(
            "$: JSON nesting deeper than {MAX_CATALOG_DEPTH} levels"
        )]
    );
    let items = (0..40).fold(
        json!({"type": "string"}),
        |inner, _| json!({"type": "array", "items": inner}),
    );
    let got = problems(&one_prop(items));
    assert!(got[0].contains("nesting deeper"), "{got:?}");
}

#[test]
fn a_regex_bomb_is_an_error_at_its_path() {
    for bomb in [
        "(?:\\w{100}){100}",
        "((a{50}){50}){50}",
        "[\\p{L}]{1000}{1000}",
    ] {
        let got = problems(&one_prop(json!({"type": "string", "pattern": bomb})));
        assert_eq!(got.len(), 1, "{bomb}: {got:?}");
        assert!(
            got[0].starts_with(&format!("{AT}.pattern: not a usable regular expression")),
            "{bomb}: {got:?}"
        );
    }
    let long = "a".repeat(MAX_PATTERN_LEN + 1);
    let got = problems(&one_prop(json!({"type": "string", "pattern": long})));
    assert!(
        got[0].starts_with(&format!("{AT}.pattern: {} characters", MAX_PATTERN_LEN + 1)),
        "{got:?}"
    );
    let got = problems(&one_prop(json!({"type": "string", "pattern": "(unclosed"})));
    assert!(
        got[0].starts_with(&format!("{AT}.pattern: not a usable")),
        "{got:?}"
    );
}

#[test]
fn an_enum_of_a_million_values_is_refused() {
    let values: Vec<u32> = (0..1_000_000).collect();
    let got = problems(&one_prop(json!({"type": "number", "enum": values})));
    assert_eq!(
        got,
        vec![format!(
            "{AT}.enum: 1000000 values, more than the limit of {MAX_ENUM_VALUES}"
        )]
    );
}

#[test]
fn a_file_that_cannot_be_read_is_unreadable_not_invalid() {
    let err = check_file(Path::new("/nonexistent/catalog.json")).unwrap_err();
    assert!(matches!(err, CatalogError::Unreadable { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/catalog.json"),
        "{err}"
    );
}

#[test]
fn files_merge_over_the_builtin_catalogs_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a.json");
    let second = dir.path().join("b.json");
    std::fs::write(
        &first,
        json!({"catalog": "komo", "version": "1", "user_attributes": ["team"],
               "events": {"PrizeAwarded": {"properties": {"prize": {"type": "string", "required": true}}}}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        &second,
        json!({"catalog": "komo", "version": "2",
               "events": {"PrizeAwarded": {"properties": {"prize": {"type": "number"}}},
                          "CardShared": {"deprecated": true}}})
        .to_string(),
    )
    .unwrap();
    let builtin = Catalogs::builtin().unwrap();
    let c = Catalogs::load(&[&first, &second]).unwrap();
    let prize = &c.komo.events["PrizeAwarded"];
    assert_eq!(
        prize.properties["prize"].ty,
        PropType::Number,
        "the later file wins"
    );
    assert_eq!(prize.version.as_deref(), Some("2"));
    assert!(c.komo.events["CardShared"].deprecated);
    assert_eq!(
        c.komo.events["CardShared"].properties.len(),
        builtin.komo.events["CardShared"].properties.len(),
        "built-in properties stay"
    );
    assert_eq!(
        c.komo.common.len(),
        builtin.komo.common.len(),
        "common applies unless overridden"
    );
    assert_eq!(c.komo.version.as_deref(), Some("2"));
    assert!(c.komo.user_attributes.matches("team"));
    assert_eq!(c.acemate.events.len(), builtin.acemate.events.len());
    assert!(builtin.komo.version.is_none());
}

#[test]
fn problems_past_the_limit_are_counted_not_kept() {
    let props: serde_json::Map<String, serde_json::Value> = (0..5000)
        .map(|i| (format!("p{i}"), json!({"type": "text"})))
        .collect();
    let text = json!({"catalog": "komo", "events": {"X": {"properties": props}}}).to_string();
    let got = problems(&text);
    assert_eq!(got.len(), file::MAX_PROBLEMS + 1);
    assert_eq!(
        got.last().unwrap(),
        &format!("$: {} more problems not listed", 5000 - file::MAX_PROBLEMS)
    );
    let many: Vec<String> = (0..20_000).map(|i| format!("a{i}")).collect();
    let got = problems(&json!({"catalog": "komo", "user_attributes": many}).to_string());
    assert_eq!(
        got,
        ["$.user_attributes: 20000 entries, more than the limit of 10000"]
    );
}
