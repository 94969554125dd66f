//! Unit tests of compiling and running programs (the pipeline's use is tested end to end in
//! `tests/it/transforms.rs`).

use super::*;
use std::collections::BTreeMap;

fn spec<'a>(vars: &'a BTreeMap<String, String>, posthog: bool) -> Spec<'a> {
    Spec {
        target: "crm",
        posthog,
        vars,
        max_bytes: 1000,
    }
}

fn compiled(text: &str, posthog: bool) -> Transform {
    let vars = BTreeMap::from([("api_key".to_string(), "k-1".to_string())]);
    compile(text, None, &spec(&vars, posthog)).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str, posthog: bool) -> Vec<String> {
    let vars = BTreeMap::new();
    compile(text, None, &spec(&vars, posthog))
        .expect_err("must not compile")
        .diagnostics
}

fn run(t: &Transform, input: serde_json::Value) -> Outcome {
    let env = crate::envelope::sample();
    t.run(&serde_json::to_vec(&input).unwrap(), &env)
}

fn body(outcome: Outcome) -> (serde_json::Value, Request) {
    match outcome {
        Outcome::Send { body, request } => (serde_json::from_slice(&body).unwrap(), request),
        other => panic!("not sent: {other:?}"),
    }
}

#[test]
fn a_compile_error_is_reported_with_its_code_line_column_and_file() {
    let errs = errors(".a = 1\n.b = upcase(.x)", false);
    assert!(errs[0].starts_with("error[E103]"), "{}", errs[0]);
    assert!(errs[0].contains("┌─ :2:6"), "{}", errs[0]);
    assert!(
        errs[0].contains("upcase!(.x)"),
        "says what to do: {}",
        errs[0]
    );
    let vars = BTreeMap::new();
    let file = std::path::Path::new("transforms/crm.vrl");
    let err = compile(".b = upcase(.x)", Some(file), &spec(&vars, false)).unwrap_err();
    assert!(
        err.diagnostics[0].contains("┌─ transforms/crm.vrl:1:6"),
        "{}",
        err.diagnostics[0]
    );
}

#[test]
fn env_system_and_network_functions_do_not_exist() {
    for call in [
        r#"get_env_var!("HOME")"#,
        "get_hostname!()",
        r#"http_request!("http://x")"#,
        r#"dns_lookup!("x")"#,
    ] {
        let errs = errors(&format!(".x = {call}"), false);
        assert!(
            errs.iter()
                .any(|e| e.contains("call to undefined function")),
            "{call}: {errs:#?}"
        );
    }
    // Hashing stays (Meta's and Google's conversion APIs want SHA-256 of an email).
    let t = compiled(
        r#".h = sha2(downcase(strip_whitespace(string!(.email))), variant: "SHA-256")"#,
        false,
    );
    let (b, _) = body(run(
        &t,
        serde_json::json!({"email": " John_Smith@gmail.com "}),
    ));
    assert_eq!(
        b["h"].as_str().unwrap()[..8],
        *"62a14e44",
        "Meta's documented example hash"
    );
}

#[test]
fn metadata_rules_are_checked_when_compiling() {
    let errs = errors("%topic = \"x\"", false);
    assert!(errs[0].contains("E315"), "{errs:#?}");
    let errs = errors("%url = \"http://evil\"", false);
    assert!(errs[0].contains("assigns %url"), "{errs:#?}");
    let errs = errors("%headers.\"Webhook-Signature\" = \"x\"", false);
    assert!(
        errs[0].contains("the relay sets webhook-signature"),
        "{errs:#?}"
    );
    let errs = errors("%path = \"x\"", true);
    assert!(errs[0].contains("PostHog targets"), "{errs:#?}");
    let errs = errors(".k = %vars.api_kye", false);
    assert!(
        errs[0].contains("reads %vars.api_kye, which transform_vars does not set"),
        "{errs:#?}"
    );
}

#[test]
fn the_body_headers_and_path_come_from_the_program() {
    let t = compiled(
        r#"
        .event_type = del(.event)
        .key = %vars.api_key
        .from = %source + "/" + %topic + "/" + to_string(%offset)
        %headers."X-Partner" = %target
        %path = "v2/" + string!(.event_type)
        "#,
        false,
    );
    let (b, r) = body(run(&t, serde_json::json!({"event": "SignUp", "n": 1})));
    let env = crate::envelope::sample();
    assert_eq!(b["event_type"], "SignUp");
    assert_eq!(b["key"], "k-1");
    assert_eq!(
        b["from"],
        format!(
            "{}/{}/{}",
            env.source.as_str(),
            env.origin.topic,
            env.origin.offset
        )
    );
    assert!(b.get("event").is_none());
    assert_eq!(r.headers, vec![("x-partner".into(), "crm".into())]);
    assert_eq!(r.path.as_deref(), Some("v2/SignUp"));
}

