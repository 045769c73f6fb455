//! A leader's publisher on a network volume: `pingpong_counter.txt` brought up to the count by
//! a thread of its own, so that a slow rename delays the published file, never an increment
//! (SPEC §3 "The leader", "Publication").
//!
//! Why a thread: on CephFS at its default MDS tick (5 s), creating the temporary file or
//! renaming it over the published file waits for the tick whenever another mount reads that
//! file in a loop (`test/rwx/FACTS.md` §8-9: a reader every 5 ms made one cycle in about 40
//! wait 4.5-5 s). A leader that published on its writer thread (while idle, at its courtesy
//! turns, at the hand-over) kept every caller waiting that long, and a follower's forward timed
//! out. The writer now only posts the latest durable count here ([`Publication::post`]); the
//! thread publishes it at most every [`PUBLISH_EVERY`] and the newest count wins.
//!
//! What keeps the published file from going back: a publication runs only while the lease
//! that posted it holds the lock and is trusted, and the lock is never given back while one is
//! in flight. [`Publication::close`] (every lease that carries a publication calls it before it
//! unlocks, [`crate::Lease`]'s drop) stops new ones and waits for the one in flight; the
//! courtesy turn asks [`Publication::try_close`] instead and, when a publication is in flight,
//! keeps the lock a little longer rather than wait. Whoever takes the lock next (another leader,
//! `counter set`, a replica of the previous release) therefore never has its publication
//! overtaken by this one's. So that the hand-over at the end of `SHUTDOWN_DELAY` does not wait
//! either, publishing pauses when the drain begins ([`Publication::pause`]): the successor
//! publishes.
//!
//! On a local volume none of this runs: renames there take microseconds, and the published file
//! must be read under the lock (the previous release may have written it, [`crate::rollout`]),
//! which only the writer thread can do.

use std::{
    path::PathBuf,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use crate::{atomic, record::Record, record_file::RecordFile};

/// At most one publication per this long: the published file trails the count by this much
/// plus the rename's own time while busy.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(20);

/// How often, while a lease publishes here, the lock file's name is looked up to see that the
/// locked file is still the one at the path ([`RecordFile::is_at_path`]): the leader's
/// courtesy turn asks only the file ([`RecordFile::is_unlinked`]), and finds the flag this
/// sets on its next turn.
pub const LOOK_UP_EVERY: Duration = Duration::from_secs(1);

/// The latest durable count a lease asks to be published.
#[derive(Debug, Clone)]
pub(crate) struct Posted {
    /// The record just made durable.
    pub record: Record,
    /// Until when the lease that wrote it is trusted (see [`crate::lease::TRUST`]): a
    /// publication never starts later, since the lock may have been given away by then.
    pub trusted_until: Instant,
    /// The lock file the record is in: what this process published under it is noted there.
    pub lock: Arc<RecordFile>,
}

#[derive(Debug, Default)]
struct State {
    /// What to publish next.
    next: Option<Posted>,
    /// Publications may start: a lease holds the lock and posted since it took it.
    open: bool,
    /// One is under way (the lock must not be given back until it ends).
    in_flight: bool,
    /// The process is draining: nothing more is published.
    paused: bool,
    /// The writer ended: the thread ends too.
    stopped: bool,
    /// The lock file of the last post: its name is looked up every [`LOOK_UP_EVERY`].
    watched: Option<Arc<RecordFile>>,
}

/// The publisher thread's mailbox and gate (see the module docs).
#[derive(Debug)]
pub struct Publication {
    state: Mutex<State>,
    changed: Condvar,
}

impl Publication {
    /// Starts the publisher thread for the published file at `path`.
    pub fn spawn(path: PathBuf) -> Arc<Publication> {
        let publication = Arc::new(Publication {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let thread_side = publication.clone();
        thread::Builder::new()
            .name("counter-publisher".into())
            .spawn(move || thread_side.run(&path))
            .expect("spawning the counter publisher thread");
        publication
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest durable count, to be published by the lease that holds the lock (opens the
    /// gate until that lease closes it).
    pub(crate) fn post(&self, posted: Posted) {
        let mut state = self.lock();
        state.open = true;
        state.watched = Some(posted.lock.clone());
        state.next = Some(posted);
        drop(state);
        self.changed.notify_all();
    }

    /// Before the lock is given back: no publication starts from here on, and the one in
    /// flight, if any, has ended when this returns.
    pub fn close(&self) {
        let mut state = self.lock();
        state.open = false;
        state.next = None;
        while state.in_flight {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// [`Publication::close`] without waiting: false, and nothing changed, when a publication
    /// is in flight.
    pub fn try_close(&self) -> bool {
        let mut state = self.lock();
        if state.in_flight {
            return false;
        }
        state.open = false;
        state.next = None;
        true
    }

    /// The drain began: nothing more is published by this process (see the module docs).
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    /// The writer ended.
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    fn run(&self, path: &std::path::Path) {
        let mut failing = false;
        let mut looked_up = Instant::now();
        loop {
            if looked_up.elapsed() >= LOOK_UP_EVERY {
                let watched = {
                    let state = self.lock();
                    state.open.then(|| state.watched.clone()).flatten()
                };
                if let Some(lock) = watched {
                    look_up(&lock);
                }
                looked_up = Instant::now();
            }
            let posted = {
                let mut state = self.lock();
                let publishable =
                    |state: &State| state.open && !state.paused && state.next.is_some();
                while !publishable(&state) {
                    if state.stopped {
                        return;
                    }
                    let (waited, timeout) = self
                        .changed
                        .wait_timeout(state, LOOK_UP_EVERY)
                        .unwrap_or_else(|e| e.into_inner());
                    state = waited;
                    if timeout.timed_out() {
                        break;
                    }
                }
                if state.stopped {
                    return;
                }
                if !publishable(&state) {
                    continue;
                }
                let posted = state.next.take().expect("checked above");
                if Instant::now() > posted.trusted_until {
                    // The lease may have lost the lock meanwhile: the writer finds out, and
                    // posts again once it knows the lock is held.
                    continue;
                }
                let last = *posted
                    .lock
                    .published
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if last == Some(posted.record) {
                    continue;
                }
                state.in_flight = true;
                posted
            };
            let result = publish(path, &posted);
            match (&result, failing) {
                (Err(error), false) => {
                    tracing::warn!(%error, "could not publish the count; the record holds it, and the next publication tries again")
                }
                (Ok(()), true) => tracing::info!("publishing the count works again"),
                _ => {}
            }
            failing = result.is_err();
            self.lock().in_flight = false;
            self.changed.notify_all();
            thread::sleep(PUBLISH_EVERY);
        }
    }
}

/// The lock file's name looked up: if the locked file left the path (deleted, replaced, moved
/// away), the flag the leader's next courtesy turn finds ([`crate::Lease::try_acquire_again`]).
/// An error says nothing: the writer's own writes find a volume that fails.
fn look_up(lock: &RecordFile) {
    if let Ok(false) = lock.is_at_path() {
        lock.left_path
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The published file replaced with the posted count (its content durable, its name as when a
/// lease gives the lock back: see SPEC §3 "Publication"), and noted in the lock file's state.
fn publish(path: &std::path::Path, posted: &Posted) -> crate::Result<()> {
    let contents = format!("{}\n", posted.record.value);
    atomic::replace_content_durably(path, contents.as_bytes())?;
    *posted
        .lock
        .published
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(posted.record);
    Ok(())
}
