//! What a transform costs per event, on one core, stage by stage: the bench scenario
//! `webhook-transform`'s program (`bench/webhook-transform.vrl`) on the envelopes of a mixed
//! corpus (the fixtures: ~70% acemate, ~30% Komo, as `benches/normalize.rs` builds it).
//!
//! `cargo bench --bench transform` prints, per event and in CPU nanoseconds of this thread
//! (best of several one-second rounds: other processes only ever slow a round down):
//! - `envelope JSON`: the body a webhook target sends without a transform (`write_json`);
//! - `program input`: the envelope as the program's `.` (`transform::input::envelope`), built
//!   and dropped;
//! - `transform`: input built, program run, output written (`Transform::run_value`), what a
//!   target with the program pays in place of `envelope JSON`.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use event_relay::config::SourceFormat;
use event_relay::envelope::{Envelope, Origin};
use event_relay::normalize::{Normalizer, SourceSettings};
use event_relay::transform::{self, Outcome, Transform};
use std::hint::black_box;
use std::time::{Duration, Instant};

const PROGRAM: &str = include_str!("../bench/webhook-transform.vrl");
const ROUNDS: usize = 6;

/// The envelopes of every valid fixture event, repeated to about 1,000.
fn envelopes() -> Vec<Envelope> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/valid_events.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("valid_events.jsonl");
    let normalizer = Normalizer::builtin().expect("builtin catalogs");
    let settings = SourceSettings::standalone(SourceFormat::Auto);
    let mut out = Vec::new();
    while out.len() < 1000 {
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let origin = Origin {
                topic: "events".into(),
                partition: 0,
                offset: i as i64,
                key: None,
            };
            if let Ok(n) = normalizer.normalize(line.as_bytes(), &settings, origin) {
                out.extend(n.events.into_iter().map(|(env, _)| env));
            }
        }
    }
    out
}

/// CPU time of this thread (Linux `/proc/thread-self/schedstat`).
fn thread_cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// CPU nanoseconds per event of `stage` over `envs`: best of [`ROUNDS`] one-second rounds.
fn per_event(envs: &[Envelope], mut stage: impl FnMut(&Envelope)) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        envs.iter().for_each(&mut stage);
    }
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let (cpu0, start, mut events) = (thread_cpu_time(), Instant::now(), 0usize);
        while start.elapsed() < Duration::from_secs(1) {
            envs.iter().for_each(&mut stage);
            events += envs.len();
        }
        let cpu = (thread_cpu_time() - cpu0).as_secs_f64();
        let cpu = if cpu > 0.0 {
            cpu
        } else {
            start.elapsed().as_secs_f64()
        };
        best = best.min(cpu * 1e9 / events as f64);
    }
    best
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let envs = envelopes();
    let vars = Default::default();
    let spec = transform::Spec {
        target: "hook",
        posthog: false,
        vars: &vars,
        max_bytes: 1 << 20,
    };
    let program: Transform =
        transform::compile(PROGRAM, None, &spec).expect("the program compiles");
    for env in &envs {
        let out = program.run_value(transform::input::envelope(env), env);
        assert!(matches!(out, Outcome::Send { .. }), "{out:?}");
    }
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` (scripts/test): every envelope went through the program above;
        // a figure of this unoptimized build would mean nothing.
        println!("transform: run as a test (no figures); `cargo bench --bench transform` measures");
        return;
    }
    let mut buf = Vec::new();
    let json = per_event(&envs, |env| {
        buf.clear();
        env.write_json(&mut buf);
        black_box(&buf);
    });
    let input = per_event(&envs, |env| {
        drop(black_box(transform::input::envelope(env)))
    });
    let whole = per_event(&envs, |env| {
        black_box(program.run_value(transform::input::envelope(env), env));
    });
    println!(
        "transform, CPU ns per event (best of {ROUNDS} one-second rounds, {} envelopes): \
         envelope JSON {json:.0}, program input {input:.0}, transform {whole:.0} \
         (+{:.0} over the envelope JSON)",
        envs.len(),
        whole - json
    );
}
