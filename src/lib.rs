//! event-relay: Kafka → normalized envelope → PostHog / webhook targets with retries, and a
//! WebhookSuccess / WebhookError result event on Kafka for every delivery.
//!
//! # Layout
//!
//! The modules read in the order the data flows; each imports only what comes before it or
//! the neutral ground below it (a unit test, `import_direction`, checks this):
//!
//! - [`source`]: the Kafka consumer only — settings, subscribe, pause/resume, rebalance and
//!   statistics callbacks, offset commits.
//! - [`normalize`] (with [`catalog`]): raw bytes → [`envelope::Envelope`]s or a dead-letter
//!   reason. Pure: no I/O.
//! - [`route`]: which targets an envelope goes to. Pure.
//! - [`transform`]: a target's VRL program, compiled once per config, reshaping what the
//!   target sends for an event (body, headers, path, or a skip). Pure.
//! - [`deliver`]: the targets (webhook, PostHog): batching, signing, retries, circuit breaker,
//!   rate limit.
//! - [`report`]: WebhookSuccess / WebhookError result events and dead letters on Kafka.
//! - [`pipeline`]: the orchestrator that wires consume → normalize → route → deliver → report,
//!   with [`Relay::start`], [`Relay::drain`] and [`Relay::stop`] ([`run`] does all three), and
//!   [`Relay::reload`]: a new config's normalizer, router and targets swapped in while running.
//!
//! Neutral ground, importing no stage: [`ack`] (which offsets are final: the tracker and the
//! per-message `Ticket` that `source`, `deliver` and `report` share), [`health`] (what
//! `/healthz` and `/readyz` read), [`metrics`], [`config`], [`envelope`], [`json`], [`outage`]
//! (Kafka trouble as the logs tell it: what repeats, rate-limited in one place), and [`tap`]
//! (the live view of events passing the stages: `pipeline` and `report` offer it lines, the
//! server streams them; it reads event globs with `route`'s matcher), and [`telemetry`]
//! (OpenTelemetry spans of a message and its delivery attempts; nothing at all when off). The
//! edges:
//! [`server`] (HTTP endpoints, reading `health`, `metrics` and `tap`), [`topics`] (the topics a config
//! needs, on the broker), [`redrive`] (re-entering failed deliveries and dead letters), [`cli`]
//! and `main.rs`.

pub mod ack;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod envelope;
pub mod health;
pub mod json;
mod logging;
pub mod metrics;
pub mod normalize;
pub mod outage;
pub mod pipeline;
pub mod redrive;
pub mod report;
pub mod route;
pub mod server;
pub mod source;
pub mod tap;
pub mod telemetry;
pub mod topics;
pub mod trace;
pub mod transform;

#[cfg(test)]
mod import_direction;

pub use logging::init_logging;
pub use pipeline::{run, Relay, StartError};

/// Keeps glibc's malloc from holding freed multi-MiB blocks resident. librdkafka, which is C,
/// allocates with glibc's malloc, not jemalloc: fetch responses and compressed produce batches
/// of up to a few MiB. glibc maps a block of at least `M_MMAP_THRESHOLD` (128 KiB to start
/// with) on its own and unmaps it when freed, but a freed mapped block raises the threshold to
/// its size (up to 32 MiB), so from the first one on such buffers are cut from glibc's
/// per-thread arenas, which keep what is freed resident. Setting the threshold fixes it at
/// glibc's start value and turns the raising off: a few hundred mmap/munmap pairs per 300,000
/// events. Peak RSS 70.5 → 59.0 MiB (webhook) and 61.2 → 49.8 MiB (batch) at 1,000,000 events:
/// docs/performance.md, "Peak RSS since 8dfa137". Best effort: no-op beside other C libraries.
pub fn fix_c_malloc_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers and only changes glibc malloc's parameters;
        // called at the start of `main`, before any thread of the relay allocates with it.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
        if ok != 1 {
            tracing::debug!("mallopt(M_MMAP_THRESHOLD) failed; glibc's dynamic threshold stays");
        }
    }
}

/// Opts the process out of transparent huge pages: where the kernel hands them out (`always`,
/// or `madvise` with an allocator that asks), the heap grows and stays resident in 2 MiB steps.
/// Measured in the benchmark's batch scenario (100,000 events) when the relay still used
/// mimalloc: peak RSS ~160 MiB with them, ~142 MiB without, at the same throughput; not
/// re-measured since the switch to jemalloc, whose own settings are in `main.rs`. Best effort:
/// on other systems, or if the call fails, nothing changes.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag on
        // this process's memory descriptor; no memory is passed to the kernel.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::debug!("prctl(PR_SET_THP_DISABLE) failed; transparent huge pages stay as the system sets them");
        }
    }
}
