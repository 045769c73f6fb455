//! The counter while this process holds its lock: a *lease* on it, kept across many durable
//! writes while the process is busy, given back when it is idle, after [`MAX_HOLD`], or when
//! another process waits.
//!
//! While the lease is held, the count lives in memory and in the durable record
//! ([`crate::record`], in the lock file, read and written through the locked descriptor): an
//! increment is one in-place write and one `fdatasync`, and nothing is re-read. The published
//! file, `pingpong_counter.txt`, is brought up to the count before the lock is given back
//! ([`Lease::release`]), so it is current whenever nobody holds the lock. That is what a
//! replica of the previous release (which knows only that file, and reads it under the lock)
//! relies on during a rolling update, and what `cat`, log-writer and `/pings` see.
//!
//! On taking the lock, the count is the larger of the record and the published file: the file
//! is ahead when a replica of the previous release (or an operator's hand) wrote it, the record
//! when a holder was killed before it published.
//!
//! A lease can be lost without this process noticing, on a network filesystem: a client cut off
//! from the server for longer than the server's lock timeout (a partition, a paused node) has
//! its lock given to another client while it still believes it holds it. Filesystems that fence
//! make every later write through the old descriptor fail (NFSv4 after its lease expires,
//! CephFS once it blocklists the client, GlusterFS with `client.strict-locks`). Where they do
//! not, the lease distrusts itself once the lock was last *known* held more than [`TRUST`]
//! ago: when the `flock` call returned, then when each durable write under it was answered.
//! Everything in between counts, not the write alone: reading the record and the published file
//! when the lease is taken, a pause of the process, the time between two batches. A write
//! answered past that may have outlived the lock: its numbers are not handed out, nothing is
//! published from the lease, and the lock is taken again. A write that would start past it is
//! not made, so it uses no number.
//!
//! A local filesystem's lock cannot expire while its holder lives, so there a lease is never
//! distrusted: a slow disk (an HDD, a cloud disk out of burst credits, writeback contention)
//! makes slow answers, not errors.

use std::{
    fs::{self, TryLockError},
    ops::Range,
    os::unix::fs::FileExt,
    sync::{Arc, Mutex, atomic::Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::{
    atomic,
    error::{Error, Result},
    leader_block::LeaderBlock,
    published::{self, read_counter},
    publisher::{Posted, Publication},
    record::{self, Record},
    record_file::RecordFile,
    rollout,
    volume::{CounterPaths, VolumeKind},
};

/// The longest a busy process keeps the lock: another replica, a `counter set` or a replica of
/// the previous release waits at most this long for it, and `pingpong_counter.txt` trails the
/// count by at most this much while the process is busy.
pub const MAX_HOLD: Duration = Duration::from_millis(20);

/// On a filesystem several nodes share, how long after the lock was last known held (see the
/// module docs) a lease is still trusted: a durable write answered later hands nothing out.
/// Far below the lock timeouts of the network filesystems (tens of seconds), far above a
/// healthy `fdatasync` (a millisecond). Not applied to a local filesystem.
pub const TRUST: Duration = Duration::from_secs(2);

/// How long ago `known_held` was at `now`, if that is too long for a lease to be trusted: past
/// [`TRUST`] on a volume several nodes share, never on a local one, whose lock cannot expire
/// while its holder lives.
fn distrusted_since(local: bool, known_held: Instant, now: Instant) -> Option<Duration> {
    let since = now.saturating_duration_since(known_held);
    (!local && since > TRUST).then_some(since)
}

/// Whether a lease of this counter is waiting for the lock, and since when: another process
/// holds it (a replica stuck or frozen with it, a paused `counter set`) or the volume does not
/// answer the `flock` (a hung NFS server). Readiness reports a long wait; see
/// [`crate::CounterFile::lock_wait`].
#[derive(Debug, Default)]
pub struct LockWait(Mutex<Waiting>);

#[derive(Debug, Default)]
struct Waiting {
    waiters: usize,
    /// When the first of the current waiters began.
    since: Option<Instant>,
}

impl LockWait {
    /// How long the lock has been waited for, if it is now.
    pub fn waited(&self) -> Option<Duration> {
        let waiting = self.0.lock().unwrap_or_else(|e| e.into_inner());
        waiting.since.map(|since| since.elapsed())
    }

    /// Counts a waiter until the guard is dropped.
    fn begin(&self) -> WaitingGuard<'_> {
        let mut waiting = self.0.lock().unwrap_or_else(|e| e.into_inner());
        waiting.waiters += 1;
        waiting.since.get_or_insert_with(Instant::now);
        WaitingGuard(self)
    }
}

/// One waiter of a [`LockWait`], until dropped (the `flock` call returned, whatever it said).
struct WaitingGuard<'a>(&'a LockWait);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        let mut waiting = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        waiting.waiters -= 1;
        if waiting.waiters == 0 {
            waiting.since = None;
        }
    }
}

