//! Where the relay's CPU goes without a profiler: its threads grouped by name into the consume
//! loop, the tokio workers (which run the target workers, HTTP requests and result events),
//! librdkafka's threads and the rest, as CPU seconds per million events, and the small table
//! printed per scenario (per build with --compare) with the consume → normalize → route path's
//! throughput per core.

use serde_json::{json, Value};

/// A group of relay threads, in the order the tables print them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The main thread (named after the binary), which blocks on the runtime and runs the
    /// consume loop: consume → normalize → route → hand off to the targets.
    Consume,
    /// tokio's workers and blocking pool (`tokio-rt-worker`, `tokio-runtime-w`): the target
    /// workers are tokio tasks, so their batching, HTTP requests and result events count here.
    Tokio,
    /// librdkafka's own threads (`rdk:main`, `rdk:broker…`, `rdk:bg`) and the rdkafka crate's
    /// thread polling the result producer (`producer pollin[g thread]`).
    Librdkafka,
    /// Everything else (jemalloc's background thread, …) and threads that exited before the
    /// end: the relay's total CPU minus the threads still alive.
    Other,
}

impl Group {
    pub const ALL: [Group; 4] = [
        Group::Consume,
        Group::Tokio,
        Group::Librdkafka,
        Group::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Group::Consume => "consume loop (consume → normalize → route)",
            Group::Tokio => "tokio workers (target workers, HTTP, result events)",
            Group::Librdkafka => "librdkafka (rdk:*, producer poll)",
            Group::Other => "other (incl. exited threads)",
        }
    }

    /// The group of a thread by its name (`/proc/<pid>/task/<tid>/comm`: at most 15 bytes; the
    /// main thread carries the binary's name). The one place that decides the grouping.
    pub fn of(thread: &str) -> Group {
        const CONSUME: &[&str] = &["event-relay", "consume", "source"];
        const TOKIO: &[&str] = &["tokio-", "target", "deliver", "webhook", "posthog"];
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| thread.starts_with(p));
        if thread.starts_with("rdk:") || thread.starts_with("producer poll") {
            Group::Librdkafka
        } else if starts(CONSUME) {
            Group::Consume
        } else if starts(TOKIO) {
            Group::Tokio
        } else {
            Group::Other
        }
    }
}

/// The JSON list of groups of a scenario's row: (thread name, threads, CPU s) of the threads
/// alive at the end, the relay's total CPU seconds and the events it relayed.
pub fn by_group(threads: &[(String, usize, f64)], total_cpu: f64, events: u64) -> Value {
    let mut sums = [(0usize, 0.0f64); 4];
    for (name, n, cpu) in threads {
        let s = &mut sums[Group::of(name) as usize];
        s.0 += n;
        s.1 += cpu;
    }
    let alive: f64 = sums.iter().map(|s| s.1).sum();
    if total_cpu.is_finite() && total_cpu > alive {
        sums[Group::Other as usize].1 += total_cpu - alive;
    }
    let per_m = |cpu: f64| (cpu / events.max(1) as f64 * 1e6 * 10.0).round() / 10.0;
    json!(Group::ALL
        .iter()
        .zip(sums)
        .map(|(g, (n, cpu))| json!({
            "group": g.label(),
            "threads": n,
            "cpu_secs": (cpu * 100.0).round() / 100.0,
            "cpu_secs_per_million": per_m(cpu),
        }))
        .collect::<Vec<_>>())
}

/// The JSON key of a row's groups.
pub const KEY: &str = "relay_cpu_by_thread_group";

/// One small table per scenario that ran to the end: CPU s per M events per group, with
/// `other` (the --compare build's rows, same order) side by side and this/other.
pub fn tables(rows: &[Value], other: Option<&[Value]>) -> String {
    let mut t = String::new();
    for (i, r) in rows.iter().enumerate() {
        let Some(groups) = r[KEY].as_array() else {
            continue;
        };
        let name = r["scenario"].as_str().unwrap_or("?");
        let o = other.map(|o| o.get(i).and_then(|r| r[KEY].as_array()));
        t.push_str(&format!("\nRelay CPU s / M events by thread, {name}:\n\n"));
        t.push_str(match o {
            None => "| thread group | threads | CPU s / M events | share |\n|---|---:|---:|---:|\n",
            Some(_) => "| thread group | this | other | this/other |\n|---|---:|---:|---:|\n",
        });
        let total: f64 = groups.iter().map(per_m).sum();
        for (j, g) in groups.iter().enumerate() {
            let label = g["group"].as_str().unwrap_or("?");
            let x = per_m(g);
            t.push_str(&match o {
                None => format!(
                    "| {label} | {} | {x:.1} | {:.0} % |\n",
                    g["threads"],
                    x / total * 100.0
                ),
                Some(o) => {
                    let y = o.and_then(|o| o.get(j)).map(per_m);
                    let (ys, r) = y.map_or(("–".into(), "–".into()), |y| {
                        (format!("{y:.1}"), ratio(x, y))
                    });
                    format!("| {label} | {x:.1} | {ys} | {r} |\n")
                }
            });
        }
        let other_core = o
            .flatten()
            .map(|o| format!(" (other: {})", per_core(&json!(o))));
        t.push_str(&format!(
            "\nconsume → normalize → route, on the consume loop's thread: {} events/s per core{}\n",
            per_core(&json!(groups)),
            other_core.unwrap_or_default()
        ));
    }
    t
}

/// Events per CPU second of the consume loop's thread (its group comes first), with thousands
/// separators, or – when it did not run.
fn per_core(groups: &Value) -> String {
    let x = groups[0]["cpu_secs_per_million"]
        .as_f64()
        .unwrap_or(f64::NAN);
    if !(x.is_finite() && x > 0.0) {
        return "–".into();
    }
    crate::report::fmt_num(1e6 / x)
}

fn per_m(g: &Value) -> f64 {
    g["cpu_secs_per_million"].as_f64().unwrap_or(f64::NAN)
}

/// `this / other` with two decimals, or – when either is missing or other is 0.
pub fn ratio(this: f64, other: f64) -> String {
    if this.is_finite() && other.is_finite() && other != 0.0 {
        format!("{:.2}", this / other)
    } else {
        "–".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_the_relays_thread_names() {
        let cases = [
            ("tokio-rt-worker", Group::Tokio),
            ("tokio-runtime-w", Group::Tokio),
            ("event-relay", Group::Consume),
            ("rdk:broker111", Group::Librdkafka),
            ("rdk:main", Group::Librdkafka),
            ("producer pollin", Group::Librdkafka),
            ("target-webhook", Group::Tokio),
            ("jemalloc_bg_thd", Group::Other),
        ];
        for (name, group) in cases {
            assert_eq!(Group::of(name), group, "{name}");
        }
    }

    #[test]
    fn other_holds_the_cpu_of_exited_threads() {
        let threads = [
            ("event-relay".to_string(), 1, 0.5),
            ("tokio-rt-worker".to_string(), 2, 1.0),
            ("rdk:main".to_string(), 1, 0.5),
        ];
        let g = by_group(&threads, 2.5, 1_000_000);
        let cpu: Vec<f64> = g
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["cpu_secs_per_million"].as_f64().unwrap())
            .collect();
        assert_eq!(cpu, [0.5, 1.0, 0.5, 0.5]);
        assert_eq!(per_core(&g), "2,000,000");
    }
}
