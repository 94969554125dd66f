//! The `outage-isolation` scenario (issue 14): does a target that is down slow the others?
//!
//! Two webhook targets on disjoint routes, acemate events (~70%) to `hook` and Komo events to
//! `down`, with `[retry_tiers]` (short delays, topics created here like the other topics) and
//! otherwise the relay's defaults (each target's `max_queued_events` share, `retry.hold`,
//! circuit). Run twice on the same pre-loaded events, each with a fresh consumer group, results,
//! tier and failed topics: first with both targets answering 200 (the baseline), then with
//! `down` answering 503 throughout. Each run ends when `hook` (and in the baseline `down`) got
//! every event of its route, their result events were produced and the source offsets are
//! committed to the end, which in the outage run means every `down` delivery was parked.
//!
//! The figure: `hook`'s throughput (its events over the time from its first to its last
//! event) during the outage against the baseline (target ≥ 0.8), and the relay's peak RSS.

use crate::gen::{is_acemate, TAG_PRELOAD};
use crate::kafka;
use crate::measure::{measure, Goal};
use crate::receiver::Kind;
use crate::relay::{metric_sum, Relay, RelayConfig, Targets};
use crate::report::{self, Finished};
use crate::scenarios::Build;
use crate::{Ctx, DLQ_TOPIC, PARTITIONS, SOURCE_TOPIC};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The scenario's name (`--scenarios outage-isolation`).
pub const NAME: &str = "outage-isolation";
/// The tier delays: short, so parked deliveries come due, fail again and move through every
/// tier (to the failed topic) while the healthy target is measured.
const DELAYS: &[&str] = &["1s", "5s", "20s"];
/// The healthy target must keep this share of its throughput (issue 14).
const TARGET_RATIO: f64 = 0.8;

/// One of the two runs: the baseline (both targets healthy) or the outage.
struct Run {
    outage: bool,
    /// Config and log files, consumer group and topic names.
    file_name: String,
    group: String,
    results_topic: String,
    tier_prefix: String,
    failed_topic: String,
}

impl Run {
    fn new(build: Build, outage: bool) -> Self {
        let file_name = format!(
            "{NAME}{}{}",
            if outage { "" } else { ".baseline" },
            build.suffix()
        );
        let tag = format!("{file_name}-{}", std::process::id());
        Self {
            outage,
            group: format!("bench-{tag}"),
            results_topic: format!("bench.results.{file_name}"),
            tier_prefix: format!("bench.retry.{file_name}"),
            failed_topic: format!("bench.failed.{file_name}"),
            file_name,
        }
    }

    /// Every topic the run creates (and deletes afterwards): results, tiers, failed.
    fn topics(&self) -> Vec<(String, i32)> {
        let mut t = vec![(self.results_topic.clone(), PARTITIONS)];
        for d in DELAYS {
            t.push((format!("{}.{d}", self.tier_prefix), PARTITIONS));
        }
        t.push((self.failed_topic.clone(), 1));
        t
    }

    /// The relay's config: the two targets and routes, then `[retry_tiers]`.
    fn config(&self, ctx: &Ctx, metrics_port: u16) -> String {
        let cfg = RelayConfig {
            brokers: &ctx.bootstrap,
            group: &self.group,
            source_topic: SOURCE_TOPIC,
            results_topic: &self.results_topic,
            dlq_topic: DLQ_TOPIC,
            receiver: ctx.recv_addr,
            metrics_port,
            targets: Targets::Isolation,
            kafka_options: &ctx.kafka_options,
            keep_retrying: false,
            max_in_flight_events: ctx.args.max_in_flight_events,
            http2: false,
            transform: None,
            tap: false,
        }
        .toml();
        cfg + &self.tiers_toml()
    }

