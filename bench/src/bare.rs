//! The limits the relay is compared to: a bare rdkafka consumer reading the pre-loaded topic
//! (throughput, no parsing, no HTTP) and reading the steady latency stream while it is
//! produced (produce-to-consume latency).

use crate::gen::Templates;
use crate::kafka::{base_config, produce_steady};
use anyhow::bail;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// The `bench_ts` a latency-stream payload carries (number or string), without parsing JSON.
fn bench_ts(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"bench_ts\":";
    let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = payload[at..]
        .iter()
        .skip_while(|b| **b == b' ' || **b == b'"')
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The latency limit: a bare consumer reading the steady stream (same options as the relay)
/// while it is produced; (produced at, produce-to-consume) in µs.
pub fn bare_latency(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    templates: &Templates,
    rate: u64,
    n: u64,
    options: &[(String, String)],
) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut c = base_config(bootstrap);
    c.set(
        "group.id",
        format!("bench-bare-latency-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "false");
    for (k, v) in options {
        c.set(k, v);
    }
    let consumer: BaseConsumer = c.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    // Let the consumer reach the (empty) end of the log before production starts.
    for _ in 0..20 {
        consumer.poll(Duration::from_millis(50));
    }
    std::thread::scope(|s| {
        let producing =
            s.spawn(|| produce_steady(bootstrap, topic, partitions, templates, rate, n));
        let deadline = Instant::now() + Duration::from_secs(n / rate.max(1) + 60);
        let mut lat = Vec::with_capacity(n as usize);
        while (lat.len() as u64) < n && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let now = crate::receiver::now_micros();
                if let Some(ts) = m.payload().and_then(bench_ts) {
                    lat.push((ts, now.saturating_sub(ts)));
                }
            }
        }
        producing.join().expect("producer thread")?;
        if (lat.len() as u64) < n {
            bail!("bare latency consumer read {} of {n} events", lat.len());
        }
        Ok(lat)
    })
}

pub struct Bare {
    pub events: u64,
    pub secs: f64,
    pub bytes: u64,
}

/// The limit: a bare consumer reading the same `n` messages (no parsing, no HTTP), with the
/// relay's consumer options; timed from the first message to the last.
pub fn bare_consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    options: &[(String, String)],
) -> anyhow::Result<Bare> {
    let mut c = base_config(bootstrap);
    c.set("group.id", format!("bench-bare-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in options {
        c.set(k, v);
    }
    let consumer: BaseConsumer = c.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    let mut count = 0u64;
    let mut bytes = 0u64;
    while count < n {
        if Instant::now() > deadline {
            bail!("bare consumer read only {count}/{n} messages in 600 s");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload_len() as u64;
                count += 1;
            }
            Some(Err(e)) => eprintln!("  bare consumer: {e}"),
            None => {}
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(Bare {
        events: count,
        secs,
        bytes,
    })
}
