//! Every problem at once, each once, each with its key path, in plain words (issue 25): one
//! test per hole found in `check`'s promise.

use super::BASE;
use crate::config::{load_str, name_variables, Problem};

/// Every problem `load_str` finds in `BASE` plus `extra`, with `env`, as `check` prints them.
fn problems_with(extra: &str, env: &[(&str, &str)]) -> Vec<String> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    match load_str(&format!("{BASE}{extra}"), env) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn problems(extra: &str) -> Vec<String> {
    problems_with(extra, &[])
}

const TARGET: &str =
    "[[targets]]\nname = \"t\"\nkind = \"webhook\"\nurl = \"https://t.example.com/\"\n";

/// (a) The target stands in for itself with a made-up kind, so its `url` is still checked;
/// what only a posthog target may have is not reported against the made-up kind.
#[test]
fn a_bad_url_beside_an_unknown_kind_is_reported_with_it() {
    let p = problems(
        "[[targets]]\nname = \"t\"\nkind = \"webhok\"\nurl = \"htp//x\"\n\
         [[targets]]\nname = \"p\"\nkind = \"posthg\"\nurl = \"https://eu.i.posthog.com\"\n\
         api_key = \"phc_x\"\nbatch_max_events = 100\nheaders = { \"X-A\" = \"{{event}}\" }\n\
         [[routes]]\nname = \"r\"\ntargets = [\"t\", \"p\"]\n",
    );
    assert_eq!(
        p,
        [
            "targets[0].kind: unknown value \"webhok\" (did you mean \"webhook\"?)",
            "targets[1].kind: unknown value \"posthg\" (did you mean \"posthog\"?)",
            "targets[0].url: invalid URL \"htp//x\": relative URL without a base",
        ]
    );
}

/// (b) An unknown operator key leaves the condition with no operator: one mistake, one
/// problem; likewise a misspelt required key and the key it misspells.
#[test]
fn an_unknown_key_is_one_problem_not_also_what_it_leaves_missing() {
    let p = problems(&format!(
        "{TARGET}[[routes]]\nname = \"r\"\ntargets = [\"t\"]\nwhere = [{{ field = \"event\", like = \"x\" }}]\n\
         [[routes]]\nname = \"s\"\ntaget = [\"t\"]\n"
    ));
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with("routes[0].where[0].like: unknown key (known keys: field, equals,"),
        "{p:#?}"
    );
    assert_eq!(
        p[1],
        "routes[1].taget: unknown key (did you mean \"targets\"?)"
    );
    // A condition with an unknown key and two operators still says both.
    let two = problems(&format!(
        "{TARGET}[[routes]]\nname = \"r\"\ntargets = [\"t\"]\nwhere = [{{ field = \"event\", equals = \"a\", in = [\"b\"] }}]\n"
    ));
    assert!(two[0].ends_with("found 2"), "{two:#?}");
}

/// (c) An override that names no place changes nothing, so it is reported once, by itself.
#[test]
fn an_override_that_names_no_place_is_one_problem() {
    let no_targets = problems_with("", &[("EVENT_RELAY__TARGETS__0__NAME", "x")]);
    assert_eq!(
        no_targets,
        ["EVENT_RELAY__TARGETS__0__NAME: targets has 0 elements, no element 0"]
    );
    let without_index = problems_with(TARGET, &[("EVENT_RELAY__TARGETS__NAME", "x")]);
    assert_eq!(
        without_index,
        ["EVENT_RELAY__TARGETS__NAME: targets is a list: name an element by its index, e.g. EVENT_RELAY__TARGETS__0__NAME"]
    );
    // Where the file has no list, the override makes a table: serde's verdict, named by it.
    let made = problems_with("", &[("EVENT_RELAY__TARGETS__NAME", "x")]);
    assert_eq!(
        made,
        ["EVENT_RELAY__TARGETS__NAME → targets: must be a list, not a table"]
    );
}