    /// The `[retry_tiers]` section.
    fn tiers_toml(&self) -> String {
        let delays: Vec<String> = DELAYS.iter().map(|d| format!("\"{d}\"")).collect();
        format!(
            "\n[retry_tiers]\ntopic_prefix = \"{}\"\ndelays = [{}]\nfailed_topic = \"{}\"\n",
            self.tier_prefix,
            delays.join(", "),
            self.failed_topic
        )
    }
}

/// Events of the pre-loaded topic per route: (to `hook`, to `down`).
fn split(events: u64) -> (u64, u64) {
    let hook = (0..events).filter(|&i| is_acemate(TAG_PRELOAD, i)).count() as u64;
    (hook, events - hook)
}

/// Runs the baseline and the outage with the relay binary of `build`; returns the row.
pub async fn scenario(ctx: &Ctx, build: Build) -> anyhow::Result<Value> {
    let split = split(ctx.args.events);
    eprintln!(
        "  {NAME}: {} events to hook, {} to down; baseline (both healthy) first",
        split.0, split.1
    );
    let baseline = run(ctx, build, Run::new(build, false), split).await?;
    eprintln!("  {NAME}: outage run (down answers 503 throughout)");
    let outage = run(ctx, build, Run::new(build, true), split).await?;
    Ok(row(ctx, split, baseline, outage))
}

/// One run's row ([`report::scenario_row`]) plus `hook`'s own rate and the tier metrics.
async fn run(ctx: &Ctx, build: Build, r: Run, (hook, down): (u64, u64)) -> anyhow::Result<Value> {
    for (topic, partitions) in r.topics() {
        kafka::create_topic(&ctx.bootstrap, &topic, partitions).await?;
    }
    let metrics_port = kafka::free_port()?;
    let cfg = r.config(ctx, metrics_port);
    ctx.receiver.reset(ctx.args.events);
    ctx.receiver.set_failing(false);
    ctx.receiver.set_down(r.outage);
    let mut relay = Relay::spawn(
        build.binary(ctx),
        &cfg,
        &ctx.dir,
        &r.file_name,
        metrics_port,
    )?;
    let (kinds, events): (&[Kind], Vec<u64>) = if r.outage {
        (&[Kind::Webhook], vec![hook])
    } else {
        (&[Kind::Webhook, Kind::Down], vec![hook, down])
    };
    let checker = Arc::new(kafka::CommitChecker::new(
        &ctx.bootstrap,
        &r.group,
        SOURCE_TOPIC,
        PARTITIONS,
    )?);
    let timeout = match ctx.args.timeout_secs {
        0 => 120 + ctx.args.events / 1000,
        t => t,
    };
    let goal = Goal {
        kinds,
        expected_results: events.iter().sum::<u64>() as f64,
        events,
        checker,
        hw: Arc::new(Mutex::new(Some(ctx.hw.clone()))),
        outage: None,
        timeout: Duration::from_secs(timeout),
    };
    let m = measure(ctx, &mut relay, goal).await;
    let snap = ctx.receiver.snapshot();
    let exit = relay.stop(Duration::from_secs(60));
    for (topic, _) in r.topics() {
        kafka::delete_topic(&ctx.bootstrap, &topic).await;
    }
    let metrics = m.metrics.clone();
    let finished = Finished {
        name: NAME,
        targets: Targets::Isolation,
        kinds,
        events: ctx.args.events,
        exit,
        relay: &relay,
        m,
        producer_secs: None,
        http2: None,
    };
    let mut row = report::scenario_row(ctx, &finished)?;
    let i = Kind::Webhook as usize;
    if let (Some(first), Some(last)) = (snap.first_at[i], snap.last_at[i]) {
        let secs = last.duration_since(first).as_secs_f64();
        row["hook_secs"] = json!(secs);
        row["hook_events_per_sec"] = json!((hook as f64 / secs.max(1e-3)).round());
    }
    tier_metrics(&mut row, &metrics);
    Ok(row)
}

