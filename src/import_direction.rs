//! The layout rule of `lib.rs` as a test: every module imports only the modules its row below
//! allows (what comes before it in the flow, and the neutral ground). The layout table of
//! docs/development.md is the same table. Test code (`#[cfg(test)]` modules, `tests.rs`,
//! `*proptests.rs`) may reach across, to compare stages.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// (module, modules it may import). Neutral ground first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("ack", &[]),
    ("health", &[]),
    ("metrics", &[]),
    ("json", &[]),
    ("outage", &[]),
    // The live tap: the stages offer it lines, the server streams them. Its event filter reads
    // globs as routes do (route's pure matcher), else it stands apart like the rows above.
    ("tap", &["envelope", "metrics", "route"]),
    // OpenTelemetry spans: the stages open and end them; it reads only its config section.
    ("telemetry", &["config"]),
    ("envelope", &["json"]),
    ("config", &["envelope"]),
    ("logging", &["config"]),
    ("source", &["ack", "health", "metrics", "config", "outage"]),
    ("catalog", &["envelope", "json"]),
    ("normalize", &["catalog", "envelope", "config", "json"]),
    ("route", &["envelope", "config"]),
    // A target's program reshapes what the target sends: after route, before deliver.
    ("transform", &["envelope", "config", "json"]),
    // deliver hands each final outcome to report's result producer.
    (
        "deliver",
        &[
            "ack",
            "envelope",
            "config",
            "metrics",
            "json",
            "transform",
            "report",
            "telemetry",
        ],
    ),
    (
        "report",
        &[
            "ack",
            "envelope",
            "config",
            "metrics",
            "json",
            "outage",
            "tap",
            "telemetry",
        ],
    ),
    ("server", &["health", "metrics", "tap"]),
    (
        "pipeline",
        &[
            "ack",
            "health",
            "metrics",
            "config",
            "envelope",
            "source",
            "catalog",
            "normalize",
            "route",
            "transform",
            "deliver",
            "report",
            "server",
            "outage",
            "tap",
            "telemetry",
        ],
    ),
    // An edge like cli: the config's topics, reached with the relay's producer settings.
    ("topics", &["config", "source", "pipeline", "outage"]),
    // An edge like cli: an event's journey read back from the relay's topics (with redrive's
    // reader).
    ("trace", &["config", "redrive"]),
    // An edge like cli: failed deliveries and dead letters read back and re-entered, with the
    // relay's consumer and producer settings, its record formats and its event-name globs.
    (
        "redrive",
        &["config", "source", "pipeline", "report", "route", "outage"],
    ),
];

/// Whether `name` is one of the crate's modules: every row of [`ALLOWED`], plus `cli`, which
/// may import anything and so has no row.
fn is_module(name: &str) -> bool {
    name == "cli" || ALLOWED.iter().any(|(module, _)| *module == name)
}

fn sources(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    let single = src.join(format!("{module}.rs"));
    if single.exists() {
        files.push(single);
    }
    let dir = src.join(module);
    if dir.is_dir() {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
    }
    files
}

/// The crate modules a file's non-test code names (`crate::x`).
fn imports(path: &Path) -> BTreeSet<String> {
    let name = path.file_name().unwrap().to_string_lossy();
    if name == "tests.rs" || name.ends_with("proptests.rs") {
        return BTreeSet::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    // The test module ends the file's code (`mod tests`, or `pub(super) mod tests` when a
    // sibling's tests share its fixtures).
    let test_module = ["#[cfg(test)]\nmod ", "#[cfg(test)]\npub(super) mod "]
        .iter()
        .filter_map(|m| text.find(m))
        .min();
    let code = match test_module {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if is_module(&ident) {
            found.insert(ident);
        }
    }
    // `use crate::{a, b}` groups.
    for (i, _) in code.match_indices("crate::{") {
        let rest = &code[i + "crate::{".len()..];
        let group = &rest[..rest.find('}').unwrap_or(0)];
        for part in group.split(',') {
            let ident = part.trim().split("::").next().unwrap_or("").to_string();
            if is_module(&ident) {
                found.insert(ident);
            }
        }
    }
    found
}

#[test]
fn modules_import_only_along_the_flow() {
    let mut violations = vec![];
    for (module, allowed) in ALLOWED {
        let files = sources(module);
        assert!(!files.is_empty(), "module {module} has no source file");
        for file in files {
            for used in imports(&file) {
                if used != *module && !allowed.contains(&used.as_str()) {
                    violations.push(format!("{} imports crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the flow:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_a_backward_import() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.rs");
    std::fs::write(
        &file,
        "use crate::{deliver::Delivery, envelope};\nfn f() { crate::source::pause_all(); }\n#[cfg(test)]\nmod tests { use crate::pipeline; }\n",
    )
    .unwrap();
    let found: Vec<String> = imports(&file).into_iter().collect();
    assert_eq!(found, ["deliver", "envelope", "source"]);
}