/// How long a process that finds the lock file new, while a count is published, waits with the
/// lock held before it reads the count (see [`RecordFile`]): longer than what is left of a lease
/// another process may still hold on the file that was at the path before, whose count it
/// publishes when it gives that lease back.
pub const REPLACED_LOCK_FILE_WAIT: Duration = TRUST.saturating_add(MAX_HOLD);

/// How many times in a row taking the lock may find the lock file replaced before it gives up.
const REOPENS: usize = 16;

/// Where the counter's lock is taken, and what a lease goes by: the counter's files, the volume
/// they are on, and who is waiting for the lock. [`crate::CounterFile`] holds one (its clones
/// share the waiting) and lends it to the leases it takes.
#[derive(Debug, Clone)]
pub struct LockSite {
    paths: CounterPaths,
    kind: VolumeKind,
    /// Whether a lease taken here is waiting for the lock, and for how long.
    wait: Arc<LockWait>,
}

impl LockSite {
    /// The counter at `paths`, on a volume of the given kind; nobody waiting yet.
    pub fn new(paths: CounterPaths, kind: VolumeKind) -> Self {
        LockSite {
            paths,
            kind,
            wait: Arc::default(),
        }
    }

    /// The same site on a volume of the given kind, sharing its waiting.
    pub fn with_volume_kind(mut self, kind: VolumeKind) -> Self {
        self.kind = kind;
        self
    }

    /// Both files' paths.
    pub fn paths(&self) -> &CounterPaths {
        &self.paths
    }

    /// `pingpong_counter.txt`: the published count.
    pub fn path(&self) -> &std::path::Path {
        self.paths.published()
    }

    /// `pingpong_counter.txt.lock`: the lock, and the durable record.
    pub fn lock_path(&self) -> &std::path::Path {
        self.paths.lock()
    }

    /// What the volume is taken to be.
    pub fn volume_kind(&self) -> VolumeKind {
        self.kind
    }

    /// Whether a lease taken here is waiting for the lock, and for how long.
    pub fn lock_wait(&self) -> &LockWait {
        &self.wait
    }

    /// Opens (creating it if needed) the lock file for writing (see [`RecordFile::open`]).
    pub fn open_record_file(&self) -> Result<RecordFile> {
        RecordFile::open(&self.paths, self.kind)
    }
}

/// The counter's lock, held, with the count it protects. Dropping it unlocks.
#[derive(Debug)]
pub struct Lease<'a> {
    site: &'a LockSite,
    /// The lock file, locked: the record's home.
    lock: Arc<RecordFile>,
    /// The sequence number of the latest record, 0 if none yet.
    seq: u64,
    /// Where the next record goes: never the slot of the latest durable one.
    next_slot: usize,
    /// The count: every number below it has been used.
    value: u64,
    /// What `pingpong_counter.txt` holds, where known.
    published: Option<u64>,
    /// Replicas of the previous release may be about ([`crate::rollout`]): every batch is
    /// published before its numbers are handed out.
    rollout: bool,
    /// The lock file had no record when the lease began and nothing has been published since.
    publish_first_batch: bool,
    /// When the lock was taken: how long it has been held ([`MAX_HOLD`]).
    taken: Instant,
    /// When the lock was last known held: when the `flock` call returned, then when each
    /// durable write was answered in time. The lease is trusted for [`TRUST`] from here on a
    /// network filesystem (see the module docs).
    known_held: Instant,
    /// A leader's publisher on a network volume ([`crate::publisher`]): it publishes, this
    /// lease does not, and the lock is not given back while a publication is in flight.
    publication: Option<Arc<Publication>>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(publication) = self.publication.take() {
            publication.close();
        }
        // On a descriptor the filesystem fenced this fails too; the lock is gone anyway.
        let _ = self.lock.file.unlock();
    }
}

