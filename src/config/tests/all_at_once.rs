//! `check` reports every problem in one run, each once (issue 13: an unknown variant in one
//! list element hid the rest; an unset `${VAR}` was reported again as the value it left).

use super::{env, example};
use crate::config::{load_str, Config};

#[test]
fn every_kind_of_mistake_is_reported_in_one_run_each_once() {
    let text = r#"
bogus_top = 1
[kafka]
brokers = "127.0.0.1:9092"
typo_key = "x"
[[sources]]
topic = "in"
format = "komoo"
[[sources]]
topic = "in"
format = "komo"
[results]
topic = "res"
[dead_letter]
topic = "dlq"
[pipeline]
max_in_flight_events = "lots"
[server]
listen = "nowhere"
[[targets]]
name = "crm"
kind = "webhook"
url = "https://crm.example.com"
timeout = "10 parsecs"
[[targets]]
name = "posthog"
kind = "posthg"
url = "https://eu.i.posthog.com"
[[targets]]
name = "hook"
kind = "webhook"
url = "htp//x"
[[targets]]
name = "crm"
kind = "webhook"
url = "https://crm2.example.com"
[[routes]]
name = "a"
targets = ["posthog", "nope"]
[[routes]]
name = "b"
sources = ["segment"]
where = [{ field = "event", equals = "a", in = ["b"] }, { field = "bogus.path", exists = true }]
targets = ["hook"]
"#;
    let p = match load_str(text, Vec::new()) {
        Ok(_) => panic!("a config with mistakes loaded"),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    };
    let expect = [
        "bogus_top: unknown key (known keys: kafka, sources, results, dead_letter, targets,",
        "kafka.typo_key: unknown key (known keys: brokers, group_id, options)",
        "sources[0].format: unknown value \"komoo\" (did you mean \"komo\"?)",
        "pipeline.max_in_flight_events: must be a whole number, not text \"lots\"",
        "targets[0].timeout: invalid duration \"10 parsecs\": unknown unit \"parsecs\"",
        "targets[1].kind: unknown value \"posthg\" (did you mean \"posthog\"?)",
        "routes[1].sources[0]: unknown value \"segment\" (expected \"komo\" or \"acemate\")",
        "routes[1].where[0]: needs exactly one operator",
        // Semantic checks of everything that parsed, with paths as written.
        "sources[1].topic: duplicate source topic \"in\"",
        "targets[2].url: invalid URL \"htp//x\"",
        "targets[3].name: duplicate target name \"crm\"",
        "routes[0].targets[1]: unknown target \"nope\"",
        "routes[1].where[1].field: unknown envelope field \"bogus.path\"",
        "server.listen: \"nowhere\" is not an address",
    ];
    for e in expect {
        assert!(
            p.iter().filter(|x| x.starts_with(e)).count() == 1,
            "{e:?} not reported exactly once in {p:#?}"
        );
    }
    // Nothing else: no "unknown target \"posthog\"" for the target whose kind is wrong, no
    // "missing field" for values taken out, no checks of a target that did not load.
    assert_eq!(p.len(), expect.len(), "{p:#?}");
}

#[test]
fn an_unset_variable_is_reported_once_not_again_as_the_value_it_leaves() {
    let err = load_str(&example(), Vec::new()).unwrap_err();
    let p: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    for (path, var) in [
        ("kafka.brokers", "KAFKA_BROKERS"),
        ("targets[0].url", "POSTHOG_HOST"),
        ("targets[0].api_key", "POSTHOG_API_KEY"),
        ("targets[1].url", "CRM_WEBHOOK_URL"),
        ("targets[1].signing_secret", "CRM_SIGNING_SECRET"),
    ] {
        let line = format!("{path}: environment variable {var} is not set");
        assert!(p.contains(&line), "missing {line:?} in {p:#?}");
    }
    assert!(
        p.iter().all(|l| l.ends_with(" is not set")),
        "only the unset variables are reported: {p:#?}"
    );
    assert_eq!(p.len(), 6, "{p:#?}");
}

#[test]
fn a_missing_section_does_not_stop_the_other_checks() {
    let text = "[[sources]]\ntopic = \"in\"\nformat = \"auto\"\n[results]\ntopic = \"r\"\n\
                [[targets]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"nope\"\n";
    let p: Vec<String> = load_str(text, Vec::new())
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(
        p.contains(&"kafka: missing (required section)".to_string()),
        "{p:#?}"
    );
    assert!(
        p.contains(&"dead_letter: missing (required section)".to_string()),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("targets[0].url: invalid URL")),
        "{p:#?}"
    );
    assert_eq!(p.len(), 3, "{p:#?}");
}

#[test]
fn a_config_built_in_code_serializes_to_a_tree_that_loads_back() {
    let c = load_str(&example(), env()).unwrap();
    let tree = serde_json::to_value(&c).unwrap();
    let back: Config = serde_json::from_value(tree.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), tree);
    assert_eq!(back.routes.len(), c.routes.len());
    assert_eq!(
        back.targets[0].retry.max_elapsed,
        c.targets[0].retry.max_elapsed
    );
}
