//! A tiny Kafka cat for the demo and benchmarks (not part of the relay). `kcat --help` prints
//! the usage below.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
kcat: a tiny Kafka client for the event-relay demo

usage:
  kcat produce --brokers B --topic T < lines.jsonl
      one message per non-empty line of stdin
  kcat consume --brokers B --topic T [--max N] [--timeout-secs S]
      message values to stdout, one per line, from the earliest offset; stops after N
      messages or S seconds without one (default 10)
  kcat create  --brokers B --topic T [--partitions P]
      create a topic (replication factor 1)

--brokers defaults to 127.0.0.1:9092. With scripts/demo --keep running, e.g.:
  target/debug/examples/kcat produce --brokers 127.0.0.1:9092 --topic komo.events < my.jsonl
";

/// The value after `--name`, if the flag is present.
fn arg(args: &[String], name: &str) -> Result<Option<String>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("{name} needs a value (kcat --help for usage)")),
    }
}

/// A numeric flag's value, or `default` when the flag is absent.
fn number<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match arg(args, name)? {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name}: expected a number, got {v:?} (kcat --help for usage)")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty()
        || args
            .iter()
            .any(|a| a == "-h" || a == "--help" || a == "help")
    {
        if args.is_empty() {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kcat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let brokers = arg(args, "--brokers")?.unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = arg(args, "--topic")?.ok_or("--topic is required (kcat --help for usage)")?;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &brokers);
    match args[0].as_str() {
        "create" => create(&cfg, &topic, number(args, "--partitions", 1)?).await,
        "produce" => produce(&cfg, &topic).await,
        "consume" => {
            let max = number(args, "--max", usize::MAX)?;
            let timeout = number(args, "--timeout-secs", 10)?;
            consume(&mut cfg, &topic, max, timeout).await
        }
        other => Err(format!(
            "unknown command {other:?}: expected produce, consume or create (kcat --help for usage)"
        )),
    }
}

async fn create(cfg: &ClientConfig, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = cfg.create().map_err(|e| e.to_string())?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .map_err(|e| format!("create {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(t) => eprintln!("created {t} (partitions: {partitions})"),
            Err((t, e)) => return Err(format!("create {t}: {e}")),
        }
    }
    Ok(())
}

async fn produce(cfg: &ClientConfig, topic: &str) -> Result<(), String> {
    let producer: FutureProducer = cfg
        .clone()
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    let mut pending = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let producer = producer.clone();
        let topic = topic.to_string();
        pending.push(tokio::spawn(async move {
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic).payload(&line),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }));
        n += 1;
        if pending.len() >= 10_000 {
            wait_all(&mut pending).await?;
        }
    }
    wait_all(&mut pending).await?;
    eprintln!("produced {n} messages to {topic}");
    Ok(())
}

type Sent = tokio::task::JoinHandle<Result<(), rdkafka::error::KafkaError>>;

async fn wait_all(pending: &mut Vec<Sent>) -> Result<(), String> {
    for handle in pending.drain(..) {
        handle
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("produce: {e}"))?;
    }
    Ok(())
}

async fn consume(
    cfg: &mut ClientConfig,
    topic: &str,
    max: usize,
    timeout_secs: u64,
) -> Result<(), String> {
    let consumer: StreamConsumer = cfg
        .set("group.id", format!("kcat-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut n = 0;
    while n < max {
        match tokio::time::timeout(Duration::from_secs(timeout_secs), consumer.recv()).await {
            Ok(Ok(m)) => {
                out.write_all(m.payload().unwrap_or_default())
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|e| format!("writing stdout: {e}"))?;
                n += 1;
            }
            _ => break,
        }
    }
    Ok(())
}
