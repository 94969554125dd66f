//! End-to-end benchmark of the event-relay release binary (issue 6). Run it with
//! `scripts/bench`; see the README's "Performance" section.
//!
//! Starts tansu, pre-loads N events into a 4-partition topic, measures a bare rdkafka consumer
//! reading them (the limit), then runs the relay once per scenario with a fresh consumer group
//! and results topic against an in-process loopback receiver, until every event reached the
//! receiver, every result event was produced and the group's committed offsets equal the high
//! watermarks. Prints a markdown table and writes a JSON file.

mod bare;
mod gen;
mod kafka;
mod receiver;
mod relay;

use anyhow::{bail, Context};
use clap::Parser;
use receiver::{Kind, Receiver};
use relay::{metric_sum, Relay, RelayConfig, Targets};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
const SOURCE_TOPIC: &str = "bench.events";
const DLQ_TOPIC: &str = "bench.dlq";
const ALL: &[&str] = &["batch", "webhook", "fanout", "latency", "outage"];

#[derive(Parser, Debug)]
#[command(about = "End-to-end benchmark of the event-relay release binary")]
struct Args {
    /// Events pre-loaded into the source topic (batch, webhook, fanout, outage).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Comma-separated: batch,webhook,fanout,latency,outage (bare consumer always runs).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "batch,webhook,fanout,latency,outage"
    )]
    scenarios: Vec<String>,
    /// Outage scenario: seconds the receiver answers 503 before answering 200 again.
    #[arg(long, default_value_t = 60)]
    outage_secs: u64,
    /// Latency scenario: seconds of steady production.
    #[arg(long, default_value_t = 30)]
    latency_secs: u64,
    /// Latency scenario: events per second.
    #[arg(long, default_value_t = 5000)]
    latency_rate: u64,
    /// Extra librdkafka option KEY=VALUE for the relay's [kafka.options] and the bare consumer
    /// (repeatable; e.g. fetch.wait.max.ms=10).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_kv)]
    kafka_options: Vec<(String, String)>,
    /// The relays' `pipeline.max_in_flight_events` (the bound on events held in memory).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight_events: usize,
    /// Latency scenario: the relay's fetch.wait.max.ms (0: librdkafka's 500). tansu answers a
    /// fetch at the end of the log only when this wait expires, not when records arrive as
    /// Kafka does, so the default keeps the broker's wait out of the relay's latency.
    #[arg(long, default_value_t = 10)]
    latency_fetch_wait_ms: u64,
    /// The relay's release binary.
    #[arg(long, default_value = "target/release/event-relay")]
    relay: String,
    /// The tansu binary (scripts/setup installs it into .venv/).
    #[arg(long, required_unless_present = "brokers")]
    tansu: Option<String>,
    /// Use this running broker instead of starting tansu (topics must not exist yet).
    #[arg(long)]
    brokers: Option<String>,
    /// One valid raw event per catalog event: the templates of the mix.
    #[arg(long, default_value = "tests/fixtures/valid_events.jsonl")]
    fixtures: String,
    /// JSON output (the last one given wins, so `scripts/bench --out F` works).
    #[arg(
        long,
        default_value = "bench/results/latest.json",
        overrides_with = "out"
    )]
    out: PathBuf,
    /// Per-scenario time limit in seconds (0: derived from --events).
    #[arg(long, default_value_t = 0)]
    timeout_secs: u64,
    /// Record `perf record` of the relay during each scenario into DIR/<scenario>.perf.data.
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
    /// Sampling options of --perf (e.g. "-F 499 --call-graph dwarf,16384" for full stacks).
    #[arg(long, default_value = "-F 999 -g", allow_hyphen_values = true)]
    perf_args: String,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// Shared state of one benchmark run.
struct Ctx {
    args: Args,
    bootstrap: String,
    dir: PathBuf,
    receiver: Arc<Receiver>,
    recv_addr: std::net::SocketAddr,
    templates: Arc<gen::Templates>,
    hw: Vec<i64>,
    bare_eps: f64,
    /// relay::KAFKA_OPTIONS, then --kafka-option.
    kafka_options: Vec<(String, String)>,
    /// The broker's pid when the harness started it (its CPU is reported per scenario).
    broker_pid: Option<u32>,
}

