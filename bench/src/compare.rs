//! `--compare`: a second relay binary's rows set against this build's. "this" is `--relay`
//! (the build being judged), "other" is `--compare` (e.g. an older commit from
//! `scripts/bench --build-ref REF`); every ratio is this/other, so events/s above 1 and CPU or
//! memory below 1 mean this build is better.

use crate::{machine, threads, Ctx};
use serde_json::{json, Value};

/// The figures compared, where a row has them: (JSON pointer into a row, label).
const FIGURES: &[(&str, &str)] = &[
    ("/events_per_sec", "events/s"),
    ("/cpu_secs_per_million", "CPU s / M events"),
    ("/peak_rss_mib", "peak RSS MiB"),
    ("/latency_ms/p50", "latency p50 ms"),
    ("/latency_ms/p99", "latency p99 ms"),
    ("/peak_rss_outage_mib", "peak RSS during outage MiB"),
    ("/drain_secs", "drain s"),
    ("/startup_secs", "startup s"),
];

/// The `compare` section of the JSON document: the other binary, its rows and the ratios.
pub fn section(ctx: &Ctx, rows: &Value, other: Vec<Value>) -> Value {
    let rows = rows.as_array().map_or(&[][..], |v| &v[..]);
    let bin = ctx.args.compare.clone().unwrap_or_default();
    let version = machine::relay_source(&bin)["version"].clone();
    json!({
        "meaning": "this = --relay (the document's \"relay\"), other = --compare; ratio = this/other",
        "this_binary": ctx.args.relay,
        "relay": {"binary": bin, "version": version},
        "ratios": ratios(rows, &other),
        "scenarios": other,
    })
}

/// Per scenario (same order in both), each figure both rows have: this, other, this/other.
fn ratios(rows: &[Value], other: &[Value]) -> Vec<Value> {
    rows.iter()
        .zip(other)
        .map(|(a, b)| {
            let figures: Vec<Value> = FIGURES
                .iter()
                .filter_map(|(ptr, label)| {
                    let (x, y) = (a.pointer(ptr)?.as_f64()?, b.pointer(ptr)?.as_f64()?);
                    let ratio = (y != 0.0).then(|| (x / y * 100.0).round() / 100.0);
                    Some(json!({"figure": label, "this": x, "other": y, "ratio": ratio}))
                })
                .collect();
            json!({"scenario": a["scenario"], "figures": figures})
        })
        .collect()
}

/// The printed comparison: one line per scenario and figure, and the per-thread tables of
/// both builds side by side.
pub fn table(report: &Value) -> String {
    let c = &report["compare"];
    let mut t = format!(
        "\nthis = {} ({}; the table above), other = {} ({}); ratio = this/other\n\n",
        c["this_binary"].as_str().unwrap_or("--relay"),
        report["relay"]["version"].as_str().unwrap_or("?"),
        c["relay"]["binary"].as_str().unwrap_or("?"),
        c["relay"]["version"].as_str().unwrap_or("?"),
    );
    t.push_str("| scenario | figure | this | other | this/other |\n|---|---|---:|---:|---:|\n");
    let rows = report["scenarios"].as_array().map_or(&[][..], |v| &v[..]);
    let other = c["scenarios"].as_array().map_or(&[][..], |v| &v[..]);
    for (i, r) in c["ratios"].as_array().into_iter().flatten().enumerate() {
        let name = r["scenario"].as_str().unwrap_or("?");
        for (row, which) in [(rows.get(i), "this"), (other.get(i), "other")] {
            if let Some(e) = row.and_then(|r| r["error"].as_str()) {
                t.push_str(&format!("| {name} | FAILED ({which}) | {e} | | |\n"));
            }
            // A build without the scenario's config key (webhook-transform on an older build).
            if let Some(why) = row.and_then(|r| r["skipped"].as_str()) {
                t.push_str(&format!("| {name} | skipped ({which}) | {why} | | |\n"));
            }
        }
        for f in r["figures"].as_array().into_iter().flatten() {
            let (x, y) = (num(&f["this"]), num(&f["other"]));
            t.push_str(&format!(
                "| {name} | {} | {} | {} | {} |\n",
                f["figure"].as_str().unwrap_or("?"),
                fmt(x),
                fmt(y),
                threads::ratio(x, y)
            ));
        }
    }
    t.push_str(&threads::tables(rows, Some(other)));
    t
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn fmt(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
