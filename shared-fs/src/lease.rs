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
//! not, the lease distrusts itself: a durable write that took longer than [`TRUST`], or a lease
//! left unused for longer than that, may have outlived the lock; its numbers are not handed
//! out, nothing is published from it, and the lock is taken again.

use std::{
    fs::{File, OpenOptions, TryLockError},
    ops::Range,
    time::{Duration, Instant},
};

use crate::{
    atomic,
    counter::{CounterFile, read_counter},
    error::{Error, Result},
    read::open_regular,
    record::{self, Record},
};

/// The longest a busy process keeps the lock: another replica, a `counter set` or a replica of
/// the previous release waits at most this long for it, and `pingpong_counter.txt` trails the
/// count by at most this much while the process is busy.
pub const MAX_HOLD: Duration = Duration::from_millis(20);

/// The longest a durable write, or a pause between two uses of the lease, may take before the
/// lease is not trusted any more. Far below the lock timeouts of the network filesystems (tens
/// of seconds), far above a healthy `fdatasync` (a millisecond).
pub const TRUST: Duration = Duration::from_secs(2);

/// The counter's lock, held, with the count it protects.
#[derive(Debug)]
pub struct Lease<'a> {
    counter: &'a CounterFile,
    /// The lock file: locked, and the record's home.
    file: File,
    /// The sequence number of the latest record, 0 if none yet.
    seq: u64,
    /// Where the next record goes: never the slot of the latest durable one.
    next_slot: usize,
    /// The count: every number below it has been used.
    value: u64,
    /// What `pingpong_counter.txt` holds, as last read or written.
    published: u64,
    /// When the lock was taken, and when the lease was last used successfully.
    taken: Instant,
    used: Instant,
}

/// What [`Lease::advance`] did.
#[derive(Debug)]
pub enum Advance {
    /// Durable: the numbers `first .. first + n` are the caller's to hand out.
    Durable { first: u64 },
    /// Not durable, and no number may be handed out. `skipped` are numbers that may have
    /// become visible anyway (the record was written, its `fdatasync` failed, or the write
    /// took so long the lease is not trusted): they are never handed out, so they are skipped.
    Failed {
        error: Error,
        skipped: Option<Range<u64>>,
    },
}