/// Takes the lock on `lock`, waiting for another holder if `wait` (else `None` when it is
/// held), and makes sure it is held on the file at the lock file's path: when `lock` is no
/// longer that file, it is given up and the file at the path opened and locked instead (see
/// [`RecordFile`]). With whether another process held the lock, and when the lock was had.
/// `by_name`: the path looked up ([`RecordFile::is_at_path`]); else the file asked whether it
/// still has a name ([`RecordFile::is_unlinked`]), and what the publisher's own lookups found.
fn lock_at_path(
    site: &LockSite,
    mut lock: Arc<RecordFile>,
    wait: bool,
    mut by_name: bool,
) -> Result<Option<(Arc<RecordFile>, bool, Instant)>> {
    let path = site.lock_path();
    let mut contended = false;
    for _ in 0..REOPENS {
        match lock.file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) if !wait => return Ok(None),
            Err(TryLockError::WouldBlock) => {
                let _waiting = site.lock_wait().begin();
                lock.file.lock().map_err(|e| Error::io("lock", path, e))?;
                contended = true;
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
        // The lock is known held from here: the lease's trust clock starts now, before the
        // path is looked up (on a network volume that lookup may stall too).
        let locked_at = Instant::now();
        // On a local volume a lookup costs nothing: always by name there.
        let at_path = if by_name || lock.local {
            lock.is_at_path()
        } else {
            lock.left_path_unlooked().map(|left| !left)
        };
        if let Ok(true) = at_path {
            return Ok(Some((lock, contended, locked_at)));
        }
        let _ = lock.file.unlock();
        at_path?;
        tracing::warn!(
            path = %path.display(),
            "the counter's lock file was deleted or replaced: taking the lock on the file now \
             at its path"
        );
        let replacing = site.open_record_file()?;
        replacing.replacing.store(true, Ordering::Relaxed);
        lock = Arc::new(replacing);
        by_name = true;
    }
    Err(Error::io(
        "lock",
        path,
        std::io::Error::other(format!(
            "the lock file was replaced {REOPENS} times in a row while its lock was being taken"
        )),
    ))
}

/// What [`Lease::advance`] did.
#[derive(Debug)]
pub enum Advance {
    /// Durable: the numbers `first .. first + n` are the caller's to hand out.
    Durable { first: u64 },
    /// Not durable, and no number may be handed out. `skipped` are numbers that may have
    /// become visible anyway (the record was written, its `fdatasync` failed, or it was
    /// answered too late to trust the lease): they are never handed out, so they are skipped.
    Failed {
        error: Error,
        skipped: Option<Range<u64>>,
    },
}

impl<'a> Lease<'a> {
    /// Takes the lock on `lock`, waiting for other holders (meanwhile
    /// [`crate::CounterFile::lock_wait`] says so), and reads the count. `contended` tells whether
    /// another process held the lock when this one asked. When `lock` is no longer the file at
    /// the path, the lease is on the one that is (see [`RecordFile`]): [`Lease::lock_file`].
    pub fn acquire(site: &'a LockSite, lock: Arc<RecordFile>) -> Result<(Lease<'a>, bool)> {
        let (lock, contended, locked_at) =
            lock_at_path(site, lock, true, true)?.expect("waited for the lock");
        Ok((Lease::read(site, lock, locked_at)?, contended))
    }

