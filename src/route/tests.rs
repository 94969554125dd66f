//! Route tests: every operator, negation, fan-out, `continue = false`, default targets.

use super::*;
use crate::envelope::sample;

fn config(routes: &str) -> Config {
    let (top, routes) = match routes.split_once("\n[[routes]]") {
        Some((t, r)) if t.starts_with("default_targets") => (t, format!("[[routes]]{r}")),
        _ => ("", routes.to_string()),
    };
    let text = format!(
        r#"
{top}
[kafka]
brokers = "127.0.0.1:9092"
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
url = "http://127.0.0.1:1/a"
[[targets]]
name = "b"
kind = "webhook"
url = "http://127.0.0.1:1/b"
[[targets]]
name = "c"
kind = "webhook"
url = "http://127.0.0.1:1/c"
{routes}
"#
    );
    crate::config::load_str(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn targets(routes: &str) -> Vec<usize> {
    Router::new(&config(routes))
        .unwrap()
        .route(&sample())
        .targets
}

#[test]
fn globs_and_negation() {
    assert!(glob_match(
        &"Card*".chars().collect::<Vec<_>>(),
        &"CardViewed".chars().collect::<Vec<_>>()
    ));
    assert!(glob_match(
        &"*View?d".chars().collect::<Vec<_>>(),
        &"CardViewed".chars().collect::<Vec<_>>()
    ));
    assert!(!glob_match(
        &"Card".chars().collect::<Vec<_>>(),
        &"CardViewed".chars().collect::<Vec<_>>()
    ));
    assert_eq!(
        targets("[[routes]]\nname='r'\nevents=['Card*']\ntargets=['a']"),
        vec![0]
    );
    assert_eq!(
        targets("[[routes]]\nname='r'\nevents=['Card*','!CardViewed']\ntargets=['a']"),
        Vec::<usize>::new()
    );
    assert_eq!(
        targets("[[routes]]\nname='r'\nevents=['!SignUp*']\ntargets=['a']"),
        vec![0]
    );
    assert_eq!(
        targets("[[routes]]\nname='r'\nsources=['acemate']\ntargets=['a']"),
        Vec::<usize>::new()
    );
}

#[test]
fn every_operator() {
    let cases = [
        ("{ field = 'properties.courseType', equals = 'demo' }", true),
        (
            "{ field = 'properties.courseType', equals = 'private' }",
            false,
        ),
        (
            "{ field = 'properties.courseType', not_equals = 'private' }",
            true,
        ),
        (
            "{ field = 'properties.courseType', in = ['classroom', 'demo'] }",
            true,
        ),
        (
            "{ field = 'properties.courseType', not_in = ['classroom', 'demo'] }",
            false,
        ),
        ("{ field = 'site.id', exists = true }", true),
        ("{ field = 'properties.nope', exists = false }", true),
        ("{ field = 'properties.nope', exists = true }", false),
        (
            "{ field = 'event', matches = '^Card(Viewed|Shared)$' }",
            true,
        ),
        ("{ field = 'event', matches = '^Sign' }", false),
        ("{ field = 'properties.score', gt = 6 }", true),
        ("{ field = 'properties.score', gt = 7 }", false),
        ("{ field = 'properties.score', gte = 7 }", true),
        ("{ field = 'properties.score', lt = 7 }", false),
        ("{ field = 'properties.score', lte = 7 }", true),
        ("{ field = 'properties.score', equals = 7.0 }", true),
        ("{ field = 'user.traits.tenant', equals = 'acemate' }", true),
    ];
    for (cond, expect) in cases {
        let got = targets(&format!(
            "[[routes]]\nname='r'\nwhere=[{cond}]\ntargets=['a']"
        ));
        assert_eq!(!got.is_empty(), expect, "{cond}");
    }
}

#[test]
fn fan_out_continue_and_defaults() {
    let fan = "[[routes]]\nname='r1'\ntargets=['a','b']\n[[routes]]\nname='r2'\ntargets=['b','c']";
    assert_eq!(targets(fan), vec![0, 1, 2]);
    let stop = "[[routes]]\nname='r1'\ntargets=['a']\ncontinue=false\n[[routes]]\nname='r2'\ntargets=['c']";
    assert_eq!(targets(stop), vec![0]);
    let dflt = "default_targets=['c']\n[[routes]]\nname='r1'\nevents=['Nope']\ntargets=['a']";
    let d = Router::new(&config(dflt)).unwrap().route(&sample());
    assert_eq!(d.targets, vec![2]);
    assert!(d.defaulted);
}

#[test]
fn glob_syntax_is_only_star_and_question_mark() {
    let m = |g: &str, t: &str| {
        glob_match(
            &g.chars().collect::<Vec<_>>(),
            &t.chars().collect::<Vec<_>>(),
        )
    };
    // `?` is one character, also a non-ASCII one.
    assert!(m("Caf?Viewed", "CaféViewed"));
    assert!(!m("Caf??Viewed", "CaféViewed"));
    // Everything else is literal: regex and other glob syntaxes mean nothing.
    assert!(m("$page.view[1]{a,b}\\", "$page.view[1]{a,b}\\"));
    assert!(!m("$page.view", "$pageXview"));
    assert!(!m("[ab]", "a"));
    assert!(m("a**b/*", "a/x/b/y"));
    assert!(m("", ""));
    assert!(!m("", "x"));
}
