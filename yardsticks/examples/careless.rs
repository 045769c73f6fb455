//! The careless reference in `bench/http-bench.py`: what the public versions of this system do.
//! The count lives in memory; every `/pingpong` adds one and rewrites
//! `DATA_DIR/pingpong_counter.txt` in place with `std::fs::write` (truncate, then write) right
//! in the handler, with no fsync, no lock and no temporary file, then answers `pong N` through
//! the same service-kit stack as the ceiling, so that careless against ceiling is the cost of
//! that write and nothing else.
//!
//! It loses data, and that is its point: it is fast because it is careless. A reader can see
//! the file empty or half written; a crash or a power cut can leave it empty or behind the
//! answers already given; two replicas hand out the same numbers; a corrupt file is read as 0.
//! pingpong must beat it while doing none of that. Never point it at a volume that matters.
//! `PORT` (default 3996) and `DATA_DIR` as pingpong.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{Router, extract::State, routing::get};
use yardsticks::serve_for_bench;

#[derive(Clone)]
struct Careless {
    count: Arc<AtomicU64>,
    file: Arc<PathBuf>,
}

async fn pingpong(State(c): State<Careless>) -> String {
    let n = c.count.fetch_add(1, Ordering::Relaxed);
    // Blocking file I/O on an async worker, its error ignored: what the public versions do
    // (and what STYLE.md forbids in the services).
    let _ = std::fs::write(&*c.file, format!("{}\n", n + 1));
    format!("pong {n}")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = yardsticks::start(3996)?;
    let data_dir = yardsticks::data_dir()?;
    let file = data_dir.join("pingpong_counter.txt");
    // Anything unreadable counts as 0: the silent reset the services refuse.
    let start = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let state = Careless {
        count: Arc::new(AtomicU64::new(start)),
        file: Arc::new(file),
    };
    let routes = Router::new()
        .route("/pingpong", get(pingpong))
        .with_state(state);
    serve_for_bench(routes, port).await
}
