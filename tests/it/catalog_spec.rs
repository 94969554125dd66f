//! Cross-checks catalog/*.json against the raw spec texts in ../shared/specs.
//!
//! The spec text is parsed here independently of scripts/gen_catalog.py. The spec texts live
//! outside the repository: `$EVENT_RELAY_SPECS_DIR` if set (then it must exist), else
//! `<CARGO_MANIFEST_DIR>/../shared/specs`. Without them the cross-check fails in CI (`CI` set,
//! e.g. `CI=true`) and elsewhere prints one line saying it was not run and how to run it, so a
//! fresh clone with nothing beside it still passes its tests.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
struct SpecProp {
    required: bool,
    nullable: bool,
    enum_vals: Option<Vec<String>>,
    items_enum: Option<Vec<String>>,
    name_inferred: bool,
}

type SpecEvent = BTreeMap<String, SpecProp>;

const KOMO_FILES: [&str; 3] = [
    "komo-card-events.txt",
    "komo-site-events.txt",
    "komo-watch-to-win-events.txt",
];
const KOMO_COMMON: [&str; 7] = [
    "id",
    "event",
    "timestamp",
    "site_id",
    "site_name",
    "user_session_id",
    "user_profile_id",
];
const KOMO_TYPES: [&str; 5] = ["Guid", "string", "Timestamp", "number", "boolean"];

/// An acemate spec section: its name and rows of (property name, required, rest of the row).
type Section = (String, Vec<(Option<String>, bool, String)>);
/// Whether this is a CI run (`CI` set to anything but empty, `false` or `0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"))
}

