//! log-writer's loop (SPEC §5): the first entry at once, then one every `LOG_INTERVAL`. Each
//! tick reads the count (no lock: [`shared_fs::CounterFile::read`] takes the larger of the
//! durable record, whose slots are checksummed, and the published file, which is only ever
//! replaced by an atomic rename; so a read sees a whole value that never goes back), composes
//! the entry, replaces `output.log` under `output.log.lock` through [`shared_fs::GuardedFile`]
//! and hands the entry to a sink (stdout in the binary, a channel in tests).
//!
//! A tick that cannot read the counter or write the entry is logged and skipped: the file keeps
//! the last good entry, and the next tick tries again. A corrupt counter is never read as 0.

use std::{
    future::Future,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, SystemTime},
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use service_kit::nonblocking::LineQueue;
use shared_fs::{CounterFile, GuardedFile};

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
/// entry is passed to `sink`, on the blocking pool, in case it blocks (the binary's [`Stdout`]
/// never does).
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
    run_counted(config, id, shutdown, sink, WriterMetrics::default()).await
}

/// [`run`], counting every entry written and skipped in `metrics`.
pub async fn run_counted<S>(
    config: WriterConfig,
    id: Uuid,
    shutdown: impl Future<Output = ()>,
    sink: S,
    metrics: WriterMetrics,
) -> Result<(), StartError>
where
    S: Fn(&str) + Send + Sync + 'static,
{
    tokio::pin!(shutdown);
    let start = start(&config, id, sink, metrics);
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
                    Ok(result) => tick.count(result),
                    Err(_) => tracing::warn!(
                        after = ?TICK_GRACE,
                        "the entry in flight did not finish; exiting without it"
                    ),
                }
                return Ok(());
            }
        };
        tick.count(result);
    }
}

/// Creates the data directory and sweeps the temporary files, then the tick is ready.
async fn start<S>(
    config: &WriterConfig,
    id: Uuid,
    sink: S,
    metrics: WriterMetrics,
) -> Result<Arc<Tick<S>>, StartError>
where
    S: Fn(&str) + Send + Sync + 'static,
{
    volume::create_data_dir(&config.data_dir).await?;
    let tick = Arc::new(Tick {
        output: GuardedFile::new(volume::output_path(&config.data_dir)),
        counter: CounterFile::in_dir(&config.data_dir).with_volume_kind(config.volume_kind),
        id,
        sink,
        metrics,
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

/// log-writer's health, on its `/metrics` when it serves HTTP: `log_writer_entries_total`,
/// `log_writer_entries_skipped_total` and `log_writer_last_entry_timestamp_seconds`.
#[derive(Debug, Clone, Default)]
pub struct WriterMetrics {
    /// Entries made durable in `output.log`.
    pub written: Counter,
    /// Ticks that wrote nothing (the counter unreadable or corrupt, the volume failing).
    pub skipped: Counter,
    /// When the last entry was written, in seconds since the epoch; 0 before the first.
    pub last_written: Gauge<f64, AtomicU64>,
}

impl WriterMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = WriterMetrics::default();
        registry.register(
            "log_writer_entries",
            "Entries written durably to output.log",
            metrics.written.clone(),
        );
        registry.register(
            "log_writer_entries_skipped",
            "Ticks that wrote no entry (counter unreadable or corrupt, volume failing); output.log keeps the last good entry",
            metrics.skipped.clone(),
        );
        registry.register(
            "log_writer_last_entry_timestamp_seconds",
            "When the last entry was written, in seconds since the Unix epoch; 0 before the first",
            metrics.last_written.clone(),
        );
        metrics
    }
}

/// What one tick needs, shared with the blocking pool.
struct Tick<S> {
    output: GuardedFile,
    counter: CounterFile,
    id: Uuid,
    sink: S,
    metrics: WriterMetrics,
}

impl<S: Fn(&str)> Tick<S> {
    fn write(&self) -> shared_fs::Result<()> {
        let pongs = self.counter.read()?;
        let now = SystemTime::now();
        let entry = format_entry(now, self.id, pongs);
        self.output.replace(entry.as_bytes())?;
        self.metrics.written.inc();
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.metrics.last_written.set(since_epoch.as_secs_f64());
        (self.sink)(&entry);
        Ok(())
    }

    /// A tick that failed is logged and counted; the file keeps the last good entry.
    fn count(&self, result: shared_fs::Result<()>) {
        if let Err(error) = result {
            self.metrics.skipped.inc();
            tracing::error!(%error, "entry skipped; output.log keeps the last good entry");
        }
    }
}

/// How many entries may wait for stdout: 80 s of them at the default interval, on top of the
/// hundreds a pipe to a container runtime holds.
pub const STDOUT_QUEUE_ENTRIES: usize = 16;

/// The binary's sink: each entry and a newline on stdout, which is the container log, through
/// a bounded queue and a thread of its own ([`service_kit::nonblocking`]). A stdout nobody reads
/// (a stalled log collector, `| less`) must not stop the entries on the volume, which is what
/// log-reader serves: while it stalls the entries that do not fit are not printed, and once it
/// drains a warning on stderr says how many. A closed stdout is the same, not fatal (unlike
/// `println!`, which panics).
#[derive(Debug, Clone)]
pub struct Stdout(LineQueue);

impl Stdout {
    /// Starts the thread that prints to stdout.
    pub fn spawn() -> std::io::Result<Stdout> {
        LineQueue::spawn(
            "stdout-writer",
            std::io::stdout(),
            STDOUT_QUEUE_ENTRIES,
            Counter::default(),
            |n| {
                tracing::warn!(
                    dropped = n,
                    "entries not printed: stdout was not taking them; output.log had each"
                );
            },
        )
        .map(Stdout)
    }

    /// The sink for [`run`]: queues the entry and a newline, never waits.
    pub fn sink(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let queue = self.0.clone();
        move |entry| {
            let mut line = String::with_capacity(entry.len() + 1);
            line.push_str(entry);
            line.push('\n');
            queue.push(line.as_bytes());
        }
    }

    /// Waits, at most `within`, until every queued entry is on stdout: before the exit.
    pub fn flush(&self, within: Duration) -> bool {
        self.0.flush(within)
    }
}
