//! Where log-output's files live on the shared volume, and creating `DATA_DIR` (SPEC §2, §3).
//! Writing the files themselves is shared-fs's job: log-writer goes through
//! [`shared_fs::replace`], so a reader never sees an empty or partial `output.log`.

use std::{
    io,
    path::{Path, PathBuf},
};

/// The latest entry, written by log-writer and served by log-reader.
pub const OUTPUT_FILE: &str = "output.log";

/// `DATA_DIR/output.log`.
pub fn output_path(data_dir: &Path) -> PathBuf {
    data_dir.join(OUTPUT_FILE)
}

/// `DATA_DIR/pingpong_counter.txt`, written by pingpong.
pub fn counter_path(data_dir: &Path) -> PathBuf {
    data_dir.join(shared_fs::COUNTER_FILE)
}

/// `DATA_DIR` could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the data directory {}", path.display())]
pub struct CreateDirError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Creates `data_dir` and its parents if missing, off the async workers.
pub async fn create_data_dir(data_dir: &Path) -> Result<(), CreateDirError> {
    let path = data_dir.to_owned();
    blocking(move || {
        std::fs::create_dir_all(&path).map_err(|source| CreateDirError { path, source })
    })
    .await
}

/// Runs blocking file I/O on tokio's blocking pool, so a slow volume never stalls the async
/// workers serving requests and signals. A panic in `f` is a bug and is re-raised here.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Only when the runtime shuts down, which drops this future before it is polled again.
        Err(join) => panic!("blocking task cancelled: {join}"),
    }
}
