//! The scenarios: what each one configures (targets, topics, consumer group, an outage, the
//! steady latency stream, webhook-transform's program) and how it runs a relay against the
//! receiver until the goal is reached; also the bare consumer's latency on the same stream (the
//! latency limit).

use crate::kafka::{self, CommitChecker};
use crate::measure::{measure, Goal, Measured};
use crate::receiver::Kind;
use crate::relay::{Relay, RelayConfig, Targets};
use crate::report::{self, latency_stats, Finished};
use crate::transform;
use crate::{bare, Ctx, ALL, DLQ_TOPIC, PARTITIONS, SOURCE_TOPIC};
use anyhow::bail;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which relay binary a scenario runs: `--relay` ("this" build) or `--compare` ("other").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    This,
    Other,
}

impl Build {
    /// The binary's path.
    pub fn binary(self, ctx: &Ctx) -> &str {
        match self {
            Build::This => &ctx.args.relay,
            Build::Other => ctx.args.compare.as_deref().unwrap_or(&ctx.args.relay),
        }
    }

    /// Appended to the names of a run (consumer group, results topic, config and log files) so
    /// each build starts fresh; empty for this build, whose names stay as without --compare.
    pub fn suffix(self) -> &'static str {
        match self {
            Build::This => "",
            Build::Other => ".other",
        }
    }
}

/// What one scenario runs: derived from its name and the flags.
struct Plan<'a> {
    name: &'a str,
    build: Build,
    /// The scenario's name with the build's suffix: its config and log files.
    file_name: String,
    targets: Targets,
    /// Target kinds every event must reach.
    kinds: &'static [Kind],
    /// The latency scenario: a steady stream produced while the relay runs, not a pre-load.
    latency: bool,
    source_topic: String,
    results_topic: String,
    group: String,
    /// Events the receiver must see per kind.
    events: u64,
    /// Outage scenario: how long the receiver answers 503.
    outage: Option<Duration>,
    /// webhook-h2 with this build: the webhook target has `http2 = true`. The other build
    /// (--compare, possibly older than the key) runs the plain webhook config instead.
    http2: bool,
    /// webhook-transform: the VRL program on the webhook target (builds without the key skip
    /// the scenario before a plan is made).
    transform: Option<&'static str>,
    /// --tap's second run of the scenario: `server.tap = true`, no client connected.
    tap: bool,
}

impl<'a> Plan<'a> {
    /// The plan of scenario `name`; creates its results topic (and the latency stream's topic).
    async fn new(
        ctx: &Ctx,
        name: &'a str,
        build: Build,
        round: usize,
        tap: bool,
    ) -> anyhow::Result<Self> {
        let (targets, kinds): (Targets, &'static [Kind]) = match name {
            "batch" => (Targets::Posthog, &[Kind::Posthog]),
            "webhook" | "webhook-h2" | transform::NAME | "latency" | "outage" => {
                (Targets::Webhook, &[Kind::Webhook])
            }
            "fanout" => (Targets::Both, &[Kind::Posthog, Kind::Webhook]),
            other => bail!("unknown scenario {other:?} (known: {})", ALL.join(",")),
        };
        // Rounds after the first (--rounds) get their own topics and groups.
        let mut again = if round > 1 {
            format!(".r{round}")
        } else {
            String::new()
        };
        if tap {
            again.push_str(crate::tap::SUFFIX);
        }
        let file_name = format!("{name}{}{again}", build.suffix());
        let tag = format!("{file_name}-{}", std::process::id());
        let results_topic = format!("bench.results.{file_name}");
        kafka::create_topic(&ctx.bootstrap, &results_topic, PARTITIONS).await?;
        let latency = name == "latency";
        let (source_topic, events) = if latency {
            let t = format!("bench.latency{}{again}", build.suffix());
            kafka::create_topic(&ctx.bootstrap, &t, PARTITIONS).await?;
            (t, ctx.args.latency_rate * ctx.args.latency_secs)
        } else {
            (SOURCE_TOPIC.to_string(), ctx.args.events)
        };
        Ok(Self {
            name,
            build,
            file_name,
            targets,
            kinds,
            latency,
            source_topic,
            results_topic,
            group: format!("bench-{tag}"),
            events,
            outage: (name == "outage").then(|| Duration::from_secs(ctx.args.outage_secs)),
            http2: name == "webhook-h2" && build == Build::This,
            transform: (name == transform::NAME).then_some(transform::PROGRAM),
            tap,
        })
    }
}

