//! The integration tests, one binary: `fixtures` (a real broker, ephemeral topics, scripted HTTP
//! receivers, the relay in-process or as a subprocess, the accounting check) and one module per
//! area. Run one area with `cargo test --test it relay_core::`, the soak tests with
//! `cargo test --test it -- --ignored`.

mod fixtures;

mod auth;
mod bound;
mod catalog_cli;
mod catalog_spec;
mod catalogs;
mod catalogs_check;
mod deploy_files;
mod envelope_schema;
pub mod faults;
mod first_hour;
mod fuzz_regressions;
mod http2;
mod kafka_outage_logs;
mod logging;
mod normalize_cli;
mod normalize_pipeline;
mod operations;
mod outbound_proxy;
mod poison;
mod posthog;
pub mod redrive;
mod relay_core;
pub mod reload;
mod routing;
mod signing;
mod tap;
mod telemetry;
pub mod tiers;
mod tiers_default;
mod tiers_failures;
mod tls;
mod topics;
mod trace;
mod transform_cli;
mod transform_reload;
mod transforms;
mod webhook;
