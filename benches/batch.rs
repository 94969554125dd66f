//! The batch path's writers on the normalized bench corpus (`corpus/`), in batches of 100
//! events as PostHog's `/batch/` gets them: the PostHog event JSON, gzip at each level (bytes
//! and CPU per batch; a reused deflate state against a new `GzEncoder` per body) and the
//! result events.
//!
//! `cargo bench --bench batch` prints one line per measurement: CPU time per batch (best of
//! several rounds on one thread, by the thread's own CPU clock, so waiting for a core on a
//! shared machine does not count) and, for gzip, the compressed size.

/// The relay binary's allocator (`src/main.rs`), so the figures are what the relay gets.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use corpus::{corpus, thread_cpu_time};
use event_relay::config::{EventNames, SourceFormat};
use event_relay::deliver::{gzip, posthog};
use event_relay::envelope::{Envelope, Origin};
use event_relay::normalize::{Normalizer, SourceSettings};
use event_relay::report::{write_result_event, Journey, Outcome, TargetRef};
use flate2::Compression;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

mod corpus;

/// Events per PostHog request (the bench's `/batch/` size).
const BATCH: usize = 100;
/// Timed rounds per measurement (the best is reported).
const ROUNDS: usize = 5;

/// The corpus normalized once.
fn envelopes() -> Vec<Envelope> {
    let n = Normalizer::builtin().expect("builtin catalogs");
    let settings = SourceSettings::standalone(SourceFormat::Auto);
    let mut out = Vec::new();
    for (i, raw) in corpus().iter().enumerate() {
        let origin = Origin {
            topic: "events".into(),
            partition: 0,
            offset: i as i64,
            key: None,
        };
        let normalized = n.normalize(raw, &settings, origin).expect("normalizes");
        out.extend(normalized.events.into_iter().map(|(env, _)| env));
    }
    out
}

/// The PostHog batch bodies' JSON (the `batch` array of each request; event names as the
/// end-to-end benchmark's target sends them, unchanged).
fn bodies(envs: &[Envelope]) -> Vec<Vec<u8>> {
    envs.chunks(BATCH)
        .map(|chunk| {
            let mut buf = b"{\"batch\":[".to_vec();
            for (i, env) in chunk.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                posthog::write_event(&mut buf, env, EventNames::Original);
            }
            buf.extend_from_slice(b"]}");
            buf
        })
        .collect()
}

/// CPU time per call of `f` (which does `per_call` items), best of [`ROUNDS`] rounds of
/// `time` each.
fn measure(time: Duration, mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    f();
    for _ in 0..ROUNDS {
        let (mut calls, cpu0, start) = (0u32, thread_cpu_time(), Instant::now());
        while start.elapsed() < time {
            f();
            calls += 1;
        }
        let cpu = match (cpu0, thread_cpu_time()) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => start.elapsed(),
        };
        best = best.min(cpu / calls);
    }
    best
}

fn per_event(d: Duration, events: usize) -> f64 {
    d.as_secs_f64() * 1e9 / events as f64
}

fn gzip_fresh(body: &[u8], level: Compression) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), level);
    enc.write_all(body).expect("to a Vec");
    enc.finish().expect("to a Vec")
}

/// Gzip of every body at each level: bytes and CPU, reused state against a new encoder.
fn gzip_levels(bodies: &[Vec<u8>], events: usize, time: Duration) {
    let raw: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "gzip: {} bodies of {BATCH} events, {} bytes of JSON per event",
        bodies.len(),
        raw / events
    );
    for level in [1, 2, 3, 4, 6, 9] {
        let level = Compression::new(level);
        let zipped: usize = bodies.iter().map(|b| gzip::gzip(b, level).len()).sum();
        let reused = measure(time, || {
            for b in bodies {
                black_box(gzip::gzip(black_box(b), level));
            }
        });
        let fresh = measure(time, || {
            for b in bodies {
                black_box(gzip_fresh(black_box(b), level));
            }
        });
        println!(
            "gzip level {}: {} bytes/event ({:.1}% of the JSON), {:.0} ns/event reused state, \
             {:.0} ns/event new GzEncoder per body",
            level.level(),
            zipped / events,
            100.0 * zipped as f64 / raw as f64,
            per_event(reused, events),
            per_event(fresh, events),
        );
    }
}

