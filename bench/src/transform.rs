//! The `webhook-transform` scenario: the webhook scenario with a VRL program (`transform`) on
//! the webhook target, the reshaping a partner that wants its own payload would configure.
//! What it costs per event is read against `webhook` from the same run and build: at least
//! [`MIN_EPS_RATIO`] of its events/s and at most [`MAX_CPU_RATIO`] of its CPU per event.
//!
//! A build older than per-target transforms rejects the `transform` key; for such a build
//! (typically the --compare binary of an older commit) the scenario is not run and its row
//! says so, instead of failing or silently running the plain webhook config under this name.

use crate::ratio::{add_note, measured, ratios};
use crate::relay::{self, RelayConfig, Targets};
use crate::scenarios::Build;
use crate::{Ctx, DLQ_TOPIC, SOURCE_TOPIC};
use serde_json::{json, Value};

/// The scenario's name (`--scenarios webhook-transform`).
pub const NAME: &str = "webhook-transform";
/// The scenario it is measured against: the same config without the program.
pub const BASE: &str = "webhook";
/// The transformed scenario must keep this share of `webhook`'s events/s ...
pub const MIN_EPS_RATIO: f64 = 0.8;
/// ... and spend at most this multiple of its CPU per event.
pub const MAX_CPU_RATIO: f64 = 1.25;

/// The program on `hook`: rename the event, drop two properties, add one, move a trait. Written
/// against the bench's mix (gen.rs): on acemate events (~70%) every line changes something
/// (`$session_id` on all of them, `organizationId` and the Identify trait `userType` on most);
/// on Komo events the deletions and the move find nothing, as a program shared by both sources
/// would. It keeps `.id`, which the receiver counts events by. The relay's own
/// `cargo bench --bench transform` times the same program per event, on one core.
pub const PROGRAM: &str = include_str!("../webhook-transform.vrl");

/// What the serde of a build without the key says about it (its `check` output).
const UNKNOWN_KEY: &str = "unknown field `transform`";

/// Why `build`'s binary cannot run the scenario, if it cannot: its `check` rejects the
/// `transform` key as unknown. Any other problem is left to the run, which reports it as a
/// failure (a program this build does not compile must not pass as "skipped").
pub fn unsupported(ctx: &Ctx, build: Build) -> anyhow::Result<Option<String>> {
    let bin = build.binary(ctx);
    let path = ctx.dir.join(format!("{NAME}{}.probe.toml", build.suffix()));
    let cfg = probe_config(&ctx.bootstrap, ctx.recv_addr, Some(PROGRAM));
    Ok(match relay::check(bin, &path, &cfg)? {
        Err(said) if said.contains(UNKNOWN_KEY) => Some(format!(
            "not run: {bin} has no per-target `transform` key (an older build)"
        )),
        _ => None,
    })
}

/// A config with the scenario's target (the names of topics and group do not matter to
/// `check`, which reads the config without connecting).
fn probe_config(brokers: &str, receiver: std::net::SocketAddr, transform: Option<&str>) -> String {
    RelayConfig {
        brokers,
        group: "bench-probe",
        source_topic: SOURCE_TOPIC,
        results_topic: "bench.results.probe",
        dlq_topic: DLQ_TOPIC,
        receiver,
        metrics_port: 9464,
        targets: Targets::Webhook,
        kafka_options: &[],
        keep_retrying: false,
        max_in_flight_events: None,
        http2: false,
        transform,
        tap: false,
    }
    .toml()
}

/// The row of a build that cannot run the scenario.
pub fn skipped_row(ctx: &Ctx, why: String) -> Value {
    json!({"scenario": NAME, "events": ctx.args.events, "skipped": why})
}

