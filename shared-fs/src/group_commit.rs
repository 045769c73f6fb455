//! Group commit: many concurrent increments, one durable write.
//!
//! A durable write costs an `fdatasync`, a tenth of a millisecond on a fast disk and far more on
//! a network volume. Paying it once per request caps a server at a few thousand increments a
//! second whatever its CPU. Instead, one writer thread owns the counter: every increment that
//! arrives while a durable write is in flight waits in a queue, and the writer takes the whole
//! queue as the next batch, makes `value + n` durable once ([`Lease::advance`]), and only then
//! hands each caller its own number, `value .. value + n`.
//!
//! The writer keeps the counter's lock across batches while it is busy (a [`Lease`]): taking
//! the lock, reading the count and publishing `pingpong_counter.txt` cost more than the durable
//! write itself (on a network filesystem, round trips to the server), so they are paid once per
//! lease, not once per batch. It gives the lock back, publishing first, when no caller has come
//! for [`LINGER`] (at once while another process has been seen holding the lock within
//! [`CONTENDED_FOR`]), and after [`MAX_HOLD`]; then it waits [`HANDOVER`] before taking it
//! again, since `flock` does not hand a released lock to the process that waited longest. So
//! replicas that are all busy take turns of [`MAX_HOLD`] each.
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
//! dropped before that is skipped. Callers wait in a queue they can leave ([`Inbox`]): the
//! writer takes them only once it holds the lock, and one that gives up first takes itself out
//! at once, so a lock held elsewhere for long (another replica, a `counter set`, a stuck
//! volume) piles up only the requests still waiting, never those that gave up. One dropped after its claim had its number written; that
//! number is reported to [`Observe::abandoned`] and logged, never silently lost. A failed
//! write fails every caller of its batch and hands out no number; numbers it may have used
//! anyway (the record was written but its `fdatasync` failed) are reported as abandoned too.
//! The next batch tries again, so the service heals by itself when the volume does; until one
//! succeeds, [`Counter::health`] says why increments fail, for readiness. A writer blocked
//! waiting for the lock fails nothing, so readiness asks that separately:
//! [`Counter::awaiting_lock`].
//!
//! The writer is a plain OS thread, so blocking file I/O and `flock` never run on an async
//! worker. It ends when the last [`Counter`] handle is dropped, after finishing what is queued
//! and giving the lock back; [`Stopped::wait`] waits for that.

use std::{
    fmt,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

mod leader_mode;

use crate::{
    counter::CounterFile,
    error::{Error, Result},
    leadership::{LeaderMode, Leadership, Reach, Role},
    lease::{Advance, Lease},
    publisher::Publication,
    record_file::RecordFile,
};

pub use crate::lease::MAX_HOLD;

/// The longest the writer waits for a batch to fill after a multi-caller batch; far below any
/// request timeout, so a lone request after a burst is never held up.
pub const MAX_FILL_WAIT: Duration = Duration::from_millis(5);

/// How long the writer keeps the lock with no caller waiting, for the next one: a client that
/// sends its next request as soon as it has the answer comes back within a fraction of this,
/// and then pays no lock and no publication. Idle for longer, the count is published and the
/// lock given back, so `pingpong_counter.txt` equals the count a few milliseconds after the
/// last request.
pub const LINGER: Duration = Duration::from_millis(2);

/// After giving the lock back because it was held for [`MAX_HOLD`], how long the writer waits
/// before taking it again: enough for a process blocked on it to be woken and take it.
pub const HANDOVER: Duration = Duration::from_micros(300);

/// For how long after finding the lock held by another process the writer gives an idle lock
/// back at once instead of keeping it for [`LINGER`].
pub const CONTENDED_FOR: Duration = Duration::from_secs(1);

/// How long the writer may wait for the counter's lock before readiness says so
/// ([`Counter::awaiting_lock`]). Fifty times [`MAX_HOLD`]: a replica taking its turn, or a
/// `counter set`, never makes another one unready. A wait this long means the holder is stuck
/// (a frozen replica, a paused `counter set`, a hung NFS server), and every increment here waits
/// with it until its request times out; well within that timeout (5 s), so a load balancer
/// probing readiness stops sending requests here while they still wait.
pub const UNREADY_AFTER_WAITING: Duration = Duration::from_secs(1);

/// One caller of [`Counter::increment`] (one number) or [`Counter::increment_forwarded`] (a
/// follower's batch of `n`), queued for the writer.
struct Waiter {
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<u64>>,
    /// How many numbers: 1, or a forwarded batch's size.
    n: u64,
    /// A forwarded batch: the epoch it was admitted for, served only while this replica leads
    /// that epoch (leader mode, [`crate::leadership`]).
    epoch: Option<u64>,
}

/// A [`Waiter`]'s state: the writer moves it `PENDING -> CLAIMED` just before the write that
/// carries it; a caller that gives up moves it `PENDING -> CANCELLED`. Only one of the two
/// can win, so a caller either leaves with no number or its number is written.
const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const CANCELLED: u8 = 2;

impl Waiter {
    /// Claims the waiter for the next write; false if its caller gave up first. A follower
    /// claims a batch before forwarding it, and keeps it claimed when the forward is refused:
    /// claiming again is a no-op.
    fn claim(&self) -> bool {
        match self
            .state
            .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(CLAIMED) => true,
            Err(_) => false,
        }
    }
}

