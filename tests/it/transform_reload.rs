//! A target's program across reloads of the running binary: an invalid program is refused
//! (its diagnostic logged once, with its key path) and the running one goes on; a changed
//! program file is compiled and applied by the next reload.

use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use crate::reload::{logged, results_for, rewrite};
use std::collections::HashSet;

/// The `version` each delivered body carried, for the ids in `of`.
fn versions(rx: &Receiver, of: &[String]) -> HashSet<i64> {
    rx.requests()
        .iter()
        .map(|r| r.json())
        .filter(|b| of.iter().any(|i| b["id"] == i.as_str()))
        .map(|b| b["version"].as_i64().unwrap_or(-1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_program_on_reload_keeps_the_running_one_and_a_fixed_file_applies() {
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-tf-reload", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("crm.vrl");
    std::fs::write(&program, ".version = 1\n").unwrap();
    let mut crm = webhook("crm", &format!("{}/crm", rx.url));
    crm.transform_file = Some(program.clone());
    env.config.targets.push(crm);
    env.config.routes.push(route_all(&["crm"]));
    let file = ConfigFile::write(&env.config);
    let relay = LoggedRelay::spawn(&file, &[]);
    let first = ids(5);
    env.produce(&cards(&first)).await;
    results_for(&env, &first, &["crm"]).await;
    assert_eq!(versions(&rx, &first), HashSet::from([1]));

    // An inline program that does not compile replaces the file: refused, logged once.
    let mut bad = env.config.clone();
    bad.targets[0].transform_file = None;
    bad.targets[0].transform = Some(".version = 2\n.b = upcase(.x)".into());
    rewrite(&file, &bad);
    relay.signal("HUP");
    assert!(logged(&relay, "invalid config", 1).await);
    let log = relay.log_text();
    let diagnostic = log
        .lines()
        .filter(|l| l.contains("targets[0].transform: error[E103]"))
        .count();
    assert_eq!(
        diagnostic, 1,
        "the diagnostic logged once, at its key path:\n{log}"
    );
    let second = ids(5);
    env.produce(&cards(&second)).await;
    results_for(&env, &second, &["crm"]).await;
    assert_eq!(
        versions(&rx, &second),
        HashSet::from([1]),
        "the running program stays"
    );

    // The file changed and the config points at it again: the next reload applies it.
    std::fs::write(&program, ".version = 3\n").unwrap();
    rewrite(&file, &env.config);
    relay.signal("HUP");
    assert!(logged(&relay, "config reloaded", 1).await);
    let third = ids(5);
    env.produce(&cards(&third)).await;
    results_for(&env, &third, &["crm"]).await;
    assert_eq!(versions(&rx, &third), HashSet::from([3]));
    assert!(relay.stop(), "clean exit after SIGTERM");
}
