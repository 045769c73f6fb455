//! The HTTP ceiling for the benchmarks: the same stack as the services (service-kit's layers,
//! probes, metrics and graceful shutdown) answering a constant `pong 0` on `/pingpong` and
//! `/`, with no file I/O at all. Whatever a service loses against this is the cost of its own
//! work. Used by `bench/http-bench.py`; `PORT` as the services (default 3999).

use axum::{Router, routing::get};
use prometheus_client::registry::Registry;
use service_kit::{config, http, shutdown::Draining, telemetry};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let lookup = config::process_env;
    let port = config::port(&lookup, 3999).map_err(std::io::Error::other)?;
    telemetry::init(telemetry::filter(&lookup).map_err(std::io::Error::other)?);
    let routes = Router::new()
        .route("/pingpong", get(|| async { "pong 0" }))
        .route("/", get(|| async { "pong 0" }));
    let draining = Draining::default();
    let ready: http::ReadyCheck = std::sync::Arc::new(|| Box::pin(async { Ok(()) }));
    let app = http::finish(routes, Registry::default(), draining.clone(), ready);
    http::serve(
        http::bind(port).await?,
        app,
        draining,
        std::time::Duration::ZERO,
    )
    .await
}
