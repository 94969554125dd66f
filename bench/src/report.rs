//! The report: the JSON row of each scenario (throughput, CPU, memory, the relay's own metrics,
//! latency percentiles, the outage's memory and drain), the JSON document written to `--out`
//! (bench/results/latest.json) and the markdown table printed at the end.

use crate::bare::Bare;
use crate::measure::{percentile, Measured};
use crate::receiver::Kind;
use crate::relay::{self, metric_sum, Relay, Targets};
use crate::{compare, machine, tap, threads, transform, Ctx, PARTITIONS};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Instant;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Latency percentiles (ms) of µs samples, with the p99 of every second of production.
pub fn latency_stats(samples: Vec<(u64, u64)>) -> Value {
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

/// A scenario after its relay stopped: what its row is built from.
pub struct Finished<'a> {
    pub name: &'a str,
    pub targets: Targets,
    /// Target kinds every event had to reach.
    pub kinds: &'a [Kind],
    pub events: u64,
    /// How the relay exited ([`Relay::stop`]).
    pub exit: String,
    pub relay: &'a Relay,
    pub m: Measured,
    /// Latency scenario: the seconds the steady production took.
    pub producer_secs: Option<f64>,
    /// webhook-h2: whether this run's webhook target had `http2 = true` (the other build of
    /// a --compare runs it over HTTP/1.1); `None` in the other scenarios.
    pub http2: Option<bool>,
}