/// The spec texts, or `None` (after saying so, once) when they are absent outside CI.
fn specs_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("EVENT_RELAY_SPECS_DIR") {
        let dir = PathBuf::from(d);
        assert!(
            dir.is_dir(),
            "EVENT_RELAY_SPECS_DIR={} is not a directory",
            dir.display()
        );
        return Some(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/specs");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        !in_ci(),
        "the catalog/spec cross-check is required in CI, but the spec texts are missing: \
         {} does not exist; check the specs out next to the repository or set \
         EVENT_RELAY_SPECS_DIR",
        dir.display()
    );
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        // Straight to stderr, past the test harness's capture: a passing test's output is hidden.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "catalog_spec: NOT RUN - no spec texts at {}; set EVENT_RELAY_SPECS_DIR (or check \
             them out there) to cross-check catalog/*.json against them",
            dir.display()
        );
    });
    None
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn catalog(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("catalog")
        .join(format!("{name}.json"));
    serde_json::from_str(&read(&p))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", p.display()))
}

fn keys(v: &Value, what: &str) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} is not an object"))
        .keys()
        .cloned()
        .collect()
}

/// Komo table row -> (name, optional flag). Handles the "idGuidA unique...false" layout.
fn komo_concat_row(line: &str) -> (String, String) {
    let l = line.trim();
    let cut = KOMO_TYPES
        .iter()
        .filter_map(|t| l.match_indices(t).map(|(i, _)| i).find(|&i| i > 0))
        .min()
        .unwrap_or_else(|| panic!("komo row without type: {l:?}"));
    let optional = if l.to_lowercase().ends_with("true") {
        "true"
    } else {
        "false"
    };
    (l[..cut].to_string(), optional.to_string())
}

/// Returns event -> (rows incl. common, pseudo rows like "User attributes").
fn parse_komo(text: &str) -> BTreeMap<String, (SpecEvent, Vec<String>)> {
    let chunks: Vec<&str> = text.split("NameTypeDescriptionOptional").collect();
    let mut out = BTreeMap::new();
    for i in 1..chunks.len() {
        let name = chunks[i - 1]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("\"event\": \""))
            .next_back()
            .and_then(|r| r.split('"').next())
            .expect("komo table without a preceding \"event\" example")
            .to_string();
        let table = chunks[i]
            .trim_start_matches('\n')
            .split("\n\n")
            .next()
            .unwrap();
        let lines: Vec<&str> = table
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let one_cell_per_line =
            lines.len() >= 4 && KOMO_TYPES.iter().any(|t| t.eq_ignore_ascii_case(lines[1]));
        let rows: Vec<(String, String)> = if one_cell_per_line {
            assert_eq!(lines.len() % 4, 0, "komo {name}: table not in 4-line rows");
            lines
                .chunks(4)
                .map(|c| (c[0].to_string(), c[3].to_lowercase()))
                .collect()
        } else {
            lines.iter().map(|l| komo_concat_row(l)).collect()
        };
        let (mut props, mut pseudo) = (SpecEvent::new(), Vec::new());
        for (n, opt) in rows {
            assert!(
                opt == "true" || opt == "false",
                "komo {name}.{n}: Optional = {opt:?}"
            );
            if n.contains(' ') {
                pseudo.push(n);
                continue;
            }
            let p = SpecProp {
                required: opt == "false",
                ..Default::default()
            };
            assert!(
                props.insert(n.clone(), p).is_none(),
                "komo {name}: duplicate row {n}"
            );
        }
        assert!(
            out.insert(name.clone(), (props, pseudo)).is_none(),
            "komo: duplicate event {name}"
        );
    }
    out
}

fn quoted_after(s: &str, marker: &str) -> Option<Vec<String>> {
    let i = s.find(marker)?;
    let rest = &s[i + marker.len()..];
    let mut vals = Vec::new();
    let mut it = rest.trim_start();
    while let Some(r) = it.strip_prefix('"') {
        let end = r.find('"').expect("unterminated enum value");
        vals.push(r[..end].to_string());
        it = r[end + 1..].trim_start();
    }
    Some(vals)
}

/// Returns section name ("Identify" or event) -> properties.
fn parse_acemate(text: &str) -> BTreeMap<String, SpecEvent> {
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_suffix(" Webhook") {
            if !h.contains(' ') {
                sections.push((h.to_string(), Vec::new()));
                continue;
            }
        }
        let Some((_, rows)) = sections.last_mut() else {
            continue;
        };
        if let Some(r) = line.strip_prefix("| ") {
            let (head, ty) = r
                .split_once(" | ")
                .unwrap_or_else(|| panic!("bad row {line:?}"));
            let name = head.trim_end_matches(" required");
            rows.push((
                Some(name.to_string()),
                name != head,
                ty.trim_end_matches('|').trim().into(),
            ));
        } else if let Some(ty) = line.strip_suffix(" | |") {
            rows.push((None, false, ty.to_string())); // row whose name cell was lost
        }
    }
    let mut out = BTreeMap::new();
    for (ev, rows) in sections {
        let mut props = SpecEvent::new();
        for (i, (name, required, ty)) in rows.iter().enumerate() {
            let (name, inferred) = match name {
                Some(n) => (n.clone(), false),
                None => {
                    let next = rows
                        .get(i + 1)
                        .and_then(|r| r.0.clone())
                        .unwrap_or_default();
                    let stem = next.strip_suffix("PeriodEnd");
                    let stem = stem.unwrap_or_else(|| panic!("{ev}: cannot infer unnamed row {i}"));
                    (format!("{stem}Remaining"), true)
                }
            };
            let words: Vec<&str> = ty.split_whitespace().take(3).collect();
            let p = SpecProp {
                required: *required,
                nullable: words.get(1) == Some(&"or") && words.get(2) == Some(&"null"),
                enum_vals: quoted_after(ty, " Enum: ")
                    .filter(|_| !ty.contains("Items Enum:"))
                    .or_else(|| quoted_after(ty, "Value: ")),
                // "(can be predefined or custom)": the listed items are suggestions, and the
                // catalog must not enforce them.
                items_enum: quoted_after(ty, "Items Enum: ")
                    .filter(|_| !ty.contains("predefined or custom")),
                name_inferred: inferred,
            };
            assert!(
                props.insert(name.clone(), p).is_none(),
                "acemate {ev}: duplicate row {name}"
            );
        }
        assert!(
            out.insert(ev.clone(), props).is_none(),
            "acemate: duplicate section {ev}"
        );
    }
    out
}

fn str_list(v: Option<&Value>) -> Option<Vec<String>> {
    v.map(|a| {
        a.as_array()
            .expect("enum must be an array")
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    })
}

fn check_props(ctx: &str, spec: &SpecEvent, cat: &Value, check_detail: bool) {
    let spec_names: BTreeSet<String> = spec.keys().cloned().collect();
    assert_eq!(
        spec_names,
        keys(cat, ctx),
        "{ctx}: property names differ (left = spec, right = catalog)"
    );
    for (name, sp) in spec {
        let cp = &cat[name];
        let ctx = format!("{ctx}.{name}");
        assert_eq!(
            cp["required"].as_bool(),
            Some(sp.required),
            "{ctx}: required flag"
        );
        for k in ["type", "description"] {
            assert!(cp[k].is_string(), "{ctx}: missing/invalid {k}");
        }
        assert!(cp["nullable"].is_boolean(), "{ctx}: missing nullable");
        if sp.name_inferred {
            assert!(
                cp["note"].is_string(),
                "{ctx}: inferred property name must carry a note"
            );
        }
        if check_detail {
            assert_eq!(
                cp["nullable"].as_bool(),
                Some(sp.nullable),
                "{ctx}: nullable flag"
            );
            assert_eq!(str_list(cp.get("enum")), sp.enum_vals, "{ctx}: enum values");
            assert_eq!(
                str_list(cp.get("items").and_then(|i| i.get("enum"))),
                sp.items_enum,
                "{ctx}: items enum"
            );
        }
    }
}

#[test]
fn komo_catalog_matches_spec() {
    let Some(dir) = specs_dir() else { return };
    let cat = catalog("komo");
    assert_eq!(cat["catalog"], "komo");
    assert_eq!(
        cat["identify"],
        serde_json::json!({}),
        "komo identify must be empty"
    );
    let mut spec = BTreeMap::new();
    for f in KOMO_FILES {
        for (ev, v) in parse_komo(&read(&dir.join(f))) {
            assert!(
                spec.insert(ev.clone(), v).is_none(),
                "komo: event {ev} defined twice"
            );
        }
    }
    assert_eq!(
        spec.len(),
        10,
        "komo spec must define exactly 10 events, found {:?}",
        spec.keys()
    );
    let files: BTreeSet<String> = str_list(cat.get("spec_files"))
        .expect("spec_files")
        .into_iter()
        .collect();
    assert_eq!(files, KOMO_FILES.iter().map(|s| s.to_string()).collect());

    let events = &cat["events"];
    assert_eq!(
        keys(events, "komo.events"),
        spec.keys().cloned().collect(),
        "komo event names differ"
    );
    let common: SpecEvent = spec
        .values()
        .next()
        .unwrap()
        .0
        .iter()
        .filter(|(k, _)| KOMO_COMMON.contains(&k.as_str()))
        .map(|(k, p)| {
            (
                k.clone(),
                SpecProp {
                    required: p.required,
                    ..Default::default()
                },
            )
        })
        .collect();
    assert_eq!(
        common.len(),
        KOMO_COMMON.len(),
        "komo: common envelope rows missing in spec"
    );
    check_props("komo.common", &common, &cat["common"], false);
    for (ev, (rows, pseudo)) in &spec {
        for c in KOMO_COMMON {
            assert_eq!(
                rows.get(c).map(|p| p.required),
                common.get(c).map(|p| p.required),
                "komo {ev}: common row {c}"
            );
        }
        let own: SpecEvent = rows
            .iter()
            .filter(|(k, _)| !KOMO_COMMON.contains(&k.as_str()))
            .map(|(k, p)| {
                (
                    k.clone(),
                    SpecProp {
                        required: p.required,
                        ..Default::default()
                    },
                )
            })
            .collect();
        check_props(
            &format!("komo.{ev}"),
            &own,
            &events[ev]["properties"],
            false,
        );
        let expected_extra = match (
            pseudo.iter().any(|p| p == "User attributes"),
            pseudo.iter().any(|p| p == "Data capture fields"),
        ) {
            (true, true) => "user_attributes+data_capture",
            (true, false) => "user_attributes",
            (false, false) => "none",
            (false, true) => panic!("komo {ev}: data capture without user attributes"),
        };
        assert_eq!(
            events[ev]["extra_keys"], expected_extra,
            "komo {ev}: extra_keys"
        );
    }
    assert_eq!(
        events["CardAction"]["properties"]["action"]["enum"],
        serde_json::json!(["Competition", "ExternalLink", "ScrollToCard"])
    );
}

#[test]
fn acemate_catalog_matches_spec() {
    let Some(dir) = specs_dir() else { return };
    let mut spec = parse_acemate(&read(&dir.join("acemate-posthog-events.txt")));
    let cat = catalog("acemate");
    assert_eq!(cat["catalog"], "acemate");
    assert_eq!(
        cat["common"],
        serde_json::json!({}),
        "acemate common must be empty"
    );
    let identify = spec
        .remove("Identify")
        .expect("spec has no Identify section");
    assert_eq!(spec.len(), 71, "acemate spec must define exactly 71 events");
    let inferred: usize = spec
        .values()
        .flat_map(|e| e.values())
        .filter(|p| p.name_inferred)
        .count();
    assert_eq!(
        inferred, 4,
        "expected exactly 4 'number or number | |' rows with a lost name"
    );
    for n in ["email", "userType", "isPartOfAnyClassroom", "universityId"] {
        assert!(
            identify.get(n).is_some_and(|p| p.required),
            "Identify.{n} must be required in the spec"
        );
    }
    check_props("acemate.identify", &identify, &cat["identify"], true);
    let events = &cat["events"];
    assert_eq!(
        keys(events, "acemate.events"),
        spec.keys().cloned().collect(),
        "acemate event names differ"
    );
    for (ev, props) in &spec {
        check_props(
            &format!("acemate.{ev}"),
            props,
            &events[ev]["properties"],
            true,
        );
        assert_eq!(events[ev]["extra_keys"], "none", "acemate {ev}: extra_keys");
    }
}

#[test]
fn fixtures_cover_every_catalog_event() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (komo, ace) = (catalog("komo"), catalog("acemate"));
    let mut want: BTreeSet<String> = keys(&komo["events"], "komo")
        .into_iter()
        .map(|e| format!("komo:{e}"))
        .collect();
    want.extend(
        keys(&ace["events"], "acemate")
            .into_iter()
            .map(|e| format!("acemate:{e}")),
    );
    want.insert("acemate:$identify".into());
    let mut seen = BTreeSet::new();
    for line in read(&root.join("valid_events.jsonl")).lines() {
        let v: Value = serde_json::from_str(line).expect("valid_events.jsonl: bad JSON line");
        let src = if v.get("distinct_id").is_some() {
            "acemate"
        } else {
            "komo"
        };
        let ev = v["event"].as_str().expect("fixture without event");
        assert!(
            seen.insert(format!("{src}:{ev}")),
            "duplicate valid fixture {src}:{ev}"
        );
    }
    assert_eq!(
        seen, want,
        "valid_events.jsonl must contain exactly one line per catalog event + $identify"
    );
    let rules: BTreeSet<String> = read(&root.join("invalid_events.jsonl"))
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("invalid_events.jsonl: bad JSON line")["rule"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for r in [
        "missing_required",
        "wrong_type",
        "enum",
        "bad_uuid",
        "bad_email",
        "bad_date_time",
        "null_not_nullable",
        "coercible_ok",
    ] {
        assert!(
            rules.contains(r),
            "invalid_events.jsonl has no case for rule {r}"
        );
    }
}