#[test]
fn skip_and_abort_skip_the_event() {
    let t = compiled("if .n == 1 { %skip = true }", false);
    assert_eq!(run(&t, serde_json::json!({"n": 1})), Outcome::Skip);
    assert!(matches!(
        run(&t, serde_json::json!({"n": 2})),
        Outcome::Send { .. }
    ));
    let t = compiled("if .n == 1 { abort }", false);
    assert_eq!(run(&t, serde_json::json!({"n": 1})), Outcome::Skip);
}

#[test]
fn a_runtime_error_names_line_and_column_and_reason() {
    let t = compiled(".a = 1\n.x = parse_json!(.raw)", false);
    let Outcome::Fail(f) = run(&t, serde_json::json!({"raw": "{nope"})) else {
        panic!("must fail");
    };
    let text = f.to_string();
    assert!(
        text.starts_with("transform failed: line 2, column 6: "),
        "{text}"
    );
    assert!(text.contains("parse_json"), "{text}");
    assert!(!text.contains(" at ("), "byte offsets left in: {text}");
}

#[test]
fn a_program_whose_work_outgrows_its_input_is_stopped() {
    let t = compiled(
        "for_each(range!(0, 100000)) -> |_i, _v| { for_each(range!(0, 100000)) -> |_j, _w| { .x = 1 } }",
        false,
    );
    let Outcome::Fail(f) = run(&t, serde_json::json!({})) else {
        panic!("must fail");
    };
    assert!(matches!(f, TransformFailure::StepBudget(_)), "{f}");
}

#[test]
fn a_posthog_output_must_stay_a_posthog_event() {
    let input = serde_json::json!({
        "uuid": "0191e4a8-7b7c-7a3e-9a9b-3c2d1e0f4a5b", "event": "e", "distinct_id": "d",
        "properties": {"email": "a@b"}
    });
    let t = compiled("del(.uuid)\ndel(.properties.email)", true);
    let (b, _) = body(run(&t, input.clone()));
    assert_eq!(b["uuid"], input["uuid"], "uuid put back");
    assert!(b["properties"].get("email").is_none());
    for (program, reason) in [
        ("del(.event)", "needs event"),
        (".distinct_id = \"\"", "needs distinct_id"),
        (".uuid = \"nope\"", "uuid must be a UUID"),
        (". = [1]", "must be an event object"),
    ] {
        let Outcome::Fail(f) = run(&compiled(program, true), input.clone()) else {
            panic!("{program} must fail");
        };
        assert!(f.to_string().contains(reason), "{program}: {f}");
    }
}

#[test]
fn an_output_over_batch_max_bytes_fails() {
    let t = compiled(".copy = .big", false);
    assert!(matches!(
        run(&t, serde_json::json!({"big": "x".repeat(400)})),
        Outcome::Send { .. }
    ));
    assert!(matches!(
        run(&t, serde_json::json!({"big": "x".repeat(600)})),
        Outcome::Fail(TransformFailure::TooLarge { limit: 1000, .. })
    ));
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(run::line_col("ab\ncé\nx", 0), (1, 1));
    assert_eq!(run::line_col("ab\ncé\nx", 3), (2, 1));
    assert_eq!(run::line_col("ab\ncé\nx", 7), (3, 1));
}

#[test]
fn functions_whose_depth_follows_the_data_are_left_out() {
    for f in LEFT_OUT {
        let errs = errors(&format!(".x = {f}!(.y)"), false);
        assert!(
            errs.iter()
                .any(|e| e.contains("call to undefined function")),
            "{f}: {errs:#?}"
        );
    }
}

#[test]
fn a_program_nesting_deeper_than_the_limit_is_refused_before_vrl_compiles_it() {
    let deep = format!(
        ".a = {}1{}",
        "[".repeat(MAX_NESTING + 1),
        "]".repeat(MAX_NESTING + 1)
    );
    let errs = errors(&deep, false);
    assert!(errs[0].contains("nests more than 32 levels"), "{errs:#?}");
    assert!(errs[0].contains("line 1, column 38"), "{errs:#?}");
    let path = format!(".{} = 1", vec!["k"; MAX_NESTING + 1].join("."));
    assert!(errors(&path, false)[0].contains("nests more than"));
    // Brackets inside strings and comments do not count.
    let quoted = format!("# {}\n.a = \"{}\"", "[".repeat(40), "{".repeat(40));
    compiled(&quoted, false);
    let fine = format!(".a = {}1{}", "[".repeat(8), "]".repeat(8));
    compiled(&fine, false);
}
