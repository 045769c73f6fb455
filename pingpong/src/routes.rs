//! pingpong's HTTP API (SPEC §4). Handlers never touch the disk on an async worker: increments
//! go to the group-commit writer thread, reads to the blocking pool.

use std::time::Duration;

use axum::{Router, extract::State, routing::get};
use prometheus_client::registry::Registry;
use service_kit::{
    delivery::{OnUndelivered, until_written},
    http::{self, ReadyCheck, TimeoutReason},
    shutdown::Draining,
    single_flight::SingleFlight,
};
use shared_fs::{
    Counter, CounterFile,
    group_commit::{FollowersDoor, Stopped, UNREADY_AFTER_WAITING},
    leadership::LeaderMode,
};

use crate::{
    error::VolumeError,
    metrics::{CounterMetrics, LeaderGauges, WaitingGauge},
};

/// What the handlers share, behind one reference count: axum clones it for every request.
#[derive(Debug, Clone)]
pub struct AppState(std::sync::Arc<Shared>);

#[derive(Debug)]
struct Shared {
    counter: Counter,
    /// `/pings`'s read of the volume, one in flight at a time (see
    /// [`service_kit::single_flight`]).
    count: SingleFlight<shared_fs::Result<u64>>,
    /// Gives back a number whose answer could not be written: reported abandoned.
    undelivered: OnUndelivered,
}

impl AppState {
    /// Starts the counter writer for `file`, feeding `metrics`.
    pub fn new(file: CounterFile, metrics: CounterMetrics) -> Self {
        Self::with_leader_mode(file, metrics, None)
    }

    /// As [`AppState::new`], in leader mode when `leader` is given (SPEC §2 `ADVERTISE_ADDR`).
    pub fn with_leader_mode(
        file: CounterFile,
        metrics: CounterMetrics,
        leader: Option<LeaderMode>,
    ) -> Self {
        let count = SingleFlight::new({
            let file = file.clone();
            move || {
                let file = file.clone();
                blocking(move || file.read())
            }
        });
        let counter = Counter::spawn_with(file, metrics, leader);
        let returns = counter.returns();
        AppState(std::sync::Arc::new(Shared {
            counter,
            count,
            undelivered: OnUndelivered::new(move |n| returns.undelivered(n)),
        }))
    }
}

/// The whole service: `/pingpong`, `/pings`, and the shared `/healthz`, `/readyz`, `/metrics`.
pub fn app(state: AppState, mut registry: Registry, draining: Draining) -> Router {
    registry.register_collector(Box::new(WaitingGauge(state.0.counter.waiting())));
    registry.register_collector(Box::new(LeaderGauges(state.0.counter.for_followers())));
    let ready = readiness(state.0.counter.clone());
    let timed_out = timeout_reason(state.0.counter.clone());
    let routes = Router::new()
        .route("/pingpong", http::get_only(pingpong))
        .route("/pings", get(pings))
        .with_state(state);
    http::finish_explaining_timeouts(routes, registry, draining, ready, timed_out)
}

/// A `/pingpong` that timed out while the writer waited for the counter's lock says so, as
/// readiness does, rather than blaming the volume; so does a `/readyz` that waited for the
/// writer's answer meanwhile (after a failed write, readiness asks the writer for a new one).
fn timeout_reason(counter: Counter) -> TimeoutReason {
    std::sync::Arc::new(move |route| {
        matches!(route, "/pingpong" | "/readyz")
            .then(|| {
                counter
                    .awaiting_lock(Duration::ZERO)
                    .or_else(|| counter.awaiting_leader(Duration::ZERO))
            })
            .flatten()
            .map(|waiting| waiting.to_string())
    })
}

/// Builds the app with a fresh registry: what tests and the server both use.
pub fn app_for(file: CounterFile, draining: Draining) -> Router {
    service(file, draining).0
}

/// The app, and a handle that waits for its counter writer to end once the app is dropped:
/// the server waits on it before exiting, so that the count is published and the lock given
/// back first (a replica of the previous release reads only the published file).
pub fn service(file: CounterFile, draining: Draining) -> (Router, Stopped) {
    let (app, stopped, _) = service_with_leader_mode(file, draining, None);
    (app, stopped)
}

/// [`service`], in leader mode when `leader` is given, with the door of the internal endpoint
/// ([`crate::internal::app`]).
pub fn service_with_leader_mode(
    file: CounterFile,
    draining: Draining,
    leader: Option<LeaderMode>,
) -> (Router, Stopped, FollowersDoor) {
    let mut registry = Registry::default();
    let metrics = CounterMetrics::register(&mut registry);
    let state = AppState::with_leader_mode(file, metrics, leader);
    let stopped = state.0.counter.stopped();
    let door = state.0.counter.for_followers();
    (app(state, registry, draining), stopped, door)
}

/// `pong N`, where N is the count before this request; sent only once the increment is
/// durable. If the answer is not written to the client's socket (the client reset first), N
/// is reported abandoned and the request is not counted as answered.
async fn pingpong(State(state): State<AppState>) -> Result<String, VolumeError> {
    let n = state.0.counter.increment().await?;
    until_written(n, &state.0.undelivered);
    Ok(format!("pong {n}"))
}

/// The current count, without incrementing.
async fn pings(State(state): State<AppState>) -> Result<String, VolumeError> {
    let n = state
        .0
        .count
        .get()
        .await
        .unwrap_or_else(|| Err(state.0.counter.stopped_error()))?;
    Ok(n.to_string())
}

/// Ready when the counter parses, the volume accepts writes, and durable writes work (after a
/// failure that persists, such as a full or failing disk, until one succeeds again). Not ready
/// on a corrupt file either: Kubernetes then stops routing here, and the operator sees why in
/// the probe output. Nor while the writer has waited past [`UNREADY_AFTER_WAITING`] for the
/// counter's lock (its holder is stuck, and every increment here waits with it); asked first,
/// since it costs no file operation.
fn readiness(counter: Counter) -> ReadyCheck {
    std::sync::Arc::new(move || {
        let counter = counter.clone();
        Box::pin(async move {
            if let Some(waiting) = counter
                .awaiting_lock(UNREADY_AFTER_WAITING)
                .or_else(|| counter.awaiting_leader(UNREADY_AFTER_WAITING))
            {
                return Err(waiting.to_string());
            }
            let file = counter.file().clone();
            blocking(move || file.probe())
                .await
                .map_err(|e| e.to_string())?;
            counter.check().await.map_err(|e| e.to_string())
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
