//! pingpong's configuration (SPEC §2), read once at start.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use service_kit::config::{
    ConfigError, ListenAddress, data_dir, ip_address, listen_address, parse_var, port, port_number,
    shutdown_delay,
};
use shared_fs::volume::VolumeKind;

pub const DEFAULT_PORT: u16 = 3000;

/// Leader mode's internal endpoint (SPEC §2 `INTERNAL_PORT`).
pub const DEFAULT_INTERNAL_PORT: u16 = 3001;

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
    /// `ADVERTISE_ADDR`: where the other replicas reach this one's internal endpoint; leader
    /// mode is on when set.
    pub advertise_addr: Option<IpAddr>,
    /// `INTERNAL_PORT`: the internal endpoint's port (0: any free one, advertised as bound).
    pub internal_port: u16,
}

impl Config {
    /// Reads `PORT`, `LISTEN_ADDRESS`, `DATA_DIR`, `SHUTDOWN_DELAY`, `VOLUME_KIND`,
    /// `ADVERTISE_ADDR` and `INTERNAL_PORT` through `lookup`.
    pub fn from_env(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Config {
            port: port(lookup, DEFAULT_PORT)?,
            listen_address: listen_address(lookup)?,
            data_dir: data_dir(lookup),
            shutdown_delay: shutdown_delay(lookup)?,
            volume_kind: volume_kind(lookup)?,
            advertise_addr: advertise_addr(lookup)?,
            internal_port: internal_port(lookup)?,
        })
    }
}

/// `ADVERTISE_ADDR`: an IPv4 or IPv6 address (IPv6 optionally in brackets), no port, no host
/// name: in Kubernetes the pod's own, from the downward API (`status.podIP`).
pub fn advertise_addr(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<IpAddr>, ConfigError> {
    parse_var(
        lookup,
        "ADVERTISE_ADDR",
        "this pod's IP address, such as 10.42.1.7 or fd00::7 (the downward API's status.podIP)",
        |v| ip_address(v).filter(|ip| !ip.is_unspecified() && !ip.is_multicast()),
    )
}

/// `INTERNAL_PORT`: digits only, as `PORT`; read whether leader mode is on or not, so that a
/// typo is refused before it matters.
pub fn internal_port(lookup: &impl Fn(&str) -> Option<String>) -> Result<u16, ConfigError> {
    Ok(parse_var(
        lookup,
        "INTERNAL_PORT",
        "a TCP port number from 0 to 65535",
        port_number,
    )?
    .unwrap_or(DEFAULT_INTERNAL_PORT))
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