/// What the relay's own metrics say about parking when the run ended.
fn tier_metrics(row: &mut Value, metrics: &str) {
    let sum = |name: &str, label: Option<&str>| metric_sum(metrics, name, label);
    row["parked"] = json!(sum("event_relay_parked_total", None));
    row["tier_lag_at_end"] = json!(sum("event_relay_tier_lag", None));
    row["down_queued_at_end"] = json!(sum(
        "event_relay_target_queued_events",
        Some("target=\"down\"")
    ));
    // The exposition format lists labels by name: outcome before target.
    row["down_errors"] = json!(sum(
        "event_relay_deliveries_total",
        Some("outcome=\"error\",target=\"down\"")
    ));
}

/// The scenario's row: the outage run's figures, `hook`'s rate against the baseline, and both
/// runs in full under `baseline` and `outage`.
fn row(ctx: &Ctx, (hook, down): (u64, u64), baseline: Value, outage: Value) -> Value {
    let failed = [&baseline, &outage]
        .iter()
        .find_map(|r| r["error"].as_str().map(str::to_string));
    let rate = |r: &Value| r["hook_events_per_sec"].as_f64().unwrap_or(f64::NAN);
    let (with, without) = (rate(&outage), rate(&baseline));
    let ratio = (with / without * 100.0).round() / 100.0;
    let rss = outage["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
    let mut row = json!({
        "scenario": NAME,
        "events": ctx.args.events,
        "hook_events": hook,
        "down_events": down,
        "tier_delays": DELAYS,
        "events_per_sec": with,
        "baseline_events_per_sec": without,
        "healthy_ratio": ratio,
        "healthy_ratio_target": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
        "cpu_secs_per_million": outage["cpu_secs_per_million"],
        "peak_rss_mib": rss,
        "baseline_peak_rss_mib": baseline["peak_rss_mib"],
        "ratio_to_bare": Value::Null,
        "baseline": baseline,
        "outage": outage,
    });
    if let Some(e) = failed {
        row["error"] = json!(e);
        return row;
    }
    let n = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let o = &row["outage"];
    row["notes"] = json!(format!(
        "events/s = healthy target (hook, {hook} events) while down answered 503 throughout: {ratio:.2} of its {without:.0} events/s without the outage (target ≥ {TARGET_RATIO}); peak RSS {rss:.1} MiB ({:.1} without); {:.0} deliveries parked, {:.0} WebhookError for down, {:.0} records in tiers at the end",
        n(&row, "baseline_peak_rss_mib"),
        n(o, "parked"),
        n(o, "down_errors"),
        n(o, "tier_lag_at_end"),
    ));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated config passes the relay's own `check` (when a relay binary was built).
    #[test]
    fn the_config_passes_check() {
        let bin = ["release", "debug"]
            .iter()
            .map(|p| format!("{}/../target/{p}/event-relay", env!("CARGO_MANIFEST_DIR")))
            .find(|b| std::path::Path::new(b).exists());
        let Some(bin) = bin else {
            eprintln!("no relay binary built: skipped");
            return;
        };
        let run = Run::new(Build::This, true);
        let cfg = RelayConfig {
            brokers: "127.0.0.1:9092",
            group: &run.group,
            source_topic: SOURCE_TOPIC,
            results_topic: &run.results_topic,
            dlq_topic: DLQ_TOPIC,
            receiver: "127.0.0.1:8080".parse().unwrap(),
            metrics_port: 9464,
            targets: Targets::Isolation,
            kafka_options: &[],
            keep_retrying: false,
            max_in_flight_events: None,
            http2: false,
            transform: None,
            tap: false,
        }
        .toml()
            + &run.tiers_toml();
        let path = std::env::temp_dir().join(format!("isolation-{}.toml", std::process::id()));
        std::fs::write(&path, &cfg).unwrap();
        let out = std::process::Command::new(&bin)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{bin} check:\n{said}\n{cfg}");
        assert!(said.contains("2 targets, 2 routes"), "{said}");
        assert_eq!(run.topics().len(), 2 + DELAYS.len());
    }
}