/// The scenario against `webhook` in one build's rows (one run): the events/s ratio, the CPU
/// per event ratio and whether both meet their targets; `None` unless both scenarios ran.
/// With several rounds (--rounds), each round's pair gives its ratios (`rounds`) and the
/// verdict is on their medians.
pub fn cost(rows: &[Value]) -> Option<Value> {
    let mut numbers: Vec<u64> = rows.iter().filter_map(|r| r["round"].as_u64()).collect();
    numbers.dedup();
    let pairs: Vec<(f64, f64)> = if numbers.is_empty() {
        vec![pair(rows)?]
    } else {
        let of =
            |n: u64| -> Vec<Value> { rows.iter().filter(|r| r["round"] == n).cloned().collect() };
        numbers.iter().filter_map(|n| pair(&of(*n))).collect()
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let eps = median(pairs.iter().map(|p| p.0).collect())?;
    let cpu = median(pairs.iter().map(|p| p.1).collect())?;
    let mut doc = json!({
        "scenario": NAME,
        "against": BASE,
        "events_per_sec_ratio": round(eps),
        "min_events_per_sec_ratio": MIN_EPS_RATIO,
        "cpu_per_event_ratio": round(cpu),
        "max_cpu_per_event_ratio": MAX_CPU_RATIO,
        "met": eps >= MIN_EPS_RATIO && cpu <= MAX_CPU_RATIO,
    });
    if !numbers.is_empty() {
        doc["rounds"] = pairs
            .iter()
            .map(|(e, c)| json!({"events_per_sec_ratio": round(*e), "cpu_per_event_ratio": round(*c)}))
            .collect();
    }
    Some(doc)
}

/// Events/s and CPU per event of the scenario against `webhook`, in rows of one round.
fn pair(rows: &[Value]) -> Option<(f64, f64)> {
    ratios(measured_row(rows, NAME)?, measured_row(rows, BASE)?)
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    Some(if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    })
}

/// The row of scenario `name` if it ran to the end (no error, not skipped).
fn measured_row<'a>(rows: &'a [Value], name: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["scenario"] == name)
        .filter(|r| measured(r))
}

/// Appends the ratios to the scenario's notes (each round's row its round's), so its table
/// row (docs/performance.md's) carries them.
pub fn annotate(rows: &mut [Value]) {
    let Some(c) = cost(rows) else { return };
    // One entry per round, or the one verdict for the one row.
    let ratios = c["rounds"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![c.clone()]);
    let ran = rows
        .iter_mut()
        .filter(|r| r["scenario"] == NAME && measured(r));
    for (row, r) in ran.zip(ratios) {
        let note = format!(
            "{:.2}× webhook's events/s, {:.2}× its CPU per event",
            r["events_per_sec_ratio"].as_f64().unwrap_or(f64::NAN),
            r["cpu_per_event_ratio"].as_f64().unwrap_or(f64::NAN)
        );
        add_note(row, note);
    }
}

