//! Logging: `tracing` events as one line each on stderr (stdout belongs to log-writer's entries),
//! filtered by `RUST_LOG` (default `info`). A malformed filter is a configuration error, not a
//! silently ignored one.

pub use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, parse_var};

/// Parses `RUST_LOG`; call before anything else so a bad filter fails fast.
pub fn filter(lookup: &impl Fn(&str) -> Option<String>) -> Result<EnvFilter, ConfigError> {
    Ok(parse_var(
        lookup,
        "RUST_LOG",
        "a tracing filter such as info or pingpong=debug,warn",
        |v| EnvFilter::try_new(v).ok(),
    )?
    .unwrap_or_else(|| EnvFilter::new("info")))
}

/// Installs the global subscriber.
pub fn init(filter: EnvFilter) {
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}
