//! Target `auth` against a real broker, a real loopback receiver that checks the bearer token,
//! and a real OAuth2 token endpoint ([`TokenEndpoint`]): a token file read again when it
//! changes (and kept while it is briefly missing), one token request shared by concurrent
//! deliveries, one renewal on a 401, token endpoint failures as retryable WebhookErrors that
//! name the endpoint and hold no secret or token (nor do logs, metrics or `route` output), and
//! what `check` says about the keys.

use crate::fixtures::receiver::{Receiver, Reply, Req};
use crate::fixtures::token_endpoint::TokenEndpoint;
use crate::fixtures::*;
use event_relay::config::{AuthConfig, BearerAuth, OAuth2Auth, TargetConfig};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLIENT_ID: &str = "relay client";
const CLIENT_SECRET: &str = "s3cret:with/odd chars";

/// A Komo relay for `group` on a one-partition topic, delivering to `targets` via the route `all`.
async fn env(group: &str, targets: Vec<TargetConfig>) -> TestEnv {
    let mut env = TestEnv::komo(group, 1).await;
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    env.config.routes.push(route_all(&names));
    env.config.targets = targets;
    env
}

/// `auth = { kind = "oauth2", ... }` against `endpoint`, for the test client.
fn oauth2(endpoint: &TokenEndpoint, scopes: &[&str]) -> AuthConfig {
    AuthConfig::OAuth2(OAuth2Auth {
        token_url: endpoint.url.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    })
}

fn bearer(req: &Req) -> Option<&str> {
    req.header("authorization")?.strip_prefix("Bearer ")
}

