//! Checking catalog files: the built-in catalogs and the sample file against
//! `docs/catalog.schema.json`, and `event-relay catalog check` / `event-relay check` on broken
//! files (every problem with its JSON path; exit 0 valid, 1 problems, 2 unreadable).

use crate::catalogs::{errors, json_schema, prizes_file};
use crate::fixtures::*;
use event_relay::config::SourceFormat;
use serde_json::{json, Value};
use std::path::PathBuf;

#[test]
fn builtin_catalogs_and_the_sample_file_match_the_catalog_schema() {
    let schema = json_schema("catalog.schema.json");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "catalog/komo.json",
        "catalog/acemate.json",
        "config/catalogs/komo-prizes.json",
    ] {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(file)).unwrap()).unwrap();
        assert_eq!(errors(&schema, &doc), Vec::<String>::new(), "{file}");
        // The relay's own check agrees.
        event_relay::catalog::check_file(&root.join(file)).unwrap_or_else(|e| panic!("{e}"));
    }
    // The schema can fail: a typo'd key and an unknown type.
    let bad = json!({"catalog": "komo", "events": {"X": {"properties": {"p": {"type": "text", "requred": true}}}}});
    assert_eq!(
        errors(&schema, &bad).len(),
        2,
        "{:?}",
        errors(&schema, &bad)
    );
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn catalog_check_lists_every_problem_with_its_json_path() {
    let sample = prizes_file();
    let (code, out, _) = run(&["catalog", "check", sample.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("OK (komo catalog, version 2024-06, 2 event(s))"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let values: Vec<u32> = (0..20_000).collect();
    std::fs::write(
        &bad,
        json!({"catalog": "komo", "events": {"PrizeAwarded": {"properties": {
            "tier": {"type": "string", "enum": values},
            "code": {"type": "string", "pattern": "(?:\\w{100}){100}"},
            "when": {"type": "date"}
        }}}})
        .to_string(),
    )
    .unwrap();
    let (code, out, _) = run(&["catalog", "check", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for want in [
        "$.events.PrizeAwarded.properties.code.pattern: not a usable regular expression",
        "$.events.PrizeAwarded.properties.tier.enum: 20000 values, more than the limit",
        "$.events.PrizeAwarded.properties.when.type: unknown type \"date\"",
    ] {
        let line = format!("{}: {want}", bad.display());
        assert!(
            lines.iter().any(|l| l.starts_with(&line)),
            "{line} in {out}"
        );
    }

    let missing = dir.path().join("missing.json");
    let (code, _, err) = run(&["catalog", "check", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing.json: cannot read"), "{err}");

    // `check` checks the config's catalog files too, at `catalogs[i].path`, resolved against
    // the config file's directory.
    let mut cfg = base_config("127.0.0.1:9092", "results", "dlq");
    cfg.sources.push(source("komo", SourceFormat::Komo));
    cfg.catalogs
        .push(serde_json::from_value(json!({ "path": "bad.json" })).unwrap());
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, to_toml(&cfg)).unwrap();
    let (code, out, _) = run(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.starts_with(&format!(
            "catalogs[0].path: catalog file {}: ",
            bad.display()
        )),
        "{out}"
    );
    assert!(out.contains("properties.when.type: unknown type"), "{out}");
}
