//! The benchmarks' reference servers, each an example of this crate (`cargo build --release -p
//! yardsticks --examples`), so that `cargo build --workspace` and the images never build them:
//!
//! - `bare`: axum alone answering a constant, the yardstick of the ceiling;
//! - `ceiling`: service-kit's whole stack answering a constant;
//! - `careless`: what the public versions of this exercise do (count in memory, no fsync, no
//!   lock): it loses data;
//! - `durable_floor`: one in-place record write and `fdatasync` per request;
//! - `one_write_per_request`: pingpong without group commit.
//!
//! All but `bare` serve through [`serve_for_bench`], so that they differ from the services only
//! in what their handlers do. `bench/http-bench.py` and `bench/stack-cost.py` build and start
//! them; BENCHMARKS.md says what each measures.

use std::{io, path::PathBuf, sync::Arc, time::Duration};

use axum::Router;
use prometheus_client::registry::Registry;
use service_kit::{
    config::{self, ListenAddress},
    http::{ReadyCheck, bind, finish, serve},
    shutdown::Draining,
    telemetry,
};

/// What every reference server but `bare` does first: logging set up as the services do
/// (`RUST_LOG`), and its `PORT`, `default_port` when unset.
pub fn start(default_port: u16) -> io::Result<u16> {
    let lookup = config::process_env;
    let port = config::port(&lookup, default_port).map_err(io::Error::other)?;
    telemetry::init(telemetry::filter(&lookup).map_err(io::Error::other)?);
    Ok(port)
}

/// `DATA_DIR` as pingpong reads it, created if missing: for the servers that write.
pub fn data_dir() -> io::Result<PathBuf> {
    let data_dir = config::data_dir(&config::process_env);
    std::fs::create_dir_all(&data_dir)?;
    Ok(data_dir)
}

/// Serves `routes` through the whole stack ([`finish`], [`serve`]) on `port`, always ready,
/// with no shutdown delay.
pub async fn serve_for_bench(routes: Router, port: u16) -> io::Result<()> {
    let draining = Draining::default();
    let ready: ReadyCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    let app = finish(routes, Registry::default(), draining.clone(), ready);
    let listener = bind(ListenAddress::Any, port)?;
    serve(listener, app, draining, Duration::ZERO).await
}
