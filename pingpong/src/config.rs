//! pingpong's configuration (SPEC §2), read once at start.

use std::{path::PathBuf, time::Duration};

use service_kit::config::{
    ConfigError, ListenAddress, data_dir, listen_address, parse_var, port, shutdown_delay,
};
use shared_fs::volume::VolumeKind;

pub const DEFAULT_PORT: u16 = 3000;

/// Where pingpong listens and where it keeps its counter. (`RUST_LOG` is read by
/// `service_kit::cli::run_main`, as for every binary.)
#[derive(Debug)]
pub struct Config {
    pub port: u16,
    /// `LISTEN_ADDRESS`: every address of both families unless set.
    pub listen_address: ListenAddress,
    pub data_dir: PathBuf,
    /// `SHUTDOWN_DELAY`: how long to keep serving after SIGTERM (SPEC §6).
    pub shutdown_delay: Duration,
    /// `VOLUME_KIND`: whether `DATA_DIR` is one node's filesystem or shared by several.
    pub volume_kind: VolumeKind,
}

impl Config {
    /// Reads `PORT`, `LISTEN_ADDRESS`, `DATA_DIR`, `SHUTDOWN_DELAY` and `VOLUME_KIND` through `lookup`.
    pub fn from_env(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Config {
            port: port(lookup, DEFAULT_PORT)?,
            listen_address: listen_address(lookup)?,
            data_dir: data_dir(lookup),
            shutdown_delay: shutdown_delay(lookup)?,
            volume_kind: volume_kind(lookup)?,
        })
    }
}

/// `VOLUME_KIND`: `auto` (the default: the filesystem's type decides), `local` or `network`.
pub fn volume_kind(lookup: &impl Fn(&str) -> Option<String>) -> Result<VolumeKind, ConfigError> {
    Ok(parse_var(
        lookup,
        "VOLUME_KIND",
        VolumeKind::EXPECTED,
        VolumeKind::parse,
    )?
    .unwrap_or_default())
}