fn all_succeeded(results: &[Value]) -> bool {
    results.iter().all(|r| r["event"] == "WebhookSuccess")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_file_is_sent_and_read_again_when_it_changes() {
    let rx = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "first-token\n").unwrap();
    let mut crm = webhook("crm", &format!("{}/in", rx.url));
    crm.auth = Some(AuthConfig::Bearer(BearerAuth {
        token_file: file.clone(),
    }));
    let env = env("g-auth-bearer", vec![crm]).await;
    let relay = env.relay();

    env.produce(&cards(&ids(3))).await;
    let res = env.results_json(3).await;
    assert_eq!(res.len(), 3);
    assert!(all_succeeded(&res), "{res:?}");
    let reqs = rx.requests();
    assert!(
        reqs.iter().all(|r| bearer(r) == Some("first-token")),
        "{reqs:?}"
    );

    // Rotated as Kubernetes rotates a mounted secret: a new file moved over the old one. Events
    // keep coming until one arrives with the new token (the relay looks at the file when a
    // request needs it, at most once a second).
    let next = dir.path().join("..token.new");
    std::fs::write(&next, "second-token").unwrap();
    std::fs::rename(&next, &file).unwrap();
    let mut produced = 3;
    let rotated = eventually(Duration::from_secs(30), || {
        produced += 1;
        let env = &env;
        let rx = &rx;
        async move {
            env.produce(&cards(&ids(1))).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            rx.requests()
                .iter()
                .any(|r| bearer(r) == Some("second-token"))
        }
    })
    .await;
    assert!(rotated, "no delivery carried the rewritten token");

    // Briefly missing (the moment of a symlink swap): deliveries go on with the last token
    // read, until the relay has looked at the missing file at least once.
    std::fs::remove_file(&file).unwrap();
    let looked = eventually(Duration::from_secs(30), || {
        produced += 1;
        let (env, relay) = (&env, &relay);
        async move {
            env.produce(&cards(&ids(1))).await;
            let errors = r#"event_relay_auth_token_refreshes_total{outcome="error",target="crm"}"#;
            relay.metric(errors).await >= 1.0
        }
    })
    .await;
    assert!(looked, "the relay never looked at the missing file");
    // Produced after the relay found the file missing: it can only carry the token kept.
    let last = ids(1);
    env.produce(&cards(&last)).await;
    produced += 1;

    let res = env.results_json(produced).await;
    assert_eq!(res.len(), produced);
    assert!(all_succeeded(&res), "{res:?}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), produced);
    for r in &reqs {
        assert!(
            matches!(bearer(r), Some("first-token" | "second-token")),
            "{r:?}"
        );
    }
    let last = reqs.iter().find(|r| r.json()["id"] == last[0].as_str());
    assert_eq!(last.and_then(bearer), Some("second-token"));
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_concurrent_deliveries_share_one_token_and_a_401_renews_it_once() {
    let tokens = TokenEndpoint::start(CLIENT_ID, CLIENT_SECRET).await;
    // A slow answer, so the deliveries below pile up on the first token request.
    tokens.set_delay(Duration::from_millis(500));
    let rx = Receiver::start(vec![]).await;
    // The receiver refuses revoked tokens with 401, as a partner's API does.
    let revoked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let rule_revoked = revoked.clone();
    rx.set_rule(move |req| {
        let token = bearer(req).unwrap_or_default();
        rule_revoked
            .lock()
            .unwrap()
            .contains(token)
            .then(|| Reply::status(401))
    });
    let mut crm = webhook("crm", &format!("{}/in", rx.url));
    crm.auth = Some(oauth2(&tokens, &["crm.write", "crm.read"]));
    let env = env("g-auth-oauth2", vec![crm]).await;
    let relay = env.relay();

    let n = 20;
    env.produce_concurrently(&cards(&ids(n))).await;
    let res = env.results_json(n).await;
    assert_eq!(res.len(), n);
    assert!(all_succeeded(&res), "{res:?}");
    assert_eq!(tokens.count(), 1, "{:?}", tokens.requests());
    let first = tokens.issued()[0].clone();
    assert!(rx
        .requests()
        .iter()
        .all(|r| bearer(r) == Some(first.as_str())));
    // The request as RFC 6749 §4.4 and §2.3.1 have it.
    let request = &tokens.requests()[0];
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        request.form,
        "grant_type=client_credentials&scope=crm.write+crm.read"
    );
    assert_eq!(
        request.client,
        Some((CLIENT_ID.to_string(), CLIENT_SECRET.to_string()))
    );

    // The partner revokes the token: the deliveries in flight get a 401 each, share one new
    // token and are sent again with it.
    revoked.lock().unwrap().insert(first.clone());
    env.produce_concurrently(&cards(&ids(n))).await;
    let res = env.results_json(2 * n).await;
    assert_eq!(res.len(), 2 * n);
    assert!(all_succeeded(&res), "{res:?}");
    assert_eq!(tokens.count(), 2, "{:?}", tokens.requests());
    let second = tokens.issued()[1].clone();
    let after: Vec<Req> = rx.requests().into_iter().skip(n).collect();
    let refused = after.iter().filter(|r| r.status == 401).count();
    assert!(refused >= 1, "no request was refused");
    assert!(after
        .iter()
        .all(|r| (r.status == 401) == (bearer(r) == Some(first.as_str()))));
    assert_eq!(after.len() - refused, n, "each delivery accepted once");
    assert!(after
        .iter()
        .filter(|r| r.status == 200)
        .all(|r| bearer(r) == Some(second.as_str())));
    // The resent request is part of the attempt the 401 answered.
    assert!(res[n..].iter().all(|r| r["attempts"] == 1), "{res:?}");
    let ok = r#"event_relay_auth_token_refreshes_total{outcome="ok",target="crm"}"#;
    assert_eq!(relay.metric(ok).await, 2.0);
    relay.stop().await.unwrap();
}

/// The result event of the event `id`.
fn result_of<'a>(results: &'a [Value], id: &str) -> &'a Value {
    let found = results.iter().find(|r| r["source_event_id"] == id);
    found.unwrap_or_else(|| panic!("no result for {id} in {results:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_is_a_retryable_failure_that_names_it_and_shows_no_secret() {
    let tokens = TokenEndpoint::start(CLIENT_ID, CLIENT_SECRET).await;
    // Tokens that are never reused: each attempt asks for one, so attempts pair with token
    // requests (and a failed request has no older token to fall back on).
    tokens.set_expires_in(Some(0));
    let rx = Receiver::start(vec![]).await;
    let mut crm = webhook("crm", &format!("{}/in", rx.url));
    crm.auth = Some(oauth2(&tokens, &[]));
    crm.retry.max_attempts = Some(3);
    let env = env("g-auth-failing", vec![crm]).await;
    // As a process with its log kept, to look for secrets in it.
    let file = ConfigFile::write(&env.config);
    let relay = LoggedRelay::spawn(&file, &[]);

    let working = ids(1);
    env.produce(&cards(&working)).await;
    let res = env.results_json(1).await;
    assert_eq!(result_of(&res, &working[0])["event"], "WebhookSuccess");

    // The endpoint is down: each of the 3 attempts fails at the token request.
    tokens.fail(503, usize::MAX);
    let down = ids(1);
    env.produce(&cards(&down)).await;
    let res = env.results_json(2).await;
    let failed = result_of(&res, &down[0]);
    assert_eq!(failed["event"], "WebhookError", "{failed}");
    assert_eq!(
        failed["attempts"], 3,
        "retried as a retryable failure: {failed}"
    );
    assert_eq!(
        failed["status_code"],
        Value::Null,
        "the target was never asked"
    );
    let error = failed["error"].as_str().unwrap();
    let expected = format!("oauth2 token request to {} failed: HTTP 503", tokens.url);
    assert!(error.starts_with(&expected), "{error}");

    // It recovers while a delivery is being retried: its third attempt gets a token.
    tokens.fail(503, 2);
    let recovering = ids(1);
    env.produce(&cards(&recovering)).await;
    let res = env.results_json(3).await;
    let recovered = result_of(&res, &recovering[0]);
    assert_eq!(recovered["event"], "WebhookSuccess", "{recovered}");
    assert_eq!(recovered["attempts"], 3, "{recovered}");
    assert_eq!(
        rx.count(),
        2,
        "the target got the two deliveries that had a token"
    );
    let statuses: Vec<u16> = tokens.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 503, 503, 503, 503, 503, 200]);

    let metrics = reqwest::get(format!("http://{}/metrics", env.config.server.listen))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors = r#"event_relay_auth_token_refreshes_total{outcome="error",target="crm"}"#;
    assert_eq!(
        metric_value(&metrics, errors),
        5.0,
        "3 + 2 failed token requests"
    );
    let log = relay.log_text();
    assert!(
        log.contains(&expected),
        "the log names the failing endpoint:\n{log}"
    );
    let encoded: String = url::form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect();
    let mut secrets = vec![CLIENT_SECRET.to_string(), encoded];
    secrets.extend(tokens.issued());
    assert_eq!(tokens.issued().len(), 2);
    let results = serde_json::to_string(&res).unwrap();
    for (what, text) in [("results", &results), ("metrics", &metrics), ("log", &log)] {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{what} show {secret:?}");
        }
    }
    assert!(relay.stop(), "the relay exits cleanly");
}

