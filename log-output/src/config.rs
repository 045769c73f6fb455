//! The environment of each binary (SPEC §2), read once at start, and the `--help` text that
//! documents it. Unset or empty means the default; a malformed value is a
//! [`ConfigError`] that the binary prints as one line before exiting with status 2.

use std::{path::PathBuf, time::Duration};

use service_kit::config::{self, ConfigError};
use shared_fs::volume::VolumeKind;

/// `PORT` when unset: pingpong has 3000.
pub const DEFAULT_READER_PORT: u16 = 3001;

/// `LOG_INTERVAL` when unset.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest and longest `LOG_INTERVAL`: each entry is a durable write (two fsyncs), so a
/// nanosecond interval would turn the writer into a disk-grinding loop; a day is the longest
/// wait anyone means.
pub const LOG_INTERVAL_RANGE: (Duration, Duration) = (
    Duration::from_millis(100),
    Duration::from_secs(24 * 60 * 60),
);

/// log-writer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    pub data_dir: PathBuf,
    pub interval: Duration,
    /// `VOLUME_KIND`: whether `DATA_DIR` is one node's filesystem or shared by several (how the
    /// count's record is read).
    pub volume_kind: VolumeKind,
}

impl WriterConfig {
    /// Reads `DATA_DIR`, `LOG_INTERVAL` and `VOLUME_KIND` through `lookup` (the process
    /// environment in the binary, a map in tests).
    pub fn from_env(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(WriterConfig {
            data_dir: config::data_dir(lookup),
            interval: config::duration(
                lookup,
                "LOG_INTERVAL",
                DEFAULT_LOG_INTERVAL,
                LOG_INTERVAL_RANGE,
                "a duration from 100ms to 24h, such as 250ms, 5s or 1m",
            )?,
            volume_kind: config::parse_var(
                lookup,
                "VOLUME_KIND",
                VolumeKind::EXPECTED,
                VolumeKind::parse,
            )?
            .unwrap_or_default(),
        })
    }
}

/// Where log-writer serves `/healthz`, `/readyz` and `/metrics`: nowhere unless `PORT` is set
/// (the manifests set 3002), so that any number of writers run side by side without choosing
/// ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterHttp {
    pub port: Option<u16>,
    pub listen_address: config::ListenAddress,
}

impl WriterHttp {
    /// Reads `PORT` and `LISTEN_ADDRESS` through `lookup`.
    pub fn from_env(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let port = config::parse_var(lookup, "PORT", "a TCP port number from 0 to 65535", |_| {
            Some(())
        })?
        .map(|()| config::port(lookup, 0))
        .transpose()?;
        Ok(WriterHttp {
            port,
            listen_address: config::listen_address(lookup)?,
        })
    }
}

/// log-reader's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderConfig {
    pub port: u16,
    /// `LISTEN_ADDRESS`: every address of both families unless set.
    pub listen_address: config::ListenAddress,
    pub data_dir: PathBuf,
    /// `SHUTDOWN_DELAY`: how long to keep serving after SIGTERM (SPEC §6).
    pub shutdown_delay: Duration,
}

impl ReaderConfig {
    /// Reads `PORT`, `LISTEN_ADDRESS`, `DATA_DIR` and `SHUTDOWN_DELAY` through `lookup`.
    pub fn from_env(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(ReaderConfig {
            port: config::port(lookup, DEFAULT_READER_PORT)?,
            listen_address: config::listen_address(lookup)?,
            data_dir: config::data_dir(lookup),
            shutdown_delay: config::shutdown_delay(lookup)?,
        })
    }
}

/// `log-writer --help`, laid out like pingpong's.
pub const WRITER_HELP: &str = "\
log-writer: every LOG_INTERVAL, writes the time, its UUID and the ping-pong count to
DATA_DIR/output.log and prints the same entry to stdout.

USAGE:
    log-writer                   write entries until SIGTERM or SIGINT, then exit 0
    log-writer --help | --version

