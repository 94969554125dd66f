//! `[[catalogs]]` and `sources[].user_attributes`: relative catalog paths resolve against the
//! config file's directory, and what `check` reports, each with its key path.

use super::super::*;

const BASE: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
[results]
topic = "results"
[dead_letter]
topic = "dlq"
"#;

fn with(extra: &str) -> String {
    format!("{BASE}\n[[sources]]\ntopic = \"komo\"\nformat = \"komo\"\n{extra}")
}

#[test]
fn relative_catalog_paths_resolve_against_the_config_directory() {
    let text = format!(
        "{}\n[[catalogs]]\npath = \"catalogs/a.json\"\n[[catalogs]]\npath = \"/abs/b.json\"\n",
        with("")
    );
    let c = load_str(&text, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.catalogs[0].path,
        std::path::Path::new("catalogs/a.json"),
        "as written"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, &text).unwrap();
    let c = load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.catalogs[0].path, dir.path().join("catalogs/a.json"));
    assert_eq!(c.catalogs[1].path, std::path::Path::new("/abs/b.json"));
}

#[test]
fn bad_declarations_are_reported_with_their_key_paths() {
    let text = format!(
        "{}user_attributes = [\"team\", \"\"]\n[[catalogs]]\npath = \"\"\n[[catalogs]]\npathh = \"x\"\n",
        with("")
    );
    let e = load_str(&text, std::iter::empty()).unwrap_err();
    let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"sources[0].user_attributes[1]"), "{e}");
    assert!(paths.contains(&"catalogs[0].path"), "{e}");
    assert!(paths.iter().any(|p| p.starts_with("catalogs[1]")), "{e}");
}

#[test]
fn declared_user_attributes_load() {
    let c = load_str(
        &with("user_attributes = [\"favourite_team\", \"utm_*\"]\n"),
        std::iter::empty(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sources[0].user_attributes, ["favourite_team", "utm_*"]);
}