#[derive(Default)]
struct Measured {
    first: Option<Instant>,
    delivered: Option<Instant>,
    done: Option<Instant>,
    recovered: Option<Instant>,
    cpu_secs: f64,
    /// CPU seconds of the broker and of this harness (receiver, producer) while measuring.
    broker_cpu: f64,
    harness_cpu: f64,
    hwm_kib: u64,
    /// (thread name, threads, CPU seconds) of the relay when done.
    threads: Vec<(String, usize, f64)>,
    /// (seconds since the relay started, RSS KiB), every 200 ms.
    rss: Vec<(f64, u64)>,
    /// `event_relay_in_flight_events` and `event_relay_backpressure_paused`, once a second
    /// while events flow.
    in_flight: Vec<f64>,
    paused: Vec<f64>,
    metrics: String,
    error: Option<String>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// When a scenario is done.
struct Goal<'a> {
    /// Target kinds every event must reach.
    kinds: &'a [Kind],
    /// Result events the relay must have produced.
    expected_results: f64,
    /// Reads the relay group's committed offsets.
    checker: Arc<kafka::CommitChecker>,
    /// End offsets the commits must reach (set by the latency producer when it finishes).
    hw: Arc<Mutex<Option<Vec<i64>>>>,
    /// Receiver answers 503 for this long after the first request.
    outage: Option<Duration>,
    timeout: Duration,
}