/// How many numbers a batch of waiters takes.
fn numbers(batch: &[Waiter]) -> u64 {
    batch.iter().map(|waiter| waiter.n).sum()
}

/// What callers hand the writer: increments, numbers given back, readiness's checks. A queue
/// a caller can leave: increments wait in it, in arrival order, until the writer holds the lock
/// and takes them all as its batch, and a caller that gives up before that takes its own out.
/// So what waits here is bounded by the requests still in flight, however long the lock is
/// held elsewhere.
#[derive(Default)]
struct Inbox {
    queued: Mutex<Queued>,
    arrived: Condvar,
    /// The [`Counter`] handles alive: the writer ends once none is left and nothing is queued.
    senders: AtomicUsize,
}

#[derive(Default)]
struct Queued {
    /// Increments not yet taken by the writer, by id, in arrival order (ids only grow).
    increments: Vec<(u64, Waiter)>,
    next_id: u64,
    /// Numbers that reached their caller's channel after the caller had stopped listening, or
    /// whose answers could not be delivered ([`Returns`]).
    gone: Vec<u64>,
    /// Readiness asks whether durable writes work again after a failure (see
    /// [`Counter::check`]).
    checks: Vec<oneshot::Sender<Result<()>>>,
    /// The writer sleeps on `arrived`: only then does a sender pay for a wake-up.
    writer_asleep: bool,
    /// The writer has ended: nothing queued from now on would be taken.
    closed: bool,
}

impl Queued {
    fn is_empty(&self) -> bool {
        self.increments.is_empty() && self.gone.is_empty() && self.checks.is_empty()
    }
}

/// Why [`Inbox::wait`] returned.
enum Wake {
    Arrived,
    TimedOut,
    /// No handle is left and nothing is queued: the writer ends.
    Disconnected,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        // Plain collections: consistent whatever panicked while holding the lock.
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues what `put` adds and wakes the writer if it sleeps; false once the writer ended.
    fn send<T>(&self, put: impl FnOnce(&mut Queued) -> T) -> Option<T> {
        let mut queued = self.lock();
        if queued.closed {
            return None;
        }
        let sent = put(&mut queued);
        let wake = queued.writer_asleep;
        drop(queued);
        if wake {
            self.arrived.notify_one();
        }
        Some(sent)
    }

    /// Queues an increment; its id, for [`Inbox::leave`].
    fn increment(&self, waiter: Waiter) -> Option<u64> {
        self.send(|queued| {
            queued.next_id += 1;
            let id = queued.next_id;
            queued.increments.push((id, waiter));
            id
        })
    }

    /// Takes increment `id` out of the queue if the writer has not taken it yet.
    fn leave(&self, id: u64) {
        let mut queued = self.lock();
        if let Ok(at) = queued.increments.binary_search_by_key(&id, |(id, _)| *id) {
            queued.increments.remove(at);
        }
    }

    fn waiting(&self) -> usize {
        self.lock().increments.len()
    }

    /// Moves the numbers given back and readiness's checks to the writer.
    fn take_others(&self, gone: &mut Vec<u64>, checks: &mut Vec<oneshot::Sender<Result<()>>>) {
        let mut queued = self.lock();
        gone.append(&mut queued.gone);
        checks.append(&mut queued.checks);
    }

    /// Moves every queued increment into `batch`.
    fn take_increments(&self, batch: &mut Vec<Waiter>) {
        batch.extend(self.lock().increments.drain(..).map(|(_, waiter)| waiter));
    }