/// (d) A missing required key or section is named by its own path.
#[test]
fn a_missing_key_is_named_by_its_path() {
    let text = "[kafka]\ngroup_id = \"g\"\n[[sources]]\ntopic = \"in\"\nformat = \"komo\"\n\
                [dead_letter]\ntopic = \"dlq\"\n[[targets]]\nname = \"t\"\n";
    let p: Vec<String> = match load_str(text, []) {
        Ok(_) => panic!("loaded without results"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(
        p,
        [
            "kafka.brokers: missing (required key)",
            "targets[0].kind: missing (required key)",
            "targets[0].url: missing (required key)",
            "results: missing (required section)",
        ]
    );
}

/// (e) Types in the words of the file, not of Rust.
#[test]
fn wrong_types_are_named_in_plain_words() {
    let p = problems(
        "[pipeline]\nmax_in_flight_events = [1]\n[log]\nformat = { a = 1 }\n\
         [[targets]]\nname = \"t\"\nkind = \"webhook\"\nurl = \"https://t.example.com/\"\n\
         rate_limit_per_sec = \"fast\"\nbatch_max_events = -1\nheaders = [\"a\"]\nhttp2 = \"yes\"\n\
         [[routes]]\nname = \"r\"\ntargets = \"t\"\nwhere = [{ field = \"x\", gt = \"a\" }]\n",
    );
    let mut expect = vec![
        "log.format: must be text, not a table",
        "pipeline.max_in_flight_events: must be a whole number, not a list",
        "routes[0].targets: must be a list, not text \"t\"",
        "routes[0].where[0].gt: must be a number, not text \"a\"",
        "targets[0].batch_max_events: must be a whole number, not -1",
        "targets[0].headers: must be a table, not a list",
        "targets[0].http2: must be true or false, not text \"yes\"",
        "targets[0].rate_limit_per_sec: must be a number, not text \"fast\"",
    ];
    let mut p = p;
    p.sort();
    expect.sort();
    assert_eq!(p, expect);
}

/// (f) A mistake in an override names the variable, not only a key path the file lacks.
#[test]
fn a_mistake_in_an_override_names_the_variable() {
    let p = problems_with(
        TARGET,
        &[
            ("EVENT_RELAY__KAFKA__BROKER", "b:9092"),
            ("EVENT_RELAY__PIPELINE__MAX_IN_FLIGHT_EVENTS", "lots"),
            ("EVENT_RELAY__TARGETS__0__TIMEOUT", "soon"),
        ],
    );
    assert_eq!(
        p,
        [
            "EVENT_RELAY__KAFKA__BROKER → kafka.broker: unknown key (did you mean \"brokers\"?)",
            "EVENT_RELAY__PIPELINE__MAX_IN_FLIGHT_EVENTS → pipeline.max_in_flight_events: must be a whole number, not text \"lots\"",
            "EVENT_RELAY__TARGETS__0__TIMEOUT → targets[0].timeout: invalid duration \"soon\": \"soon\" is not a number",
        ]
    );
    // Problems found after loading (librdkafka's verdict on an option) too.
    let mut later = vec![
        Problem::new(
            "kafka.options.\"sesion.timeout.ms\"",
            "No such configuration property",
        ),
        Problem::new("kafka.brokers", "not from the environment"),
    ];
    let env = [(
        "EVENT_RELAY__KAFKA__OPTIONS__SESION_TIMEOUT_MS".to_string(),
        "5".to_string(),
    )];
    name_variables(&mut later, env);
    assert_eq!(
        later[0].to_string(),
        "EVENT_RELAY__KAFKA__OPTIONS__SESION_TIMEOUT_MS → kafka.options.\"sesion.timeout.ms\": No such configuration property"
    );
    assert_eq!(later[1].variable, None);
}

/// (g) An unquoted dotted key under `[kafka.options]` makes a table: the message says to
/// quote it (and never shows the value, which may be a secret).
#[test]
fn an_unquoted_dotted_option_says_to_quote_it() {
    let p = problems(
        "[kafka.options]\nsasl.mechanism = \"PLAIN\"\n\"security.protocol\" = \"SASL_SSL\"\n",
    );
    assert_eq!(
        p,
        ["kafka.options.sasl: must be text, not a table: in TOML an unquoted dotted key makes a table; quote it: \"sasl.mechanism\" = ..."]
    );
}

/// (h) A bad delay in `[retry_tiers]` is reported, and what a target asks of the delays is
/// not judged against what is left of them.
#[test]
fn a_bad_tier_delay_brings_no_follow_on() {
    let p = problems(
        "[retry_tiers]\ndelays = [\"1x\", \"5m\"]\n[[targets]]\nname = \"t\"\nkind = \"webhook\"\n\
         url = \"https://t.example.com/\"\nretry = { tiers = [\"1x\"] }\n",
    );
    assert_eq!(
        p,
        [
            "retry_tiers.delays[0]: invalid duration \"1x\": unknown unit \"x\" (use ms, s, m, h, d)",
            // The target's own list has the same bad delay: its own mistake, and only that.
            "targets[0].retry.tiers[0]: invalid duration \"1x\": unknown unit \"x\" (use ms, s, m, h, d)",
        ]
    );
    let p = problems(
        "[retry_tiers]\ndelays = [\"1x\"]\n[[targets]]\nname = \"t\"\nkind = \"webhook\"\n\
         url = \"https://t.example.com/\"\nretry = { tiers = [\"5m\"], max_elapsed = \"1m\", max_attempts = 1 }\n",
    );
    assert_eq!(
        p,
        ["retry_tiers.delays[0]: invalid duration \"1x\": unknown unit \"x\" (use ms, s, m, h, d)"]
    );
}
