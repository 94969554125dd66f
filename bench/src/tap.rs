//! `--tap`: each scenario runs a second time right after the first with `server.tap = true` and
//! no tap client connected (the relay then pays one atomic load per message and per outcome).
//! The second run's row is `<scenario>.tap`; its notes give its events/s and CPU per event
//! against the first run's of the same round, and the report prints one line per pair.

use crate::ratio::{add_note, measured, ratios};
use serde_json::{json, Value};

/// Appended to a tap run's scenario name, files, results topic and consumer group.
pub const SUFFIX: &str = ".tap";

/// Marks `row` as the tap run of its scenario.
pub fn mark(row: &mut Value) {
    let name = row["scenario"].as_str().unwrap_or("?").to_string();
    row["scenario"] = json!(format!("{name}{SUFFIX}"));
    row["tap"] = json!(true);
}

/// The measured row (no error, not skipped) of `scenario` in `round` (null: a single round).
fn measured_in<'a>(rows: &'a [Value], scenario: &str, round: &Value) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["scenario"] == scenario && &r["round"] == round && measured(r))
}

/// Per tap run: (scenario, round, events/s ratio, CPU per event ratio) against its first run.
fn pairs(rows: &[Value]) -> Vec<(String, Value, f64, f64)> {
    let mut out = Vec::new();
    for tap in rows.iter().filter(|r| r["tap"] == true) {
        let name = tap["scenario"].as_str().unwrap_or_default();
        let base = name.strip_suffix(SUFFIX).unwrap_or(name);
        let round = &tap["round"];
        let tap = measured_in(rows, name, round);
        let plain = measured_in(rows, base, round);
        if let Some((eps, cpu)) = tap.zip(plain).and_then(|(t, p)| ratios(t, p)) {
            out.push((base.to_string(), round.clone(), eps, cpu));
        }
    }
    out
}

/// The ratios as a JSON list (`tap_cost` in the report; empty without --tap).
pub fn cost(rows: &[Value]) -> Value {
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    pairs(rows)
        .into_iter()
        .map(|(scenario, round, eps, cpu)| {
            json!({"scenario": scenario, "round": round,
                "events_per_sec_ratio": round3(eps), "cpu_per_event_ratio": round3(cpu)})
        })
        .collect()
}

/// Appends each tap run's ratios to its notes, so its table row carries them.
pub fn annotate(rows: &mut [Value]) {
    for (base, round, eps, cpu) in pairs(rows) {
        let name = format!("{base}{SUFFIX}");
        let Some(row) = rows
            .iter_mut()
            .find(|r| r["scenario"] == name.as_str() && r["round"] == round)
        else {
            continue;
        };
        let note = format!(
            "server.tap = true, no client: {eps:.2}× {base}'s events/s, {cpu:.2}× its CPU per event"
        );
        add_note(row, note);
    }
}

/// The printed lines: one per pair.
pub fn lines(cost: &Value) -> Vec<String> {
    cost.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let round = c["round"]
                .as_u64()
                .map_or(String::new(), |r| format!(", round {r}"));
            format!(
                "tap on, no client / {} (one run{round}): events/s {:.3}, CPU per event {:.3}",
                c["scenario"].as_str().unwrap_or("?"),
                c["events_per_sec_ratio"].as_f64().unwrap_or(f64::NAN),
                c["cpu_per_event_ratio"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratio::row;

    #[test]
    fn a_tap_run_is_set_against_its_first_run() {
        let mut tap = row("webhook", 9_000.0, 11.0);
        mark(&mut tap);
        assert_eq!(tap["scenario"], "webhook.tap");
        let mut rows = vec![
            row("batch", 50_000.0, 2.0),
            row("webhook", 10_000.0, 10.0),
            tap,
        ];
        let cost = cost(&rows);
        assert_eq!(cost[0]["scenario"], "webhook");
        assert_eq!(cost[0]["events_per_sec_ratio"], 0.9);
        assert_eq!(cost[0]["cpu_per_event_ratio"], 1.1);
        annotate(&mut rows);
        let notes = rows[2]["notes"].as_str().unwrap();
        assert!(
            notes.contains("0.90× webhook's events/s, 1.10× its CPU"),
            "{notes}"
        );
        assert_eq!(rows[1]["notes"], "", "the first run is left as it is");
        assert!(lines(&cost)[0].contains("webhook (one run): events/s 0.900"));
    }

    /// A tap run's config has `tap = true` under `[server]`, and the relay's own `check` takes
    /// it (when a relay binary was built, in `target/` or `$CARGO_TARGET_DIR`).
    #[test]
    fn the_tap_config_passes_check() {
        use crate::relay::{RelayConfig, Targets};
        let cfg = RelayConfig {
            brokers: "127.0.0.1:9092",
            group: "bench-webhook.tap",
            source_topic: crate::SOURCE_TOPIC,
            results_topic: "bench.results.webhook.tap",
            dlq_topic: crate::DLQ_TOPIC,
            receiver: "127.0.0.1:8080".parse().unwrap(),
            metrics_port: 9464,
            targets: Targets::Webhook,
            kafka_options: &[],
            keep_retrying: false,
            max_in_flight_events: None,
            http2: false,
            transform: None,
            tap: true,
        }
        .toml();
        let server = &cfg[cfg.find("[server]").expect("a [server] table")..];
        let server = &server[..server.find("[log]").expect("[log] after it")];
        assert!(server.contains("\ntap = true\n"), "{cfg}");

        let dirs = [
            std::env::var("CARGO_TARGET_DIR").ok(),
            Some(format!("{}/../target", env!("CARGO_MANIFEST_DIR"))),
        ];
        let bin = dirs
            .iter()
            .flatten()
            .flat_map(|d| ["release", "debug"].map(|p| format!("{d}/{p}/event-relay")))
            .find(|b| std::path::Path::new(b).exists());
        let Some(bin) = bin else {
            eprintln!("no relay binary built: check skipped");
            return;
        };
        let path = std::env::temp_dir().join(format!("tap-{}.toml", std::process::id()));
        let checked = crate::relay::check(&bin, &path, &cfg).expect("check runs");
        let _ = std::fs::remove_file(&path);
        assert_eq!(checked, Ok(()), "{bin} check:\n{cfg}");
    }
}
