//! The broker side: tansu, topics, pre-loading, the steady latency stream, committed offsets.
//! The bare-consumer limits are in `bare.rs`.

use crate::gen::{Templates, TAG_LATENCY, TAG_PRELOAD};
use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tansu broker process, killed on drop.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Broker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn start_tansu(bin: &str, log: &Path) -> anyhow::Result<Broker> {
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err.log"))?)
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let broker = Broker {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&broker.bootstrap).is_err() {
        if Instant::now() > deadline {
            bail!("tansu did not listen on {} within 30 s", broker.bootstrap);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(broker)
}

pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("log_level", "3");
    c
}

pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap).create()?;
    let res = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Frees the broker's memory of a scenario's results (best effort).
pub async fn delete_topic(bootstrap: &str, topic: &str) {
    if let Ok(admin) = base_config(bootstrap).create::<AdminClient<DefaultClientContext>>() {
        let _ = admin.delete_topics(&[topic], &AdminOptions::new()).await;
    }
}

/// Counts failed deliveries (a BaseProducer drops them silently otherwise).
/// Also records the end offset (last acknowledged offset + 1) of every partition: tansu's
/// ListOffsets answer for a topic written in multi-record batches is not the log end, so
/// the producer's acknowledgements are the reference the committed offsets are compared to.
#[derive(Default)]
pub struct Counting {
    pub failed: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub ends: Mutex<Vec<i64>>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let (p, o) = (m.partition() as usize, m.offset());
                let mut ends = self.ends.lock().unwrap();
                if ends.len() <= p {
                    ends.resize(p + 1, 0);
                }
                ends[p] = ends[p].max(o + 1);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap() = Some(e.to_string());
            }
        }
    }
}

pub type BenchProducer = BaseProducer<Counting>;

/// Fails when any delivery failed; else the end offset of partitions `0..partitions`.
pub fn check_delivered(p: &BenchProducer, partitions: i32) -> anyhow::Result<Vec<i64>> {
    let failed = p.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} messages were not delivered to the broker (last error: {})",
            p.context()
                .last_error
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_default()
        );
    }
    let mut ends = p.context().ends.lock().unwrap().clone();
    ends.resize(partitions as usize, 0);
    Ok(ends)
}

/// A producer tuned for throughput (pre-load) or like a typical application (latency).
pub fn producer(bootstrap: &str, low_latency: bool) -> anyhow::Result<BenchProducer> {
    let mut c = base_config(bootstrap);
    if low_latency {
        // librdkafka's default: linger 0 would make every event its own produce request,
        // which costs tansu more CPU than the whole relay.
        c.set("linger.ms", "5");
    } else {
        c.set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "500000")
            .set("queue.buffering.max.kbytes", "1048576");
    }
    Ok(c.create_with_context(Counting::default())?)
}

/// Sends one message, waiting while the local queue is full.
pub fn send(p: &BenchProducer, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
    let mut rec = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => bail!("produce failed: {e}"),
        }
    }
}

pub struct Preload {
    pub bytes: u64,
    pub secs: f64,
    /// End offset per partition.
    pub ends: Vec<i64>,
}

/// Produces events `0..n` of the pre-load stream to `topic`.
pub fn preload(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    templates: &Templates,
    n: u64,
) -> anyhow::Result<Preload> {
    let p = producer(bootstrap, false)?;
    let t0 = Instant::now();
    let mut bytes = 0u64;
    for i in 0..n {
        let e = templates.event(TAG_PRELOAD, i, None);
        bytes += e.payload.len() as u64;
        send(&p, topic, &e.key, &e.payload)?;
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
        if i > 0 && i % 100_000 == 0 {
            eprintln!("  pre-loaded {i}/{n}");
        }
    }
    p.flush(Duration::from_secs(300))?;
    let secs = t0.elapsed().as_secs_f64();
    let ends = check_delivered(&p, partitions)?;
    Ok(Preload { bytes, secs, ends })
}

/// Produces latency-stream events `0..n` at a steady `rate` per second, each stamped with its
/// produce time; returns the seconds it took and the end offset per partition.
pub fn produce_steady(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    templates: &Templates,
    rate: u64,
    n: u64,
) -> anyhow::Result<(f64, Vec<i64>)> {
    let p = producer(bootstrap, true)?;
    let t0 = Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let e = templates.event(TAG_LATENCY, i, Some(crate::receiver::now_micros()));
        send(&p, topic, &e.key, &e.payload)?;
        p.poll(Duration::ZERO);
    }
    let secs = t0.elapsed().as_secs_f64();
    p.flush(Duration::from_secs(30))?;
    Ok((secs, check_delivered(&p, partitions)?))
}

/// Reads a group's committed offsets without joining it.
pub struct CommitChecker {
    consumer: BaseConsumer,
    tpl: TopicPartitionList,
}

impl CommitChecker {
    pub fn new(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = base_config(bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        Ok(Self { consumer, tpl })
    }

    /// Committed offset per partition (-1 when none).
    pub fn committed(&self) -> anyhow::Result<Vec<i64>> {
        let c = self
            .consumer
            .committed_offsets(self.tpl.clone(), Duration::from_secs(5))?;
        Ok(c.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            })
            .collect())
    }
}