/// Polls until every expected event reached the receiver, every result was produced and the
/// group committed up to the end offsets; ends the outage `outage` after the first request.
async fn measure(ctx: &Ctx, relay: &mut Relay, goal: Goal<'_>) -> Measured {
    let Goal {
        kinds,
        expected_results,
        checker,
        hw,
        outage,
        timeout,
    } = goal;
    let mut m = Measured::default();
    let expected = ctx.receiver.expected();
    let started = Instant::now();
    let mut last_rss = Instant::now() - Duration::from_secs(1);
    let mut last_progress = Instant::now();
    let mut last_gauges = Instant::now();
    let mut perf: Option<Child> = None;
    let broker_cpu = || {
        ctx.broker_pid
            .and_then(|p| relay::cpu_secs_of(&p.to_string()))
            .unwrap_or(f64::NAN)
    };
    let harness_cpu = || relay::cpu_secs_of("self").unwrap_or(f64::NAN);
    let (broker0, harness0) = (broker_cpu(), harness_cpu());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now.duration_since(last_rss) >= Duration::from_millis(200) {
            if let Some(kib) = relay.rss_kib() {
                m.rss
                    .push((now.duration_since(relay.spawned).as_secs_f64(), kib));
            }
            last_rss = now;
        }
        let snap = ctx.receiver.snapshot();
        if m.first.is_none() && snap.first_request.is_some() {
            m.first = snap.first_request;
            if let Some(dir) = &ctx.args.perf {
                perf = start_perf(dir, &ctx.args.perf_args, relay);
            }
        }
        if let (Some(first), Some(len)) = (m.first, outage) {
            if m.recovered.is_none() && now.duration_since(first) >= len {
                ctx.receiver.set_failing(false);
                m.recovered = Some(now);
                eprintln!("  outage over after {len:?}; receiver answers 200");
            }
        }
        if m.first.is_some()
            && m.delivered.is_none()
            && now.duration_since(last_gauges) >= Duration::from_secs(1)
        {
            last_gauges = now;
            if let Some(text) = relay.metrics() {
                m.in_flight
                    .push(metric_sum(&text, "event_relay_in_flight_events", None));
                m.paused
                    .push(metric_sum(&text, "event_relay_backpressure_paused", None));
            }
        }
        if now.duration_since(last_progress) >= Duration::from_secs(5) {
            last_progress = now;
            eprintln!(
                "  … {:.0} s: received {:?} of {expected}, {} requests ({} answered 503)",
                now.duration_since(relay.spawned).as_secs_f64(),
                kinds
                    .iter()
                    .map(|k| snap.distinct[*k as usize])
                    .collect::<Vec<_>>(),
                ctx.receiver
                    .requests
                    .load(std::sync::atomic::Ordering::Relaxed),
                ctx.receiver
                    .answered_503
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
        }
        if !relay.alive() {
            m.error = Some(format!("the relay exited; see {}", relay.log.display()));
            break;
        }
        if now.duration_since(started) > timeout {
            m.error = Some(format!(
                "timed out after {timeout:?}: received {:?} of {expected}",
                kinds
                    .iter()
                    .map(|k| snap.distinct[*k as usize])
                    .collect::<Vec<_>>()
            ));
            break;
        }
        let all_received = kinds.iter().all(|k| snap.distinct[*k as usize] >= expected);
        if !all_received || m.recovered.is_none() && outage.is_some() {
            continue;
        }
        m.delivered.get_or_insert(snap.last_event.unwrap_or(now));
        let Some(text) = relay.metrics() else {
            continue;
        };
        if metric_sum(&text, "event_relay_results_produced_total", None) < expected_results {
            continue;
        }
        // Known up front for the pre-loaded topic; for the latency stream once it was produced.
        let Some(hw) = hw.lock().unwrap().clone() else {
            continue;
        };
        let c = checker.clone();
        let committed = tokio::task::spawn_blocking(move || c.committed())
            .await
            .expect("commit check does not panic");
        match committed {
            Ok(c) if c == hw => {
                m.done = Some(Instant::now());
                m.cpu_secs = relay.cpu_secs().unwrap_or(f64::NAN);
                m.broker_cpu = broker_cpu() - broker0;
                m.harness_cpu = harness_cpu() - harness0;
                m.hwm_kib = relay.hwm_kib().unwrap_or(0);
                m.threads = relay.threads_cpu();
                m.metrics = relay.metrics().unwrap_or(text);
                break;
            }
            Ok(_) => {}
            Err(e) => eprintln!("  committed offsets: {e}"),
        }
    }
    if let Some(mut p) = perf {
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    m
}

fn start_perf(dir: &Path, args: &str, relay: &Relay) -> Option<Child> {
    let _ = std::fs::create_dir_all(dir);
    let name = relay
        .log
        .file_name()?
        .to_string_lossy()
        .replace(".relay.log", ".perf.data");
    Command::new("perf")
        .arg("record")
        .args(args.split_whitespace())
        .arg("-o")
        .arg(dir.join(name))
        .args(["-p", &relay.pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("  perf record: {e}"))
        .ok()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The relay's (and the bare consumer's) options in the latency scenario.
fn latency_options(ctx: &Ctx) -> Vec<(String, String)> {
    let mut o = ctx.kafka_options.clone();
    if ctx.args.latency_fetch_wait_ms > 0 {
        o.push((
            "fetch.wait.max.ms".into(),
            ctx.args.latency_fetch_wait_ms.to_string(),
        ));
    }
    o
}

/// Latency percentiles (ms) of µs samples, with the p99 of every second of production.
fn latency_stats(samples: Vec<(u64, u64)>) -> Value {
    let t0 = samples.iter().map(|(t, _)| *t).min().unwrap_or(0);
    let mut by_second: Vec<Vec<u64>> = Vec::new();
    for (t, l) in &samples {
        let s = ((t - t0) / 1_000_000) as usize;
        if by_second.len() <= s {
            by_second.resize(s + 1, Vec::new());
        }
        by_second[s].push(*l);
    }
    let p99_by_second: Vec<f64> = by_second
        .iter_mut()
        .map(|v| {
            v.sort_unstable();
            r1(percentile(v, 0.99))
        })
        .collect();
    let mut lat: Vec<u64> = samples.into_iter().map(|(_, l)| l).collect();
    lat.sort_unstable();
    json!({
        "samples": lat.len(),
        "p50": r2(percentile(&lat, 0.5)),
        "p99": r2(percentile(&lat, 0.99)),
        "p999": r2(percentile(&lat, 0.999)),
        "max": r2(lat.last().map_or(f64::NAN, |&x| x as f64 / 1000.0)),
        "p99_by_second_of_production": p99_by_second,
    })
}

/// The bare consumer's produce-to-consume latency on the same steady stream: what the broker
/// and client alone cost before the relay does anything.
async fn bare_latency(ctx: &Ctx) -> anyhow::Result<Value> {
    let topic = "bench.latency.bare";
    kafka::create_topic(&ctx.bootstrap, topic, PARTITIONS).await?;
    let (b, t, o) = (
        ctx.bootstrap.clone(),
        ctx.templates.clone(),
        latency_options(ctx),
    );
    let (rate, n) = (
        ctx.args.latency_rate,
        ctx.args.latency_rate * ctx.args.latency_secs,
    );
    let lat = tokio::task::spawn_blocking(move || {
        bare::bare_latency(&b, topic, PARTITIONS, &t, rate, n, &o)
    })
    .await??;
    kafka::delete_topic(&ctx.bootstrap, topic).await;
    Ok(latency_stats(lat))
}

/// Runs one scenario and returns its JSON row.
async fn scenario(ctx: &Ctx, name: &str) -> anyhow::Result<Value> {
    let n = ctx.args.events;
    let (targets, kinds): (Targets, &[Kind]) = match name {
        "batch" => (Targets::Posthog, &[Kind::Posthog]),
        "webhook" | "latency" | "outage" => (Targets::Webhook, &[Kind::Webhook]),
        "fanout" => (Targets::Both, &[Kind::Posthog, Kind::Webhook]),
        other => bail!("unknown scenario {other:?} (known: {})", ALL.join(",")),
    };
    let tag = format!("{name}-{}", std::process::id());
    let results_topic = format!("bench.results.{name}");
    kafka::create_topic(&ctx.bootstrap, &results_topic, PARTITIONS).await?;
    let latency = name == "latency";
    let (source_topic, events) = if latency {
        let t = "bench.latency".to_string();
        kafka::create_topic(&ctx.bootstrap, &t, PARTITIONS).await?;
        (t, ctx.args.latency_rate * ctx.args.latency_secs)
    } else {
        (SOURCE_TOPIC.to_string(), n)
    };
    let hw = Arc::new(Mutex::new((!latency).then(|| ctx.hw.clone())));
    let group = format!("bench-{tag}");
    let kafka_options = if latency {
        latency_options(ctx)
    } else {
        ctx.kafka_options.clone()
    };
    let metrics_port = kafka::free_port()?;
    let cfg = RelayConfig {
        brokers: &ctx.bootstrap,
        group: &group,
        source_topic: &source_topic,
        results_topic: &results_topic,
        dlq_topic: DLQ_TOPIC,
        receiver: ctx.recv_addr,
        metrics_port,
        targets,
        kafka_options: &kafka_options,
        keep_retrying: name == "outage",
        max_in_flight_events: ctx.args.max_in_flight_events,
    }
    .toml();
    ctx.receiver.reset(events);
    let outage = (name == "outage").then(|| Duration::from_secs(ctx.args.outage_secs));
    ctx.receiver.set_failing(outage.is_some());
    let mut relay = Relay::spawn(&ctx.args.relay, &cfg, &ctx.dir, name, metrics_port)?;
    let checker = Arc::new(kafka::CommitChecker::new(
        &ctx.bootstrap,
        &group,
        &source_topic,
        PARTITIONS,
    )?);
    let timeout = Duration::from_secs(if ctx.args.timeout_secs > 0 {
        ctx.args.timeout_secs
    } else {
        120 + n / 1000 + ctx.args.outage_secs + ctx.args.latency_secs
    });

    let mut producer_secs = None;
    let m = if latency {
        // Steady production starts once the relay has joined its group.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !relay.ready() {
            if Instant::now() > deadline || !relay.alive() {
                bail!("relay not ready within 60 s; see {}", relay.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (bootstrap, topic, templates) = (
            ctx.bootstrap.clone(),
            source_topic.clone(),
            ctx.templates.clone(),
        );
        let rate = ctx.args.latency_rate;
        let ends = hw.clone();
        let producing = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
            let (secs, e) =
                kafka::produce_steady(&bootstrap, &topic, PARTITIONS, &templates, rate, events)?;
            *ends.lock().unwrap() = Some(e);
            Ok(secs)
        });
        let goal = Goal {
            kinds,
            expected_results: events as f64,
            checker,
            hw,
            outage: None,
            timeout,
        };
        let m = measure(ctx, &mut relay, goal).await;
        producer_secs = Some(producing.await??);
        m
    } else {
        let goal = Goal {
            kinds,
            expected_results: (events * kinds.len() as u64) as f64,
            checker,
            hw,
            outage,
            timeout,
        };
        measure(ctx, &mut relay, goal).await
    };
    let exit = relay.stop(Duration::from_secs(60));
    kafka::delete_topic(&ctx.bootstrap, &results_topic).await;
    if latency {
        kafka::delete_topic(&ctx.bootstrap, &source_topic).await;
    }

    let snap = ctx.receiver.snapshot();
    let dupes: u64 = kinds
        .iter()
        .map(|k| snap.total[*k as usize] - snap.distinct[*k as usize])
        .sum();
    let requests = ctx
        .receiver
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let bad = ctx
        .receiver
        .bad_bodies
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut row = json!({
        "scenario": name,
        "targets": format!("{targets:?}").to_lowercase(),
        "events": events,
        "relay_exit": exit,
        "receiver_requests": requests,
        "receiver_bad_bodies": bad,
        "receiver_unknown_ids": ctx.receiver.unknown_ids.load(std::sync::atomic::Ordering::Relaxed),
        "duplicates": dupes,
        "log": relay.log.display().to_string(),
    });
    if let Some(e) = &m.error {
        row["error"] = json!(e);
        eprintln!("  {name}: {e}");
        return Ok(row);
    }
    let (Some(first), Some(done)) = (m.first, m.done) else {
        bail!("{name}: finished without a first request");
    };
    let secs = done.duration_since(first).as_secs_f64();
    let eps = events as f64 / secs;
    row["startup_secs"] = json!(r2(first.duration_since(relay.spawned).as_secs_f64()));
    row["secs"] = json!(r2(secs));
    row["delivered_secs"] = json!(r2(m
        .delivered
        .map_or(secs, |d| d.duration_since(first).as_secs_f64())));
    row["events_per_sec"] = json!(eps.round());
    row["cpu_secs"] = json!(r2(m.cpu_secs));
    row["cpu_secs_per_million"] = json!(r1(m.cpu_secs / events as f64 * 1e6));
    row["peak_rss_mib"] = json!(r1(mib(m.hwm_kib)));
    // Little's law: with the in-flight bound reached, throughput = bound / time in flight.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let hist_mean_ms = |name: &str| {
        let sum = metric_sum(&m.metrics, &format!("{name}_sum"), None);
        let count = metric_sum(&m.metrics, &format!("{name}_count"), None);
        r1(sum / count.max(1.0) * 1000.0)
    };
    row["in_flight_mean"] = json!(mean(&m.in_flight).round());
    row["backpressure_paused_share"] = json!(r2(mean(&m.paused)));
    row["time_in_flight_ms"] = json!(r1(mean(&m.in_flight) / eps * 1000.0));
    row["request_duration_mean_ms"] = json!(hist_mean_ms("event_relay_request_duration_seconds"));
    row["delivery_duration_mean_ms"] = json!(hist_mean_ms("event_relay_delivery_duration_seconds"));
    row["relay_threads_cpu_secs"] = json!(m
        .threads
        .iter()
        .filter(|(_, _, c)| *c >= 0.01)
        .map(|(name, n, c)| json!({"thread": name, "count": n, "cpu_secs": r2(*c)}))
        .collect::<Vec<_>>());
    row["broker_cpu_secs"] = json!(r2(m.broker_cpu));
    row["harness_cpu_secs"] = json!(r2(m.harness_cpu));
    row["loadavg_1m_after"] = json!(relay::loadavg());
    row["ratio_to_bare"] = json!(r2(eps / ctx.bare_eps));
    row["results_produced"] = json!(metric_sum(
        &m.metrics,
        "event_relay_results_produced_total",
        None
    ));
    row["webhook_errors"] = json!(metric_sum(
        &m.metrics,
        "event_relay_results_produced_total",
        Some("event=\"WebhookError\"")
    ));
    row["dead_letters"] = json!(metric_sum(
        &m.metrics,
        "event_relay_dead_letters_total",
        None
    ));
    row["http_requests_ok"] = json!(metric_sum(
        &m.metrics,
        "event_relay_delivery_attempts_total",
        Some("result=\"ok\"")
    ));
    row["http_requests_retryable"] = json!(metric_sum(
        &m.metrics,
        "event_relay_delivery_attempts_total",
        Some("result=\"retryable\"")
    ));
    let mut notes = Vec::new();
    if let Some(ps) = producer_secs {
        let stats = latency_stats(ctx.receiver.take_latencies());
        let (p50, p99, max) = (
            stats["p50"].as_f64().unwrap_or(f64::NAN),
            stats["p99"].as_f64().unwrap_or(f64::NAN),
            stats["max"].as_f64().unwrap_or(f64::NAN),
        );
        let rate = events as f64 / ps;
        row["events_per_sec"] = json!(rate.round());
        row["ratio_to_bare"] = Value::Null;
        row["latency_ms"] = stats;
        notes.push(format!(
            "events/s = offered rate, {ps:.0} s; produce-to-receiver p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        ));
    }
    if let (Some(rec), Some(first)) = (m.recovered, m.first) {
        let t_first = first.duration_since(relay.spawned).as_secs_f64();
        let t_rec = rec.duration_since(relay.spawned).as_secs_f64();
        let mid = t_first + (t_rec - t_first) / 2.0;
        let peak = |a: f64, b: f64| {
            m.rss
                .iter()
                .filter(|(t, _)| *t >= a && *t <= b)
                .map(|(_, k)| *k)
                .max()
                .unwrap_or(0)
        };
        let (h1, h2) = (peak(t_first, mid), peak(mid, t_rec));
        let drain = done.duration_since(rec).as_secs_f64();
        row["outage_secs"] = json!(ctx.args.outage_secs);
        row["peak_rss_outage_mib"] = json!(r1(mib(h1.max(h2))));
        row["peak_rss_outage_first_half_mib"] = json!(r1(mib(h1)));
        row["peak_rss_outage_second_half_mib"] = json!(r1(mib(h2)));
        row["drain_secs"] = json!(r2(drain));
        row["events_per_sec"] = json!((events as f64 / drain).round());
        row["ratio_to_bare"] = json!(r2(events as f64 / drain / ctx.bare_eps));
        row["answered_503"] = json!(ctx
            .receiver
            .answered_503
            .load(std::sync::atomic::Ordering::Relaxed));
        row["rss_timeline_kib"] = json!(m
            .rss
            .iter()
            .step_by(5)
            .map(|(t, k)| json!([r1(*t), k]))
            .collect::<Vec<_>>());
        notes.push(format!(
            "events/s = drain rate after {} s of 503: peak RSS {:.1} MiB during it ({:.1} → {:.1} MiB first → second half); drained in {drain:.1} s after",
            ctx.args.outage_secs,
            mib(h1.max(h2)),
            mib(h1),
            mib(h2)
        ));
    }
    let errors =
        row["webhook_errors"].as_f64().unwrap_or(0.0) + row["dead_letters"].as_f64().unwrap_or(0.0);
    if errors > 0.0 || bad > 0 {
        notes.push(format!(
            "{} WebhookError, {} dead letters, {bad} bad bodies",
            row["webhook_errors"], row["dead_letters"]
        ));
    }
    if dupes > 0 {
        notes.push(format!("{dupes} duplicate deliveries"));
    }
    if name == "batch" || name == "fanout" {
        notes.push(format!("{} requests", fmt_num(requests as f64)));
    }
    row["notes"] = json!(notes.join("; "));
    Ok(row)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        / 1024
}

/// Which relay was measured: `--version`, the git commit and whether src/ had local changes.
fn relay_source(bin: &str) -> Value {
    let out = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let version = out(Command::new(bin).arg("--version"));
    let commit = out(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
    let dirty = !out(Command::new("git").args([
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ]))
    .is_empty();
    json!({"version": version, "git_commit": commit, "src_modified": dirty})
}

/// UTC date and time from the system clock (no date crate needed).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn fmt_num(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn table(report: &Value) -> String {
    let mut t = String::from(
        "| scenario | events | events/s | CPU s / M events | peak RSS MiB | vs bare consumer | notes |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    let bare = &report["bare_consumer"];
    t.push_str(&format!(
        "| bare consumer (limit) | {} | {} | – | – | 1.00 | rdkafka BaseConsumer, no parsing |\n",
        fmt_num(bare["events"].as_f64().unwrap_or(0.0)),
        fmt_num(bare["events_per_sec"].as_f64().unwrap_or(0.0)),
    ));
    let lat = &bare["latency_ms"];
    if let Some(p99) = lat["p99"].as_f64() {
        let s = &report["settings"];
        t.push_str(&format!(
            "| bare consumer latency (limit) | {} | {} | – | – | – | produce-to-consume p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms |\n",
            fmt_num(lat["samples"].as_f64().unwrap_or(0.0)),
            fmt_num(s["latency_rate"].as_f64().unwrap_or(0.0)),
            lat["p50"].as_f64().unwrap_or(f64::NAN),
            lat["max"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    for r in report["scenarios"].as_array().into_iter().flatten() {
        let name = r["scenario"].as_str().unwrap_or("?");
        if let Some(e) = r["error"].as_str() {
            t.push_str(&format!(
                "| {name} | {} | – | – | – | – | FAILED: {e} |\n",
                fmt_num(r["events"].as_f64().unwrap_or(0.0))
            ));
            continue;
        }
        let ratio = r["ratio_to_bare"]
            .as_f64()
            .map_or("–".to_string(), |x| format!("{x:.2}"));
        t.push_str(&format!(
            "| {name} | {} | {} | {:.1} | {:.1} | {ratio} | {} |\n",
            fmt_num(r["events"].as_f64().unwrap_or(0.0)),
            fmt_num(r["events_per_sec"].as_f64().unwrap_or(0.0)),
            r["cpu_secs_per_million"].as_f64().unwrap_or(f64::NAN),
            r["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            r["notes"].as_str().unwrap_or(""),
        ));
    }
    t
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for s in &args.scenarios {
        if !ALL.contains(&s.as_str()) {
            bail!("unknown scenario {s:?} (known: {})", ALL.join(","));
        }
    }
    if !Path::new(&args.relay).exists() {
        bail!(
            "{} not found: cargo build --release --bin event-relay",
            args.relay
        );
    }
    let out_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let dir = out_dir.join("run-latest");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let templates = Arc::new(gen::Templates::load(&args.fixtures)?);
    let date = utc_now();
    let load0 = relay::loadavg();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "bench: {} events, {nproc} cores, {}",
        args.events,
        cpu_model()
    );

    let (broker, bootstrap) = match (&args.brokers, &args.tansu) {
        (Some(b), _) => (None, b.clone()),
        (None, Some(t)) => {
            let broker = kafka::start_tansu(t, &dir.join("tansu.log"))?;
            let b = broker.bootstrap.clone();
            (Some(broker), b)
        }
        (None, None) => bail!("--tansu or --brokers is required"),
    };
    kafka::create_topic(&bootstrap, SOURCE_TOPIC, PARTITIONS).await?;
    kafka::create_topic(&bootstrap, DLQ_TOPIC, 1).await?;

    eprintln!(
        "bench: pre-loading {} events into {SOURCE_TOPIC}",
        args.events
    );
    let (b, t, n) = (bootstrap.clone(), templates.clone(), args.events);
    let pre =
        tokio::task::spawn_blocking(move || kafka::preload(&b, SOURCE_TOPIC, PARTITIONS, &t, n))
            .await??;
    let hw = pre.ends.clone();
    if hw.iter().sum::<i64>() != args.events as i64 {
        bail!("end offsets {hw:?} do not add up to {}", args.events);
    }
    let avg_bytes = pre.bytes as f64 / args.events.max(1) as f64;
    eprintln!(
        "bench: pre-loaded in {:.1} s ({:.0} ev/s), avg {avg_bytes:.0} bytes, partitions {hw:?}",
        pre.secs,
        args.events as f64 / pre.secs
    );

    eprintln!("bench: bare consumer");
    let kafka_options: Vec<(String, String)> = relay::KAFKA_OPTIONS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(args.kafka_options.iter().cloned())
        .collect();
    let (b, n, o) = (bootstrap.clone(), args.events, kafka_options.clone());
    let bare = tokio::task::spawn_blocking(move || {
        bare::bare_consume(&b, SOURCE_TOPIC, PARTITIONS, n, &o)
    })
    .await??;
    let bare_eps = bare.events as f64 / bare.secs;
    eprintln!("bench: bare consumer {bare_eps:.0} ev/s");

    let receiver = Receiver::new();
    let recv_addr = receiver::serve(receiver.clone()).await?;
    let ctx = Ctx {
        args,
        bootstrap,
        dir,
        receiver,
        recv_addr,
        templates,
        hw,
        bare_eps,
        broker_pid: broker.as_ref().map(kafka::Broker::pid),
        kafka_options,
    };
    let mut bare_lat = Value::Null;
    if ctx.args.scenarios.iter().any(|s| s == "latency") {
        eprintln!(
            "bench: bare consumer latency ({} ev/s for {} s)",
            ctx.args.latency_rate, ctx.args.latency_secs
        );
        bare_lat = bare_latency(&ctx)
            .await
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        eprintln!("bench: bare consumer latency {bare_lat}");
    }
    let mut rows = Vec::new();
    for name in &ctx.args.scenarios {
        eprintln!("bench: scenario {name}");
        let row = match scenario(&ctx, name).await {
            Ok(r) => r,
            Err(e) => {
                json!({"scenario": name, "events": ctx.args.events, "error": format!("{e:#}")})
            }
        };
        eprintln!("bench: {name}: {row}");
        rows.push(row);
    }
    drop(broker);

    let report = json!({
        "date": date,
        "machine": {
            "nproc": nproc,
            "cpu_model": cpu_model(),
            "mem_total_mib": mem_total_mib(),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "loadavg_1m_at_start": load0,
        },
        "relay": relay_source(&ctx.args.relay),
        "events": ctx.args.events,
        "avg_event_bytes": avg_bytes.round(),
        "partitions": PARTITIONS,
        "broker": "tansu (memory storage), same machine",
        "preload": {"secs": r2(pre.secs), "events_per_sec": (ctx.args.events as f64 / pre.secs).round()},
        "bare_consumer": {
            "events": bare.events,
            "secs": r2(bare.secs),
            "events_per_sec": bare_eps.round(),
            "mib_per_sec": r1(bare.bytes as f64 / bare.secs / 1048576.0),
            "latency_ms": bare_lat,
        },
        "settings": {
            "outage_secs": ctx.args.outage_secs,
            "latency_secs": ctx.args.latency_secs,
            "latency_rate": ctx.args.latency_rate,
            "latency_fetch_wait_ms": ctx.args.latency_fetch_wait_ms,
            "max_in_flight_events": ctx.args.max_in_flight_events,
            "kafka_options": ctx.kafka_options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        },
        "scenarios": rows,
    });
    std::fs::write(&ctx.args.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", ctx.args.out.display()))?;
    println!(
        "\n{} events (avg {avg_bytes:.0} bytes, {PARTITIONS} partitions), {date}, {nproc} cores ({})\n",
        fmt_num(ctx.args.events as f64),
        cpu_model()
    );
    println!("{}", table(&report));
    eprintln!(
        "bench: wrote {} (logs and configs in {})",
        ctx.args.out.display(),
        ctx.dir.display()
    );
    Ok(())
}