    /// Takes the lock on `lock` (or on the file at the path, as [`Lease::acquire`]) only if
    /// nobody holds it.
    pub fn try_acquire(site: &'a LockSite, lock: Arc<RecordFile>) -> Result<Option<Lease<'a>>> {
        match lock_at_path(site, lock, false, true)? {
            Some((lock, _, locked_at)) => Lease::read(site, lock, locked_at).map(Some),
            None => Ok(None),
        }
    }

    /// [`Lease::try_acquire`] for a leader taking the lock back after its courtesy turn, on
    /// the descriptor it held a moment ago: whether that file is still the lock file is asked
    /// of the file, not of its name ([`RecordFile::is_unlinked`]), so that the writer never
    /// waits for a lookup in the directory (CephFS's tick); the publisher looks the name up.
    /// On a local volume, where a lookup costs nothing, the same as [`Lease::try_acquire`].
    pub fn try_acquire_again(
        site: &'a LockSite,
        lock: Arc<RecordFile>,
    ) -> Result<Option<Lease<'a>>> {
        match lock_at_path(site, lock, false, false)? {
            Some((lock, _, locked_at)) => Lease::read(site, lock, locked_at).map(Some),
            None => Ok(None),
        }
    }

    /// The lock file this lease holds the lock on: the one at the path when the lock was
    /// taken, which a caller keeps for the next lease.
    pub fn lock_file(&self) -> &Arc<RecordFile> {
        &self.lock
    }