    /// Sleeps until anything is queued, or `timeout` has passed (`None`: no limit).
    fn wait(&self, timeout: Option<Duration>) -> Wake {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut queued = self.lock();
        loop {
            if !queued.is_empty() {
                return Wake::Arrived;
            }
            // Read under the lock, which the last handle's drop takes before it wakes us.
            if self.senders.load(Ordering::SeqCst) == 0 {
                return Wake::Disconnected;
            }
            queued.writer_asleep = true;
            queued = match deadline {
                None => self.arrived.wait(queued).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        queued.writer_asleep = false;
                        return Wake::TimedOut;
                    }
                    let (queued, _) = self
                        .arrived
                        .wait_timeout(queued, left)
                        .unwrap_or_else(|e| e.into_inner());
                    queued
                }
            };
            queued.writer_asleep = false;
        }
    }

    /// Sleeps until `n` increments are queued or `deadline` has passed.
    fn wait_for(&self, n: usize, deadline: Instant) {
        let mut queued = self.lock();
        while queued.increments.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queued.writer_asleep = true;
            queued = self
                .arrived
                .wait_timeout(queued, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            queued.writer_asleep = false;
        }
    }

    /// The writer has ended (or panicked): what is still queued is dropped, so its callers
    /// see the writer stopped, and nothing is queued any more.
    fn close(&self) {
        let mut queued = self.lock();
        queued.closed = true;
        queued.increments.clear();
        queued.checks.clear();
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

/// A [`Counter`]'s hold on the writer: the writer ends once the last one is dropped.
#[derive(Debug)]
struct Sender(Arc<Inbox>);

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::SeqCst);
        Sender(self.0.clone())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Under the lock, so the writer cannot miss it between its check and its sleep.
            let _queued = self.0.lock();
            self.0.arrived.notify_all();
        }
    }
}

/// Closes the inbox when the writer thread ends, also by a panic.
struct CloseOnExit(Arc<Inbox>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A caller's side while it waits. Dropped before the writer claimed it, it cancels and leaves
/// the queue; dropped after, with its number already in the channel, it gives the number back
/// (a number sent after the drop fails to send, and the writer counts it itself). It borrows
/// the [`Counter`], so the writer outlives it.
struct Pending<'c> {
    id: u64,
    n: u64,
    state: Arc<AtomicU8>,
    answer: oneshot::Receiver<Result<u64>>,
    inbox: &'c Inbox,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let cancelled =
            self.state
                .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
        if cancelled.is_ok() {
            self.inbox.leave(self.id);
            return;
        }
        // Claimed. From `close` on the writer's send fails; a number sent before is still here.
        self.answer.close();
        if let Ok(Ok(first)) = self.answer.try_recv() {
            let n = self.n;
            self.inbox
                .send(|queued| queued.gone.extend(first..first.saturating_add(n)));
        }
    }
}

/// Gives back numbers handed out whose answers never reached their callers (see
/// [`Counter::returns`]). Keeps the writer running while it exists.
#[derive(Debug, Clone)]
pub struct Returns(Sender);

impl Returns {
    /// `number` was handed out but its answer could not be delivered: the writer reports it
    /// abandoned and logs it, as it does for a caller that gave up after its number was
    /// written. It is never handed out again either way.
    pub fn undelivered(&self, number: u64) {
        self.0.0.send(|queued| queued.gone.push(number));
    }
}

/// What one durable write did, for metrics.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// How many increments the write carried.
    pub size: u64,
    /// The record's write and `fdatasync`; not the wait for the lock.
    pub elapsed: Duration,
    /// Whether the write became durable.
    pub ok: bool,
}

/// What the writer thread reports, for metrics; runs on that thread, so keep it cheap.
pub trait Observe: Send + 'static {
    /// After every durable write, successful or not, before its callers are answered (so a
    /// scrape after an answer already counts it).
    fn batch(&mut self, report: &BatchReport);

    /// After the answers, the numbers used but not delivered (their callers had gone, or the
    /// write that carried them failed after it could be seen): skipped, never handed out.
    fn abandoned(&mut self, _numbers: &[u64]) {}

    /// A follower's batch of `n` made durable by the leader and handed out here (leader mode).
    fn forwarded(&mut self, _n: u64) {}

    /// A follower's batch of `n` whose forward ended with no answer: the leader may have made
    /// them durable, or not; none is handed out (leader mode).
    fn unknown(&mut self, _n: u64) {}
}

/// A closure as an observer of batches alone.
struct OnBatch<F>(F);

impl<F: FnMut(&BatchReport) + Send + 'static> Observe for OnBatch<F> {
    fn batch(&mut self, report: &BatchReport) {
        (self.0)(report);
    }
}

/// Why increments fail, while they do: set by the writer after each write, read by readiness.
#[derive(Debug, Default)]
struct Health(Mutex<Option<String>>);

impl Health {
    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the outcome of a write; true when it changed whether writes work.
    fn set(&self, failure: Option<&Error>) -> bool {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let changed = current.is_some() != failure.is_some();
        *current = failure.map(Error::to_string);
        changed
    }
}

/// Set when the writer thread has ended (after giving the lock back).
#[derive(Debug, Default)]
struct Ended(Mutex<bool>, Condvar);

/// Waits for the writer thread to end; see [`Counter::stopped`].
#[derive(Debug, Clone)]
pub struct Stopped(Arc<Ended>);

