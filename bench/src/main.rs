//! End-to-end benchmark of the event-relay release binary (issue 6). Run it with
//! `scripts/bench`; see docs/performance.md (method and runs) and the README's "Performance".
//!
//! Starts tansu, pre-loads N events into a 4-partition topic, measures a bare rdkafka consumer
//! reading them (the limit), then runs the relay once per scenario with a fresh consumer group
//! and results topic against an in-process loopback receiver, until every event reached the
//! receiver, every result event was produced and the group's committed offsets equal the high
//! watermarks; with `--compare` a second relay binary right after it on the same scenario, with
//! `--tap` the same binary again with `server.tap = true` and no tap client (`tap`).
//! Prints a markdown table, the relay's CPU per thread group (and the comparison) and writes a
//! JSON file.
//!
//! This file holds the flags and the run's order (broker, pre-load, bare consumer, scenarios,
//! report). `scenarios` says what each scenario configures and runs (`isolation`: the
//! outage-isolation scenario's two runs, `transform`: webhook-transform's program and its cost
//! against webhook), `measure` watches a running relay until its goal is
//! reached, `report` turns that into JSON rows and the table; `threads` groups the relay's CPU
//! by thread and `compare` sets a second binary's rows (--compare) against this build's;
//! `kafka`, `bare`, `relay`, `receiver`, `gen` and `machine` are the parts they drive.

mod bare;
mod compare;
mod gen;
mod isolation;
mod kafka;
mod machine;
mod measure;
mod ratio;
mod receiver;
mod relay;
mod report;
mod scenarios;
mod tap;
mod threads;
mod transform;

use anyhow::{bail, Context};
use clap::Parser;
use receiver::Receiver;
use scenarios::Build;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PARTITIONS: i32 = 4;
const SOURCE_TOPIC: &str = "bench.events";
const DLQ_TOPIC: &str = "bench.dlq";
const ALL: &[&str] = &[
    "batch",
    "webhook",
    transform::NAME,
    "webhook-h2",
    "fanout",
    "latency",
    "outage",
    isolation::NAME,
];

#[derive(Parser, Debug)]
#[command(about = "End-to-end benchmark of the event-relay release binary")]
struct Args {
    /// Events pre-loaded into the source topic (batch, webhook, fanout, outage,
    /// outage-isolation).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Comma-separated: batch,webhook,webhook-transform,fanout,latency,outage,outage-isolation,
    /// and webhook-h2 (not run by default: the webhook scenario over HTTP/2 with prior
    /// knowledge, `http2 = true`; a --compare binary runs it over HTTP/1.1, as old builds
    /// reject the key). webhook-transform is the webhook scenario with a VRL program on the
    /// target, reported against webhook when both ran; a build without the `transform` key
    /// (an older --compare binary) skips it. The bare consumer always runs; outage-isolation
    /// runs the relay twice: without and with the outage.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "batch,webhook,webhook-transform,fanout,latency,outage,outage-isolation"
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
    /// The relays' `pipeline.max_in_flight_events` (the bound on events held in memory); unset,
    /// each relay runs with its own default (issue 16 measures the defaults).
    #[arg(long)]
    max_in_flight_events: Option<usize>,
    /// Latency scenario: the relay's fetch.wait.max.ms (0: librdkafka's 500). tansu answers a
    /// fetch at the end of the log only when this wait expires, not when records arrive as
    /// Kafka does, so the default keeps the broker's wait out of the relay's latency.
    #[arg(long, default_value_t = 10)]
    latency_fetch_wait_ms: u64,
    /// Runs the scenario list this many times in turn (webhook, webhook-transform, webhook,
    /// webhook-transform, ...), each round with its own consumer groups and results topics on
    /// the same pre-loaded topic: a ratio between two scenarios is then read from each round's
    /// pair, run minutes apart, and reported as the median over the rounds, so one noisy
    /// minute of a shared machine does not decide it. Not with --compare.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Runs each scenario (but outage-isolation) a second time right after the first, with
    /// `server.tap = true` and no tap client connected: its row is `<scenario>.tap`, its notes
    /// its events/s and CPU per event against the first run's (the tap's cost when nobody
    /// watches: one atomic load per message and outcome). Not with --compare.
    #[arg(long)]
    tap: bool,
    /// The relay's release binary.
    #[arg(long, default_value = "target/release/event-relay")]
    relay: String,
    /// A second relay binary ("other"; `scripts/bench --build-ref REF` builds one) run on each
    /// scenario right after this build ("this", --relay), each with a fresh consumer group and
    /// results topic on the same pre-loaded topic; the report adds its figures and this/other.
    #[arg(long, value_name = "PATH")]
    compare: Option<String>,
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    check(&args)?;
    let dir = run_dir(&args.out)?;
    let templates = Arc::new(gen::Templates::load(&args.fixtures)?);
    let date = machine::utc_now();
    let load0 = relay::loadavg();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "bench: {} events, {nproc} cores, {}",
        args.events,
        machine::cpu_model()
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
    let pre = preload(&bootstrap, &templates, args.events).await?;

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
        hw: pre.ends.clone(),
        bare_eps,
        broker_pid: broker.as_ref().map(kafka::Broker::pid),
        kafka_options,
    };
    let bare_latency = bare_latency(&ctx).await;
    let (rows, other_rows) = run_scenarios(&ctx).await;
    drop(broker);

    let avg_bytes = pre.bytes as f64 / ctx.args.events.max(1) as f64;
    let baseline = report::Baseline {
        date,
        nproc,
        load0,
        avg_bytes,
        preload_secs: pre.secs,
        bare,
        bare_latency,
    };
    report::write(&ctx, &baseline, rows, other_rows)
}

