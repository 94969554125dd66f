//! The live tap (`server.tap`, `GET /tap`, `event-relay tap`): clients connected before a known
//! workload see each event at the stages it passed, filtered as they asked; a client that never
//! reads costs the pipeline nothing (every event is delivered) and is told what it lost; with
//! the tap off, `/tap` is a 404 saying how to turn it on.

use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use bytes::Bytes;
use event_relay::tap::QUEUE_LINES;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a tap stream may stay silent before the test gives up (a hang guard, not a
/// measurement: every line asserted on was offered before the wait starts).
const SILENCE: Duration = Duration::from_secs(60);

/// A Komo relay for `group` with the tap on, every event routed to the webhook `hook`.
async fn env(group: &str, rx: &Receiver) -> TestEnv {
    let mut env = TestEnv::komo(group, 1).await;
    env.config.server.tap = true;
    env.config
        .targets
        .push(webhook("hook", &format!("{}/hook", rx.url)));
    env.config.routes.push(route_all(&["hook"]));
    env
}

/// The relay of `env`, once its server answers (tap clients can connect).
async fn serving(env: &TestEnv) -> Relay {
    let relay = env.relay();
    let ok = eventually(Duration::from_secs(20), || async {
        relay.get("/healthz").await.0 != 0
    })
    .await;
    assert!(ok, "the relay's server never answered");
    relay
}

/// Waits until the relay counts `n` tap clients (so they see everything produced after).
async fn clients_connected(relay: &Relay, n: usize) {
    let ok = eventually(Duration::from_secs(20), || async {
        relay.metric("event_relay_tap_clients").await == n as f64
    })
    .await;
    assert!(ok, "{n} tap clients never connected");
}

/// A tap stream read by reqwest.
struct TapStream(reqwest::Response);

impl TapStream {
    async fn open(relay: &Relay, query: &str) -> Self {
        let url = format!("http://{}/tap?{query}", relay.listen);
        let response = reqwest::get(&url).await.expect("the tap answers");
        assert_eq!(response.status(), 200, "{url}");
        Self(response)
    }

    /// Every line until the stream ends (its limit), as JSON.
    async fn lines(mut self) -> Vec<Value> {
        let mut text = Vec::new();
        loop {
            match tokio::time::timeout(SILENCE, self.0.chunk()).await {
                Ok(Ok(Some(chunk))) => text.extend_from_slice(&chunk),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => panic!("the tap stream broke: {e}"),
                Err(_) => panic!(
                    "the tap went silent before its limit; so far:\n{}",
                    String::from_utf8_lossy(&text)
                ),
            }
        }
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("a JSON line"))
            .collect()
    }
}

/// The stages each id was seen at, in the order seen.
fn stages_by_id(lines: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        let id = l["id"].as_str().unwrap_or_else(|| panic!("no id: {l}"));
        by_id
            .entry(id.to_string())
            .or_default()
            .push(l["stage"].as_str().unwrap().to_string());
    }
    by_id
}