/// Runs one scenario with the relay binary of `build` (with `tap`, the relay's `server.tap` on
/// and no client connected) and returns its JSON row.
pub async fn scenario(
    ctx: &Ctx,
    name: &str,
    build: Build,
    round: usize,
    tap: bool,
) -> anyhow::Result<Value> {
    if name == crate::isolation::NAME {
        if round > 1 {
            anyhow::bail!("{name} runs in the first round only (its topics are the round's)");
        }
        return crate::isolation::scenario(ctx, build).await;
    }
    if name == transform::NAME {
        if let Some(why) = transform::unsupported(ctx, build)? {
            return Ok(transform::skipped_row(ctx, why));
        }
    }
    let plan = Plan::new(ctx, name, build, round, tap).await?;
    let hw = Arc::new(Mutex::new((!plan.latency).then(|| ctx.hw.clone())));
    let mut relay = spawn_relay(ctx, &plan)?;
    let checker = Arc::new(CommitChecker::new(
        &ctx.bootstrap,
        &plan.group,
        &plan.source_topic,
        PARTITIONS,
    )?);
    let n = ctx.args.events;
    let timeout = Duration::from_secs(if ctx.args.timeout_secs > 0 {
        ctx.args.timeout_secs
    } else {
        120 + n / 1000 + ctx.args.outage_secs + ctx.args.latency_secs
    });
    let goal = Goal {
        kinds: plan.kinds,
        events: vec![plan.events; plan.kinds.len()],
        expected_results: (plan.events * plan.kinds.len() as u64) as f64,
        checker,
        hw,
        outage: plan.outage,
        timeout,
    };
    let (m, producer_secs) = if plan.latency {
        run_latency(ctx, &plan, &mut relay, goal).await?
    } else {
        (measure(ctx, &mut relay, goal).await, None)
    };
    let exit = relay.stop(Duration::from_secs(60));
    kafka::delete_topic(&ctx.bootstrap, &plan.results_topic).await;
    if plan.latency {
        kafka::delete_topic(&ctx.bootstrap, &plan.source_topic).await;
    }
    let finished = Finished {
        name,
        targets: plan.targets,
        kinds: plan.kinds,
        events: plan.events,
        exit,
        relay: &relay,
        m,
        producer_secs,
        http2: (name == "webhook-h2").then_some(plan.http2),
    };
    let mut row = report::scenario_row(ctx, &finished)?;
    if tap {
        crate::tap::mark(&mut row);
    }
    Ok(row)
}

/// Writes the relay's config for `plan`, readies the receiver (503s during an outage) and
/// starts the relay.
fn spawn_relay(ctx: &Ctx, plan: &Plan) -> anyhow::Result<Relay> {
    let kafka_options = if plan.latency {
        latency_options(ctx)
    } else {
        ctx.kafka_options.clone()
    };
    let metrics_port = kafka::free_port()?;
    let cfg = RelayConfig {
        brokers: &ctx.bootstrap,
        group: &plan.group,
        source_topic: &plan.source_topic,
        results_topic: &plan.results_topic,
        dlq_topic: DLQ_TOPIC,
        receiver: ctx.recv_addr,
        metrics_port,
        targets: plan.targets,
        kafka_options: &kafka_options,
        keep_retrying: plan.name == "outage",
        max_in_flight_events: ctx.args.max_in_flight_events,
        http2: plan.http2,
        transform: plan.transform,
        tap: plan.tap,
    }
    .toml();
    ctx.receiver.reset(plan.events);
    ctx.receiver.set_failing(plan.outage.is_some());
    Relay::spawn(
        plan.build.binary(ctx),
        &cfg,
        &ctx.dir,
        &plan.file_name,
        metrics_port,
    )
}

/// The latency scenario: once the relay has joined its group, produces the steady stream while
/// measuring; returns the measurement and the seconds production took.
async fn run_latency(
    ctx: &Ctx,
    plan: &Plan<'_>,
    relay: &mut Relay,
    goal: Goal<'_>,
) -> anyhow::Result<(Measured, Option<f64>)> {
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
        plan.source_topic.clone(),
        ctx.templates.clone(),
    );
    let (rate, events) = (ctx.args.latency_rate, plan.events);
    let ends = goal.hw.clone();
    let producing = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let (secs, e) =
            kafka::produce_steady(&bootstrap, &topic, PARTITIONS, &templates, rate, events)?;
        *ends.lock().unwrap() = Some(e);
        Ok(secs)
    });
    let m = measure(ctx, relay, goal).await;
    Ok((m, Some(producing.await??)))
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

/// The bare consumer's produce-to-consume latency on the same steady stream: what the broker
/// and client alone cost before the relay does anything.
pub async fn bare_latency(ctx: &Ctx) -> anyhow::Result<Value> {
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
