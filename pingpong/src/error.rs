//! A volume error as an HTTP answer: `503 text/plain` with the reason, which names the file, so
//! the person curling `/pingpong` learns what to repair. No number is handed out with it.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// Why a request could not be answered from the volume.
#[derive(Debug)]
pub struct VolumeError(pub shared_fs::Error);

impl IntoResponse for VolumeError {
    fn into_response(self) -> Response {
        // Logged by the counter writer once per state change, not here once per request.
        (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", self.0)).into_response()
    }
}

impl From<shared_fs::Error> for VolumeError {
    fn from(e: shared_fs::Error) -> Self {
        VolumeError(e)
    }
}
