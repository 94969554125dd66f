//! Config loading and validation tests.

use super::*;

mod all_at_once;
mod declarations;
mod each_once;
mod surprises;
mod tiers;

fn env() -> Vec<(String, String)> {
    [
        ("KAFKA_BROKERS", "127.0.0.1:9092"),
        ("POSTHOG_HOST", "https://eu.i.posthog.com"),
        ("POSTHOG_API_KEY", "phc_test"),
        ("CRM_WEBHOOK_URL", "https://crm.example.com/hooks"),
        (
            "CRM_SIGNING_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("BILLING_WEBHOOK_URL", "https://billing.example.com"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml")).unwrap()
}

#[test]
fn example_loads_with_env() {
    let c = load_str(&example(), env()).unwrap_or_else(|e| panic!("{e}"));
    // The reference config carries no test-broker tuning: scripts/demo sets it from outside.
    assert!(
        c.kafka.options.is_empty(),
        "kafka.options of config/example.toml: {:?}",
        c.kafka.options
    );
    assert_eq!(c.targets[0].api_key.as_deref(), Some("phc_test"));
    assert!(c.targets[1]
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("x-event")));
    assert_eq!(
        c.targets[1].guid().to_string(),
        "e772b5f1-47f4-4c43-ac01-8ef81990fa7d"
    );
    assert_eq!(c.routes.len(), 4);
}

#[test]
fn the_demo_gives_the_example_its_session_settings_from_the_environment() {
    let mut e = env();
    for (name, value) in [
        ("EVENT_RELAY__KAFKA__OPTIONS__SESSION_TIMEOUT_MS", "6000"),
        ("EVENT_RELAY__KAFKA__OPTIONS__HEARTBEAT_INTERVAL_MS", "500"),
    ] {
        assert!(
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo"))
                .unwrap()
                .contains(&format!("export {name}={value}")),
            "scripts/demo no longer exports {name}={value}"
        );
        e.push((name.into(), value.into()));
    }
    let c = load_str(&example(), e).unwrap_or_else(|e| panic!("{e}"));
    let option = |k: &str| c.kafka.options.get(k).map(String::as_str);
    assert_eq!(option("session.timeout.ms"), Some("6000"));
    assert_eq!(option("heartbeat.interval.ms"), Some("500"));
}

#[test]
fn environment_overrides_any_key() {
    let mut e = env();
    e.push(("EVENT_RELAY__KAFKA__GROUP_ID".into(), "other-group".into()));
    e.push((
        "EVENT_RELAY__PIPELINE__MAX_IN_FLIGHT_EVENTS".into(),
        "77".into(),
    ));
    e.push(("EVENT_RELAY__SERVER__LISTEN".into(), "0.0.0.0:9999".into()));
    let c = load_str(&example(), e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.kafka.group_id, "other-group");
    assert_eq!(c.pipeline.max_in_flight_events, 77);
    assert_eq!(c.server.listen, "0.0.0.0:9999");
}

#[test]
fn target_guid_defaults_to_uuidv5_of_name() {
    let c = load_str(&example(), env()).unwrap();
    let a = c.targets[0].guid();
    assert_eq!(
        a,
        uuid::Uuid::new_v5(&crate::envelope::RELAY_NAMESPACE, b"posthog")
    );
}

const BASE: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
[[sources]]
topic = "in"
format = "komo"
[results]
topic = "res"
[dead_letter]
topic = "dlq"
"#;

fn problems(extra: &str) -> Vec<String> {
    match load_str(&format!("{BASE}{extra}"), Vec::new()) {
        Ok(_) => vec![],
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

/// A duplicate name is reported even when the same entry has another mistake (one that
/// puts a stand-in in its place, as an unknown `kind` does), and each mistake once.
#[test]
fn a_duplicate_name_is_reported_beside_the_entrys_other_mistakes() {
    let p = problems(
        r#"
[[targets]]
name = "crm"
kind = "webhook"
url = "https://a.example.com/"
[[targets]]
name = "crm"
kind = "webhok"
url = "https://b.example.com/"
[[targets]]
name = "crm"
kind = "webhook"
url = "https://b.example.com/"
retry = { max_attempts = "x" }
[[routes]]
name = "r"
targets = ["crm"]
[[routes]]
name = "r"
targets = ["crm"]
events = 5
"#,
    );
    for (path, what) in [
        ("targets[1].kind", "unknown value \"webhok\""),
        ("targets[1].name", "duplicate target name \"crm\""),
        ("targets[2].retry.max_attempts", "must be a whole number"),
        ("targets[2].name", "duplicate target name \"crm\""),
        ("routes[1].events", "must be a list, not 5"),
        ("routes[1].name", "duplicate route name \"r\""),
    ] {
        let found = p
            .iter()
            .filter(|x| x.starts_with(&format!("{path}: ")) && x.contains(what))
            .count();
        assert_eq!(found, 1, "{path}: {what} in {p:#?}");
    }
    assert_eq!(p.len(), 6, "{p:#?}");
}

#[test]
fn reports_every_semantic_problem_with_its_path() {
    let p = problems(
        r#"
[[targets]]
name = "crm"
kind = "webhook"
url = "not a url"
[[targets]]
name = "crm"
kind = "posthog"
url = "https://eu.i.posthog.com"
[[targets]]
name = "hook"
kind = "webhook"
url = "https://{{event}}.example.com/x"
signing_secret = "plain"
[[routes]]
name = "a"
targets = ["crm"]
[[routes]]
name = "b"
targets = ["crm"]
[[routes]]
name = "c"
targets = ["nope"]
where = [{ field = "properties.x", matches = "(" }, { field = "bogus.path", exists = true }, { field = "event", equals = "a", in = ["b"] }]
"#,
    );
    let expect = [
        "targets[0].url: invalid URL",
        "targets[1].name: duplicate target name \"crm\"",
        "targets[1].api_key: required for kind = \"posthog\"",
        "targets[2].url: URL \"https://{{event}}.example.com/x\": templates may only be used in the path or query",
        "targets[2].signing_secret: must start with \"whsec_\"",
        "routes[2].targets[0]: unknown target \"nope\"",
        "routes[2].where[0].matches: invalid regex",
        "routes[2].where[1].field: unknown envelope field \"bogus.path\"",
        "routes[2].where[2]: needs exactly one operator",
    ];
    for e in expect {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
}

#[test]
fn structural_errors_name_their_path() {
    let p = problems("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
    assert!(
        p[0].starts_with("server") && p[0].contains("lisen"),
        "{p:?}"
    );
    let p =
        problems("[[targets]]\nname='a'\nkind='webhook'\nurl='http://x'\ntimeout='10 parsecs'\n");
    assert!(
        p[0].starts_with("targets[0].timeout") && p[0].contains("invalid duration"),
        "{p:?}"
    );
    let p = problems("[[targets]]\nname='a'\nkind='carrier-pigeon'\nurl='http://x'\n");
    assert!(p[0].starts_with("targets[0].kind"), "{p:?}");
    assert!(problems("").is_empty());
}

#[test]
fn secrets_never_appear_in_problems() {
    let p = problems(
        "[[targets]]\nname='a'\nkind='webhook'\nurl='http://x'\nsigning_secret='whsec_c2hvcnQ='\nheaders={Authorization='Bearer topsecret'}\n[[targets]]\nname='a'\nkind='posthog'\nurl='http://y'\napi_key='phc_supersecret'\n",
    );
    assert!(!p.is_empty());
    let all = p.join("\n");
    for secret in ["c2hvcnQ", "topsecret", "phc_supersecret"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

#[test]
fn options_the_relay_owns_are_rejected_with_their_key_paths() {
    let text = example().replace(
        "[kafka.options]",
        "[kafka.options]\n\"enable.auto.commit\" = \"true\"\n\"group.id\" = \"x\"",
    );
    let err = load_str(&text, env()).unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(
        paths.contains(&"kafka.options.\"enable.auto.commit\""),
        "{err}"
    );
    assert!(paths.contains(&"kafka.options.\"group.id\""), "{err}");
    assert!(err.to_string().contains("use kafka.group_id"), "{err}");
    // Options the relay merely defaults stay overridable.
    let text = example().replace(
        "[kafka.options]",
        "[kafka.options]\n\"queued.max.messages.kbytes\" = \"65536\"",
    );
    load_str(&text, env()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn where_fields_must_resolve_to_values() {
    for ok in [
        "event",
        "site.id",
        "user.email",
        "user.traits.tenant",
        "user.traits.a.b",
        "properties.score",
        "properties.a.b",
        "origin.partition",
        "validation.status",
    ] {
        assert!(validate::check_field_path(ok).is_ok(), "{ok}");
    }
    for bad in [
        "site",
        "user",
        "user.traits",
        "properties",
        "origin",
        "validation",
        "validation.problems",
        "site.id.x",
        "properties.",
        "nope",
    ] {
        assert!(validate::check_field_path(bad).is_err(), "{bad}");
    }
}

#[test]
fn batched_webhooks_reject_per_event_templates_and_host_is_never_templated() {
    let text = r#"
        [kafka]
        brokers = "b:9092"
        group_id = "g"
        [[sources]]
        topic = "in"
        format = "auto"
        [results]
        topic = "r"
        [dead_letter]
        topic = "d"
        [[targets]]
        name = "a"
        kind = "webhook"
        url = "https://h.example.com/{{event}}"
        batch_max_events = 10
        headers = { X-Event = "{{event}}" }
        [[targets]]
        name = "b"
        kind = "webhook"
        url = "https://h.example.com/x"
        method = "put"
        headers = { Host = "{{site.id}}" }
    "#;
    let err = load_str(text, Vec::new()).unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"targets[0].url"), "{err}");
    assert!(paths.contains(&"targets[0].headers.X-Event"), "{err}");
    assert!(paths.contains(&"targets[1].headers.Host"), "{err}");
    assert!(!paths.iter().any(|p| p.contains("method")), "{err}");
}

#[test]
fn structural_and_semantic_problems_are_reported_together() {
    let text = example()
        .replace("[kafka]", "bogus_top = 1\n[kafka]\ntypo_key = \"x\"")
        .replace("max_backoff = \"60s\"", "max_backoff = \"forever\"");
    let text = format!("{text}\n[[routes]]\nname = \"extra\"\ntargets = [\"nope\"]\n");
    let err = load_str(&text, env()).unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"bogus_top"), "{err}");
    assert!(paths.contains(&"kafka.typo_key"), "{err}");
    assert!(
        paths.iter().any(|p| p.ends_with("retry.max_backoff")),
        "{err}"
    );
    assert!(
        err.to_string().contains("unknown target \"nope\""),
        "semantic checks still ran: {err}"
    );
}

#[test]
fn unset_variables_are_reported_with_the_other_problems() {
    let mut e = env();
    e.retain(|(k, _)| k != "POSTHOG_API_KEY");
    let text = example().replace("[kafka]", "[kafka]\ntypo_key = \"x\"");
    let err = load_str(&text, e).unwrap_err();
    let s = err.to_string();
    assert!(s.contains("POSTHOG_API_KEY is not set"), "{s}");
    assert!(s.contains("kafka.typo_key"), "{s}");
}

#[test]
fn revoke_timeout_must_stay_below_the_poll_interval() {
    let ok = problems("[pipeline]\nrevoke_timeout = \"10s\"\n");
    assert!(ok.is_empty(), "{ok:#?}");
    let p = problems(
        "[pipeline]\nrevoke_timeout = \"10s\"\n[kafka.options]\n\"max.poll.interval.ms\" = \"15000\"\n",
    );
    assert_eq!(
        p,
        ["pipeline.revoke_timeout: must be less than half of kafka.options.\"max.poll.interval.ms\" (15000 ms): the consumer is not polled while a revoke waits"]
    );
}

#[test]
fn worker_threads_default_to_one_per_core_and_zero_is_refused() {
    let c = load_str(&example(), env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pipeline.worker_threads, None);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.pipeline.effective_worker_threads(), cores);
    let mut e = env();
    e.push(("EVENT_RELAY__PIPELINE__WORKER_THREADS".into(), "3".into()));
    let c = load_str(&example(), e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pipeline.effective_worker_threads(), 3);
    assert_eq!(
        problems("[pipeline]\nworker_threads = 0\n"),
        ["pipeline.worker_threads: must be at least 1"]
    );
}

#[test]
fn http2_is_off_by_default_and_a_wrong_type_names_its_key() {
    let target = "[[targets]]\nname='a'\nkind='webhook'\nurl='http://x'\n";
    let load = |extra: &str| load_str(&format!("{BASE}{target}{extra}"), Vec::new());
    let c = load("").unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.targets[0].http2);
    assert!(load("http2 = true\n").unwrap().targets[0].http2);
    // Environment overrides arrive as text.
    assert!(load("http2 = \"true\"\n").unwrap().targets[0].http2);
    for wrong in ["http2 = 2\n", "http2 = \"yes\"\n"] {
        let p = problems(&format!("{target}{wrong}"));
        assert!(
            p.len() == 1 && p[0].starts_with("targets[0].http2"),
            "{wrong}: {p:?}"
        );
    }
}
