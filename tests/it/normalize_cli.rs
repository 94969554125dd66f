//! The real binary: `event-relay normalize` (stdout one envelope per accepted event, stderr
//! `line N: <reason>` per rejected line, exit 0/1) and `event-relay check` (exit 0/2).

use crate::fixtures::{base_config, route, run, source, target, ConfigFile};
use event_relay::config::{Config, SourceFormat, ValidationMode};
use serde_json::{json, Value};
use std::process::Output;

fn fixture_lines() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/valid_events.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn first(source: &str) -> String {
    fixture_lines()
        .into_iter()
        .find(|l| l.contains("\"distinct_id\"") == (source == "acemate"))
        .unwrap()
}

fn envelopes(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?}: {e}")))
        .collect()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn mixed_input_accepts_good_lines_and_reports_bad_ones_by_line_number() {
    let komo = first("komo");
    let acemate = first("acemate");
    let mut bad_score: Value = serde_json::from_str(&komo).unwrap();
    bad_score["event"] = json!("CardViewed");
    bad_score["card_id"] = json!("dd0b77cd-35ca-404e-8b23-1d86a7471f78");
    bad_score["score"] = json!("abc");
    let acemate_v: Value = serde_json::from_str(&acemate).unwrap();
    let batch = json!({"api_key": "phc", "batch": [
        acemate_v, {"event": "", "distinct_id": "u2"}, {"event": "$pageview", "distinct_id": "u3"}
    ]});
    let mut prize: Value = serde_json::from_str(&komo).unwrap();
    prize["event"] = json!("PrizeAwarded");
    prize["prize"] = json!("car");
    let ingestion = json!({
        "uuid": "0190a4b2-7c1e-7d2a-9a1b-1c2d3e4f5a6b", "distinct_id": "u1", "ip": "127.0.0.1",
        "data": json!({"event": "$pageview", "distinct_id": "u1"}).to_string(),
        "now": "2024-05-01T12:00:00Z", "sent_at": "2024-05-01T12:00:00Z", "token": "phc",
    });
    let mut bad_ts = acemate_v.clone();
    bad_ts["timestamp"] = json!("yesterday");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = json!({"event": "CardViewed", "site_id": "x", "pad": "x".repeat(1_100_000)});

    // (line content, Some(reason) when the whole line is rejected)
    let lines: Vec<(Vec<u8>, Option<&str>)> = vec![
        (komo.clone().into_bytes(), None),                            // 1
        (b"{not json".to_vec(), Some("not_json")),                    // 2
        (acemate.clone().into_bytes(), None),                         // 3
        (b"   ".to_vec(), None),                                      // 4: blank, skipped
        (bad_score.to_string().into_bytes(), Some("invalid")),        // 5
        (batch.to_string().into_bytes(), None),                       // 6: one bad event
        (b"[1,2]".to_vec(), Some("not_object")),                      // 7
        (deep.into_bytes(), Some("too_deep")),                        // 8
        (b"{\"event\":\"\xff\xfe\"}".to_vec(), Some("invalid_utf8")), // 9
        (br#"{"distinct_id":"u"}"#.to_vec(), Some("missing_event")),  // 10
        (bad_ts.to_string().into_bytes(), Some("invalid_timestamp")), // 11
        (
            br#"{"api_key":"k","batch":"x"}"#.to_vec(),
            Some("bad_shape"),
        ), // 12
        (prize.to_string().into_bytes(), None),                       // 13: unknown, forwarded
        (ingestion.to_string().into_bytes(), None),                   // 14
        (huge.to_string().into_bytes(), Some("too_large")),           // 15
    ];
    let stdin = lines
        .iter()
        .flat_map(|(l, _)| l.iter().copied().chain([b'\n']))
        .collect();
    let out = run(&["normalize", "--source", "auto"], stdin);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let envs = envelopes(&out);
    let got: Vec<(i64, String, String)> = envs
        .iter()
        .map(|e| {
            (
                e["origin"]["offset"].as_i64().unwrap() + 1,
                e["event"].as_str().unwrap().to_string(),
                e["validation"]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let komo_event = serde_json::from_str::<Value>(&komo).unwrap()["event"]
        .as_str()
        .unwrap()
        .to_string();
    let acemate_event = acemate_v["event"].as_str().unwrap().to_string();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        vec![
            (1, komo_event, s("valid")),
            (3, acemate_event.clone(), s("valid")),
            (6, acemate_event, s("valid")),
            (6, s("$pageview"), s("unknown_event")),
            (13, s("PrizeAwarded"), s("unknown_event")),
            (14, s("$pageview"), s("unknown_event")),
        ],
        "stdout: one envelope per accepted event, in order"
    );
    assert_eq!(envs[0]["source"], "komo");
    assert_eq!(envs[1]["source"], "acemate");
    assert_eq!(envs[5]["id"], "0190a4b2-7c1e-7d2a-9a1b-1c2d3e4f5a6b");

    let err = stderr_lines(&out);
    let mut expected: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, (_, r))| r.map(|r| (i + 1, r)))
        .collect();
    expected.insert(2, (6, "missing_event")); // the batch's bad event, after line 5
    assert_eq!(err.len(), expected.len(), "stderr: {err:#?}");
    for (line, (n, reason)) in err.iter().zip(&expected) {
        assert!(
            line.starts_with(&format!("line {n}: ")),
            "expected line {n} ({reason}), got {line:?}"
        );
        assert!(
            line.ends_with(&format!("({reason})")),
            "expected reason {reason} on line {n}, got {line:?}"
        );
    }
    let batch_line = err.iter().find(|l| l.starts_with("line 6: ")).unwrap();
    assert!(batch_line.contains("batch event 1"), "{batch_line}");
    let score_line = err.iter().find(|l| l.starts_with("line 5: ")).unwrap();
    assert!(
        score_line.contains("properties.score"),
        "the reason names the property: {score_line}"
    );
}

#[test]
fn all_good_input_exits_zero() {
    let lines = fixture_lines();
    assert_eq!(lines.len(), 82);
    let out = run(&["normalize"], (lines.join("\n") + "\n").into_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    let envs = envelopes(&out);
    assert_eq!(envs.len(), 82);
    for (i, (e, raw)) in envs.iter().zip(&lines).enumerate() {
        let raw: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(e["event"], raw["event"]);
        assert_eq!(e["origin"]["offset"], i as i64);
        assert_eq!(e["validation"]["status"], "valid");
    }
}

#[test]
fn a_forced_source_rejects_the_other_shape_as_wrong_shape() {
    // A payload of the other source's shape is said to be one (issue: it used to be forwarded
    // as an `unknown_event` missing the fields of the configured shape).
    let acemate = first("acemate");
    let komo = first("komo");
    for (source, line, names) in [
        (
            "komo",
            &acemate,
            "an acemate (PostHog-style) event (keys distinct_id",
        ),
        ("acemate", &komo, "a Komo event (keys site_id"),
    ] {
        let out = run(
            &["normalize", "--source", source],
            format!("{line}\n").into_bytes(),
        );
        assert_eq!(out.status.code(), Some(1), "{source}: {out:?}");
        assert!(envelopes(&out).is_empty(), "{out:?}");
        let err = stderr_lines(&out);
        assert_eq!(err.len(), 1, "{err:#?}");
        assert!(err[0].starts_with("line 1: "), "{err:#?}");
        assert!(err[0].ends_with("(wrong_shape)"), "{err:#?}");
        assert!(err[0].contains(names), "{err:#?}");
        assert!(
            err[0].contains(&format!("the source's format is {source}")),
            "{err:#?}"
        );
    }

    // The right source accepts each.
    for (source, line) in [("acemate", &acemate), ("komo", &komo)] {
        let out = run(
            &["normalize", "--source", source],
            format!("{line}\n").into_bytes(),
        );
        assert_eq!(out.status.code(), Some(0), "{source}: {out:?}");
        assert_eq!(envelopes(&out)[0]["source"], source);
    }
}

/// A config file with the source `komo-in`, the webhook `hook` and `routes` (given as in TOML);
/// `edit` changes the rest. The broker is never reached.
fn config(routes: &[Value], edit: impl FnOnce(&mut Config)) -> ConfigFile {
    let mut cfg = base_config("127.0.0.1:9092", "results", "dlq");
    cfg.sources.push(source("komo-in", SourceFormat::Komo));
    cfg.targets.push(target(json!({
        "name": "hook",
        "kind": "webhook",
        "url": "http://127.0.0.1:9/hook",
    })));
    cfg.routes = routes.iter().cloned().map(route).collect();
    edit(&mut cfg);
    ConfigFile::write(&cfg)
}

#[test]
fn normalize_uses_the_config_source_policy() {
    let cfg = config(&[json!({ "name": "all", "targets": ["hook"] })], |cfg| {
        cfg.sources[0].validation = ValidationMode::Lenient;
        cfg.sources[0].site_name = Some("Configured".to_string());
    });
    let komo = first("komo");
    let mut bad: Value = serde_json::from_str(&komo).unwrap();
    bad["event"] = json!("CardViewed");
    bad["card_id"] = json!("dd0b77cd-35ca-404e-8b23-1d86a7471f78");
    bad["score"] = json!("abc");
    let out = run(
        &[
            "normalize",
            "--source",
            "komo",
            "--config",
            cfg.path.to_str().unwrap(),
        ],
        format!("{bad}\n").into_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "lenient accepts: {out:?}");
    let envs = envelopes(&out);
    assert_eq!(envs[0]["validation"]["status"], "invalid");
    assert!(envs[0]["validation"]["problems"][0]
        .as_str()
        .unwrap()
        .contains("properties.score"));
    assert_eq!(envs[0]["origin"]["topic"], "komo-in");
}

#[test]
fn check_reports_problems_with_key_paths_and_exits_2() {
    let bad = config(
        &[
            json!({ "name": "r", "targets": ["crm"] }),
            json!({ "name": "s", "targets": ["hook", "nope"] }),
        ],
        |_| {},
    );
    let out = run(&["check", "--config", bad.path.to_str().unwrap()], vec![]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.contains(&"routes[0].targets[0]: unknown target \"crm\""),
        "{stdout}"
    );
    assert!(
        lines.contains(&"routes[1].targets[1]: unknown target \"nope\""),
        "{stdout}"
    );

    let good = config(&[json!({ "name": "r", "targets": ["hook"] })], |_| {});
    let out = run(&["check", "--config", good.path.to_str().unwrap()], vec![]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

/// `--topic` names a `[[sources]]` entry of the config: an unknown one, or one without a
/// config, is an error (exit 2) instead of silently normalizing with other settings.
#[test]
fn an_unknown_topic_or_a_topic_without_a_config_is_exit_2() {
    let cfg = config(&[json!({ "name": "all", "targets": ["hook"] })], |_| {});
    let line = format!("{}\n", first("komo")).into_bytes();
    let path = cfg.path.to_str().unwrap();
    let out = run(
        &["normalize", "--config", path, "--topic", "nope.events"],
        line.clone(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no [[sources]] entry for topic \"nope.events\"") && err.contains("komo-in"),
        "{err}"
    );
    let out = run(&["normalize", "--topic", "komo-in"], line);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --config"));
}
