//! log-writer's loop (SPEC §5): the first entry at once, then one every `LOG_INTERVAL`. Each
//! tick reads the counter (no lock: pingpong replaces it by an atomic rename, so any read sees
//! a whole value), composes the entry, replaces `output.log` through [`shared_fs::replace`] and
//! hands the entry to a sink (stdout in the binary, a channel in tests).
//!
//! A tick that cannot read the counter or write the entry is logged and skipped: the file keeps
//! the last good entry, and the next tick tries again. A corrupt counter is never read as 0.

use std::{future::Future, io::Write, path::PathBuf, sync::Arc, time::SystemTime};

use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::{
    config::WriterConfig,
    entry::format_entry,
    volume::{self, CreateDirError, blocking},
};

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    CreateDir(#[from] CreateDirError),
    #[error("cannot remove the temporary files a crash left")]
    Sweep(#[source] shared_fs::Error),
}

/// Writes entries as the writer `id` until `shutdown` resolves, then returns `Ok`.
///
/// Creates `DATA_DIR` if missing and removes the `.output.log.*.tmp` files a crash left (one
/// writer per volume is assumed: a second one's write in flight could lose its temp file).
/// Every written entry is passed to `sink`, on the blocking pool, because printing to a pipe can
/// block as much as a file can.
pub async fn run<S>(
    config: WriterConfig,
    id: Uuid,
    shutdown: impl Future<Output = ()>,
    sink: S,
) -> Result<(), StartError>
where
    S: Fn(&str) + Send + Sync + 'static,
{
    volume::create_data_dir(&config.data_dir).await?;
    let tick = Arc::new(Tick {
        output: volume::output_path(&config.data_dir),
        counter: volume::counter_path(&config.data_dir),
        id,
        sink,
    });
    let sweep = tick.clone();
    blocking(move || shared_fs::sweep_temp_files(&sweep.output))
        .await
        .map_err(StartError::Sweep)?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        interval = %humantime::format_duration(config.interval),
        %id,
        "writing entries"
    );

    let mut ticks = tokio::time::interval(config.interval);
    // After a stall (a slow volume), carry on one interval later instead of writing a burst of
    // entries that all show the same moment.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // Polling `shutdown` first also makes it install its signal handlers before the
            // first entry exists, so a caller that waits for that entry can then signal safely.
            biased;
            () = &mut shutdown => return Ok(()),
            _ = ticks.tick() => {}
        }
        let tick = tick.clone();
        if let Err(error) = blocking(move || tick.write()).await {
            tracing::error!(%error, "entry skipped; output.log keeps the last good entry");
        }
    }
}

/// What one tick needs, shared with the blocking pool.
struct Tick<S> {
    output: PathBuf,
    counter: PathBuf,
    id: Uuid,
    sink: S,
}

impl<S: Fn(&str)> Tick<S> {
    fn write(&self) -> shared_fs::Result<()> {
        let pongs = shared_fs::read_counter(&self.counter)?;
        let entry = format_entry(SystemTime::now(), self.id, pongs);
        shared_fs::replace(&self.output, entry.as_bytes())?;
        (self.sink)(&entry);
        Ok(())
    }
}

/// The binary's sink: the entry and a newline on stdout, which is the container log. A closed
/// stdout is logged rather than fatal (unlike `println!`, which panics): the file on the volume
/// is what log-reader serves.
pub fn print_entry(entry: &str) {
    if let Err(error) = writeln!(std::io::stdout().lock(), "{entry}") {
        tracing::warn!(%error, "cannot print the entry to stdout");
    }
}
