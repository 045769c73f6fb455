//! log-reader's HTTP surface (SPEC §5): `GET /` answers `output.log` byte for byte, plus the
//! shared `/healthz`, `/readyz` and `/metrics` from [`service_kit::http::finish`].
//!
//! The file is read whole, off the async workers, by one background task every [`REFRESH`];
//! requests are answered from that snapshot in memory. Reading per request would cost a hop to
//! the blocking pool and three syscalls each, for a file that changes every few seconds; the
//! snapshot costs at most [`REFRESH`] of staleness. log-writer replaces the file by an atomic
//! rename, so every read sees one complete entry, old or new, never a mix.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;
use service_kit::{
    http::{ReadyCheck, finish},
    shutdown::Draining,
};

use crate::volume::{self, blocking};

/// How often the background task re-reads `output.log`: the most a reader lags the writer.
pub const REFRESH: Duration = Duration::from_millis(50);

/// What `GET /` answers: the entry, or 503 and why there is none.
#[derive(Debug, Clone)]
enum Snapshot {
    Entry(Bytes),
    Unavailable(String),
}

type Latest = Arc<RwLock<Snapshot>>;

/// The whole router: `/` and the shared endpoints, layers included. Reads `output.log` once
/// now, then starts the refresh task, which ends when the router is dropped.
pub fn app(data_dir: PathBuf, draining: Draining) -> Router {
    let output = volume::output_path(&data_dir);
    let latest: Latest = Arc::new(RwLock::new(read_snapshot(&output)));
    tokio::spawn(refresh(output, Arc::downgrade(&latest)));
    let routes = Router::new()
        .route("/", get(latest_entry))
        .with_state(latest);
    finish(routes, Registry::default(), draining, ready_check(data_dir))
}

/// `GET /`: the latest entry, or 503 and why there is none.
async fn latest_entry(State(latest): State<Latest>) -> Response {
    let snapshot = latest.read().unwrap_or_else(|e| e.into_inner()).clone();
    let status = match snapshot {
        Snapshot::Entry(_) => StatusCode::OK,
        Snapshot::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = match snapshot {
        Snapshot::Entry(bytes) => bytes,
        Snapshot::Unavailable(reason) => Bytes::from(reason),
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Re-reads `output.log` every [`REFRESH`] until the router is gone; logs read errors once
/// each time they start, not once per refresh.
async fn refresh(output: PathBuf, latest: Weak<RwLock<Snapshot>>) {
    // `app` has just read the file: the first re-read is due one period later, not at once.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let path = output.clone();
        let snapshot = blocking(move || read_snapshot(&path)).await;
        let Some(latest) = latest.upgrade() else {
            return;
        };
        match &snapshot {
            Snapshot::Unavailable(reason) if !failing && !reason.starts_with("no entry yet") => {
                tracing::error!(path = %output.display(), reason = reason.trim_end(), "cannot read the latest entry");
                failing = true;
            }
            Snapshot::Entry(_) => failing = false,
            Snapshot::Unavailable(_) => {}
        }
        *latest.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }
}

fn read_snapshot(output: &Path) -> Snapshot {
    match std::fs::read(output) {
        Ok(bytes) => Snapshot::Entry(Bytes::from(bytes)),
        Err(error) if error.kind() == ErrorKind::NotFound => Snapshot::Unavailable(format!(
            "no entry yet: {} does not exist until log-writer writes its first entry\n",
            output.display()
        )),
        Err(error) => Snapshot::Unavailable(format!("cannot read {}: {error}\n", output.display())),
    }
}

/// Ready while `DATA_DIR` is a directory this process can list: then `/` answers from the volume
/// (an entry, or 503 until the writer's first one). A missing or unreadable mount is not ready.
fn ready_check(data_dir: PathBuf) -> ReadyCheck {
    let data_dir = Arc::new(data_dir);
    Arc::new(move || {
        let data_dir = data_dir.clone();
        Box::pin(async move { blocking(move || check_data_dir(&data_dir)).await })
    })
}

fn check_data_dir(data_dir: &Path) -> Result<(), String> {
    std::fs::read_dir(data_dir)
        .map(drop)
        .map_err(|error| format!("data directory {}: {error}", data_dir.display()))
}
