//! Log output: `tracing` to stderr, text or JSON from the `[log]` section.

use std::io::IsTerminal;

/// Sets up `tracing` from the `[log]` section (`RUST_LOG` wins when set). Text logs are
/// coloured only when stderr is a terminal: a file or a log collector gets plain text.
pub fn init_logging(log: &crate::config::LogConfig) {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
