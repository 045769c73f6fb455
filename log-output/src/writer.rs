//! log-writer's loop (SPEC §5): the first entry at once, then one every `LOG_INTERVAL`. Each
//! tick reads the count (no lock: [`shared_fs::CounterFile::read`] takes the larger of the
//! durable record, whose slots are checksummed, and the published file, which is only ever
//! replaced by an atomic rename; so a read sees a whole value that never goes back), composes
//! the entry, replaces `output.log` under `output.log.lock` through [`shared_fs::LockedFile`]
//! and hands the entry to a sink (stdout in the binary, a channel in tests).
//!
//! A tick that cannot read the counter or write the entry is logged and skipped: the file keeps
//! the last good entry, and the next tick tries again. A corrupt counter is never read as 0.

use std::{
    future::Future,
    io::Write,
    sync::Arc,
    time::{Duration, SystemTime},
};

use shared_fs::{CounterFile, LockedFile};

use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::{
    config::WriterConfig,
    entry::format_entry,
    volume::{self, CreateDirError, blocking},
};

/// How long a tick in flight at shutdown may still take: long enough to finish a durable write
/// on a slow volume, short enough to exit well within the grace period on one that hangs.
pub const TICK_GRACE: Duration = Duration::from_secs(3);

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    CreateDir(#[from] CreateDirError),
}

/// Writes entries as the writer `id` until `shutdown` resolves, then returns `Ok`.
///
/// Creates `DATA_DIR` if missing and removes the `.output.log.*.tmp` files a crash left. Both
/// that sweep and every replace of `output.log` run under the lock `output.log.lock`, so two
/// writers overlapping in a rollout never remove each other's temporary file. Every written
/// entry is passed to `sink`, on the blocking pool, because printing to a pipe can block as
/// much as a file can.
///
/// `shutdown` is watched at every step, also while the volume hangs: during start-up it returns
/// at once; during a tick it lets the tick finish for at most [`TICK_GRACE`], then returns.
pub async fn run<S>(
    config: WriterConfig,
    id: Uuid,
    shutdown: impl Future<Output = ()>,
    sink: S,
) -> Result<(), StartError>
where
    S: Fn(&str) + Send + Sync + 'static,
{
    tokio::pin!(shutdown);
    let start = start(&config, id, sink);
    let tick = tokio::select! {
        biased;
        () = &mut shutdown => return Ok(()),
        tick = start => tick?,
    };

    let mut ticks = tokio::time::interval(config.interval);
    // After a stall (a slow volume), carry on one interval later instead of writing a burst of
    // entries that all show the same moment.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            _ = ticks.tick() => {}
        }
        let write = {
            let tick = tick.clone();
            blocking(move || tick.write())
        };
        tokio::pin!(write);
        let result = tokio::select! {
            biased;
            result = &mut write => result,
            () = &mut shutdown => {
                match tokio::time::timeout(TICK_GRACE, write).await {
                    Ok(result) => log_skipped(result),
                    Err(_) => tracing::warn!(
                        after = ?TICK_GRACE,
                        "the entry in flight did not finish; exiting without it"
                    ),
                }
                return Ok(());
            }
        };
        log_skipped(result);
    }
}

/// Creates the data directory and sweeps the temporary files, then the tick is ready.
async fn start<S>(config: &WriterConfig, id: Uuid, sink: S) -> Result<Arc<Tick<S>>, StartError>
where
    S: Fn(&str) + Send + Sync + 'static,
{
    volume::create_data_dir(&config.data_dir).await?;
    let tick = Arc::new(Tick {
        output: LockedFile::new(volume::output_path(&config.data_dir)),
        counter: CounterFile::in_dir(&config.data_dir),
        id,
        sink,
    });
    let sweep = tick.clone();
    // Leftover temporary files cost only their space: a sweep that fails (the lock cannot be
    // taken, the directory cannot be listed) is reported, never a reason not to start.
    if let Err(error) = blocking(move || sweep.output.sweep_temp_files()).await {
        tracing::warn!(%error, "cannot sweep the temporary files a crash may have left");
    }
    tracing::info!(
        data_dir = %config.data_dir.display(),
        interval = %humantime::format_duration(config.interval),
        %id,
        "writing entries"
    );
    Ok(tick)
}

fn log_skipped(result: shared_fs::Result<()>) {
    if let Err(error) = result {
        tracing::error!(%error, "entry skipped; output.log keeps the last good entry");
    }
}

/// What one tick needs, shared with the blocking pool.
struct Tick<S> {
    output: LockedFile,
    counter: CounterFile,
    id: Uuid,
    sink: S,
}

impl<S: Fn(&str)> Tick<S> {
    fn write(&self) -> shared_fs::Result<()> {
        let pongs = self.counter.read()?;
        let entry = format_entry(SystemTime::now(), self.id, pongs);
        self.output.replace(entry.as_bytes())?;
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
