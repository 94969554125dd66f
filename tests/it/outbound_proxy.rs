//! Targets behind an egress HTTP proxy (targets[].proxy, else HTTPS_PROXY / HTTP_PROXY).
//! The targets live at relay-test.invalid, a name only the test proxy resolves, so a delivery
//! that arrives went through the proxy: https:// in a CONNECT tunnel, http:// as an
//! absolute-form request, both with the proxy's credentials; proxy = "none" goes direct.

use crate::fixtures::http_proxy::{HttpProxy, ProxiedHead};
use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use serde_json::json;
use std::collections::HashSet;

/// base64("relay:s3cret").
const CREDENTIALS: &str = "Basic cmVsYXk6czNjcmV0";

fn port_of(url: &str) -> &str {
    url.rsplit_once(':').map(|(_, p)| p).unwrap()
}

/// The ids of the webhook requests that reached path.
fn ids_at(rx: &Receiver, path: &str) -> HashSet<String> {
    rx.requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn heads_matching(heads: &[ProxiedHead], start: &str) -> Vec<ProxiedHead> {
    heads
        .iter()
        .filter(|h| h.request_line.starts_with(start))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_proxy_carries_http_and_https_targets_and_none_goes_direct() {
    let (rx, rx_tls) = (
        Receiver::start(vec![]).await,
        Receiver::start_tls(vec![]).await,
    );
    let proxy = HttpProxy::start().await;
    let via = proxy.url_with_credentials("relay", "s3cret");
    let (plain_port, tls_port) = (port_of(&rx.url), port_of(&rx_tls.url));

    let mut plain = webhook(
        "plain",
        &format!("http://relay-test.invalid:{plain_port}/plain"),
    );
    plain.proxy = Some(via.clone());
    let mut tls = webhook("tls", &format!("https://relay-test.invalid:{tls_port}/tls"));
    tls.proxy = Some(via.clone());
    tls.tls_insecure_skip_verify = true;
    let mut posthog = quick_target(json!({
        "name": "ph", "kind": "posthog",
        "url": format!("https://relay-test.invalid:{tls_port}/ph"),
        "api_key": "phc_test_token", "tls_insecure_skip_verify": true, "proxy": via,
    }));
    posthog.batch_linger = Some(ms(20));
    let mut direct = webhook("direct", &format!("{}/direct", rx.url));
    direct.proxy = Some("none".into());

    let mut env = TestEnv::komo("g-proxy", 2).await;
    env.config
        .routes
        .push(route_all(&["plain", "tls", "ph", "direct"]));
    env.config.targets = vec![plain, tls, posthog, direct];
    let relay = env.relay();
    let ids = ids(20);
    env.produce_concurrently(&cards(&ids)).await;
    let res = env.results_json(ids.len() * 4).await;
    relay.stop().await.unwrap();
    assert_eq!(res.len(), ids.len() * 4, "{res:?}");
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );

    let expected: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids_at(&rx, "/plain"), expected);
    assert_eq!(ids_at(&rx, "/direct"), expected);
    assert_eq!(ids_at(&rx_tls, "/tls"), expected);
    assert!(rx_tls.requests().iter().any(|r| r.path == "/ph/batch/"));

    let heads = proxy.heads();
    let tunnels = heads_matching(&heads, &format!("CONNECT relay-test.invalid:{tls_port} "));
    let forwarded = heads_matching(
        &heads,
        &format!("POST http://relay-test.invalid:{plain_port}/plain "),
    );
    assert!(!tunnels.is_empty() && !forwarded.is_empty(), "{heads:?}");
    assert_eq!(
        tunnels.len() + forwarded.len(),
        heads.len(),
        "only the proxied targets reach the proxy: {heads:?}"
    );
    assert!(
        heads
            .iter()
            .all(|h| h.proxy_authorization.as_deref() == Some(CREDENTIALS)),
        "{heads:?}"
    );
    // Through a tunnel the credentials go on the CONNECT alone, never to the target (on
    // absolute-form requests the proxy is the one to strip them; this one passes bytes on).
    assert!(rx_tls
        .requests()
        .iter()
        .all(|r| r.headers.iter().all(|(k, _)| k != "proxy-authorization")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_proxy_key_the_relay_follows_http_proxy_from_its_environment() {
    let rx = Receiver::start(vec![]).await;
    let proxy = HttpProxy::start().await;
    let port = port_of(&rx.url);
    let mut env = TestEnv::komo("g-proxy-env", 2).await;
    env.config.routes.push(route_all(&["hook"]));
    env.config.targets = vec![webhook(
        "hook",
        &format!("http://relay-test.invalid:{port}/hook"),
    )];
    let file = ConfigFile::write(&env.config);
    let mut child = spawn_relay_with_env(&file, &[("HTTP_PROXY", &proxy.url)]);
    let ids = ids(10);
    env.produce_concurrently(&cards(&ids)).await;
    let res = env.results_json(ids.len()).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(res.len(), ids.len(), "{res:?}");
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );
    assert_eq!(ids_at(&rx, "/hook"), ids.iter().cloned().collect());
    let heads = proxy.heads();
    assert!(
        !heads.is_empty()
            && heads.iter().all(|h| h
                .request_line
                .starts_with(&format!("POST http://relay-test.invalid:{port}/hook "))),
        "{heads:?}"
    );
}