/// `route` and `check` only read the config: no broker, and no token is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_redacts_the_authorization_and_check_names_each_auth_problem() {
    let tokens = TokenEndpoint::start(CLIENT_ID, CLIENT_SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token-value\n").unwrap();
    let mut cfg = base_config("127.0.0.1:9", "results", "dead-letters");
    cfg.sources
        .push(source("events", event_relay::config::SourceFormat::Komo));
    let mut crm = webhook("crm", "https://crm.example.com/in");
    crm.auth = Some(AuthConfig::Bearer(BearerAuth {
        token_file: token_file.clone(),
    }));
    let mut posthog = target(serde_json::json!({
        "name": "posthog", "kind": "posthog", "url": "https://posthog.internal",
        "api_key": "phc_x",
    }));
    posthog.auth = Some(oauth2(&tokens, &["capture"]));
    cfg.targets = vec![crm, posthog];
    cfg.routes.push(route_all(&["crm", "posthog"]));

    let file = ConfigFile::write(&cfg);
    let path = file.path.to_str().unwrap();
    let out = run(
        &["route", "--config", path],
        komo_event(&ids(1)[0], "CardViewed"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    for t in line["targets"].as_array().unwrap() {
        assert_eq!(t["headers"]["authorization"], "<redacted>", "{t}");
    }
    assert!(!stdout.contains("file-token-value") && !stdout.contains(CLIENT_SECRET));
    assert_eq!(tokens.count(), 0, "a dry run asks for no token");

    let mut bad = cfg.clone();
    bad.targets[0].auth = Some(AuthConfig::Bearer(BearerAuth {
        token_file: dir.path().join("missing"),
    }));
    bad.targets[0]
        .headers
        .insert("authorization".into(), "Bearer x".into());
    bad.targets[1].auth = Some(AuthConfig::OAuth2(OAuth2Auth {
        token_url: "ftp://login.example.com/token".into(),
        client_id: "".into(),
        client_secret: CLIENT_SECRET.into(),
        scopes: vec!["two words".into()],
    }));
    let file = ConfigFile::write(&bad);
    let out = run(&["check", "--config", file.path.to_str().unwrap()], vec![]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    for path in [
        "targets[0].auth.token_file: cannot read ",
        "targets[0].headers.authorization: the relay sets Authorization from auth",
        "targets[1].auth.token_url: URL \"ftp://login.example.com/token\" must use http or https",
        "targets[1].auth.client_id: must not be empty",
        "targets[1].auth.scopes[0]: \"two words\" is not a scope",
    ] {
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with(path)).count(),
            1,
            "{path} in\n{stdout}"
        );
    }
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(!stdout.contains(CLIENT_SECRET));
}
