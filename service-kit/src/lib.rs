//! What the two HTTP services (pingpong and log-reader) and log-writer share, so each binary
//! only wires its own routes:
//!
//! - [`config`]: environment variables read once at start; a malformed one is a [`config::ConfigError`]
//!   that the binary turns into one line and exit status 2 (SPEC §2).
//! - [`cli`]: `--help` and `--version`.
//! - [`telemetry`]: `tracing` to stderr, filtered by `RUST_LOG`.
//! - [`metrics`]: the Prometheus registry and the per-route request counter.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, the request log, the request timeout, and
//!   serving with graceful shutdown (SPEC §6).
//! - [`connections`]: the accept loop: header timeout, the connection bound with eviction,
//!   accept errors, request size limits, and the drain.
//! - [`shutdown`]: SIGTERM and SIGINT as one future, and the draining flag `/readyz` reads.
//! - [`single_flight`]: at most one blocking check of the volume in flight, however many
//!   probes and reads ask for it.

pub mod cli;
pub mod config;
pub mod connections;
pub mod http;
pub mod metrics;
pub mod shutdown;
pub mod single_flight;
pub mod telemetry;
