//! pingpong's HTTP API (SPEC §4). Handlers never touch the disk on an async worker: increments
//! go to the group-commit writer thread, reads to the blocking pool.

use axum::{Router, extract::State, routing::get};
use prometheus_client::registry::Registry;
use service_kit::{
    http::{self, ReadyCheck},
    shutdown::Draining,
};
use shared_fs::{Counter, CounterFile};

use crate::{error::VolumeError, metrics::CounterMetrics};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    counter: Counter,
}

impl AppState {
    /// Starts the counter writer for `file`, feeding `metrics`.
    pub fn new(file: CounterFile, metrics: CounterMetrics) -> Self {
        AppState {
            counter: Counter::spawn_observed(file, metrics),
        }
    }
}

/// The whole service: `/pingpong`, `/pings`, and the shared `/healthz`, `/readyz`, `/metrics`.
pub fn app(state: AppState, registry: Registry, draining: Draining) -> Router {
    let ready = readiness(state.counter.file().clone());
    let routes = Router::new()
        .route("/pingpong", http::get_only(pingpong))
        .route("/pings", get(pings))
        .with_state(state);
    http::finish(routes, registry, draining, ready)
}

/// Builds the app with a fresh registry: what tests and the server both use.
pub fn app_for(file: CounterFile, draining: Draining) -> Router {
    let mut registry = Registry::default();
    let metrics = CounterMetrics::register(&mut registry);
    app(AppState::new(file, metrics), registry, draining)
}

/// `pong N`, where N is the count before this request; sent only once the increment is
/// durable.
async fn pingpong(State(state): State<AppState>) -> Result<String, VolumeError> {
    let n = state.counter.increment().await?;
    Ok(format!("pong {n}"))
}

/// The current count, without incrementing.
async fn pings(State(state): State<AppState>) -> Result<String, VolumeError> {
    let file = state.counter.file().clone();
    let n = blocking(move || file.read()).await?;
    Ok(n.to_string())
}

/// Ready when the counter parses and the volume accepts writes. Not ready on a corrupt file
/// either: Kubernetes then stops routing here, and the operator sees why in the probe output.
fn readiness(file: CounterFile) -> ReadyCheck {
    std::sync::Arc::new(move || {
        let file = file.clone();
        Box::pin(async move {
            blocking(move || file.probe())
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    })
}

/// Runs blocking file I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> shared_fs::Result<T> + Send + 'static,
) -> shared_fs::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("file I/O task panicked")
}
