//! Normalizer throughput on a realistic mixed corpus built from the fixtures:
//! ~70% acemate events (Identify properties riding along in `properties`) and ~30% Komo webhook
//! bodies (user attributes as extra keys, numbers/booleans as strings), ~600 bytes each.
//!
//! `cargo bench --bench normalize` runs the criterion group (throughput in events/s) and then a
//! plain timed loop on one thread that prints `normalize: N events/s per core`: N counts the
//! `normalize` call plus dropping its result, per second of CPU time on one core; the figure for
//! the `normalize` calls alone is printed alongside.

use criterion::{black_box, criterion_group, Criterion, Throughput};

/// The relay binary's allocator (`src/main.rs`), so the figure is what the relay gets.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use corpus::{corpus, thread_cpu_time};
use event_relay::config::SourceFormat;
use event_relay::envelope::Origin;
use event_relay::normalize::{Normalizer, SourceSettings};
use std::time::{Duration, Instant};

mod corpus;

/// Rounds of the per-core loop (one second each).
const ROUNDS: usize = 8;

fn origin(offset: i64) -> Origin {
    Origin {
        topic: "events".into(),
        partition: 0,
        offset,
        key: None,
    }
}

/// Normalizes the whole corpus once, dropping each result right away (as a streaming relay
/// does after delivery). Returns the number of envelopes produced and the time spent inside
/// the `normalize` calls alone (what the relay's `event_relay_normalize_duration_seconds`
/// measures), when `timed`.
fn run_once(
    n: &Normalizer,
    settings: &SourceSettings,
    corpus: &[Vec<u8>],
    timed: bool,
) -> (usize, Duration) {
    let mut produced = 0;
    let mut in_normalize = Duration::ZERO;
    for (i, raw) in corpus.iter().enumerate() {
        let origin = origin(i as i64);
        let t = timed.then(Instant::now);
        let out = n
            .normalize(black_box(raw), settings, origin)
            .expect("corpus events normalize");
        if let Some(t) = t {
            in_normalize += t.elapsed();
        }
        produced += black_box(out).events.len();
    }
    (produced, in_normalize)
}

fn bench_normalize(c: &mut Criterion) {
    let n = Normalizer::builtin().expect("builtin catalogs");
    let settings = SourceSettings::standalone(SourceFormat::Auto);
    let corpus = corpus();
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    assert_eq!(run_once(&n, &settings, &corpus, false).0, corpus.len());
    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(corpus.len() as u64));
    g.bench_function(
        format!(
            "mixed_{}_events_avg_{}_bytes",
            corpus.len(),
            bytes / corpus.len()
        ),
        |b| b.iter(|| run_once(&n, &settings, &corpus, false)),
    );
    g.finish();
}

/// A plain timed loop on one thread, for the figures in docs/performance.md: events per second
/// of CPU time on one core, best of several one-second rounds (on a shared machine other
/// processes only ever slow a round down). Reported for the whole loop (normalize + drop the
/// result) and for the `normalize` calls alone (the loop's CPU time scaled by the share of
/// wall time spent inside them).
fn per_core_figure(n: &Normalizer, catalogs: &str) {
    let settings = SourceSettings::standalone(SourceFormat::Auto);
    let corpus = corpus();
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(500) {
        run_once(n, &settings, &corpus, false);
    }
    // (events/s incl. drop, events/s in normalize, events, CPU seconds)
    let mut best: Option<(f64, f64, usize, f64)> = None;
    for _ in 0..ROUNDS {
        let (mut events, mut in_normalize) = (0usize, Duration::ZERO);
        let cpu0 = thread_cpu_time();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            let (e, t) = run_once(n, &settings, &corpus, true);
            events += e;
            in_normalize += t;
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = match (cpu0, thread_cpu_time()) {
            (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
            _ => wall,
        };
        let rate = events as f64 / cpu;
        let share = (in_normalize.as_secs_f64() / wall).min(1.0);
        if best.is_none_or(|b| rate > b.0) {
            best = Some((rate, events as f64 / (cpu * share), events, cpu));
        }
    }
    let (rate, normalize_only, events, cpu) = best.expect("rounds ran");
    println!(
        "normalize: {rate:.0} events/s per core (normalize + drop the envelopes; \
         {normalize_only:.0} events/s in the normalize calls alone; best of {ROUNDS} one-second \
         rounds, {events} events in {cpu:.2}s of CPU time; avg {} bytes, 70% acemate / 30% \
         komo; {catalogs})",
        bytes / corpus.len(),
    );
}

criterion_group!(benches, bench_normalize);

/// The built-in catalogs plus a loaded catalog file of `extra` more Komo events (five
/// properties each), as an operator's `[[catalogs]]` would add: the benchmark condition.
fn with_extra_events(extra: usize) -> Normalizer {
    let events: serde_json::Map<String, serde_json::Value> = (0..extra)
        .map(|i| {
            let props = serde_json::json!({
                "prize_id": {"type": "string", "format": "guid", "required": true},
                "prize_name": {"type": "string", "required": true},
                "tier": {"type": "string", "enum": ["gold", "silver", "bronze"]},
                "value": {"type": "number", "nullable": true},
                "code": {"type": "string", "pattern": "^[A-Z]{4}-[0-9]{4}$"},
            });
            (
                format!("Extra{i}"),
                serde_json::json!({ "properties": props }),
            )
        })
        .collect();
    let doc = serde_json::json!({"catalog": "komo", "version": "bench", "events": events});
    let dir = std::env::temp_dir().join(format!("event-relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("extra.json");
    std::fs::write(&path, doc.to_string()).expect("write the catalog file");
    let catalogs = event_relay::catalog::Catalogs::load(&[&path]).expect("the catalog file loads");
    let _ = std::fs::remove_dir_all(&dir);
    Normalizer::new(catalogs)
}

/// `NORMALIZE_PASSES=N`: normalize the corpus N times with each catalog set and exit, a fixed
/// amount of work for an instruction counter (`valgrind --tool=callgrind`, whose counts repeat
/// run to run whatever else the machine is doing, where timed rounds on a shared 2-core machine
/// vary by ±15%). Prints the events normalized.
fn fixed_passes(passes: usize) {
    let settings = SourceSettings::standalone(SourceFormat::Auto);
    let corpus = corpus();
    for n in [
        Normalizer::builtin().expect("builtin catalogs"),
        with_extra_events(500),
    ] {
        let events: usize = (0..passes)
            .map(|_| run_once(&n, &settings, &corpus, false).0)
            .sum();
        println!("normalized {events} events");
    }
}

fn main() {
    if let Some(passes) = std::env::var("NORMALIZE_PASSES")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        return fixed_passes(passes);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` (scripts/test): the benchmark ran once as a test above; a
        // figure of this unoptimized build would mean nothing.
        println!("normalize: run as a test (no figures); `cargo bench --bench normalize` measures");
        return;
    }
    let builtin = Normalizer::builtin().expect("builtin catalogs");
    per_core_figure(&builtin, "built-in catalogs");
    per_core_figure(
        &with_extra_events(500),
        "built-in catalogs + a loaded file of 500 extra events",
    );
}
