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
//! (half the last write, never more than [`MAX_FILL_WAIT`]) for as many callers as that batch
//! had plus those already queued. After a batch of one it never waits: a lone caller pays one
//! channel hop on top of the write, nothing more. The last write is timed without the wait
//! for the lock, so a lock held for seconds by another replica or a `counter set` cannot make
//! the writer wait seconds afterwards.
//!
//! A caller that gives up (its request timed out, its client left) before its batch is written
//! gets no number: each caller is *claimed* under the lock, just before the write, and a caller
//! dropped before that is skipped. One dropped after its claim had its number written; that
//! number is reported to [`Observe::abandoned`] and logged, never silently lost. A failed
//! write fails every caller of its batch and hands out no number; the next batch tries again,
//! so the service heals by itself when the volume does.
//!
//! The writer is a plain OS thread, so blocking file I/O and `flock` never run on an async
//! worker. It ends when the last [`Counter`] handle is dropped, after finishing what is queued.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use crate::{
    counter::CounterFile,
    error::{Error, Result},
};

/// The longest the writer waits for a batch to fill after a multi-caller batch; far below any
/// request timeout, so a lone request after a burst is never held up.
pub const MAX_FILL_WAIT: Duration = Duration::from_millis(5);

/// One caller of [`Counter::increment`], queued for the writer.
struct Waiter {
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<u64>>,
}

/// A [`Waiter`]'s state: the writer moves it `PENDING -> CLAIMED` just before the write that
/// carries it; a caller that gives up moves it `PENDING -> CANCELLED`. Only one of the two
/// can win, so a caller either leaves with no number or its number is written.
const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const CANCELLED: u8 = 2;

impl Waiter {
    fn cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) == CANCELLED
    }

    fn claim(&self) -> bool {
        self.state
            .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What callers send the writer.
enum Message {
    Increment(Waiter),
    /// A number that reached its caller's channel after the caller had stopped listening.
    Gone(u64),
}

/// A caller's side while it waits. Dropped before the writer claimed it, it cancels; dropped
/// after, with its number already in the channel, it sends the number back as [`Message::Gone`]
/// (a number sent after the drop fails to send, and the writer counts it itself).
struct Pending {
    state: Arc<AtomicU8>,
    answer: oneshot::Receiver<Result<u64>>,
    queue: mpsc::Sender<Message>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let cancelled =
            self.state
                .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
        if cancelled.is_ok() {
            return;
        }
        // Claimed. From `close` on the writer's send fails; a number sent before is still here.
        self.answer.close();
        if let Ok(Ok(number)) = self.answer.try_recv() {
            let _ = self.queue.send(Message::Gone(number));
        }
    }
}

/// What one durable write did, for metrics.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// How many increments the write carried.
    pub size: u64,
    /// Read, write, both fsyncs and the rename; not the wait for the lock.
    pub elapsed: Duration,
    /// Whether the write became durable.
    pub ok: bool,
}

/// What the writer thread reports, for metrics; runs on that thread, so keep it cheap.
pub trait Observe: Send + 'static {
    /// After every durable write, successful or not, before its callers are answered (so a
    /// scrape after an answer already counts it).
    fn batch(&mut self, report: &BatchReport);

    /// After the answers, the numbers written durably whose callers had gone: skipped, never
    /// handed out.
    fn abandoned(&mut self, _numbers: &[u64]) {}
}

/// A closure as an observer of batches alone.
struct OnBatch<F>(F);

impl<F: FnMut(&BatchReport) + Send + 'static> Observe for OnBatch<F> {
    fn batch(&mut self, report: &BatchReport) {
        (self.0)(report);
    }
}

/// An async handle to the counter; cheap to clone, all clones feed one writer thread.
#[derive(Debug, Clone)]
pub struct Counter {
    queue: mpsc::Sender<Message>,
    file: CounterFile,
}

impl Counter {
    /// Starts the writer thread for `file`; `on_batch` runs on it after every durable write
    /// (see [`Observe::batch`]).
    pub fn spawn(file: CounterFile, on_batch: impl FnMut(&BatchReport) + Send + 'static) -> Self {
        Self::spawn_observed(file, OnBatch(on_batch))
    }

    /// Starts the writer thread for `file`, reporting to `observer`.
    pub fn spawn_observed(file: CounterFile, observer: impl Observe) -> Self {
        let (queue, rx) = mpsc::channel();
        let writer_file = file.clone();
        thread::Builder::new()
            .name("counter-writer".into())
            .spawn(move || run_writer(writer_file, rx, observer))
            .expect("spawning the counter writer thread");
        Counter { queue, file }
    }

    /// Increments the counter durably and returns the value before this increment: the first
    /// call on a fresh volume returns 0 and leaves the file holding 1. Resolves only once the
    /// write that carries this increment is on disk.
    ///
    /// Dropping the future (a request timeout) before the writer has claimed it for a write
    /// hands out no number. Dropped later, its number is written, skipped, and reported in
    /// [`Observe::abandoned`]; never handed out twice.
    pub async fn increment(&self) -> Result<u64> {
        let stopped = || Error::WriterStopped {
            path: self.file.path().to_owned(),
        };
        let state = Arc::new(AtomicU8::new(PENDING));
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Increment(Waiter {
                state: state.clone(),
                reply,
            }))
            .map_err(|_| stopped())?;
        let mut pending = Pending {
            state,
            answer,
            queue: self.queue.clone(),
        };
        (&mut pending.answer).await.map_err(|_| stopped())?
    }

    /// The file this counter writes.
    pub fn file(&self) -> &CounterFile {
        &self.file
    }
}

