//! Targets on `https://`: the relay's HTTP client speaks TLS (rustls, webpki roots) and
//! negotiates HTTP/2 through ALPN without `http2 = true`. Against a receiver with a self-signed
//! certificate: `tls_insecure_skip_verify = true` delivers every event (webhook and PostHog);
//! without it every delivery fails with a certificate error in its WebhookError, and nothing
//! reaches the receiver.

use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use axum::http::Version;
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
    strict.retry.max_attempts = 2;
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
