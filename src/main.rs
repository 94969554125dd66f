//! The `event-relay` binary: parse the command line, hand over to the library.

use clap::Parser;
use event_relay::cli::{self, Cli, Command};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// jemalloc: the relay allocates an envelope's property tree on the consumer thread and frees it
/// on whichever thread finishes its delivery. jemalloc's per-thread caches batch such frees;
/// mimalloc pays an atomic operation per cross-thread free. Benchmark, batch scenario
/// (200,000 events, 3 runs each): 13.2–14.1 CPU-seconds per million events with jemalloc,
/// 17.0–20.0 with mimalloc.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: one arena (the relay has a few busy threads on a
/// few cores; more arenas only hold more memory), freed pages returned after 250 ms instead of
/// 10 s, by jemalloc's background thread. Benchmark (200,000 events): peak RSS 79 instead of
/// 96 MiB in the batch scenario and 87 instead of 118 MiB in the webhook scenario, with no
/// more CPU per event; returning pages at once (`dirty_decay_ms:0`) cost twice the CPU. The
/// `_RJEM_MALLOC_CONF` environment variable overrides these.
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
#[allow(non_upper_case_globals)]
pub static malloc_conf: Option<&'static u8> =
    Some(&b"narenas:1,dirty_decay_ms:250,muzzy_decay_ms:0,background_thread:true\0"[0]);

fn main() -> ExitCode {
    event_relay::disable_transparent_huge_pages();
    event_relay::fix_c_malloc_mmap_threshold();
    let args = Cli::parse();
    match args.command {
        Command::Check { config } => cli::check(&config),
        Command::Normalize {
            source,
            config,
            topic,
            summary,
            top,
        } => cli::normalize(source, config, topic, summary.then_some(top)),
        Command::Route { config, topic } => cli::route(config, topic),
        Command::Test { config } => cli::test(&config),
        Command::Transform {
            config,
            target,
            topic,
        } => cli::transform(config, target, topic),
        Command::Topics {
            config,
            create,
            partitions,
        } => cli::topics(&config, create, partitions),
        Command::Redrive(args) => cli::redrive(&args),
        Command::Trace(args) => cli::trace(&args),
        Command::Catalog(cmd) => cli::catalog(cmd),
        Command::Tap(args) => cli::tap(&args),
        Command::Run {
            config,
            watch_config,
        } => run(&config, watch_config),
    }
}

fn run(path: &std::path::Path, watch_config: bool) -> ExitCode {
    let config = match event_relay::config::load(path) {
        Ok(c) => c,
        Err(e) => return invalid(path, &e.problems),
    };
    let mut problems = event_relay::transform::problems(&config);
    problems.extend(event_relay::pipeline::kafka_problems(&config));
    if !problems.is_empty() {
        return invalid(path, &problems);
    }
    event_relay::init_logging(&config.log);
    let runtime = match event_relay::pipeline::runtime(&config.pipeline) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("event-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; shutting down");
            signal.cancel();
        });
        // SIGHUP (and with --watch-config a changed file) reloads `path` in the running relay.
        event_relay::pipeline::run_reloadable(config, path.to_path_buf(), watch_config, shutdown)
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Topics the relay may not create: the operator's to fix, as a config problem is.
        Err(e @ event_relay::pipeline::StartError::RetryTopics(_)) => {
            eprintln!("event-relay: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "relay failed");
            eprintln!("event-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 2 for a config `run` cannot start with, every problem listed.
fn invalid(path: &std::path::Path, problems: &[event_relay::config::Problem]) -> ExitCode {
    eprintln!("{}: invalid config:", path.display());
    for p in problems {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