/// The printed verdict of one build (`which`: "this" or "other"), from its `cost`.
pub fn line(which: &str, cost: &Value) -> String {
    let eps = cost["events_per_sec_ratio"].as_f64().unwrap_or(f64::NAN);
    let cpu = cost["cpu_per_event_ratio"].as_f64().unwrap_or(f64::NAN);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let of = match cost["rounds"].as_array() {
        Some(r) => format!("one run, median of {} rounds", r.len()),
        None => "one run".into(),
    };
    format!(
        "{NAME} / {BASE} ({which} build, {of}): events/s {eps:.2} (target ≥ {MIN_EPS_RATIO}: {}), CPU per event {cpu:.2} (target ≤ {MAX_CPU_RATIO}: {})",
        verdict(eps >= MIN_EPS_RATIO),
        verdict(cpu <= MAX_CPU_RATIO)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{Templates, TAG_PRELOAD};
    use crate::ratio::row;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    #[test]
    fn the_cost_is_read_against_webhook_of_the_same_rows() {
        let mut rows = vec![row(BASE, 10_000.0, 4.0), row(NAME, 9_000.0, 4.4)];
        let c = cost(&rows).unwrap();
        assert_eq!(c["events_per_sec_ratio"], 0.9);
        assert_eq!(c["cpu_per_event_ratio"], 1.1);
        assert_eq!(c["met"], true);
        annotate(&mut rows);
        assert_eq!(
            rows[1]["notes"],
            "0.90× webhook's events/s, 1.10× its CPU per event"
        );
        assert!(line("this", &c).contains("events/s 0.90 (target ≥ 0.8: met)"));

        let slow = [row(BASE, 10_000.0, 4.0), row(NAME, 7_000.0, 4.0)];
        assert_eq!(cost(&slow).unwrap()["met"], false);
    }

    #[test]
    fn with_rounds_the_verdict_is_on_the_medians_of_the_pairs() {
        let in_round = |n: u64, mut r: Value| {
            r["round"] = json!(n);
            r
        };
        let mut rows = vec![
            in_round(1, row(BASE, 10_000.0, 4.0)),
            in_round(1, row(NAME, 7_000.0, 6.0)), // 0.7, 1.5
            in_round(2, row(BASE, 10_000.0, 4.0)),
            in_round(2, row(NAME, 9_000.0, 4.4)), // 0.9, 1.1
            in_round(3, row(BASE, 8_000.0, 4.0)),
            in_round(3, row(NAME, 8_000.0, 4.8)), // 1.0, 1.2
        ];
        let c = cost(&rows).unwrap();
        assert_eq!(c["events_per_sec_ratio"], 0.9);
        assert_eq!(c["cpu_per_event_ratio"], 1.2);
        assert_eq!(c["met"], true);
        assert_eq!(c["rounds"].as_array().unwrap().len(), 3);
        assert_eq!(c["rounds"][0]["cpu_per_event_ratio"], 1.5);
        assert!(line("this", &c).contains("median of 3 rounds"));
        annotate(&mut rows);
        assert_eq!(
            rows[3]["notes"],
            "0.90× webhook's events/s, 1.10× its CPU per event"
        );
        assert_eq!(median(vec![1.0, 3.0, 2.0, 4.0]), Some(2.5));
    }

    #[test]
    fn no_cost_without_both_scenarios_measured() {
        assert!(cost(&[row(NAME, 9_000.0, 4.4)]).is_none());
        let skipped = json!({"scenario": NAME, "events": 100_000, "skipped": "not run"});
        assert!(cost(&[row(BASE, 10_000.0, 4.0), skipped]).is_none());
    }

    /// The relay binary next to the bench, if one is built.
    fn relay_bin() -> Option<String> {
        ["release", "debug"]
            .iter()
            .map(|p| format!("{}/../target/{p}/event-relay", env!("CARGO_MANIFEST_DIR")))
            .find(|b| std::path::Path::new(b).exists())
    }

    /// With a built relay that knows `transform`: its dry run (`event-relay route`) of the
    /// bench's events through the program sends what the program says and keeps `.id`.
    #[test]
    fn the_program_reshapes_the_bench_events() {
        let Some(bin) = relay_bin() else {
            eprintln!("no relay binary built: skipped");
            return;
        };
        let cfg = probe_config(
            "127.0.0.1:9092",
            "127.0.0.1:8080".parse().unwrap(),
            Some(PROGRAM),
        );
        let path = std::env::temp_dir().join(format!("transform-{}.toml", std::process::id()));
        if let Err(said) = relay::check(&bin, &path, &cfg).unwrap() {
            let _ = std::fs::remove_file(&path);
            assert!(said.contains(UNKNOWN_KEY), "{bin} check:\n{said}\n{cfg}");
            eprintln!("{bin} predates `transform`: skipped");
            return;
        }
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/valid_events.jsonl"
        );
        let t = Templates::load(fixtures).unwrap();
        let mut input = Vec::new();
        for i in 0..300 {
            input.extend_from_slice(&t.event(TAG_PRELOAD, i, None).payload);
            input.push(b'\n');
        }
        let mut child = Command::new(&bin)
            .args(["route", "--config"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Fed from a thread: the output fills its pipe long before the input is all written.
        let mut stdin = child.stdin.take().unwrap();
        let feeding = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        feeding.join().unwrap().unwrap();
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut moved = 0;
        for line in text.lines() {
            let shown: Value = serde_json::from_str(line).unwrap();
            let b = &shown["targets"][0]["body"];
            assert!(b["id"].is_string(), "{line}");
            assert!(
                b["event_type"].is_string() && b.get("event").is_none(),
                "{line}"
            );
            assert_eq!(b["properties"]["relay"], "event-relay", "{line}");
            assert!(b["properties"].get("$session_id").is_none(), "{line}");
            assert!(b["properties"].get("organizationId").is_none(), "{line}");
            assert!(b["user"]["traits"].get("userType").is_none(), "{line}");
            moved += usize::from(b["properties"]["user_type"].is_string());
        }
        assert_eq!(text.lines().count(), 300);
        assert!(moved > 150, "userType moved on {moved} of 300 events");
    }
}
