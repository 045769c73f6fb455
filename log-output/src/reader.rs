//! log-reader's HTTP surface (SPEC §5): `GET /` answers `output.log` byte for byte, plus the
//! shared `/healthz`, `/readyz` and `/metrics` from [`service_kit::http::finish`].
//!
//! The file is read whole on every request, off the async workers. log-writer replaces it by an
//! atomic rename, so each read sees one complete entry, old or new, never a mix.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
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

/// The whole router: `/` and the shared endpoints, layers included.
pub fn app(data_dir: PathBuf, draining: Draining) -> Router {
    let output = Arc::new(volume::output_path(&data_dir));
    let routes = Router::new()
        .route("/", get(latest_entry))
        .with_state(output);
    finish(routes, Registry::default(), draining, ready_check(data_dir))
}

/// `GET /`: the latest entry, or 503 and why there is none.
async fn latest_entry(State(output): State<Arc<PathBuf>>) -> Response {
    let path = output.clone();
    match blocking(move || std::fs::read(&*path)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response(),
        Err(error) if error.kind() == ErrorKind::NotFound => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no entry yet: {} does not exist until log-writer writes its first entry\n",
                output.display()
            ),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(path = %output.display(), %error, "cannot read the latest entry");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read {}: {error}\n", output.display()),
            )
                .into_response()
        }
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