    /// With the lock held: the record through the locked descriptor, and, where a replica of
    /// the previous release may have advanced it, the published file. That is a local volume
    /// (the previous release ran on one node only); on a network filesystem the published file
    /// is read only while there is no record yet (the first start after that release), since
    /// opening it by name is what stalls there (see [`RecordFile`]).
    fn read(site: &'a LockSite, lock: Arc<RecordFile>, locked_at: Instant) -> Result<Lease<'a>> {
        let mut lease = Lease::new(site, lock, Record { seq: 0, value: 0 }, 0, locked_at);
        let new = record::allocate(&lease.lock.file)
            .map_err(|e| Error::io("allocate", site.lock_path(), e))?;
        if new {
            // The lock file may be new: its name must be durable before anything counts on
            // what it holds, or a power cut could take the record with the name.
            atomic::sync_dir(atomic::parent_dir(site.lock_path()))?;
        }
        let latest = lease
            .lock
            .read_slots()?
            .latest()
            .map_err(|record::BothTorn| Error::CorruptRecord {
                path: site.lock_path().to_owned(),
            })?;
        // New, without a record, while a count is published: the lock file before it may have
        // been deleted or replaced under a process that still holds a lease on it (see
        // [`RecordFile`]).
        if new && latest.record.is_none() && fs::symlink_metadata(site.path()).is_ok() {
            tracing::warn!(
                path = %site.lock_path().display(),
                wait = ?REPLACED_LOCK_FILE_WAIT,
                "the counter's lock file is new while a count is published: waiting, with the \
                 lock held, for any process still holding the lock file it replaced to publish \
                 its count"
            );
            thread::sleep(REPLACED_LOCK_FILE_WAIT);
        }
        let recorded = latest.record.unwrap_or(Record { seq: 0, value: 0 });
        // A lock file that replaced the one before may hold an older record (restored from a
        // copy): the published file, which the previous holder brought up to the count before
        // it gave the old lock back, is read once, whatever the volume.
        let replacing = lease.lock.replacing.swap(false, Ordering::Relaxed);
        let (value, published) = published::starting_count(
            site.path(),
            latest.record.map(|r| r.value),
            lease.lock.local || replacing,
        )?;
        lease.published = published.or_else(|| {
            let last = *lease
                .lock
                .published
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            (last == latest.record).then_some(recorded.value)
        });
        lease.seq = recorded.seq;
        lease.next_slot = latest.next_slot;
        lease.value = value;
        if lease.lock.local {
            // Ahead of the record: written by someone who does not know it (crate::rollout).
            if lease.published.unwrap_or(0) > recorded.value {
                rollout::note(site.path());
                lease.rollout = true;
            } else {
                lease.rollout = rollout::recent(site.path());
            }
        }
        // No record yet: the first batch is published before it is handed out, so that a
        // process finding the lock file new (deleted under this one) sees a count is published
        // and waits for this lease to end (see [`RecordFile`]).
        lease.publish_first_batch = latest.record.is_none();
        Ok(lease)
    }

    /// Takes the lock for the operator's `set`, which repairs what [`Lease::acquire`] refuses:
    /// a corrupt published file, two torn slots.
    pub fn acquire_for_repair(site: &'a LockSite) -> Result<Lease<'a>> {
        let lock = Arc::new(site.open_record_file()?);
        let (lock, _, locked_at) =
            lock_at_path(site, lock, true, true)?.expect("waited for the lock");
        // A new lock file (the first ever, or one replacing what was moved aside) gets its
        // 8 KiB and a durable name, as when a lease creates it (SPEC §3).
        if record::allocate(&lock.file).map_err(|e| Error::io("allocate", site.lock_path(), e))? {
            atomic::sync_dir(atomic::parent_dir(site.lock_path()))?;
        }
        let latest = lock.read_slots()?.latest().unwrap_or(record::Latest {
            record: None,
            next_slot: 0,
        });
        let recorded = latest.record.unwrap_or(Record { seq: 0, value: 0 });
        Ok(Lease::new(
            site,
            lock,
            recorded,
            latest.next_slot,
            locked_at,
        ))
    }

    fn new(
        site: &'a LockSite,
        lock: Arc<RecordFile>,
        recorded: Record,
        next_slot: usize,
        locked_at: Instant,
    ) -> Lease<'a> {
        // The trust clock starts when the `flock` call returned, before the record and the
        // published file are read under the lock.
        Lease {
            site,
            lock,
            seq: recorded.seq,
            next_slot,
            value: recorded.value,
            published: None,
            rollout: false,
            publish_first_batch: false,
            taken: locked_at,
            known_held: locked_at,
            publication: None,
        }
    }

    /// Raises the count to `floor` (the next write makes it durable): for a leader that moved
    /// from a lock file that left the path to the one there, whose record may be older than
    /// the numbers it handed out from the old one.
    pub fn raise_to(&mut self, floor: u64) {
        self.value = self.value.max(floor);
    }

    /// The count: the first number the next increment hands out.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// How many more numbers the count can hand out before it reaches `u64::MAX`.
    pub fn room(&self) -> u64 {
        u64::MAX - self.value
    }

    /// How long the lock has been held.
    pub fn held(&self) -> Duration {
        self.taken.elapsed()
    }

    /// Whether the lock was last known held too long ago for the lease to be trusted: it may
    /// have been given away meanwhile (see the module docs); take it again rather than use it.
    /// Never on a local filesystem.
    pub fn stale(&self) -> bool {
        self.distrusted().is_some()
    }

    /// How long ago the lock was last known held, if too long to trust the lease now.
    fn distrusted(&self) -> Option<Duration> {
        distrusted_since(self.lock.local, self.known_held, Instant::now())
    }

    /// The error of a lease distrusted `since` after the lock was last known held.
    fn distrust(&self, since: Duration) -> Error {
        tracing::warn!(
            path = %self.site.lock_path().display(),
            ?since,
            "the counter's lock was last known held too long ago: it may have expired, so nothing is handed out from this lease"
        );
        Error::LeaseDistrusted {
            path: self.site.lock_path().to_owned(),
            trust: TRUST,
        }
    }

    /// Makes `n` more increments durable: one record write and one `fdatasync`.
    pub fn advance(&mut self, n: u64) -> Advance {
        let first = self.value;
        let Some(next) = first.checked_add(n) else {
            return Advance::Failed {
                error: Error::Overflow {
                    path: self.site.path().to_owned(),
                    value: first,
                    add: n,
                },
                skipped: None,
            };
        };
        // Whatever came since the lock was last known held counts (taking the lease, a pause
        // before this batch), not the write alone; nothing is written yet, so nothing is used.
        if let Some(since) = self.distrusted() {
            return Advance::Failed {
                error: self.distrust(since),
                skipped: None,
            };
        }
        let Some(seq) = self.seq.checked_add(1) else {
            return Advance::Failed {
                error: Error::SequenceExhausted {
                    path: self.site.lock_path().to_owned(),
                },
                skipped: None,
            };
        };
        let record = Record { seq, value: next };
        if let Err(e) = record::write_slot(&self.lock.file, self.next_slot, &record) {
            return Advance::Failed {
                error: Error::io("write", self.site.lock_path(), e),
                skipped: None,
            };
        }
        // From here the record may be visible (the page cache has it): numbers below `next`
        // are used, whatever `fdatasync` says.
        self.seq = record.seq;
        self.value = next;
        let synced = self.lock.file.sync_data();
        let answered = Instant::now();
        let error = match synced {
            Err(e) => Error::io("fdatasync", self.site.lock_path(), e),
            Ok(()) => match distrusted_since(self.lock.local, self.known_held, answered) {
                Some(since) => self.distrust(since),
                None => {
                    // Answered while the lock was still trusted: the lock was held then.
                    self.known_held = answered;
                    self.next_slot = 1 - self.next_slot;
                    // During a rollout, an old replica must find these numbers used even if
                    // this process dies before it gives the lock back; then checked once more,
                    // right before the numbers are handed out. A write of no numbers (a
                    // leader's takeover, readiness's check) hands none out: it must not use up
                    // the publication of a lease's first batch either, which would publish
                    // nothing (the count did not move past a missing file's 0).
                    let published = if n > 0 {
                        self.publish_for_rollout()
                    } else {
                        Ok(())
                    };
                    match published.map(|()| self.distrusted()) {
                        Ok(None) => {
                            self.post_publication();
                            return Advance::Durable { first };
                        }
                        Ok(Some(since)) => self.distrust(since),
                        Err(error) => error,
                    }
                }
            },
        };
        Advance::Failed {
            error,
            skipped: Some(first..next),
        }
    }

    /// Whether replicas of the previous release may be about ([`crate::rollout`]): a leader
    /// then takes turns with them (see [`crate::leadership`]).
    pub fn in_rollout(&self) -> bool {
        self.rollout
    }

    /// Where this lease's lock is taken.
    pub fn site(&self) -> &'a LockSite {
        self.site
    }

