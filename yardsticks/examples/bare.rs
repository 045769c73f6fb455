//! The yardstick of the ceiling in `bench/http-bench.py`: a bare axum 0.8 server answering a
//! constant `pong 0` on `/pingpong` and `/` with `axum::serve` and nothing else: no layers,
//! no probes, no metrics, no limits, no graceful shutdown. `ceiling` (the same answer through
//! service-kit's whole stack) against this is what the stack costs per request. `PORT` as the
//! services (default 3997).

use axum::{Router, routing::get};
use service_kit::config;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = config::port(&config::process_env, 3997).map_err(std::io::Error::other)?;
    let app = Router::new()
        .route("/pingpong", get(|| async { "pong 0" }))
        .route("/", get(|| async { "pong 0" }));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    axum::serve(listener, app).await
}
