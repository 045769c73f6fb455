//! pingpong: `GET /pingpong` answers `pong N` and durably increments a counter on the shared
//! volume (SPEC §4).
//!
//! - [`config`]: the environment variables (SPEC §2).
//! - [`routes`]: the HTTP API; every increment goes through the shared-fs group commit, so the
//!   answer is sent only once the increment is on disk.
//! - [`error`]: volume errors as `503` with the reason.
//! - [`internal`]: leader mode's internal endpoint, where followers' batches arrive.
//! - [`forward`]: leader mode's client, how a follower sends its batch to the leader.
//! - [`metrics`]: increments, batch sizes and durable-write latency.
//! - [`operator`]: `pingpong counter get|set`, the repair commands for a container with no
//!   shell, using the same lock and atomic write as the server.

pub mod config;
pub mod error;
pub mod forward;
pub mod internal;
pub mod metrics;
pub mod operator;
pub mod routes;

pub use routes::{AppState, app};
