//! Targets on `https://`: the relay's HTTP client speaks TLS (rustls) and negotiates HTTP/2
//! through ALPN without `http2 = true`. Against a receiver with a self-signed certificate:
//! `tls_insecure_skip_verify = true` delivers every event (webhook and PostHog); without it every
//! delivery fails with a certificate error in its WebhookError, and nothing reaches the receiver.
//! Against a private CA made in the test ([`TestCa`]): `tls.ca_file` reaches its receiver and
//! the built-in roots alone refuse it; an mTLS receiver accepts the relay with
//! `tls.client_cert_file` / `tls.client_key_file` and rejects it without. `check` names each TLS
//! file it cannot use, and a system store without certificates.

use crate::fixtures::pki::TestCa;
use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use axum::http::Version;
use event_relay::config::{TargetConfig, TlsRoots};
use serde_json::json;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_deliver_over_alpn_http2_and_an_unverified_certificate_is_refused() {
    let rx = Receiver::start_tls(vec![]).await;
    let mut trusting = webhook("trusting", &format!("{}/trusting", rx.url));
    trusting.tls_insecure_skip_verify = true;
    let mut posthog = quick_target(json!({
        "name": "ph", "kind": "posthog", "url": format!("{}/ph", rx.url),
        "api_key": "phc_test_token", "tls_insecure_skip_verify": true,
    }));
    posthog.batch_linger = Some(ms(20));
    let mut strict = webhook("strict", &format!("{}/strict", rx.url));
    strict.retry.max_attempts = Some(2);
    // Every delivery makes its own attempts (an open circuit would fail the rest unattempted).
    strict.circuit.failure_threshold = 0;
    let mut env = TestEnv::komo("g-tls", 2).await;
    env.config
        .routes
        .push(route_all(&["trusting", "ph", "strict"]));
    env.config.targets = vec![trusting, posthog, strict];

    let relay = env.relay();
    let ids = ids(20);
    env.produce_concurrently(&cards(&ids)).await;
    let res = env.results_json(ids.len() * 3).await;
    relay.stop().await.unwrap();
    assert_eq!(res.len(), ids.len() * 3, "{res:?}");

    let of = |target: &str| -> Vec<&serde_json::Value> {
        res.iter().filter(|r| r["target"] == target).collect()
    };
    for target in ["trusting", "ph"] {
        let got = of(target);
        assert_eq!(got.len(), ids.len(), "{target}: {got:?}");
        assert!(
            got.iter().all(|r| r["event"] == "WebhookSuccess"),
            "{target}: {got:?}"
        );
    }
    let refused = of("strict");
    assert_eq!(refused.len(), ids.len(), "{refused:?}");
    assert!(
        refused.iter().all(|r| r["event"] == "WebhookError"
            && r["error"]
                .as_str()
                .is_some_and(|e| e.contains("certificate"))),
        "{refused:?}"
    );

    let reqs = rx.requests();
    assert!(reqs.iter().all(|r| !r.path.starts_with("/strict")));
    let hooks: HashSet<String> = reqs
        .iter()
        .filter(|r| r.path == "/trusting")
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(hooks.len(), ids.len());
    assert!(reqs.iter().any(|r| r.path == "/ph/batch/"));
    let versions: HashSet<Version> = reqs.iter().map(|r| r.version).collect();
    assert_eq!(versions, HashSet::from([Version::HTTP_2]), "ALPN chose h2");
}

/// `target` made to fail fast and alone: 2 attempts, no circuit (every delivery makes its own
/// attempts; an open circuit would fail the rest unattempted).
fn failing_fast(mut target: TargetConfig) -> TargetConfig {
    target.retry.max_attempts = Some(2);
    target.circuit.failure_threshold = 0;
    target
}

/// Delivers `n` events to `targets` (all routed) and returns the result events, after
/// checking one arrived per event and target.
async fn deliver(group: &str, targets: Vec<TargetConfig>, n: usize) -> Vec<serde_json::Value> {
    let mut env = TestEnv::komo(group, 1).await;
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    env.config.routes.push(route_all(&names));
    env.config.targets = targets.clone();
    let relay = env.relay();
    env.produce_concurrently(&cards(&ids(n))).await;
    let res = env.results_json(n * targets.len()).await;
    relay.stop().await.unwrap();
    assert_eq!(res.len(), n * targets.len(), "{res:?}");
    res
}