    /// The sequence number of the latest record: a leader's epoch is the one of its takeover
    /// write ([`crate::leader_block`]).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The leader block read through the locked descriptor.
    pub fn read_leader_block(&self) -> Result<(Option<LeaderBlock>, usize)> {
        self.lock.read_leader_block()
    }

    /// Writes the leader block into `slot` and makes it durable, under the same trust rules as
    /// a record write: not written when the lease is distrusted, and a write answered in time
    /// renews the lease (a heartbeat keeps an idle leader's lease trusted, and finds a fenced
    /// descriptor within a beat).
    pub fn write_leader_block(&mut self, slot: usize, block: &LeaderBlock) -> Result<()> {
        if let Some(since) = self.distrusted() {
            return Err(self.distrust(since));
        }
        let path = self.site.lock_path();
        self.lock
            .file
            .write_all_at(&block.encode(), LeaderBlock::offset(slot))
            .and_then(|()| self.lock.file.sync_data())
            .map_err(|e| Error::io("write", path, e))?;
        let answered = Instant::now();
        if let Some(since) = distrusted_since(self.lock.local, self.known_held, answered) {
            return Err(self.distrust(since));
        }
        self.known_held = answered;
        // The lease is trusted for longer now: a count whose publication waited past the
        // last post's trust is posted again (the publisher skips one already published).
        self.post_publication();
        Ok(())
    }

    /// From now on the count is published by `publication`'s thread, not by this lease (see
    /// [`crate::publisher`]): a leader's, on a network volume.
    pub fn publish_in_background(&mut self, publication: Arc<Publication>) {
        self.publication = Some(publication);
    }

    /// Whether the lock may be given back now without waiting: false while the publisher has
    /// a publication in flight. When true, nothing more is published under this lease.
    pub fn may_let_go(&self) -> bool {
        self.publication
            .as_ref()
            .is_none_or(|publication| publication.try_close())
    }

    /// Back to publishing on giving the lock back ([`Lease::release`]), once the publication
    /// in flight, if any, has ended.
    pub fn publish_in_foreground(&mut self) {
        if let Some(publication) = self.publication.take() {
            publication.close();
        }
    }