fn run_writer(file: CounterFile, queue: mpsc::Receiver<Message>, mut observer: impl Observe) {
    if let Err(error) = file.create_dir().and_then(|()| file.sweep_temp_files()) {
        tracing::warn!(%error, "could not prepare the data directory");
    }
    let mut healthy = true;
    let mut batch: Vec<Waiter> = Vec::new();
    let mut gone: Vec<u64> = Vec::new();
    let mut last = Last::default();
    loop {
        // Whoever queued up during the last write.
        for message in queue.try_iter() {
            sort(message, &mut batch, &mut gone);
        }
        let waiting = batch.len();
        if batch.is_empty() {
            report_abandoned(&file, &mut gone, &mut observer);
            match queue.recv() {
                Ok(message) => sort(message, &mut batch, &mut gone),
                Err(_) => return, // every handle dropped and nothing queued: done
            }
            if batch.is_empty() {
                continue;
            }
        }
        // Wait briefly for the callers just answered (see the module docs).
        if last.size > 1 {
            let expected = last.size + waiting;
            let deadline = Instant::now() + last.fill_wait();
            while batch.len() < expected {
                match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(message) => sort(message, &mut batch, &mut gone),
                    Err(_) => break,
                }
            }
        }
        batch.retain(|waiter| !waiter.cancelled());
        let outcome = if batch.is_empty() {
            None
        } else {
            write_batch(&file, &mut batch)
        };
        let Some((result, elapsed)) = outcome else {
            // Nobody left to write for: the next wait must not be sized by an old batch.
            last = Last::default();
            continue;
        };
        last = Last {
            size: batch.len(),
            write: elapsed,
        };

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

        observer.batch(&BatchReport {
            size: batch.len() as u64,
            elapsed,
            ok: result.is_ok(),
        });
        match &result {
            Ok(first_value) => {
                for (waiter, value) in batch.drain(..).zip(*first_value..) {
                    if waiter.reply.send(Ok(value)).is_err() {
                        gone.push(value);
                    }
                }
            }
            Err(error) => {
                for waiter in batch.drain(..) {
                    let _ = waiter.reply.send(Err(error.clone()));
                }
            }
        }
        report_abandoned(&file, &mut gone, &mut observer);
    }
}

/// Increments into the batch, numbers whose callers left into `gone`.
fn sort(message: Message, batch: &mut Vec<Waiter>, gone: &mut Vec<u64>) {
    match message {
        Message::Increment(waiter) => batch.push(waiter),
        Message::Gone(number) => gone.push(number),
    }
}

/// Logs and reports the numbers written durably whose callers had gone, then forgets them.
fn report_abandoned(file: &CounterFile, gone: &mut Vec<u64>, observer: &mut impl Observe) {
    if gone.is_empty() {
        return;
    }
    gone.sort_unstable();
    tracing::warn!(
        path = %file.path().display(),
        count = gone.len(),
        numbers = ?gone,
        "numbers written durably but not delivered: their requests timed out or their clients left; they are skipped, never handed out"
    );
    observer.abandoned(gone);
    gone.clear();
}

/// Takes the lock, reads the value, claims the callers still waiting, and writes once for
/// them. `None` when every caller gave up before its claim: then nothing is written. Otherwise
/// the first number of the batch (or why there is none) and how long the write took, lock wait
/// excluded. On return `batch` holds exactly the claimed callers (all of them on an error
/// before the claim, which fails them all).
fn write_batch(file: &CounterFile, batch: &mut Vec<Waiter>) -> Option<(Result<u64>, Duration)> {
    let locked = match file.lock() {
        Ok(locked) => locked,
        Err(error) => return Some((Err(error), Duration::ZERO)),
    };
    let started = Instant::now();
    let value = match locked.read() {
        Ok(value) => value,
        Err(error) => return Some((Err(error), started.elapsed())),
    };
    batch.retain(Waiter::claim);
    if batch.is_empty() {
        return None;
    }
    let result = locked
        .checked_add(value, batch.len() as u64)
        .and_then(|next| locked.write(next))
        .map(|()| value);
    Some((result, started.elapsed()))
}

/// The previous durable write, which sets how long the next batch may wait to fill.
#[derive(Default)]
struct Last {
    size: usize,
    write: Duration,
}

impl Last {
    /// Half the last write, capped: see the module docs.
    fn fill_wait(&self) -> Duration {
        (self.write / 2).min(MAX_FILL_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fill_wait_is_half_the_last_write_and_never_more_than_the_cap() {
        let last = |ms| Last {
            size: 16,
            write: Duration::from_millis(ms),
        };
        assert_eq!(last(2).fill_wait(), Duration::from_millis(1));
        assert_eq!(last(12_000).fill_wait(), MAX_FILL_WAIT);
    }
}