ENVIRONMENT (unset means the default; a malformed value exits with status 2):
    DATA_DIR       the shared volume, created if missing      [default: files]
    LOG_INTERVAL   time between entries, 100ms to 24h,        [default: 5s]
                   such as 250ms, 5s or 1m
    RUST_LOG       tracing filter; logs go to stderr          [default: info]
    LOG_FORMAT     text or json: one line per event, or one   [default: text]
                   JSON object per line with timestamp, level, message and fields;
                   the entries on stdout are the same in both
    VOLUME_KIND    auto, local or network: how the count's    [default: auto]
                   record is read (see pingpong --help)
    PORT           serve GET /healthz, /readyz and /metrics   [default: none]
                   (entries written and skipped, the last one's time) on this TCP port
    LISTEN_ADDRESS the IP address PORT listens on, as for log-reader  [default: every address]

FILES in DATA_DIR:
    output.log             the latest entry, replaced atomically under output.log.lock (so
                           two writers overlapping in a rollout are safe); never delete the lock
    pingpong_counter.txt   the count: the larger of this file and the durable record in
                           pingpong_counter.txt.lock, both read without a lock; the file
                           at most 64 bytes; missing means 0; when corrupt
                           or too large, the error is logged and the entry skipped, so the last
                           good entry stays

SIGTERM or SIGINT: an entry in flight may finish for at most 3s, then exit 0; SIGINT after
that exits at once with status 1.
";

/// `log-reader --help`, laid out like pingpong's.
pub const READER_HELP: &str = concat!(
    "\
log-reader: serves DATA_DIR/output.log, the latest entry of log-writer, over HTTP.

USAGE:
    log-reader                   serve HTTP; on SIGTERM or SIGINT drain, then exit 0
    log-reader --help | --version

ENVIRONMENT (unset means the default; a malformed value exits with status 2):
    PORT       TCP port                                   [default: 3001]
    LISTEN_ADDRESS
               the IP address to listen on, e.g. 127.0.0.1 or ::1 for this host only;
               unset: every address, IPv6 and IPv4 ([::] taking IPv4 too; 0.0.0.0 on a
               host without IPv6)                         [default: every address]
    DATA_DIR   the shared volume, created if missing      [default: files]
    RUST_LOG   tracing filter; logs go to stderr          [default: info]
    LOG_FORMAT text or json: one line per event, or one JSON object per line with
               timestamp, level, message and fields       [default: text]
    SHUTDOWN_DELAY
               after SIGTERM, keep serving this long with /readyz already 503, then
               drain; 0s to 60s, e.g. 5s behind a load balancer  [default: 0s]

ENDPOINTS:
    GET /          output.log byte for byte (text/plain); 503 + reason before the first entry
                   and when output.log is longer than 1024 bytes (never loaded whole)
    GET /healthz   200 while the process runs
    GET /readyz    200 when DATA_DIR is a readable directory and not draining, else 503 + reason
    GET /metrics   Prometheus text
    HEAD works like GET without a body; other methods are 405, unknown paths 404.

",
    service_kit::http_limits_help!()
);

#[cfg(test)]
mod tests {
    use super::*;

    use service_kit::config::fixed_env as env_of;

    #[test]
    fn defaults_when_unset() {
        assert_eq!(
            WriterConfig::from_env(&env_of(&[])),
            Ok(WriterConfig {
                data_dir: PathBuf::from("files"),
                interval: Duration::from_secs(5),
                volume_kind: VolumeKind::Auto,
            })
        );
        assert_eq!(
            ReaderConfig::from_env(&env_of(&[])),
            Ok(ReaderConfig {
                port: 3001,
                listen_address: config::ListenAddress::Any,
                data_dir: PathBuf::from("files"),
                shutdown_delay: Duration::ZERO,
            })
        );
    }

    #[test]
    fn reads_the_variables() {
        let env = env_of(&[
            ("DATA_DIR", "/usr/src/app/files"),
            ("LOG_INTERVAL", "250ms"),
            ("PORT", "8080"),
            ("SHUTDOWN_DELAY", "5s"),
            ("LISTEN_ADDRESS", "127.0.0.1"),
        ]);
        assert_eq!(
            WriterConfig::from_env(&env),
            Ok(WriterConfig {
                data_dir: PathBuf::from("/usr/src/app/files"),
                interval: Duration::from_millis(250),
                volume_kind: VolumeKind::Auto,
            })
        );
        assert_eq!(
            ReaderConfig::from_env(&env),
            Ok(ReaderConfig {
                port: 8080,
                listen_address: config::ListenAddress::Ip([127, 0, 0, 1].into()),
                data_dir: PathBuf::from("/usr/src/app/files"),
                shutdown_delay: Duration::from_secs(5),
            })
        );
    }

    #[test]
    fn malformed_values_are_errors_naming_the_variable() {
        let err = WriterConfig::from_env(&env_of(&[("LOG_INTERVAL", "abc")])).expect_err("abc");
        assert_eq!(
            err.to_string(),
            r#"invalid LOG_INTERVAL="abc": expected a duration from 100ms to 24h, such as 250ms, 5s or 1m"#
        );
        let err = ReaderConfig::from_env(&env_of(&[("PORT", "abc")])).expect_err("abc");
        assert_eq!(
            err.to_string(),
            r#"invalid PORT="abc": expected a TCP port number from 0 to 65535"#
        );
        let err = ReaderConfig::from_env(&env_of(&[("SHUTDOWN_DELAY", "5")])).expect_err("no unit");
        assert_eq!(
            err.to_string(),
            r#"invalid SHUTDOWN_DELAY="5": expected a duration from 0s to 60s such as 0s, 500ms or 5s"#
        );
    }
}
