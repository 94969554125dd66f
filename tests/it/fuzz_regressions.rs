//! Replays every saved fuzz finding (`fuzz/regressions/<target>/*`) through the very harness the
//! cargo-fuzz target runs (`fuzz/harness.rs`), on every `cargo test` with the stable toolchain:
//! none may panic. The hand-written seeds (`fuzz/seeds/<target>/`) and every fixture event are
//! replayed too, so the harness itself stays runnable. `scripts/fuzz` is the fuzzer.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files of a corpus directory, sorted; documentation files are skipped.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && !name.ends_with(".md")
        })
        .collect();
    files.sort();
    files
}

/// Runs `harness` on every input, collecting panics so one report names all failing files.
fn replay(what: &str, inputs: &[(String, Vec<u8>)], harness: fn(&[u8])) {
    let mut failures = Vec::new();
    for (name, data) in inputs {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| harness(data))) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {what} inputs panic:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
    eprintln!("{what}: {} inputs replayed", inputs.len());
}

fn dir_inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    inputs(dir)
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p.display().to_string(), data)
        })
        .collect()
}

#[test]
fn normalize_regressions_do_not_panic() {
    let dir = root().join("fuzz/regressions/normalize");
    replay(
        "normalize regression",
        &dir_inputs(&dir),
        harness::normalize,
    );
}

#[test]
fn config_regressions_do_not_panic() {
    let dir = root().join("fuzz/regressions/config");
    replay(
        "config regression",
        &dir_inputs(&dir),
        harness::config_or_catalog,
    );
}

#[test]
fn normalize_seeds_and_fixtures_run_through_the_harness() {
    let mut all = dir_inputs(&root().join("fuzz/seeds/normalize"));
    for file in [
        "tests/fixtures/valid_events.jsonl",
        "tests/fixtures/invalid_events.jsonl",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            if value.get("expect_valid").is_some() {
                value = value["payload"].take();
            }
            all.push((
                format!("{file}:{}", i + 1),
                serde_json::to_vec(&value).unwrap(),
            ));
        }
    }
    assert!(all.len() > 100, "seeds and fixtures found");
    replay("normalize seed", &all, harness::normalize);
}

#[test]
fn config_seeds_run_through_the_harness() {
    let mut all = dir_inputs(&root().join("fuzz/seeds/config"));
    all.push((
        "config/example.toml".into(),
        std::fs::read(root().join("config/example.toml")).unwrap(),
    ));
    replay("config seed", &all, harness::config_or_catalog);
}

#[test]
fn transform_regressions_do_not_panic() {
    let dir = root().join("fuzz/regressions/transform");
    replay(
        "transform regression",
        &dir_inputs(&dir),
        harness::transform,
    );
}

#[test]
fn transform_seeds_and_fixtures_run_through_the_harness() {
    let mut all = dir_inputs(&root().join("fuzz/seeds/transform"));
    assert!(all.len() >= 12, "transform seeds found");
    let file = "tests/fixtures/valid_events.jsonl";
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        // As scripts/fuzz seeds the corpus: the identity program, a `---` line, the event.
        let mut data = b".\n---\n".to_vec();
        data.extend_from_slice(line.as_bytes());
        all.push((format!("{file}:{}", i + 1), data));
    }
    replay("transform seed", &all, harness::transform);
}
