//! The transform tools of the binary, no broker needed: `check` compiles every program and
//! reports each error once at its key path with VRL's diagnostic; `test` runs the declared
//! tests (exit 0 / 1 / 2, a JSON diff on failure); `transform` prints one line per event;
//! `route` shows the transformed body and the headers the program set; the shipped examples
//! pass their own declared tests.

use crate::fixtures::*;
use event_relay::config::{Config, SourceFormat, TargetConfig, TargetTest};
use serde_json::{json, Value};

/// A CardViewed Komo message whose card is named `card_name` (`PROGRAM` branches on it).
fn message(card_name: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let mut v: Value = serde_json::from_slice(&komo_event(&id, "CardViewed")).unwrap();
    v["card_name"] = card_name.into();
    v.to_string()
}

/// A config with one Komo source and `targets` (no broker is reached by these commands).
fn config(targets: Vec<TargetConfig>) -> Config {
    let mut cfg = base_config("127.0.0.1:1", "relay.results", "relay.dlq");
    cfg.sources.push(source("komo.events", SourceFormat::Komo));
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    cfg.routes.push(route_all(&names));
    cfg.targets = targets;
    cfg
}

fn crm(program: &str) -> TargetConfig {
    let mut t = webhook("crm", "https://hooks.example.com/in");
    t.transform = Some(program.to_string());
    t
}

