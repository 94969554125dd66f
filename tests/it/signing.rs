//! Signing secret rotation: a target with two secrets signs every request with both, in one
//! `webhook-signature` header (`v1,<sig1> v1,<sig2>`), so a receiver that holds either secret
//! alone — the old one before it switches, the new one after — verifies every delivery, retries
//! included (checked with the independent `standardwebhooks` verifier).

use crate::fixtures::receiver::{Receiver, Reply};
use crate::fixtures::*;
use base64::Engine;
use standardwebhooks::Webhook;

/// A fresh random `whsec_` secret.
fn secret() -> String {
    let key: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_either_secret_alone_verifies_every_delivery() {
    // The first request is answered 503: its retry is signed again, with both secrets.
    let rx = Receiver::start(vec![Reply::status(503)]).await;
    let (old, new) = (secret(), secret());
    let mut rotating = webhook("rotating", &format!("{}/hook", rx.url));
    rotating.signing_secret = Some(vec![old.clone(), new.clone()].into());
    let mut env = TestEnv::komo("g-sign-rotation", 1).await;
    env.config.routes.push(route_all(&["rotating"]));
    env.config.targets = vec![rotating];
    let relay = env.relay();
    let n = 10;
    env.produce_concurrently(&cards(&ids(n))).await;
    let res = env.results_json(n).await;
    relay.stop().await.unwrap();
    assert_eq!(res.len(), n, "{res:?}");
    assert!(
        res.iter().all(|r| r["event"] == "WebhookSuccess"),
        "{res:?}"
    );

    let reqs = rx.requests();
    assert_eq!(reqs.len(), n + 1, "every event, and one retry");
    let (by_old, by_new) = (Webhook::new(&old).unwrap(), Webhook::new(&new).unwrap());
    let stranger = Webhook::new(&secret()).unwrap();
    for r in &reqs {
        let header = r.header("webhook-signature").unwrap();
        let signatures: Vec<&str> = header.split(' ').collect();
        assert_eq!(signatures.len(), 2, "one signature per secret: {header}");
        assert!(signatures.iter().all(|s| s.starts_with("v1,")), "{header}");
        for (which, verifier) in [("old", &by_old), ("new", &by_new)] {
            verifier
                .verify(&r.raw, &r.header_map())
                .unwrap_or_else(|e| panic!("the {which} secret alone does not verify: {e:?}"));
        }
        // A secret the target does not hold verifies nothing.
        assert!(stranger.verify(&r.raw, &r.header_map()).is_err());
    }
}