/// The JSON row of one scenario; a failed measurement gives a row with its error.
pub fn scenario_row(ctx: &Ctx, f: &Finished) -> anyhow::Result<Value> {
    let (name, events, m) = (f.name, f.events, &f.m);
    let snap = ctx.receiver.snapshot();
    let dupes: u64 = f
        .kinds
        .iter()
        .map(|k| snap.total[*k as usize] - snap.distinct[*k as usize])
        .sum();
    let requests = ctx.receiver.requests.load(Ordering::Relaxed);
    let bad = ctx.receiver.bad_bodies.load(Ordering::Relaxed);
    let mut row = json!({
        "scenario": name,
        "targets": format!("{:?}", f.targets).to_lowercase(),
        "events": events,
        "relay_exit": f.exit,
        "receiver_requests": requests,
        "receiver_bad_bodies": bad,
        "receiver_unknown_ids": ctx.receiver.unknown_ids.load(Ordering::Relaxed),
        "receiver_http2_requests": ctx.receiver.requests_http2.load(Ordering::Relaxed),
        "duplicates": dupes,
        "log": f.relay.log.display().to_string(),
    });
    if let Some(e) = &m.error {
        row["error"] = json!(e);
        eprintln!("  {name}: {e}");
        return Ok(row);
    }
    let (Some(first), Some(done)) = (m.first, m.done) else {
        bail!("{name}: finished without a first request");
    };
    throughput(&mut row, ctx, f, first, done);
    let mut notes = Vec::new();
    if let Some(ps) = f.producer_secs {
        latency(&mut row, &mut notes, ctx, events, ps);
    }
    if let (Some(rec), Some(first)) = (m.recovered, m.first) {
        outage(&mut row, &mut notes, ctx, f, first, rec, done);
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
    if name == transform::NAME {
        notes.push("VRL transform on the target (bench/src/transform.rs)".into());
    }
    match f.http2 {
        Some(true) => notes.push(format!(
            "HTTP/2 (h2c): {} of {} requests",
            fmt_num(row["receiver_http2_requests"].as_f64().unwrap_or(0.0)),
            fmt_num(requests as f64)
        )),
        Some(false) => notes.push("other: HTTP/1.1 (config without http2)".into()),
        None => {}
    }
    row["notes"] = json!(notes.join("; "));
    Ok(row)
}

/// Rate, CPU, memory, in-flight and the relay's counters from `first` request to `done`.
fn throughput(row: &mut Value, ctx: &Ctx, f: &Finished, first: Instant, done: Instant) {
    let (events, m) = (f.events, &f.m);
    let secs = done.duration_since(first).as_secs_f64();
    let eps = events as f64 / secs;
    row["startup_secs"] = json!(r2(first.duration_since(f.relay.spawned).as_secs_f64()));
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
    row[threads::KEY] = threads::by_group(&m.threads, m.cpu_secs, events);
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
}

/// Latency scenario: the offered rate and the produce-to-receiver percentiles.
fn latency(row: &mut Value, notes: &mut Vec<String>, ctx: &Ctx, events: u64, ps: f64) {
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

/// Outage scenario: peak RSS in each half of the outage, the drain after it and its rate.
fn outage(
    row: &mut Value,
    notes: &mut Vec<String>,
    ctx: &Ctx,
    f: &Finished,
    first: Instant,
    rec: Instant,
    done: Instant,
) {
    let (events, m, spawned) = (f.events, &f.m, f.relay.spawned);
    let t_first = first.duration_since(spawned).as_secs_f64();
    let t_rec = rec.duration_since(spawned).as_secs_f64();
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
    row["answered_503"] = json!(ctx.receiver.answered_503.load(Ordering::Relaxed));
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

/// What the run measured before its scenarios: when and where, the pre-load and the bare
/// consumer (the limit).
pub struct Baseline {
    pub date: String,
    pub nproc: usize,
    /// The 1-minute load average before anything started.
    pub load0: f64,
    pub avg_bytes: f64,
    pub preload_secs: f64,
    pub bare: Bare,
    /// The bare consumer's latency (null unless the latency scenario ran).
    pub bare_latency: Value,
}

/// The JSON document of the whole run (with --compare, `compare` holds the other binary's rows);
/// `transform_cost` (and `compare.transform_cost`) is webhook-transform against webhook when
/// both ran.
fn document(ctx: &Ctx, b: &Baseline, mut rows: Vec<Value>, mut other: Option<Vec<Value>>) -> Value {
    transform::annotate(&mut rows);
    tap::annotate(&mut rows);
    if let Some(o) = &mut other {
        transform::annotate(o);
    }
    let cost = transform::cost(&rows);
    let tap_cost = tap::cost(&rows);
    let (bare, bare_eps) = (&b.bare, ctx.bare_eps);
    let mut doc = json!({
        "date": b.date,
        "machine": {
            "nproc": b.nproc,
            "cpu_model": machine::cpu_model(),
            "mem_total_mib": machine::mem_total_mib(),
            "kernel": machine::kernel(),
            "loadavg_1m_at_start": b.load0,
        },
        "relay": machine::relay_source(&ctx.args.relay),
        "events": ctx.args.events,
        "avg_event_bytes": b.avg_bytes.round(),
        "partitions": PARTITIONS,
        "broker": "tansu (memory storage), same machine",
        "preload": {"secs": r2(b.preload_secs), "events_per_sec": (ctx.args.events as f64 / b.preload_secs).round()},
        "bare_consumer": {
            "events": bare.events,
            "secs": r2(bare.secs),
            "events_per_sec": bare_eps.round(),
            "mib_per_sec": r1(bare.bytes as f64 / bare.secs / 1048576.0),
            "latency_ms": b.bare_latency,
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
        "transform_cost": cost,
        "tap_cost": tap_cost,
    });
    if let Some(o) = other {
        let other_cost = transform::cost(&o);
        doc["compare"] = compare::section(ctx, &doc["scenarios"], o);
        doc["compare"]["transform_cost"] = json!(other_cost);
    }
    doc
}

/// Writes the JSON document to `--out` and prints the table, the relay's CPU per thread group
/// and with --compare the comparison.
pub fn write(
    ctx: &Ctx,
    b: &Baseline,
    rows: Vec<Value>,
    other: Option<Vec<Value>>,
) -> anyhow::Result<()> {
    let report = document(ctx, b, rows, other);
    std::fs::write(&ctx.args.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", ctx.args.out.display()))?;
    println!(
        "\n{} events (avg {:.0} bytes, {PARTITIONS} partitions), {}, {} cores ({})\n",
        fmt_num(ctx.args.events as f64),
        b.avg_bytes,
        b.date,
        b.nproc,
        machine::cpu_model()
    );
    println!("{}", table(&report));
    for (which, cost) in [
        ("this", &report["transform_cost"]),
        ("other", &report["compare"]["transform_cost"]),
    ] {
        if !cost.is_null() {
            println!("{}\n", transform::line(which, cost));
        }
    }
    for line in tap::lines(&report["tap_cost"]) {
        println!("{line}");
    }
    if report["compare"].is_null() {
        let rows = report["scenarios"].as_array().map_or(&[][..], |v| &v[..]);
        println!("{}", threads::tables(rows, None));
    } else {
        println!("{}", compare::table(&report));
    }
    eprintln!(
        "bench: wrote {} (logs and configs in {})",
        ctx.args.out.display(),
        ctx.dir.display()
    );
    Ok(())
}

pub fn fmt_num(x: f64) -> String {
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
        if let Some(why) = r["skipped"].as_str() {
            t.push_str(&format!("| {name} | – | – | – | – | – | {why} |\n"));
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
