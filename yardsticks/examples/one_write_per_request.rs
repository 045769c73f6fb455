//! For contrast in `bench/http-bench.py`: pingpong without group commit. Each request does its own
//! locked, durable read-modify-write on the blocking pool: correct, but one fsync pair per
//! request. At one connection this is the bound for pingpong; under concurrency it shows what
//! group commit buys. `PORT` (default 3998) and `DATA_DIR` as pingpong.

use axum::{Router, extract::State, http::StatusCode, routing::get};
use shared_fs::CounterFile;
use yardsticks::serve_for_bench;

async fn pingpong(State(file): State<CounterFile>) -> Result<String, (StatusCode, String)> {
    tokio::task::spawn_blocking(move || file.add(1))
        .await
        .expect("join")
        .map(|n| format!("pong {n}"))
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = yardsticks::start(3998)?;
    let data_dir = yardsticks::data_dir()?;
    let routes = Router::new()
        .route("/pingpong", get(pingpong))
        .with_state(CounterFile::in_dir(&data_dir));
    serve_for_bench(routes, port).await
}