impl Stopped {
    /// Waits until the writer has finished its queue and given the lock back, or `within` has
    /// passed (a volume that hangs must not hold up the exit); true if it ended.
    pub fn wait(&self, within: Duration) -> bool {
        let (ended, ended_changed) = (&self.0.0, &self.0.1);
        let ended = ended.lock().unwrap_or_else(|e| e.into_inner());
        let (ended, _) = ended_changed
            .wait_timeout_while(ended, within, |ended| !*ended)
            .unwrap_or_else(|e| e.into_inner());
        *ended
    }
}

/// How many increments wait in the writer's queue, for a gauge; see [`Counter::waiting`].
#[derive(Debug, Clone)]
pub struct Waiting(Arc<Inbox>);

impl Waiting {
    /// Increments queued and not yet taken by the writer: waiting for a batch, or for the
    /// lock. One that gave up is not among them.
    pub fn get(&self) -> usize {
        self.0.waiting()
    }
}

/// An async handle to the counter; cheap to clone, all clones feed one writer thread.
#[derive(Debug, Clone)]
pub struct Counter {
    queue: Sender,
    file: CounterFile,
    health: Arc<Health>,
    ended: Arc<Ended>,
    /// Leader mode's state, for the internal endpoint, metrics and readiness.
    role: Arc<Role>,
    reach: Arc<Reach>,
    /// Leader mode's publisher ([`crate::publisher`]).
    publication: Option<Arc<Publication>>,
}

impl Counter {
    /// Starts the writer thread for `file`; `on_batch` runs on it after every durable write
    /// (see [`Observe::batch`]).
    pub fn spawn(file: CounterFile, on_batch: impl FnMut(&BatchReport) + Send + 'static) -> Self {
        Self::spawn_observed(file, OnBatch(on_batch))
    }

    /// Starts the writer thread for `file`, reporting to `observer`.
    pub fn spawn_observed(file: CounterFile, observer: impl Observe) -> Self {
        Self::spawn_with(file, observer, None)
    }

    /// Starts the writer thread for `file`, reporting to `observer`, in leader mode when
    /// `leader` is given ([`crate::leadership`]).
    pub fn spawn_with(
        file: CounterFile,
        observer: impl Observe,
        leader: Option<LeaderMode>,
    ) -> Self {
        let role = Arc::new(Role::default());
        let reach = Arc::new(Reach::default());
        let leadership = leader.map(|mode| Leadership::new(mode, role.clone(), reach.clone()));
        // Used only where the volume turns out not to be local (crate::publisher).
        let publication = leadership
            .as_ref()
            .map(|_| Publication::spawn(file.path().to_owned()));
        let inbox = Arc::new(Inbox::default());
        inbox.senders.store(1, Ordering::SeqCst);
        let queue = Sender(inbox.clone());
        let health = Arc::new(Health::default());
        let ended = Arc::new(Ended::default());
        let writer = Writer {
            file: file.clone(),
            health: health.clone(),
            contended_until: None,
            lock: None,
            leadership,
            published_idle: true,
            publication: publication.clone(),
        };
        let writer_ended = ended.clone();
        thread::Builder::new()
            .name("counter-writer".into())
            .spawn(move || {
                let inbox = CloseOnExit(inbox);
                let publication = writer.publication.clone();
                writer.run(&inbox.0, observer);
                if let Some(publication) = publication {
                    publication.stop();
                }
                drop(inbox);
                *writer_ended.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
                writer_ended.1.notify_all();
            })
            .expect("spawning the counter writer thread");
        Counter {
            queue,
            file,
            health,
            ended,
            role,
            reach,
            publication,
        }
    }

    /// Increments the counter durably and returns the value before this increment: the first
    /// call on a fresh volume returns 0 and leaves the count at 1. Resolves only once the
    /// write that carries this increment is on disk.
    ///
    /// Dropping the future (a request timeout) before the writer has claimed it for a write
    /// hands out no number. Dropped later, its number is written, skipped, and reported in
    /// [`Observe::abandoned`]; never handed out twice.
    pub async fn increment(&self) -> Result<u64> {
        self.queue_increments(1, None).await
    }

    /// `n` increments forwarded by a follower for `epoch` (leader mode): the first of their
    /// numbers once durable, as [`Counter::increment`]; [`Error::NotLeader`] when this replica
    /// does not lead that epoch by the time the writer takes them, with nothing written.
    pub async fn increment_forwarded(&self, n: u64, epoch: u64) -> Result<u64> {
        self.queue_increments(n, Some(epoch)).await
    }

    async fn queue_increments(&self, n: u64, epoch: Option<u64>) -> Result<u64> {
        queue_increments(&self.queue.0, n, epoch, || self.stopped_error()).await
    }

    /// The door of leader mode's internal endpoint: forwarded batches go through it, and it
    /// does not keep the writer alive, so that the endpoint can go on answering (421, nothing
    /// written) after the writer has handed over, until the process exits.
    pub fn for_followers(&self) -> FollowersDoor {
        FollowersDoor {
            inbox: self.queue.0.clone(),
            role: self.role.clone(),
            path: self.file.path().to_owned(),
            publication: self.publication.clone(),
        }
    }

