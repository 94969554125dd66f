//! Config mistakes that used to pass silently and misbehave at run time: each is now a
//! problem `check` names with its key path.

use super::super::*;

fn problems(target: &str) -> Vec<String> {
    let text = format!(
        r#"
[kafka]
brokers = "127.0.0.1:9092"
[[sources]]
topic = "komo"
format = "komo"
[results]
topic = "results"
[dead_letter]
topic = "dlq"
[[targets]]
name = "t"
{target}
[[routes]]
name = "all"
targets = ["t"]
"#
    );
    match load_str(&text, Vec::new()) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

/// A PostHog url that already ends in a capture endpoint would post to `/batch/batch/`.
#[test]
fn a_posthog_url_ending_in_its_endpoint_is_named() {
    let posthog = |url: &str| {
        problems(&format!(
            "kind = \"posthog\"\napi_key = \"phc_x\"\nurl = \"{url}\""
        ))
    };
    for url in [
        "https://eu.i.posthog.com/batch/",
        "https://eu.i.posthog.com/batch",
        "https://ph.example.com/i/v0/e/",
    ] {
        let p = posthog(url);
        assert_eq!(p.len(), 1, "{url}: {p:?}");
        assert!(
            p[0].starts_with("targets[0].url: ends in PostHog's") && p[0].contains("/batch/"),
            "{p:?}"
        );
    }
    for fine in ["https://eu.i.posthog.com", "https://example.com/posthog/"] {
        assert!(posthog(fine).is_empty(), "{fine}: {:?}", posthog(fine));
    }
}

/// A misspelt template field would render empty in every request.
#[test]
fn a_template_field_that_names_no_envelope_value_is_named() {
    let p = problems(
        "kind = \"webhook\"\nurl = \"https://h.example.com/{{evnt}}?s={{source}}\"\n\
         headers = { x-user = \"{{user.profil_id}}\", x-ok = \"{{properties.score}}\" }",
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p.iter().any(|x| x
            == "targets[0].url: template {{evnt}}: unknown envelope field \"evnt\" (it would render empty)"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.starts_with("targets[0].headers.x-user: template {{user.profil_id}}")),
        "{p:?}"
    );
}