fn ids_of(lines: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_clients_see_a_known_workload_at_the_right_stages() {
    let rx = Receiver::start(vec![]).await;
    let env = env("g-tap-stages", &rx).await;
    let relay = serving(&env).await;
    let (cards, sites, invalid) = (ids(8), ids(2), ids(2));
    let valid: Vec<String> = cards.iter().chain(&sites).cloned().collect();
    let (n_valid, n_invalid) = (valid.len(), invalid.len());

    let everything =
        TapStream::open(&relay, &format!("limit={}", n_valid * 4 + n_invalid * 2)).await;
    let outcomes = TapStream::open(
        &relay,
        &format!("stage=delivered,dead_lettered&target=hook&limit={n_valid}"),
    )
    .await;
    let site_events = TapStream::open(&relay, "event=Site*&limit=8").await;
    let cli = Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(["tap", "--url", &format!("http://{}", relay.listen)])
        .args(["--stage", "delivered", "--limit", &n_valid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("event-relay tap starts");
    clients_connected(&relay, 4).await;

    let mut payloads: Vec<Vec<u8>> = cards.iter().map(|i| komo_event(i, "CardViewed")).collect();
    payloads.extend(sites.iter().map(|i| komo_event(i, "SiteViewed")));
    for id in &invalid {
        let mut v: Value = serde_json::from_slice(&komo_event(id, "CardViewed")).unwrap();
        v["score"] = "lots".into(); // breaks the catalog: dead-lettered (strict)
        payloads.push(v.to_string().into_bytes());
    }
    env.produce(&payloads).await;
    assert_eq!(env.results_json(n_valid).await.len(), n_valid);
    assert_eq!(env.dead_letters(n_invalid, SILENCE).await.len(), n_invalid);

    // Everything: each event at the stages it passed, in order; no envelope (payloads off).
    let lines = everything.lines().await;
    let by_id = stages_by_id(&lines);
    for id in &valid {
        assert_eq!(
            by_id[id],
            ["consumed", "normalized", "routed", "delivered"],
            "{id}"
        );
    }
    for id in &invalid {
        assert_eq!(by_id[id], ["consumed", "dead_lettered"], "{id}");
    }
    assert_eq!(by_id.len(), n_valid + n_invalid, "{lines:#?}");
    for l in &lines {
        assert!(l.get("envelope").is_none(), "payloads are off: {l}");
        assert_eq!(l["source"], "komo", "{l}");
        let (stage, id) = (l["stage"].as_str().unwrap(), l["id"].as_str().unwrap());
        let event = if sites.iter().any(|s| s == id) {
            "SiteViewed"
        } else {
            "CardViewed"
        };
        assert_eq!(l["event"], event, "{l}");
        let (target, outcome) = match stage {
            "consumed" => (Value::Null, Value::Null),
            "normalized" => (Value::Null, "valid".into()),
            "routed" => ("hook".into(), Value::Null),
            "delivered" => ("hook".into(), "WebhookSuccess".into()),
            "dead_lettered" => (Value::Null, "invalid".into()),
            other => panic!("unexpected stage {other}: {l}"),
        };
        assert_eq!((&l["target"], &l["outcome"]), (&target, &outcome), "{l}");
        if stage == "delivered" {
            assert_eq!(
                (&l["status"], &l["attempts"]),
                (&200.into(), &1.into()),
                "{l}"
            );
        }
    }

    // Filters: outcomes of `hook` only (dead letters name no target); events by glob.
    let lines = outcomes.lines().await;
    assert!(
        lines
            .iter()
            .all(|l| l["stage"] == "delivered" && l["target"] == "hook"),
        "{lines:#?}"
    );
    assert_eq!(ids_of(&lines), sorted(&valid));
    let lines = site_events.lines().await;
    assert!(
        lines.iter().all(|l| l["event"] == "SiteViewed"),
        "{lines:#?}"
    );
    assert_eq!(stages_by_id(&lines).len(), sites.len());

    // The command line: one line per delivered event, for a person, no colour off a terminal.
    let out = cli
        .wait_with_output()
        .expect("event-relay tap ends at its limit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), n_valid, "{stdout}");
    for id in &valid {
        let line = stdout.lines().find(|l| l.contains(id.as_str()));
        let line = line.unwrap_or_else(|| panic!("{id} missing:\n{stdout}"));
        for needle in ["delivered", "→ hook", "WebhookSuccess 200"] {
            assert!(line.contains(needle), "{needle:?} missing: {line}");
        }
    }
    assert!(
        !stdout.contains('\x1b'),
        "colour off a terminal: {stdout:?}"
    );
    relay.stop().await.unwrap();
}

/// Lines offered for each event of a webhook workload: consumed, normalized, routed, delivered.
const LINES_PER_EVENT: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_slows_nothing_and_is_told_what_it_lost() {
    let rx = Receiver::start(vec![]).await;
    let mut env = env("g-tap-slow", &rx).await;
    // Envelopes in the lines, and large ones: far more bytes than the socket buffers between
    // the relay and the client hold, so the client's queue must fill.
    env.config.log.include_payloads = true;
    let relay = serving(&env).await;
    let mut tap = NeverReading::connect(&relay.listen).await;
    clients_connected(&relay, 1).await;

    let n = 2_000;
    let payloads: Vec<Vec<u8>> = ids(n)
        .iter()
        .map(|id| {
            let mut v: Value = serde_json::from_slice(&komo_event(id, "CardViewed")).unwrap();
            v["notes"] = "x".repeat(4_000).into();
            v.to_string().into_bytes()
        })
        .collect();
    env.produce_concurrently(&payloads).await;
    // Every event delivered while the client read nothing.
    let results = env.results_json(n).await;
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|r| r["event"] == "WebhookSuccess"));

    // Now it reads: what it got plus what it was told it lost is every line offered.
    let offered = n * LINES_PER_EVENT;
    let (read, dropped) = tap.read_until_accounted(offered).await;
    assert!(
        offered > QUEUE_LINES && dropped > 0,
        "{offered} lines offered to a queue of {QUEUE_LINES} that was not read: some must be lost (read {read})"
    );
    assert_eq!(read + dropped, offered, "read {read}, dropped {dropped}");
    assert_eq!(
        relay.metric("event_relay_tap_dropped_total").await,
        dropped as f64
    );
    drop(tap);
    relay.stop().await.unwrap();
}

/// A tap client over a socket with a small receive buffer that reads nothing until asked.
struct NeverReading {
    body: hyper::body::Incoming,
    _sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl NeverReading {
    async fn connect(listen: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(listen.parse().unwrap()).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let request = http::Request::get("/tap")
            .header("host", listen)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("the tap answers");
        assert_eq!(response.status(), 200);
        Self {
            body: response.into_body(),
            _sender: sender,
        }
    }

    /// Reads until the event lines read plus the losses reported reach `offered`; returns both.
    async fn read_until_accounted(&mut self, offered: usize) -> (usize, usize) {
        let (mut read, mut dropped, mut partial) = (0, 0, Vec::new());
        while read + dropped < offered {
            let frame = tokio::time::timeout(SILENCE, self.body.frame()).await;
            let Ok(Some(Ok(frame))) = frame else {
                panic!("the tap stream ended or went silent: read {read}, dropped {dropped} of {offered}");
            };
            partial.extend_from_slice(&frame.into_data().unwrap_or_default());
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Value = serde_json::from_slice(&partial[..end]).expect("a JSON line");
                partial.drain(..=end);
                match line["dropped"].as_u64() {
                    Some(d) => dropped += d as usize,
                    None => {
                        assert!(line["envelope"]["id"].is_string(), "payloads on: {line}");
                        read += 1;
                    }
                }
            }
        }
        (read, dropped)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_is_a_404_that_says_how_to_turn_it_on_while_off() {
    let env = TestEnv::komo("g-tap-off", 1).await;
    assert!(!env.config.server.tap, "off by default");
    let relay = serving(&env).await;
    let (status, body) = relay.get("/tap?stage=delivered").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("tap = true") && body.contains("[server]"),
        "{body}"
    );

    let out = run(
        &["tap", "--url", &format!("http://{}", relay.listen)],
        Vec::new(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("404") && stderr.contains("tap = true"),
        "{stderr}"
    );
    relay.stop().await.unwrap();
}