    /// Why durable writes fail, if the last one failed: ENOSPC, EROFS, EIO and the like
    /// persist, and readiness must say so (SPEC §4).
    pub fn health(&self) -> Option<String> {
        self.health.get()
    }

    /// Why increments do not go through while the writer has waited longer than `longer_than`
    /// for the counter's lock (start-up's reconciliation included): for readiness, past
    /// [`UNREADY_AFTER_WAITING`], and for the answer to a request that timed out meanwhile.
    /// `None` as soon as the lock is had.
    pub fn awaiting_lock(&self, longer_than: Duration) -> Option<Error> {
        let waited = self.file.lock_wait().waited()?;
        (waited > longer_than).then(|| Error::AwaitingLock {
            path: self.file.lock_path().to_owned(),
            waited,
        })
    }

    /// Leader mode: whether this replica leads, and which epoch; what an internal request is
    /// checked against.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// Leader mode: why increments do not go through while this replica has found nobody to
    /// forward to, and could not take the lock, for longer than `longer_than`.
    pub fn awaiting_leader(&self, longer_than: Duration) -> Option<Error> {
        let (waited, reason) = self.reach.unreached()?;
        (waited > longer_than).then_some(Error::NoLeader { waited, reason })
    }

    /// Whether durable writes work: at once when the last one succeeded; after a failure, the
    /// writer tries one that changes nothing (the count rewritten as it is), since a replica
    /// that is not ready receives no increments that could show it healed.
    pub async fn check(&self) -> Result<()> {
        if self.health.get().is_none() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .0
            .send(|queued| queued.checks.push(reply))
            .ok_or_else(|| self.stopped_error())?;
        answer.await.map_err(|_| self.stopped_error())?
    }

    /// A handle to give back a number whose answer could not be delivered.
    pub fn returns(&self) -> Returns {
        Returns(self.queue.clone())
    }

    /// A gauge of the increments waiting in the writer's queue, which does not keep the
    /// writer alive.
    pub fn waiting(&self) -> Waiting {
        Waiting(self.queue.0.clone())
    }

    /// The file this counter writes.
    pub fn file(&self) -> &CounterFile {
        &self.file
    }

    /// A handle that waits for the writer thread to end, without keeping it alive: call it
    /// before dropping the last [`Counter`], then wait after, so that the process does not exit
    /// while the writer still holds the lock with the count unpublished.
    pub fn stopped(&self) -> Stopped {
        Stopped(self.ended.clone())
    }

    /// The error of a counter whose writer has stopped (the process is exiting).
    pub fn stopped_error(&self) -> Error {
        Error::WriterStopped {
            path: self.file.path().to_owned(),
        }
    }
}

/// Queues `n` increments (forwarded for `epoch`, if given) and waits for the first of their
/// numbers (see [`Counter::increment`]).
async fn queue_increments(
    inbox: &Inbox,
    n: u64,
    epoch: Option<u64>,
    stopped: impl Fn() -> Error,
) -> Result<u64> {
    let state = Arc::new(AtomicU8::new(PENDING));
    let (reply, answer) = oneshot::channel();
    let id = inbox
        .increment(Waiter {
            state: state.clone(),
            reply,
            n,
            epoch,
        })
        .ok_or_else(&stopped)?;
    let mut pending = Pending {
        id,
        n,
        state,
        answer,
        inbox,
    };
    (&mut pending.answer).await.map_err(|_| stopped())?
}

/// See [`Counter::for_followers`].
#[derive(Debug, Clone)]
pub struct FollowersDoor {
    inbox: Arc<Inbox>,
    role: Arc<Role>,
    path: std::path::PathBuf,
    publication: Option<Arc<Publication>>,
}

impl FollowersDoor {
    /// The drain began (SIGTERM): a leader on a network volume publishes no more, so that no
    /// publication is in flight when it hands over, after `SHUTDOWN_DELAY`; its successor
    /// publishes (see [`crate::publisher`]).
    pub fn hand_over_soon(&self) {
        if let Some(publication) = &self.publication {
            publication.pause();
        }
    }

    /// Whether this replica leads, and what an internal request is checked against.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// See [`Counter::increment_forwarded`]; once the writer has ended,
    /// [`Error::WriterStopped`] with nothing written.
    pub async fn increment_forwarded(&self, n: u64, epoch: u64) -> Result<u64> {
        queue_increments(&self.inbox, n, Some(epoch), || Error::WriterStopped {
            path: self.path.clone(),
        })
        .await
    }
}

/// What [`Writer::collect`] found.
enum Collected {
    /// Callers are queued: write for them.
    Callers,
    /// Nobody to write for now: look again.
    Nothing,
    /// Nobody came for a while: what an idle writer does ([`Writer::idle`]), then look again.
    Idle,
    /// Every handle is gone and the queue is empty.
    Closed,
}

