//! A tiny Kafka cat for the demo and benchmarks (not part of the relay):
//!   kcat produce --brokers B --topic T < lines.jsonl      (one message per line)
//!   kcat consume --brokers B --topic T [--max N] [--timeout-secs S]   (values to stdout)
//!   kcat create  --brokers B --topic T [--partitions P]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::io::{BufRead, Write};
use std::time::Duration;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let brokers = arg(&args, "--brokers").unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = arg(&args, "--topic").expect("--topic is required");
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &brokers);
    match mode.as_str() {
        "create" => {
            let partitions: i32 = arg(&args, "--partitions").map_or(1, |p| p.parse().unwrap());
            let admin: AdminClient<DefaultClientContext> = cfg.create().unwrap();
            let res = admin
                .create_topics(
                    &[NewTopic::new(
                        &topic,
                        partitions,
                        TopicReplication::Fixed(1),
                    )],
                    &AdminOptions::new(),
                )
                .await
                .unwrap();
            for r in res {
                match r {
                    Ok(t) => eprintln!("created {t}"),
                    Err((t, e)) => eprintln!("{t}: {e}"),
                }
            }
        }
        "produce" => {
            let p: FutureProducer = cfg.set("linger.ms", "5").create().unwrap();
            let mut n = 0;
            let mut pending = Vec::new();
            for line in std::io::stdin().lock().lines() {
                let line = line.unwrap();
                if line.trim().is_empty() {
                    continue;
                }
                let p = p.clone();
                let topic = topic.clone();
                pending.push(tokio::spawn(async move {
                    p.send(
                        FutureRecord::<(), _>::to(&topic).payload(&line),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
                }));
                n += 1;
                if pending.len() >= 10_000 {
                    for h in pending.drain(..) {
                        h.await.unwrap().unwrap();
                    }
                }
            }
            for h in pending {
                h.await.unwrap().unwrap();
            }
            eprintln!("produced {n} messages to {topic}");
        }
        "consume" => {
            let max: usize = arg(&args, "--max").map_or(usize::MAX, |m| m.parse().unwrap());
            let timeout: u64 = arg(&args, "--timeout-secs").map_or(10, |m| m.parse().unwrap());
            let c: StreamConsumer = cfg
                .set("group.id", format!("kcat-{}", std::process::id()))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500")
                .create()
                .unwrap();
            c.subscribe(&[&topic]).unwrap();
            let out = std::io::stdout();
            let mut out = out.lock();
            let mut n = 0;
            while n < max {
                match tokio::time::timeout(Duration::from_secs(timeout), c.recv()).await {
                    Ok(Ok(m)) => {
                        out.write_all(m.payload().unwrap_or_default()).unwrap();
                        out.write_all(b"\n").unwrap();
                        n += 1;
                    }
                    _ => break,
                }
            }
        }
        _ => {
            eprintln!("usage: kcat (create|produce|consume) --brokers B --topic T");
            std::process::exit(2);
        }
    }
}