    /// The count as durable now, to the publisher if there is one.
    fn post_publication(&self) {
        if let Some(publication) = &self.publication {
            publication.post(Posted {
                record: Record {
                    seq: self.seq,
                    value: self.value,
                },
                trusted_until: self.known_held + TRUST,
                lock: self.lock.clone(),
            });
        }
    }

    /// A leader that keeps the lock while idle brings the published file up to the count, as
    /// [`Lease::release`] does before giving the lock back.
    pub fn publish_idle(&mut self) -> Result<()> {
        if self.stale() || self.publication.is_some() {
            return Ok(());
        }
        let read_first = self.lock.local;
        self.publish(read_first, false)
    }

    /// Brings `pingpong_counter.txt` up to the count, unless it is known to hold it already.
    /// `read_first`: read it first, as on a local volume (see [`Lease::read`]): if it is
    /// ahead (a hand or a replica of the previous release wrote it) the count follows, and a
    /// corrupt file is left for the operator. Without, the count, from the record, is written
    /// over it. `durable_name`: also fsync the directory, so that the new name, not only the
    /// new content, survives a power cut.
    fn publish(&mut self, read_first: bool, durable_name: bool) -> Result<()> {
        if read_first {
            let on_disk = read_counter(self.site.path())?;
            self.published = Some(on_disk);
            if on_disk >= self.value {
                self.value = on_disk;
                return Ok(());
            }
        } else if self.published == Some(self.value) {
            return Ok(());
        }
        let contents = format!("{}\n", self.value);
        if durable_name {
            atomic::replace(self.site.path(), contents.as_bytes())?;
        } else {
            atomic::replace_content_durably(self.site.path(), contents.as_bytes())?;
        }
        self.published = Some(self.value);
        *self
            .lock
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Record {
            seq: self.seq,
            value: self.value,
        });
        Ok(())
    }

    /// While replicas of the previous release may be about: the published file brought up to
    /// the count, durably (its name too: after a power cut an old replica reads it first). Read
    /// first, as when the lock is given back: a corrupt file, or a FIFO, is left for the
    /// operator, and the batch fails.
    fn publish_for_rollout(&mut self) -> Result<()> {
        if self.rollout {
            self.publish(true, true)
        } else if self.publish_first_batch {
            // Only the sign that a count exists is needed (see [`Lease::read`]), not a name
            // that survives a power cut: after one, no lease on an old lock file is under way.
            self.publish(true, false)?;
            self.publish_first_batch = false;
            Ok(())
        } else {
            Ok(())
        }
    }

    /// Start-up's and `counter get`'s reconciliation: the published file brought up to the
    /// count, durably. Read whatever the volume, so that a corrupt one is reported and left for
    /// the operator; but on a network volume with a record it does not count (SPEC §3
    /// "Readers"): one found ahead is written over with the count, as the next lease would.
    pub fn reconcile(&mut self) -> Result<()> {
        if !self.lock.local {
            self.published = Some(read_counter(self.site.path())?);
        }
        self.publish(self.lock.local, true)
    }

    /// Gives the lock back, publishing first (see the module docs); a lease that is not
    /// trusted any more is given back without publishing, since its count may be old, and one
    /// that publishes in the background ([`Lease::publish_in_background`]) leaves it to its
    /// publisher, whose publication in flight ends first.
    pub fn release(mut self) -> Result<()> {
        if self.stale() || self.publication.is_some() {
            return Ok(());
        }
        let read_first = self.lock.local;
        self.publish(read_first, false)
    }

    /// Sets the count to `value` whatever it was: the operator's repair or reset. The record
    /// first, then the published file, both durable: cut in between, the published file is
    /// behind a raised count (as after any increment), and a lowered count is not lowered yet
    /// where the published file counts too (a local volume); `set` reports the failure either
    /// way.
    ///
    /// When the sequence cannot go on (see [`Error::SequenceExhausted`]), both slots are
    /// rewritten on a fresh one, 1 then 2, so that the repair always wins: the slot not holding
    /// the latest record first, made durable, then the other; cut during the second write,
    /// which tears only its own slot, the first already holds `value`.
    pub fn set(&mut self, value: u64) -> Result<()> {
        let writes = match self.seq.checked_add(1) {
            Some(seq) => vec![(self.next_slot, seq)],
            None => vec![(self.next_slot, 1), (1 - self.next_slot, 2)],
        };
        for &(slot, seq) in &writes {
            record::write_slot(&self.lock.file, slot, &Record { seq, value })
                .and_then(|()| self.lock.file.sync_data())
                .map_err(|e| Error::io("write", self.site.lock_path(), e))?;
        }
        let &(last, seq) = writes.last().expect("at least one write");
        self.seq = seq;
        self.next_slot = 1 - last;
        self.value = value;
        atomic::replace(self.site.path(), format!("{value}\n").as_bytes())?;
        self.published = Some(value);
        *self
            .lock
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Record { seq, value });
        Ok(())
    }
}

