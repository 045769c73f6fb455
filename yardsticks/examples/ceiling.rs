//! The HTTP ceiling for the benchmarks: the same stack as the services (service-kit's layers,
//! probes, metrics and graceful shutdown) answering a constant `pong 0` on `/pingpong` and
//! `/`, with no file I/O at all. Whatever a service loses against this is the cost of its own
//! work. Used by `bench/http-bench.py`; `PORT` as the services (default 3999).

use axum::{Router, routing::get};
use yardsticks::serve_for_bench;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = yardsticks::start(3999)?;
    let routes = Router::new()
        .route("/pingpong", get(|| async { "pong 0" }))
        .route("/", get(|| async { "pong 0" }));
    serve_for_bench(routes, port).await
}
