//! Relay core against a real broker and real loopback HTTP receivers: delivery, retries,
//! final failures, Retry-After, dead letters, offsets across restarts, graceful shutdown.

use crate::fixtures::receiver::{Receiver, Reply};
use crate::fixtures::*;
use std::time::Duration;

/// A Komo relay for `group` delivering every event to the webhook `hook` at `<rx>/hook`.
async fn env(group: &str, partitions: i32, rx: &Receiver) -> TestEnv {
    let mut env = TestEnv::komo(group, partitions).await;
    env.config
        .targets
        .push(webhook("hook", &format!("{}/hook", rx.url)));
    env.config.routes.push(route_all(&["hook"]));
    env
}

async fn results(env: &TestEnv, n: usize) -> Vec<serde_json::Value> {
    env.results(n, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_and_reports_success() {
    let rx = Receiver::start(vec![]).await;
    let env = env("g-success", 2, &rx).await;
    let relay = env.relay();
    let ids = ids(3);
    env.produce(&cards(&ids)).await;

    let res = results(&env, 3).await;
    assert_eq!(res.len(), 3, "three result events");
    for r in &res {
        assert_eq!(r["event"], "WebhookSuccess");
        assert_eq!(r["target"], "hook");
        assert_eq!(r["attempts"], 1);
        assert_eq!(r["status_code"], 200);
        assert_eq!(r["webhook_trigger"], "CardViewed");
        assert_eq!(r["site_name"], "My site");
        assert_eq!(
            r["favourite_team"], "Lions",
            "user attributes ride along as keys"
        );
        assert!(r["error"].is_null());
        assert!(ids.contains(&r["source_event_id"].as_str().unwrap().to_string()));
        let integration =
            uuid::Uuid::new_v5(&event_relay::envelope::RELAY_NAMESPACE, b"hook").to_string();
        assert_eq!(r["integration_id"], integration.as_str());
    }
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hook");
        let envelope = r.json();
        assert_eq!(envelope["source"], "komo");
        assert_eq!(envelope["event"], "CardViewed");
        assert_eq!(envelope["properties"]["score"], 1, "Komo numbers are typed");
        assert_eq!(envelope["origin"]["topic"], env.topics.source.as_str());
        assert_eq!(envelope["validation"]["status"], "valid");
    }
    assert!(
        eventually(Duration::from_secs(30), || async {
            relay.get("/readyz").await.0 == 200
        })
        .await
    );
    assert_eq!(relay.get("/healthz").await.0, 200);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_503_then_succeeds_with_one_result() {
    let rx = Receiver::start(vec![Reply::status(503), Reply::status(503)]).await;
    let env = env("g-retry", 1, &rx).await;
    let relay = env.relay();
    let id = uuid::Uuid::new_v4().to_string();
    env.produce(&[komo_event(&id, "CardViewed")]).await;
    let res = results(&env, 1).await;
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["event"], "WebhookSuccess");
    assert_eq!(res[0]["attempts"], 3);
    assert_eq!(rx.count(), 3);
    // no second result for the same delivery
    let more = env
        .broker
        .read(&env.topics.results, 2, Duration::from_secs(15))
        .await;
    assert_eq!(more.len(), 1);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_error_is_final_without_retry() {
    let rx = Receiver::start(vec![Reply::status(400)]).await;
    let env = env("g-400", 1, &rx).await;
    let relay = env.relay();
    let id = uuid::Uuid::new_v4().to_string();
    env.produce(&[komo_event(&id, "CardViewed")]).await;
    let res = results(&env, 1).await;
    assert_eq!(res[0]["event"], "WebhookError");
    assert_eq!(res[0]["status_code"], 400);
    assert_eq!(res[0]["attempts"], 1);
    assert!(res[0]["error"].as_str().unwrap().contains("400"));
    assert_eq!(res[0]["source_event_id"], id.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 1, "a 400 is never retried");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let rx = Receiver::start(vec![Reply::status(429).header("Retry-After", "2")]).await;
    let env = env("g-429", 1, &rx).await;
    let relay = env.relay();
    env.produce(&[komo_event(&uuid::Uuid::new_v4().to_string(), "CardViewed")])
        .await;
    let res = results(&env, 1).await;
    assert_eq!(res[0]["event"], "WebhookSuccess");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    // The backoff alone would be at most 200ms; the server asked for 2s.
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "second attempt came after {gap:?}"
    );
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_message_goes_to_dead_letters_and_the_next_flows() {
    let rx = Receiver::start(vec![]).await;
    let env = env("g-dlq", 1, &rx).await;
    let relay = env.relay();
    let good = uuid::Uuid::new_v4().to_string();
    env.produce(&[b"{not json".to_vec(), komo_event(&good, "CardViewed")])
        .await;
    let dl = env.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].value, b"{not json");
    assert_eq!(dl[0].header("reason"), Some("not_json"));
    assert_eq!(
        dl[0].header("source_topic"),
        Some(env.topics.source.as_str())
    );
    assert_eq!(dl[0].header("source_partition"), Some("0"));
    assert_eq!(dl[0].header("source_offset"), Some("0"));
    let res = results(&env, 1).await;
    assert_eq!(res[0]["source_event_id"], good.as_str());
    assert!(
        eventually(Duration::from_secs(10), || async {
            relay
                .metric("event_relay_dead_letters_total{reason=\"not_json\",source=\"komo\"}")
                .await
                == 1.0
        })
        .await
    );
    relay.stop().await.unwrap();
    assert_eq!(env.committed(1), vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_redelivers_nothing_final_and_loses_nothing_pending() {
    let rx = Receiver::start(vec![]).await;
    let env = env("g-restart", 2, &rx).await;
    let first = ids(4);
    let relay = env.relay();
    env.produce(&cards(&first)).await;
    assert_eq!(results(&env, 4).await.len(), 4);
    relay.stop().await.unwrap();
    assert_eq!(rx.count(), 4);

    // Target down while the next events arrive: they are retried, then the relay is stopped
    // before their fate is final, so their offsets must stay uncommitted.
    rx.set_default(Reply::status(503));
    let second = ids(3);
    let mut cfg = env.config.clone();
    cfg.pipeline.drain_timeout = ms(500);
    cfg.targets[0].retry.max_attempts = Some(1000);
    let relay = Relay::start(&cfg);
    env.produce(&cards(&second)).await;
    assert!(eventually(Duration::from_secs(30), || async { rx.count() >= 4 + 3 }).await);
    relay.stop().await.unwrap();

    // Target back: the pending three are delivered, the first four are not re-sent.
    rx.set_default(Reply::status(200));
    let before = rx.count();
    let relay = env.relay();
    let res = results(&env, 7).await;
    let successes: Vec<_> = res
        .iter()
        .filter(|r| r["event"] == "WebhookSuccess")
        .collect();
    assert_eq!(successes.len(), 7);
    relay.stop().await.unwrap();
    let delivered_after: Vec<String> = rx.requests()[before..]
        .iter()
        .filter(|r| r.json().is_object())
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    for id in &second {
        assert!(
            delivered_after.contains(id),
            "pending event {id} was delivered after restart"
        );
    }
    for id in &first {
        assert!(
            !delivered_after.contains(id),
            "final event {id} was re-delivered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_and_commits() {
    let rx = Receiver::start(vec![]).await;
    rx.set_default(Reply::status(200).delay(Duration::from_millis(1500)));
    let env = env("g-drain", 1, &rx).await;
    let relay = env.relay();
    env.produce(&cards(&ids(2))).await;
    assert!(eventually(Duration::from_secs(30), || async { rx.count() >= 2 }).await);
    relay.stop().await.unwrap();
    let res = env
        .broker
        .read(&env.topics.results, 2, Duration::from_secs(20))
        .await;
    assert_eq!(
        res.len(),
        2,
        "in-flight deliveries finished and reported during the drain"
    );
    assert_eq!(env.committed(1), vec![2]);
}