#[cfg(test)]
impl Lease<'_> {
    /// As if this process had stalled for `by` since it last knew the lock held: descheduled,
    /// frozen, or waiting on a volume that did not answer.
    fn stall(&mut self, by: Duration) {
        let past = |at: Instant| {
            at.checked_sub(by)
                .expect("the clock is older than the stall")
        };
        self.taken = past(self.taken);
        self.known_held = past(self.known_held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::published::COUNTER_FILE;

    fn site(dir: &tempfile::TempDir, kind: VolumeKind) -> LockSite {
        LockSite::new(CounterPaths::new(dir.path().join(COUNTER_FILE)), kind)
    }

    fn take(site: &LockSite) -> Lease<'_> {
        let lock = Arc::new(site.open_record_file().unwrap());
        Lease::acquire(site, lock).unwrap().0
    }

    #[test]
    fn the_trust_window_runs_from_the_moment_the_lock_was_last_known_held() {
        let held = Instant::now();
        let distrusted = |local, after| distrusted_since(local, held, held + after);
        assert_eq!(distrusted(false, TRUST), None);
        let past = TRUST + Duration::from_millis(1);
        assert_eq!(distrusted(false, past), Some(past));
        assert_eq!(distrusted(true, past), None);
        assert_eq!(distrusted(true, Duration::from_secs(3600)), None);
    }

    #[test]
    fn on_a_network_volume_a_stall_past_the_trust_window_before_a_write_uses_no_number() {
        let dir = tempfile::tempdir().unwrap();
        let site = site(&dir, VolumeKind::Network);
        let mut lease = take(&site);
        // Between taking the lock (or the last write) and this write: nothing was written, so
        // nothing is skipped either.
        lease.stall(TRUST + Duration::from_millis(1));
        match lease.advance(3) {
            Advance::Failed {
                error: Error::LeaseDistrusted { .. },
                skipped: None,
            } => {}
            other => panic!("expected the lease distrusted before writing, got {other:?}"),
        }
        drop(lease);
        let slots = site.open_record_file().unwrap().read_slots().unwrap();
        assert_eq!(slots.latest().unwrap().record, None);
        let mut again = take(&site);
        assert!(matches!(again.advance(1), Advance::Durable { first: 0 }));
    }

    #[test]
    fn on_a_network_volume_a_stall_within_the_trust_window_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let site = site(&dir, VolumeKind::Network);
        let mut lease = take(&site);
        // Small, so that a loaded machine's own pauses before the writes below stay within it.
        lease.stall(Duration::from_millis(100));
        assert!(!lease.stale());
        assert!(matches!(lease.advance(2), Advance::Durable { first: 0 }));
        assert!(matches!(lease.advance(1), Advance::Durable { first: 2 }));
    }

    #[test]
    fn a_local_lock_cannot_expire_so_a_stall_distrusts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let site = site(&dir, VolumeKind::Local);
        let mut lease = take(&site);
        lease.stall(TRUST * 5);
        assert!(!lease.stale());
        assert!(matches!(lease.advance(2), Advance::Durable { first: 0 }));
        lease.stall(TRUST * 5);
        lease.release().unwrap();
        assert_eq!(
            std::fs::read_to_string(site.path()).unwrap(),
            "2\n",
            "published when the lock is given back"
        );
    }
}