/// Writing the PostHog events (into a reused buffer and a new one), the envelope as a webhook
/// body, and the result events.
fn writers(envs: &[Envelope], time: Duration) {
    let mut buf = Vec::new();
    let reused = measure(time, || {
        for chunk in envs.chunks(BATCH) {
            buf.clear();
            for env in chunk {
                posthog::write_event(&mut buf, env, EventNames::Original);
            }
            black_box(&buf);
        }
    });
    let fresh = measure(time, || {
        for chunk in envs.chunks(BATCH) {
            let mut buf = Vec::with_capacity(chunk.len() * 1024);
            for env in chunk {
                posthog::write_event(&mut buf, env, EventNames::Original);
            }
            black_box(buf);
        }
    });
    println!(
        "posthog events: {:.0} ns/event into a reused buffer, {:.0} ns/event into a new one per batch",
        per_event(reused, envs.len()),
        per_event(fresh, envs.len()),
    );
    let envelopes = measure(time, || {
        for env in envs {
            let mut body = Vec::with_capacity(1024);
            env.write_json(&mut body);
            black_box(body);
        }
    });
    println!(
        "envelope bodies (webhook, body = \"envelope\"): {:.0} ns/event",
        per_event(envelopes, envs.len())
    );
    let target = TargetRef {
        name: "posthog".into(),
        guid: uuid::Uuid::nil(),
    };
    let outcome = Outcome::Delivered {
        status: 200,
        attempts: 1,
        duration: Duration::from_millis(3),
    };
    let journey = Journey::default();
    let now = "2026-12-07T00:00:00.000Z";
    let results = measure(time, || {
        for env in envs {
            buf.clear();
            black_box(write_result_event(
                &mut buf, env, &target, &outcome, &journey, now,
            ));
        }
    });
    println!(
        "result events: {:.0} ns/event",
        per_event(results, envs.len())
    );
}

/// A batch's delivery metrics (delivered, delivery duration) counted per event, as `settle`
/// did, against counted locally and added once per batch, as it does now.
fn metrics(events: usize, time: Duration) {
    let m = event_relay::metrics::Metrics::new();
    let own = event_relay::metrics::TargetMetrics::new(&m, "posthog");
    let each = measure(time, || {
        for i in 0..events {
            own.delivered.inc();
            own.delivery_duration.observe(black_box(i as f64 * 1e-5));
        }
    });
    let indices: Vec<usize> = (0..events).collect();
    let per_batch = measure(time, || {
        for chunk in indices.chunks(BATCH) {
            let local = own.delivery_duration.local();
            for &i in chunk {
                local.observe(black_box(i as f64 * 1e-5));
            }
            local.flush();
            own.delivered.inc_by(chunk.len() as u64);
        }
    });
    println!(
        "delivery metrics: {:.1} ns/event counted per event, {:.1} ns/event per batch of {BATCH}",
        per_event(each, events),
        per_event(per_batch, events),
    );
}

fn main() {
    let envs = envelopes();
    let bodies = bodies(&envs);
    // `cargo test --benches`: one short pass as a test; figures only under `cargo bench`.
    let time = if std::env::args().any(|a| a == "--bench") {
        Duration::from_millis(500)
    } else {
        println!("batch: run as a test (the figures below mean nothing unoptimized); `cargo bench --bench batch` measures");
        Duration::from_millis(1)
    };
    writers(&envs, time);
    metrics(envs.len(), time);
    gzip_levels(&bodies, envs.len(), time);
}
