//! Group commit: many concurrent increments, one durable write.
//!
//! A durable write costs an fsync of the file and one of the directory, around half a
//! millisecond on a fast disk and far more on a network volume. Paying it once per request caps
//! a server at a couple of thousand increments a second whatever its CPU. Instead, one writer
//! thread owns the file: every increment that arrives while a write is in flight waits in a
//! queue, and the writer takes the whole queue as the next batch. Per batch it takes the lock,
//! re-reads the value on disk (another process may have advanced it), writes `value + n` once,
//! and only then hands each caller its own number, `value .. value + n`.
//!
//! Under steady concurrency the callers just answered come back with their next increment a
//! few dozen microseconds later; a writer that started at once would split the load into two
//! alternating half-size batches. So after a batch of more than one, the writer waits briefly
//! (at most half the last write) for as many callers as that batch had plus those already
//! queued. After a batch of one it never waits: a lone caller pays one channel hop on top of
//! the write, nothing more.
//!
//! A failed write fails every caller of its batch and hands out no number; the next batch tries
//! again, so the service heals by itself when the volume does.
//!
//! The writer is a plain OS thread, so blocking file I/O and `flock` never run on an async
//! worker. It ends when the last [`Counter`] handle is dropped, after finishing what is queued.

use std::{
    thread,
    time::{Duration, Instant},
};

use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::{
    counter::CounterFile,
    error::{Error, Result},
};

type Reply = oneshot::Sender<Result<u64>>;

/// What one durable write did, for metrics.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// How many increments the write carried.
    pub size: u64,
    /// Lock, read, write, both fsyncs and the rename.
    pub elapsed: Duration,
    /// Whether the write became durable.
    pub ok: bool,
}

/// An async handle to the counter; cheap to clone, all clones feed one writer thread.
#[derive(Debug, Clone)]
pub struct Counter {
    queue: mpsc::Sender<Reply>,
    file: CounterFile,
}

impl Counter {
    /// Starts the writer thread for `file`. `on_batch` runs on that thread after every durable
    /// write, successful or not; keep it cheap (a metrics update).
    pub fn spawn(file: CounterFile, on_batch: impl FnMut(&BatchReport) + Send + 'static) -> Self {
        let (queue, rx) = mpsc::channel();
        let writer_file = file.clone();
        thread::Builder::new()
            .name("counter-writer".into())
            .spawn(move || run_writer(writer_file, rx, on_batch))
            .expect("spawning the counter writer thread");
        Counter { queue, file }
    }

    /// Increments the counter durably and returns the value before this increment: the first
    /// call on a fresh volume returns 0 and leaves the file holding 1. Resolves only once the
    /// write that carries this increment is on disk.
    ///
    /// If the future is dropped before its batch is written, its increment may still be made
    /// (the number is then skipped, never handed out twice).
    pub async fn increment(&self) -> Result<u64> {
        let stopped = || Error::WriterStopped {
            path: self.file.path().to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        self.queue.send(reply).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The file this counter writes.
    pub fn file(&self) -> &CounterFile {
        &self.file
    }
}

fn run_writer(
    file: CounterFile,
    queue: mpsc::Receiver<Reply>,
    mut on_batch: impl FnMut(&BatchReport),
) {
    if let Err(error) = file.sweep_temp_files() {
        tracing::warn!(%error, "could not sweep stale temporary files");
    }
    let mut healthy = true;
    let mut batch: Vec<Reply> = Vec::new();
    let mut last = Last {
        size: 0,
        write: Duration::ZERO,
    };
    loop {
        // Whoever queued up during the last write.
        batch.extend(queue.try_iter());
        let waiting = batch.len();
        if batch.is_empty() {
            match queue.recv() {
                Ok(first) => batch.push(first),
                Err(_) => return, // every handle dropped and nothing queued: done
            }
        }
        // Wait briefly for the callers just answered (see the module docs).
        if last.size > 1 {
            let expected = last.size + waiting;
            let deadline = Instant::now() + last.write / 2;
            while batch.len() < expected {
                match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        // A caller that gave up (request timeout) gets no number, so it needs none.
        batch.retain(|reply| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }

        let size = batch.len() as u64;
        let started = Instant::now();
        let result = file.add(size);
        last = Last {
            size: batch.len(),
            write: started.elapsed(),
        };
        on_batch(&BatchReport {
            size,
            elapsed: last.write,
            ok: result.is_ok(),
        });

        // Log transitions only: a full disk under load must not write a line per request.
        match &result {
            Err(error) if healthy => {
                tracing::error!(%error, "durable increment failed; answering 503 until a write succeeds");
                healthy = false;
            }
            Ok(_) if !healthy => {
                tracing::info!(path = %file.path().display(), "durable increments work again");
                healthy = true;
            }
            _ => {}
        }

        match result {
            Ok(first_value) => {
                for (reply, value) in batch.drain(..).zip(first_value..) {
                    let _ = reply.send(Ok(value));
                }
            }
            Err(error) => {
                for reply in batch.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// The previous durable write, which sets how long the next batch may wait to fill.
struct Last {
    size: usize,
    write: Duration,
}