/// Fails on an unknown scenario or a missing relay binary before anything starts.
fn check(args: &Args) -> anyhow::Result<()> {
    if args.rounds == 0 || (args.rounds > 1 && args.compare.is_some()) {
        bail!("--rounds must be at least 1, and 1 with --compare");
    }
    if args.tap && args.compare.is_some() {
        bail!("--tap compares each scenario with the tap on against itself: not with --compare");
    }
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
    if let Some(other) = args.compare.as_deref().filter(|p| !Path::new(p).exists()) {
        bail!("--compare {other}: not found");
    }
    Ok(())
}

/// `run-latest/` next to the JSON output, emptied: the relays' configs and logs.
fn run_dir(out: &Path) -> anyhow::Result<PathBuf> {
    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let dir = out_dir.join("run-latest");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Pre-loads `n` events into the source topic and checks the end offsets add up to `n`.
async fn preload(
    bootstrap: &str,
    templates: &Arc<gen::Templates>,
    n: u64,
) -> anyhow::Result<kafka::Preload> {
    eprintln!("bench: pre-loading {n} events into {SOURCE_TOPIC}");
    let (b, t) = (bootstrap.to_string(), templates.clone());
    let pre =
        tokio::task::spawn_blocking(move || kafka::preload(&b, SOURCE_TOPIC, PARTITIONS, &t, n))
            .await??;
    let hw = &pre.ends;
    if hw.iter().sum::<i64>() != n as i64 {
        bail!("end offsets {hw:?} do not add up to {n}");
    }
    let avg_bytes = pre.bytes as f64 / n.max(1) as f64;
    eprintln!(
        "bench: pre-loaded in {:.1} s ({:.0} ev/s), avg {avg_bytes:.0} bytes, partitions {hw:?}",
        pre.secs,
        n as f64 / pre.secs
    );
    Ok(pre)
}

/// The bare consumer's latency when the latency scenario runs (else null); an error becomes
/// `{"error": ...}` in the report.
async fn bare_latency(ctx: &Ctx) -> Value {
    if !ctx.args.scenarios.iter().any(|s| s == "latency") {
        return Value::Null;
    }
    eprintln!(
        "bench: bare consumer latency ({} ev/s for {} s)",
        ctx.args.latency_rate, ctx.args.latency_secs
    );
    let bare_lat = scenarios::bare_latency(ctx)
        .await
        .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    eprintln!("bench: bare consumer latency {bare_lat}");
    bare_lat
}

/// Runs the scenarios in the order given, each with this build and then (with --compare) the
/// other; returns this build's rows and the other's (with --compare). A failed scenario becomes
/// a row with its error.
async fn run_scenarios(ctx: &Ctx) -> (Vec<Value>, Option<Vec<Value>>) {
    let mut rows = Vec::new();
    let mut other = ctx.args.compare.as_ref().map(|_| Vec::new());
    for round in 1..=ctx.args.rounds {
        for name in &ctx.args.scenarios {
            rows.push(run_scenario(ctx, name, Build::This, round, false).await);
            if ctx.args.tap && name != isolation::NAME {
                rows.push(run_scenario(ctx, name, Build::This, round, true).await);
            }
            if let Some(other) = &mut other {
                other.push(run_scenario(ctx, name, Build::Other, round, false).await);
            }
        }
    }
    (rows, other)
}

async fn run_scenario(ctx: &Ctx, name: &str, build: Build, round: usize, tap: bool) -> Value {
    let which = match build {
        Build::This if tap => " with server.tap = true (no client)".to_string(),
        Build::This => String::new(),
        Build::Other => format!(" with the other relay {}", build.binary(ctx)),
    };
    eprintln!(
        "bench: scenario {name}{which}, round {round} of {}",
        ctx.args.rounds
    );
    let mut row = match scenarios::scenario(ctx, name, build, round, tap).await {
        Ok(r) => r,
        Err(e) => {
            let mut row =
                json!({"scenario": name, "events": ctx.args.events, "error": format!("{e:#}")});
            if tap {
                tap::mark(&mut row);
            }
            row
        }
    };
    if ctx.args.rounds > 1 {
        row["round"] = json!(round);
    }
    eprintln!("bench: {name}: {row}");
    row
}
