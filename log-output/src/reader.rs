//! log-reader's HTTP surface (SPEC §5): `GET /` answers `output.log` byte for byte, plus the
//! shared `/healthz`, `/readyz` and `/metrics` from [`service_kit::http::finish`].
//!
//! The file is read, off the async workers, by one background task every [`REFRESH`]; requests
//! are answered from that snapshot in memory. Reading per request would cost a hop to the
//! blocking pool and three syscalls each, for a file that changes every few seconds; the
//! snapshot costs at most [`REFRESH`] of staleness. log-writer replaces the file by an atomic
//! rename, so every read sees one complete entry, old or new, never a mix. A read stops past
//! [`MAX_ENTRY_BYTES`]: a huge file planted at the path is reported, not loaded.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::Arc,
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
use tokio::sync::watch;

use crate::volume::{self, blocking};

/// How often the background task re-reads `output.log`: the most a reader lags the writer.
pub const REFRESH: Duration = Duration::from_millis(50);

/// The most `output.log` may hold; an entry is under 200 bytes.
pub const MAX_ENTRY_BYTES: usize = 1024;

/// How long [`app`] waits for the first read before serving anyway: a volume that hangs must
/// not keep `/healthz` from answering.
pub const FIRST_READ_WAIT: Duration = Duration::from_secs(1);

/// What `GET /` answers: the entry, or 503 and why there is none.
#[derive(Debug, Clone)]
enum Snapshot {
    Entry(Bytes),
    Unavailable(String),
}

/// The whole router: `/` and the shared endpoints, layers included. Starts the refresh task,
/// which ends when the router is dropped, and returns once the first read is in (or after
/// [`FIRST_READ_WAIT`], answering 503 until it is).
pub async fn app(data_dir: PathBuf, draining: Draining) -> Router {
    let output = volume::output_path(&data_dir);
    let (latest, mut first) = watch::channel(Snapshot::Unavailable(format!(
        "no entry yet: reading {} has not finished\n",
        output.display()
    )));
    tokio::spawn(refresh(output, latest));
    let _ = tokio::time::timeout(FIRST_READ_WAIT, first.changed()).await;
    let routes = Router::new()
        .route("/", get(latest_entry))
        .with_state(first);
    finish(routes, Registry::default(), draining, ready_check(data_dir))
}

/// `GET /`: the latest entry, or 503 and why there is none.
async fn latest_entry(State(latest): State<watch::Receiver<Snapshot>>) -> Response {
    let snapshot = latest.borrow().clone();
    let (status, body) = match snapshot {
        Snapshot::Entry(bytes) => (StatusCode::OK, bytes),
        Snapshot::Unavailable(reason) => (StatusCode::SERVICE_UNAVAILABLE, Bytes::from(reason)),
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Reads `output.log` at once, then every [`REFRESH`], until every router is gone; logs read
/// errors once each time they start, not once per refresh.
async fn refresh(output: PathBuf, latest: watch::Sender<Snapshot>) {
    let mut ticks = tokio::time::interval(REFRESH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let path = output.clone();
        let snapshot = blocking(move || read_snapshot(&path)).await;
        if latest.is_closed() {
            return;
        }
        match &snapshot {
            Snapshot::Unavailable(reason) if !failing && !reason.starts_with("no entry yet") => {
                tracing::error!(path = %output.display(), reason = reason.trim_end(), "cannot read the latest entry");
                failing = true;
            }
            Snapshot::Entry(_) => failing = false,
            Snapshot::Unavailable(_) => {}
        }
        latest.send_replace(snapshot);
    }
}

fn read_snapshot(output: &Path) -> Snapshot {
    match shared_fs::read_bounded(output, MAX_ENTRY_BYTES) {
        Ok(Some(bytes)) => Snapshot::Entry(Bytes::from(bytes)),
        Ok(None) => Snapshot::Unavailable(format!(
            "no entry yet: {} does not exist until log-writer writes its first entry\n",
            output.display()
        )),
        Err(shared_fs::Error::Io { error, .. }) if error.kind() != ErrorKind::NotFound => {
            Snapshot::Unavailable(format!("cannot read {}: {error}\n", output.display()))
        }
        Err(error) => Snapshot::Unavailable(format!("{error}\n")),
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