fn test(name: &str, input: &str) -> TargetTest {
    TargetTest {
        name: name.into(),
        input: input.into(),
        topic: None,
        expect: None,
        expect_skipped: false,
        expect_error: None,
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

const PROGRAM: &str = r#"
if .properties.card_name == "skip me" { abort }
if .properties.card_name == "broken" { .x = parse_json!(string!(.properties.card_name)) }
%headers."X-Api" = "v2"
%path = "track"
. = { "event_type": .event, "user_id": .distinct_id, "score": .properties.score }
"#;

#[test]
fn check_reports_each_program_error_once_at_its_key_path() {
    let mut file_target = webhook("from-file", "https://hooks.example.com/b");
    file_target.transform_file = Some("no-such.vrl".into());
    let mut both = crm(".a = 1");
    both.name = "both".into();
    both.transform_file = Some("x.vrl".into());
    let cfg = config(vec![
        crm(".a = 1\n.b = upcase(.x)"),
        file_target,
        crm_named("net", r#".ip = http_request!("http://x")"#),
        crm_named("meta", r#"%url = "http://elsewhere""#),
        both,
    ]);
    let file = ConfigFile::write(&cfg);
    let out = run(&["check", "--config", file.path.to_str().unwrap()], vec![]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    let count = |needle: &str| stdout.matches(needle).count();
    assert_eq!(count("targets[0].transform: error[E103]"), 1, "{stdout}");
    assert_eq!(count("┌─ :2:6"), 1, "line and column: {stdout}");
    assert_eq!(
        count("targets[1].transform_file: cannot read "),
        1,
        "{stdout}"
    );
    assert_eq!(
        count("targets[2].transform: error[E105]: call to undefined function"),
        1,
        "{stdout}"
    );
    assert_eq!(count("targets[3].transform: assigns %url"), 1, "{stdout}");
    assert_eq!(
        count("targets[4].transform_file: give the program either inline"),
        1,
        "{stdout}"
    );
}

fn crm_named(name: &str, program: &str) -> TargetConfig {
    let mut t = crm(program);
    t.name = name.into();
    t
}

/// The tests declared with `PROGRAM`: a body, a skip, an error, and (when `failing`) one whose
/// expectation is wrong.
fn declared(failing: bool) -> TargetConfig {
    let mut t = crm(PROGRAM);
    let mut body = test("a card view becomes a track call", &message("quiz"));
    body.expect = Some(
        json!({"event_type": "CardViewed", "user_id": "0fdbb943-511c-4220-9266-31465374f43b", "score": 1})
            .to_string(),
    );
    let mut skipped = test("a skipped card is not sent", &message("skip me"));
    skipped.expect_skipped = true;
    let mut error = test("a broken card fails", &message("broken"));
    error.expect_error = Some("transform failed: line 3".into());
    t.tests = vec![body, skipped, error];
    if failing {
        let mut wrong = test("wrong name", &message("quiz"));
        wrong.expect = Some(json!({"event_type": "card_viewed", "user_id": "0fdbb943-511c-4220-9266-31465374f43b", "score": 1}).to_string());
        t.tests.push(wrong);
    }
    t
}

#[test]
fn test_runs_the_declared_tests_and_shows_a_diff_for_a_failure() {
    let passing = ConfigFile::write(&config(vec![declared(false)]));
    let path = passing.path.to_str().unwrap();
    let out = run(&["test", "--config", path], vec![]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.matches("... passed").count(), 3, "{stdout}");
    let out = run(&["check", "--config", path], vec![]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("3 tests passed"));

    let failing = ConfigFile::write(&config(vec![declared(true)]));
    let path = failing.path.to_str().unwrap();
    let out = run(&["test", "--config", path], vec![]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("test crm: wrong name ... FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("~ $.event_type: expected \"card_viewed\", got \"CardViewed\""),
        "a readable diff: {stdout}"
    );
    assert_eq!(
        run(&["check", "--config", path], vec![]).status.code(),
        Some(1)
    );

    let mut invalid = config(vec![declared(false)]);
    invalid.targets[0].tests[0].expect = Some("{not json".into());
    let invalid = ConfigFile::write(&invalid);
    let out = run(
        &["test", "--config", invalid.path.to_str().unwrap()],
        vec![],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("targets[0].tests[0].expect: not JSON"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn transform_prints_one_line_per_event() {
    let file = ConfigFile::write(&config(vec![crm(PROGRAM)]));
    let path = file.path.to_str().unwrap();
    let input = format!(
        "{}\n{}\n{}\nnot json\n",
        message("quiz"),
        message("skip me"),
        message("broken")
    );
    let out = run(
        &["transform", "--config", path, "--target", "crm"],
        input.into_bytes(),
    );
    assert_eq!(out.status.code(), Some(1), "an error line: exit 1");
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["body"]["event_type"], "CardViewed");
    assert_eq!(lines[0]["headers"]["x-api"], "v2");
    assert_eq!(lines[0]["path"], "track");
    assert_eq!(lines[1]["skipped"], true);
    assert!(lines[2]["error"]
        .as_str()
        .unwrap()
        .starts_with("transform failed: line 3"));
    assert_eq!(lines[3]["line"], 4);
    assert!(lines[3]["error"]
        .as_str()
        .unwrap()
        .starts_with("not relayed: "));

    let out = run(&["transform", "--config", path, "--target", "nope"], vec![]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no target named \"nope\""));
}

#[test]
fn route_shows_the_transformed_body_and_the_headers_it_set() {
    let mut signed = crm(PROGRAM);
    signed.signing_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
    let file = ConfigFile::write(&config(vec![signed]));
    let input = format!("{}\n{}\n", message("quiz"), message("skip me"));
    let out = run(
        &["route", "--config", file.path.to_str().unwrap()],
        input.into_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sent = &lines[0]["targets"][0];
    assert_eq!(sent["url"], "https://hooks.example.com/in/track");
    assert_eq!(sent["body"]["event_type"], "CardViewed");
    assert_eq!(sent["transform_headers"], json!({"x-api": "v2"}));
    assert_eq!(sent["headers"]["webhook-signature"], "<redacted>");
    assert_eq!(lines[1]["targets"][0]["skipped"], true);
}

#[test]
fn the_shipped_examples_pass_their_declared_tests() {
    let partners = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/transforms/partners.toml"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(["test", "--config", partners])
        .env("AMPLITUDE_API_KEY", "amp-test-key")
        .env("SEGMENT_WRITE_KEY", "seg-test-key")
        .output()
        .expect("event-relay runs");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.matches("... passed").count() >= 6, "{stdout}");
    assert!(!stdout.contains("seg-test-key") && !stdout.contains("amp-test-key"));
}