impl<'a> Lease<'a> {
    /// Takes the lock, waiting for other holders, and reads the count. `contended` tells
    /// whether another process held the lock when this one asked.
    pub fn acquire(counter: &'a CounterFile) -> Result<(Lease<'a>, bool)> {
        let file = counter.open_lock_file()?;
        let contended = match file.try_lock() {
            Ok(()) => false,
            Err(TryLockError::WouldBlock) => {
                file.lock()
                    .map_err(|e| Error::io("lock", counter.lock_path(), e))?;
                true
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", counter.lock_path(), e)),
        };
        Ok((Lease::read(counter, file)?, contended))
    }

    /// Takes the lock only if nobody holds it.
    pub fn try_acquire(counter: &'a CounterFile) -> Result<Option<Lease<'a>>> {
        let file = counter.open_lock_file()?;
        match file.try_lock() {
            Ok(()) => Lease::read(counter, file).map(Some),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", counter.lock_path(), e)),
        }
    }

    /// With the lock held: the record through the locked descriptor, and the published file.
    fn read(counter: &'a CounterFile, file: File) -> Result<Lease<'a>> {
        if record::allocate(&file).map_err(|e| Error::io("allocate", counter.lock_path(), e))? {
            // The lock file may be new: its name must be durable before anything counts on
            // what it holds, or a power cut could take the record with the name.
            atomic::sync_dir(atomic::parent_dir(counter.lock_path()))?;
        }
        let latest = counter
            .read_slots(&file, true)?
            .latest()
            .map_err(|record::BothTorn| Error::CorruptRecord {
                path: counter.lock_path().to_owned(),
            })?;
        let published = read_counter(counter.path())?;
        let recorded = latest.record.unwrap_or(Record { seq: 0, value: 0 });
        Ok(Lease::new(
            counter,
            file,
            recorded,
            latest.next_slot,
            recorded.value.max(published),
            published,
        ))
    }

    /// Takes the lock for the operator's `set`, which repairs what [`Lease::acquire`] refuses:
    /// a corrupt published file, two torn slots.
    pub fn acquire_for_repair(counter: &'a CounterFile) -> Result<Lease<'a>> {
        let file = counter.open_lock_file()?;
        file.lock()
            .map_err(|e| Error::io("lock", counter.lock_path(), e))?;
        let latest = counter
            .read_slots(&file, true)?
            .latest()
            .unwrap_or(record::Latest {
                record: None,
                next_slot: 0,
            });
        let recorded = latest.record.unwrap_or(Record { seq: 0, value: 0 });
        Ok(Lease::new(
            counter,
            file,
            recorded,
            latest.next_slot,
            recorded.value,
            u64::MAX,
        ))
    }

    fn new(
        counter: &'a CounterFile,
        file: File,
        recorded: Record,
        next_slot: usize,
        value: u64,
        published: u64,
    ) -> Lease<'a> {
        let now = Instant::now();
        Lease {
            counter,
            file,
            seq: recorded.seq,
            next_slot,
            value,
            published,
            taken: now,
            used: now,
        }
    }

    /// The count: the first number the next increment hands out.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// How long the lock has been held.
    pub fn held(&self) -> Duration {
        self.taken.elapsed()
    }

    /// Whether the lease has gone unused for longer than [`TRUST`]: the lock may have been
    /// given away meanwhile (see the module docs); take it again rather than use it.
    pub fn stale(&self) -> bool {
        self.used.elapsed() > TRUST
    }

    /// Makes `n` more increments durable: one record write and one `fdatasync`.
    pub fn advance(&mut self, n: u64) -> Advance {
        let first = self.value;
        let Some(next) = first.checked_add(n) else {
            return Advance::Failed {
                error: Error::Overflow {
                    path: self.counter.path().to_owned(),
                    value: first,
                    add: n,
                },
                skipped: None,
            };
        };
        let record = Record {
            seq: self.seq + 1,
            value: next,
        };
        let started = Instant::now();
        if let Err(e) = record::write_slot(&self.file, self.next_slot, &record) {
            return Advance::Failed {
                error: Error::io("write", self.counter.lock_path(), e),
                skipped: None,
            };
        }
        // From here the record may be visible (the page cache has it): numbers below `next`
        // are used, whatever `fdatasync` says.
        self.seq = record.seq;
        self.value = next;
        let synced = self.file.sync_data();
        let took = started.elapsed();
        let error = match synced {
            Ok(()) if took <= TRUST => {
                self.next_slot = 1 - self.next_slot;
                self.used = Instant::now();
                return Advance::Durable { first };
            }
            Ok(()) => Error::LeaseDistrusted {
                path: self.counter.lock_path().to_owned(),
                took,
            },
            Err(e) => Error::io("fdatasync", self.counter.lock_path(), e),
        };
        Advance::Failed {
            error,
            skipped: Some(first..next),
        }
    }

    /// Brings `pingpong_counter.txt` up to the count, unless it already is (or is ahead: a
    /// hand or a replica of the previous release wrote it, and the count follows). A corrupt
    /// file is left for the operator. `durable_name`: also fsync the directory, so that the
    /// new name, not only the new content, survives a power cut.
    pub fn publish(&mut self, durable_name: bool) -> Result<()> {
        let on_disk = read_counter(self.counter.path())?;
        if on_disk >= self.value {
            self.value = on_disk;
            self.published = on_disk;
            return Ok(());
        }
        let contents = format!("{}\n", self.value);
        if durable_name {
            atomic::replace(self.counter.path(), contents.as_bytes())?;
        } else {
            atomic::replace_content_durably(self.counter.path(), contents.as_bytes())?;
        }
        self.published = self.value;
        Ok(())
    }

    /// Whether `pingpong_counter.txt` holds the count.
    pub fn is_published(&self) -> bool {
        self.published == self.value
    }

    /// Gives the lock back, publishing first (see the module docs); a lease that is not
    /// trusted any more is given back without publishing, since its count may be old.
    pub fn release(mut self) -> Result<()> {
        if self.stale() {
            return Ok(());
        }
        self.publish(false)
    }

    /// Sets the count to `value` whatever it was: the operator's repair or reset. The
    /// published file first, then the record, both durable: if either fails, the count is
    /// what it was (the larger of the two) or `value`, never a third thing.
    pub fn set(&mut self, value: u64) -> Result<()> {
        atomic::replace(self.counter.path(), format!("{value}\n").as_bytes())?;
        self.published = value;
        let record = Record {
            seq: self.seq + 1,
            value,
        };
        record::write_slot(&self.file, self.next_slot, &record)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("write", self.counter.lock_path(), e))?;
        self.seq = record.seq;
        self.next_slot = 1 - self.next_slot;
        self.value = value;
        Ok(())
    }
}

/// Opens the lock file for the record's reader, who takes no lock: for writing too where the
/// volume allows it (a network client's cache is dropped through a writable descriptor, see
/// [`crate::caches`]), else for reading only. With whether it is writable.
pub(crate) fn open_for_reading(counter: &CounterFile) -> Result<Option<(File, bool)>> {
    let path = counter.lock_path();
    match open_regular(path, OpenOptions::new().read(true).write(true)) {
        Ok(file) => Ok(file.map(|f| (f, true))),
        Err(Error::Io { error, .. })
            if matches!(
                error.raw_os_error(),
                Some(libc::EROFS | libc::EACCES | libc::EPERM)
            ) =>
        {
            Ok(open_regular(path, OpenOptions::new().read(true))?.map(|f| (f, false)))
        }
        Err(error) => Err(error),
    }
}