/// The writer thread's state beyond its queue.
struct Writer {
    file: CounterFile,
    health: Arc<Health>,
    /// Until when the writer gives an idle lock back at once (see the module docs).
    contended_until: Option<Instant>,
    /// The lock file, kept open from lease to lease (see [`RecordFile`]).
    lock: Option<Arc<RecordFile>>,
    /// Leader mode ([`crate::leadership`]), when on.
    leadership: Option<Leadership>,
    /// Whether the count was published since the last batch (a leader keeps the lock while
    /// idle, and publishes once).
    published_idle: bool,
    /// Leader mode's publisher, for leases on a network volume ([`crate::publisher`]).
    publication: Option<Arc<Publication>>,
}

/// What [`Writer::follow`] came to.
enum Followed {
    /// The batch was forwarded, failed, or its callers gave up.
    Done,
    /// This replica took the lock: it leads, and writes the batch itself.
    Leading,
}

impl Writer {
    fn run(mut self, inbox: &Inbox, mut observer: impl Observe) {
        // After a crash or a power cut the record may be ahead of the published file, and a
        // crash may have left temporary files: both are set right before anything else.
        // In leader mode without waiting for the lock (never a blocking `flock` there: see
        // [`crate::leadership`]); whoever holds it has reconciled.
        let reconcile = || {
            if self.leadership.is_some() {
                self.file.reconcile_if_free().map(|(count, _)| count)
            } else {
                self.file.reconcile()
            }
        };
        if let Err(error) = self.file.create_dir().and_then(|()| reconcile()) {
            tracing::warn!(%error, "could not prepare the counter; answering 503 until it can");
        }
        let file = self.file.clone();
        let mut lease: Option<Lease<'_>> = None;
        let mut batch: Vec<Waiter> = Vec::new();
        let mut gone: Vec<u64> = Vec::new();
        let mut checks: Vec<oneshot::Sender<Result<()>>> = Vec::new();
        let mut last = Last::default();
        loop {
            inbox.take_others(&mut gone, &mut checks);
            if !checks.is_empty() {
                self.check(&file, &mut lease, &mut checks, &mut gone);
            }
            match self.collect(inbox, &file, &lease, &mut gone, &mut last, &mut observer) {
                Collected::Callers => {}
                Collected::Nothing => continue,
                Collected::Idle => {
                    self.idle(&file, &mut lease, &mut gone);
                    continue;
                }
                Collected::Closed => break,
            }
            if self.leadership.is_some() {
                if lease.as_ref().is_some_and(Lease::stale) {
                    self.step_down(&mut lease, "its lease was last known held too long ago");
                }
                if lease.is_none() {
                    match self.follow(
                        inbox,
                        &file,
                        &mut lease,
                        &mut batch,
                        &mut gone,
                        &mut observer,
                    ) {
                        Followed::Done => {
                            report_abandoned(&file, &mut gone, &mut observer);
                            continue;
                        }
                        Followed::Leading => {}
                    }
                }
            }
            // The callers stay in the queue while the writer waits for the lock: one that
            // gives up meanwhile leaves it.
            let held = match self.lease(&file, &mut lease) {
                Ok(held) => held,
                Err(error) => {
                    inbox.take_increments(&mut batch);
                    self.fail_batch(&mut batch, error, Duration::ZERO, &mut observer);
                    continue;
                }
            };
            inbox.take_increments(&mut batch);
            batch.retain(Waiter::claim);
            let led = self.leading_epoch();
            refuse_forwarded(&mut batch, |epoch| led != Some(epoch));
            self.note_forwarded(&batch);
            refuse_what_does_not_fit(&file, held, &mut batch);
            if batch.is_empty() {
                last = Last::default();
                continue;
            }
            let n = numbers(&batch);
            let callers = batch.len();
            let (result, elapsed) = self.write_batch(&mut lease, n, callers, &mut gone, &mut last);
            if result.is_err() {
                self.stepped_down("a durable write failed");
            }
            self.answer(&mut batch, result, elapsed, &mut gone, &mut observer);
            self.after_batch(&mut lease);
            report_abandoned(&file, &mut gone, &mut observer);
        }
        // Every handle is gone and the queue is empty: publish, give the lock back, end.
        self.hand_over(&mut lease);
        self.let_go(&mut lease);
        report_abandoned(&file, &mut gone, &mut observer);
    }