/// The result events of `target`, checked to be all of `event` (a WebhookError without an
/// HTTP status: no request got an answer); their error texts.
fn outcomes(res: &[serde_json::Value], target: &str, event: &str, n: usize) -> Vec<String> {
    let of: Vec<&serde_json::Value> = res.iter().filter(|r| r["target"] == target).collect();
    assert_eq!(of.len(), n, "{target}: {of:?}");
    assert!(of.iter().all(|r| r["event"] == event), "{target}: {of:?}");
    if event == "WebhookError" {
        assert!(of.iter().all(|r| r["status_code"].is_null()), "{of:?}");
    }
    of.iter()
        .map(|r| r["error"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The paths the receiver was asked for, each once.
fn paths(rx: &Receiver) -> HashSet<String> {
    rx.requests().into_iter().map(|r| r.path).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_receiver_is_reached_with_its_ca_file_and_refused_without() {
    let ca = TestCa::new();
    let rx = Receiver::start_tls_with(ca.server_config(false), vec![]).await;
    let mut with_ca = webhook("with-ca", &format!("{}/with-ca", rx.url));
    with_ca.tls.ca_file = Some(ca.ca_file.clone());
    // The CA added to both built-in stores (the system store read from this host).
    let mut with_all = webhook("with-all", &format!("{}/with-all", rx.url));
    with_all.tls.ca_file = Some(ca.ca_file.clone());
    with_all.tls.roots = TlsRoots::Both;
    let without = failing_fast(webhook("without", &format!("{}/without", rx.url)));
    let n = 10;
    let res = deliver("g-tls-ca", vec![with_ca, with_all, without], n).await;

    outcomes(&res, "with-ca", "WebhookSuccess", n);
    outcomes(&res, "with-all", "WebhookSuccess", n);
    for error in outcomes(&res, "without", "WebhookError", n) {
        // rustls: "invalid peer certificate: UnknownIssuer".
        assert!(error.contains("certificate"), "{error}");
    }
    assert_eq!(
        paths(&rx),
        HashSet::from(["/with-ca".to_string(), "/with-all".to_string()]),
        "nothing from the target without the CA"
    );
    assert_eq!(rx.count(), 2 * n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_receiver_accepts_the_client_certificate_and_rejects_a_relay_without_one() {
    let ca = TestCa::new();
    let rx = Receiver::start_tls_with(ca.server_config(true), vec![]).await;
    let mut identified = webhook("identified", &format!("{}/identified", rx.url));
    identified.tls.ca_file = Some(ca.ca_file.clone());
    identified.tls.client_cert_file = Some(ca.client.cert_file.clone());
    identified.tls.client_key_file = Some(ca.client.key_file.clone());
    let mut anonymous = failing_fast(webhook("anonymous", &format!("{}/anonymous", rx.url)));
    anonymous.tls.ca_file = Some(ca.ca_file.clone());
    // The server's own certificate is signed by the CA too, but is not for client auth.
    let mut impostor = failing_fast(webhook("impostor", &format!("{}/impostor", rx.url)));
    impostor.tls.ca_file = Some(ca.ca_file.clone());
    impostor.tls.client_cert_file = Some(ca.server.cert_file.clone());
    impostor.tls.client_key_file = Some(ca.server.key_file.clone());
    let n = 10;
    let res = deliver("g-tls-mtls", vec![identified, anonymous, impostor], n).await;

    outcomes(&res, "identified", "WebhookSuccess", n);
    for target in ["anonymous", "impostor"] {
        for error in outcomes(&res, target, "WebhookError", n) {
            // TLS 1.3 verifies the client's certificate after the client's handshake ended:
            // the error is the server's alert ("received fatal alert: UnsupportedCertificate")
            // when the relay reads it first, else the connection the server closed ("stream
            // closed because of a broken pipe").
            assert!(error.starts_with("transport error: "), "{target}: {error}");
        }
    }
    assert_eq!(
        paths(&rx),
        HashSet::from(["/identified".to_string()]),
        "only the relay with the client certificate got through"
    );
    assert_eq!(rx.count(), n);
}

#[test]
fn check_names_every_unusable_tls_file_and_an_empty_system_store() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (notes, empty) = (dir.path().join("notes.txt"), dir.path().join("empty.pem"));
    std::fs::write(&notes, "not a certificate\n").unwrap();
    std::fs::write(&empty, "").unwrap();
    let mut cfg = base_config("127.0.0.1:9092", "results", "dlq");
    cfg.sources
        .push(source("komo", event_relay::config::SourceFormat::Komo));
    let url = "https://partner.example.com/hook";
    let mut not_pem = webhook("not-pem", url);
    not_pem.tls.ca_file = Some(notes.clone());
    let mut mismatch = webhook("mismatch", url);
    mismatch.tls.client_cert_file = Some(ca.client.cert_file.clone());
    mismatch.tls.client_key_file = Some(ca.server.key_file.clone());
    let mut system = webhook("system", url);
    system.tls.roots = TlsRoots::System;
    cfg.targets = vec![not_pem, mismatch, system];
    let file = ConfigFile::write(&cfg);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(["check", "--config", file.path.to_str().unwrap()])
        // A system store with no certificate in it.
        .env("SSL_CERT_FILE", &empty)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "targets[0].tls.ca_file: {} is not PEM: no \"-----BEGIN ...-----\" section in it",
                notes.display()
            ),
            format!(
                "targets[1].tls.client_key_file: the private key in {} does not match the \
                 certificate in {}",
                ca.server.key_file.display(),
                ca.client.cert_file.display()
            ),
            "targets[2].tls.roots: the system trust store holds no usable certificate (none \
             found; SSL_CERT_FILE or SSL_CERT_DIR can point at a CA bundle)"
                .to_string(),
        ]
    );
}
