//! pingpong's configuration (SPEC §2), read once at start.

use std::path::PathBuf;

use service_kit::{
    config::{ConfigError, data_dir, port},
    telemetry::{self, EnvFilter},
};

pub const DEFAULT_PORT: u16 = 3000;

/// Where pingpong listens, where it keeps its counter, and what it logs.
#[derive(Debug)]
pub struct Config {
    pub port: u16,
    pub data_dir: PathBuf,
    pub log_filter: EnvFilter,
}

impl Config {
    /// Reads `PORT`, `DATA_DIR` and `RUST_LOG` through `lookup`.
    pub fn from_env(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Config {
            port: port(lookup, DEFAULT_PORT)?,
            data_dir: data_dir(lookup),
            log_filter: telemetry::filter(lookup)?,
        })
    }
}