    /// Waits until callers are queued, giving an idle lease back after its linger, and then
    /// briefly for the callers just answered (see the module docs).
    fn collect(
        &self,
        inbox: &Inbox,
        file: &CounterFile,
        lease: &Option<Lease<'_>>,
        gone: &mut Vec<u64>,
        last: &mut Last,
        observer: &mut impl Observe,
    ) -> Collected {
        // Whoever queued up during the last write.
        let waiting = inbox.waiting();
        if waiting == 0 {
            report_abandoned(file, gone, observer);
            match inbox.wait(self.idle_after(lease)) {
                Wake::Arrived => {}
                Wake::TimedOut => return Collected::Idle,
                Wake::Disconnected => return Collected::Closed,
            }
            if inbox.waiting() == 0 {
                return Collected::Nothing;
            }
        }
        if last.size > 1 {
            inbox.wait_for(last.size + waiting, Instant::now() + last.fill_wait());
        }
        if inbox.waiting() == 0 {
            // Nobody left to write for: the next wait must not be sized by an old batch.
            *last = Last::default();
            return Collected::Nothing;
        }
        Collected::Callers
    }

    /// One durable write for the `n` numbers of the batch's callers, under the lease just taken: the
    /// first of their numbers, or the error, with how long the write took.
    fn write_batch(
        &mut self,
        lease: &mut Option<Lease<'_>>,
        n: u64,
        callers: usize,
        gone: &mut Vec<u64>,
        last: &mut Last,
    ) -> (Result<u64>, Duration) {
        let held = lease.as_mut().expect("the lease was taken for this batch");
        let started = Instant::now();
        let advance = held.advance(n);
        let elapsed = started.elapsed();
        *last = Last {
            size: callers,
            write: elapsed,
        };
        let result = match advance {
            Advance::Durable { first } => Ok(first),
            Advance::Failed { error, skipped } => {
                gone.extend(skipped.into_iter().flatten());
                // The lock is given back so that another process, perhaps on a node whose
                // path to the volume works, can go on, and without publishing: a failed
                // write may mean the lock was lost (a network filesystem fences a client
                // whose lock expired by failing its writes), and then the count is old. The
                // descriptor is opened again: a fenced one fails for good.
                *lease = None;
                self.lock = None;
                Err(error)
            }
        };
        (result, elapsed)
    }

    /// Hands the batch its numbers, in order (a caller gone meanwhile leaves its number
    /// abandoned), or fails it; reported either way.
    fn answer(
        &self,
        batch: &mut Vec<Waiter>,
        result: Result<u64>,
        elapsed: Duration,
        gone: &mut Vec<u64>,
        observer: &mut impl Observe,
    ) {
        let first = match result {
            Ok(first) => first,
            Err(error) => return self.fail_batch(batch, error, elapsed, observer),
        };
        self.record_outcome(None);
        observer.batch(&BatchReport {
            size: numbers(batch),
            elapsed,
            ok: true,
        });
        hand_out(batch, first, gone);
    }

    /// The one way a batch fails, whether the lock could not be taken or the write failed:
    /// health records the error, the observer the batch, and every caller gets the error.
    fn fail_batch(
        &self,
        batch: &mut Vec<Waiter>,
        error: Error,
        elapsed: Duration,
        observer: &mut impl Observe,
    ) {
        self.record_outcome(Some(&error));
        if !batch.is_empty() {
            observer.batch(&BatchReport {
                size: numbers(batch),
                elapsed,
                ok: false,
            });
        }
        for waiter in batch.drain(..) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
    }

    /// The held lease, taking the lock if needed (again, if the lease went unused so long that
    /// it may have been given away; see [`Lease::stale`]).
    fn lease<'f, 'l>(
        &mut self,
        file: &'f CounterFile,
        lease: &'l mut Option<Lease<'f>>,
    ) -> Result<&'l mut Lease<'f>> {
        if lease.as_ref().is_some_and(Lease::stale) {
            tracing::warn!(
                path = %file.lock_path().display(),
                "the counter's lock was last known held too long ago to be trusted; taking it again"
            );
            *lease = None;
        }
        if lease.is_none() {
            let lock = self.record_file(file)?;
            let (taken, contended) = Lease::acquire(file.lock_site(), lock).inspect_err(|_| {
                // Opened again next time: the descriptor may be what failed (fenced, or the
                // volume was remounted).
                self.lock = None;
            })?;
            if contended {
                self.contended_until = Some(Instant::now() + CONTENDED_FOR);
            }
            // The file at the path, should the one kept have been deleted or replaced.
            self.lock = Some(taken.lock_file().clone());
            *lease = Some(taken);
        }
        Ok(lease.as_mut().expect("just taken"))
    }

