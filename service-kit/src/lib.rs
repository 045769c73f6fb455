//! What the two HTTP services (pingpong and log-reader) and log-writer share, so each binary
//! only wires its own routes:
//!
//! - [`config`]: environment variables read once at start (`LISTEN_ADDRESS` among them); a
//!   malformed one is a [`config::ConfigError`] that the binary turns into one line and exit
//!   status 2 (SPEC §2).
//! - [`cli`]: `--help` and `--version`, and how every binary starts and ends.
//! - [`telemetry`]: `tracing` to stderr, filtered by `RUST_LOG`, as text or JSON
//!   (`LOG_FORMAT`), never blocking the thread that logs.
//! - [`nonblocking`]: the bounded queue and writer thread in front of stderr (and of
//!   log-writer's stdout) that drops and counts lines rather than wait for a stalled sink.
//! - [`metrics`]: the Prometheus registry, the per-route request counter and latency
//!   histogram, and the process-wide metrics every HTTP service exports (connections, dropped
//!   log lines, `process_*`, `build_info`); `/metrics` as Prometheus text or OpenMetrics.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, the request log, the request timeout, and
//!   serving with graceful shutdown (SPEC §6).
//! - [`connections`]: the accept loop: header timeout, the connection bound with eviction,
//!   accept errors, request size limits, and the drain.
//! - [`delivery`]: an answer that hands something out (pingpong's number), from when it is
//!   made until it is written: reported undelivered if its connection ends first, and counted
//!   and logged only once written.
//! - [`shutdown`]: SIGTERM and SIGINT as one future, and the draining flag `/readyz` reads.
//! - [`single_flight`]: at most one blocking check of the volume in flight, however many
//!   probes and reads ask for it.

pub mod cli;
pub mod config;
pub mod connections;
pub mod delivery;
mod every_request;
pub mod http;
pub mod metrics;
pub mod nonblocking;
pub mod shutdown;
pub mod single_flight;
pub mod telemetry;