    /// After a batch: gives the lock back once it was held for [`MAX_HOLD`] (see the module
    /// docs); a leader beats and takes its courtesy turns instead.
    fn after_batch<'f>(&mut self, lease: &mut Option<Lease<'f>>) {
        self.published_idle = false;
        if self.leadership.is_some() {
            return self.keep_leading(lease);
        }
        if lease.as_ref().is_some_and(|held| held.held() >= MAX_HOLD) {
            give_back(lease);
            thread::sleep(HANDOVER);
        }
    }

    fn contended(&self) -> bool {
        self.contended_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// How long to keep an idle lease.
    fn linger(&self) -> Duration {
        if self.contended() {
            Duration::ZERO
        } else {
            LINGER
        }
    }

    /// Answers readiness's checks: a write that changes nothing, if the last one failed.
    fn check<'f>(
        &mut self,
        file: &'f CounterFile,
        lease: &mut Option<Lease<'f>>,
        checks: &mut Vec<oneshot::Sender<Result<()>>>,
        gone: &mut Vec<u64>,
    ) {
        let following = self.leadership.is_some() && lease.is_none();
        let result = if self.health.get().is_none() {
            Ok(())
        } else if following {
            // A follower writes nothing itself: whether forwarding works is readiness's
            // other question ([`Counter::awaiting_leader`]).
            self.record_outcome(None);
            Ok(())
        } else {
            let outcome = self.lease(file, lease).map(|held| held.advance(0));
            let result = match outcome {
                Ok(Advance::Durable { .. }) => Ok(()),
                Ok(Advance::Failed { error, skipped }) => {
                    gone.extend(skipped.into_iter().flatten());
                    *lease = None;
                    self.lock = None;
                    Err(error)
                }
                Err(error) => Err(error),
            };
            self.record_outcome(result.as_ref().err());
            result
        };
        for check in checks.drain(..) {
            let _ = check.send(result.clone());
        }
    }

    /// Logs transitions only: a full disk under load must not write a line per request.
    fn record_outcome(&self, failure: Option<&Error>) {
        if !self.health.set(failure) {
            return;
        }
        match failure {
            Some(error) => tracing::error!(
                %error,
                "durable increment failed; answering 503 until a write succeeds"
            ),
            None => tracing::info!(
                path = %self.file.lock_path().display(),
                "durable increments work again"
            ),
        }
    }
}

/// Publishes and gives the lock back. A publication that fails is logged: the count is durable
/// in the record whatever happens to the published file, and the next holder publishes.
fn give_back(lease: &mut Option<Lease<'_>>) {
    if let Some(held) = lease.take()
        && let Err(error) = held.release()
    {
        tracing::warn!(%error, "could not publish the count before giving the lock back");
    }
}

/// Near `u64::MAX`: when some of the batch fits, those callers get their numbers and the rest
/// are refused; when none does, the write fails the whole batch (and readiness says why).
fn refuse_what_does_not_fit(file: &CounterFile, lease: &Lease<'_>, batch: &mut Vec<Waiter>) {
    let room = lease.room();
    if room == 0 || numbers(batch) <= room {
        return;
    }
    let error = Error::Overflow {
        path: file.path().to_owned(),
        value: u64::MAX,
        add: 1,
    };
    let mut fits = 0;
    let mut used = 0;
    for waiter in batch.iter() {
        if used + waiter.n > room {
            break;
        }
        used += waiter.n;
        fits += 1;
    }
    for waiter in batch.drain(fits..) {
        let _ = waiter.reply.send(Err(error.clone()));
    }
}

/// Refuses, with nothing written, the forwarded batches `refuse` says this replica does not
/// lead the epoch of: their follower asks again (SPEC §4: 421).
fn refuse_forwarded(batch: &mut Vec<Waiter>, refuse: impl Fn(u64) -> bool) {
    for waiter in batch.extract_if(.., |waiter| waiter.epoch.is_some_and(&refuse)) {
        let epoch = waiter.epoch.expect("a forwarded batch");
        let _ = waiter.reply.send(Err(Error::NotLeader { epoch }));
    }
}

/// Hands each waiter of the batch its numbers, in order, from `first`: a caller gone meanwhile
/// leaves its numbers abandoned.
fn hand_out(batch: &mut Vec<Waiter>, first: u64, gone: &mut Vec<u64>) {
    let mut next = first;
    for waiter in batch.drain(..) {
        if waiter.reply.send(Ok(next)).is_err() {
            gone.extend(next..next + waiter.n);
        }
        next += waiter.n;
    }
}

/// Fails every waiter of the batch with `error`, with no number used.
fn refuse(batch: &mut Vec<Waiter>, error: &Error) {
    for waiter in batch.drain(..) {
        let _ = waiter.reply.send(Err(error.clone()));
    }
}

/// Logs and reports the numbers used but not delivered, then forgets them.
fn report_abandoned(file: &CounterFile, gone: &mut Vec<u64>, observer: &mut impl Observe) {
    if gone.is_empty() {
        return;
    }
    gone.sort_unstable();
    tracing::warn!(
        path = %file.path().display(),
        count = gone.len(),
        numbers = ?gone,
        "numbers used but not delivered: their requests timed out, their clients left or their write failed; they are skipped, never handed out"
    );
    observer.abandoned(gone);
    gone.clear();
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
