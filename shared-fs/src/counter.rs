//! [`CounterFile`], the counter as the one handle readers, the operator's commands and the
//! writer use (SPEC §3): reading the count without the lock, taking a lease, `set`, reconciling,
//! the readiness probe.
//!
//! Two files hold it. The **durable record** ([`crate::record`]) in the lock file
//! `pingpong_counter.txt.lock` is where an increment becomes durable: one in-place write and one
//! `fdatasync`, under the lock ([`crate::lease`]). The **published file** `pingpong_counter.txt`
//! is what users, `cat` and the previous release know: the count in decimal ASCII followed by
//! `\n`, replaced atomically (never written in place), brought up to the record before the lock
//! is given back. Readers in the workspace take the larger of the two ([`CounterFile::read`]).
//!
//! The published file's format is [`crate::published`]'s.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use crate::{
    atomic,
    error::{Error, Result},
    lease::{Advance, Lease, LockSite, LockWait},
    published::{COUNTER_FILE, starting_count},
    read::open_lock_file,
    record,
    record_file::RecordFile,
    repair::{self, MovedAside},
    rollout,
    volume::{CounterPaths, VolumeKind},
};

/// The counter: the durable record in its lock file, and the published file, for readers and
/// writers.
#[derive(Debug, Clone)]
pub struct CounterFile {
    /// Its files, its volume, who waits for its lock: what its leases go by.
    site: LockSite,
    /// The lock file as the readers of this handle (and its clones) keep it open (see
    /// [`RecordFile`]); opened at the first read, dropped after an error.
    reader: Arc<Mutex<Option<Arc<RecordFile>>>>,
}

impl CounterFile {
    /// The counter published at `path`, locked through `<path>.lock`, which holds the record.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CounterFile {
            site: LockSite::new(CounterPaths::new(path), VolumeKind::Auto),
            reader: Arc::default(),
        }
    }

    /// The same counter, on a volume of the given kind rather than the one its filesystem
    /// type suggests (`VOLUME_KIND`).
    pub fn with_volume_kind(mut self, kind: VolumeKind) -> Self {
        self.site = self.site.with_volume_kind(kind);
        self
    }

    /// What the volume is taken to be.
    pub fn volume_kind(&self) -> VolumeKind {
        self.site.volume_kind()
    }

    /// Whether a lease taken through this handle or a clone of it (the writer's, start-up's
    /// reconciliation included) is waiting for the lock, and for how long.
    pub fn lock_wait(&self) -> &LockWait {
        self.site.lock_wait()
    }

    /// What its leases go by (see [`Lease::acquire`]).
    pub fn lock_site(&self) -> &LockSite {
        &self.site
    }

    /// The counter [`COUNTER_FILE`] in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join(COUNTER_FILE))
    }

    /// Both files' paths.
    pub fn paths(&self) -> &CounterPaths {
        self.site.paths()
    }

    /// `pingpong_counter.txt`: the published count.
    pub fn path(&self) -> &Path {
        self.site.path()
    }

    /// `pingpong_counter.txt.lock`: the lock, and the durable record.
    pub fn lock_path(&self) -> &Path {
        self.site.lock_path()
    }

    /// The count as every reader in the workspace sees it, without a lock: the larger of the
    /// durable record and the published file. The record is ahead while a busy holder has not
    /// published yet, or after a power cut; the file is ahead when a replica of the previous
    /// release wrote it. So a reader never sees the count go back, also across power cuts.
    ///
    /// On a network filesystem the record stands alone once there is one (the previous release
    /// never ran there, see [`Lease`]): opening the published file by name can stall for
    /// seconds on CephFS and answer `ESTALE` for a second on GlusterFS, while the lock file,
    /// never replaced, stays open.
    pub fn read(&self) -> Result<u64> {
        let (recorded, local) = self.read_record_and_place()?;
        starting_count(self.path(), recorded, local).map(|(count, _)| count)
    }

    /// The count in the durable record alone, without a lock; `None` before the first record.
    pub fn read_record(&self) -> Result<Option<u64>> {
        self.read_record_and_place().map(|(recorded, _)| recorded)
    }

    /// The record without a lock, and whether the volume is local. A slot torn by a write in
    /// flight is read again: a torn slot is the one being written, and the other one holds the
    /// record before it.
    fn read_record_and_place(&self) -> Result<(Option<u64>, bool)> {
        let mut cached = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        // Deleted or replaced at the path: the record is in the file at the path now.
        if cached
            .as_ref()
            .is_some_and(|lock| lock.outdated_for_reading())
        {
            *cached = None;
        }
        if cached.is_none() {
            match RecordFile::open_for_reading(self.paths(), self.volume_kind())? {
                Some(opened) => *cached = Some(Arc::new(opened)),
                None => return Ok((None, true)),
            }
        }
        let lock = cached.clone().expect("opened above");
        drop(cached);
        let mut tries = 0;
        loop {
            let slots = match lock.read_slots() {
                Ok(slots) => slots,
                Err(error) => {
                    // Opened again at the next read: a descriptor may stay broken for good
                    // (fenced by a network filesystem, or the file was replaced).
                    *self.reader.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Err(error);
                }
            };
            tries += 1;
            if slots.torn() && tries < 3 {
                continue;
            }
            let latest = slots
                .latest()
                .map_err(|record::BothTorn| Error::CorruptRecord {
                    path: self.lock_path().to_owned(),
                })?;
            return Ok((latest.record.map(|r| r.value), lock.is_local()));
        }
    }

    /// Under the lock: makes `n` increments durable and returns the first number, publishing
    /// before the lock is given back. One lock, one record write and one publication per call:
    /// what a service without group commit would do.
    pub fn add(&self, n: u64) -> Result<u64> {
        let (mut lease, _) = self.acquire()?;
        match lease.advance(n) {
            Advance::Durable { first } => {
                lease.release()?;
                Ok(first)
            }
            Advance::Failed { error, .. } => Err(error),
        }
    }

    /// Takes the lock, waiting for any other holder, and reads the count under it.
    pub fn lock(&self) -> Result<Lease<'_>> {
        self.acquire().map(|(lease, _)| lease)
    }

    /// Opens the lock file and takes the lock on it, waiting for any other holder; with
    /// whether another process held it.
    fn acquire(&self) -> Result<(Lease<'_>, bool)> {
        Lease::acquire(&self.site, Arc::new(self.site.open_record_file()?))
    }

    /// Creates the directory that holds the counter, if missing.
    pub fn create_dir(&self) -> Result<()> {
        let dir = atomic::parent_dir(self.path());
        fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
    }

    /// Under the lock, durably sets the count to `value` whatever the files held: the
    /// operator's repair or reset. Both the record and the published file. What stands where
    /// the lock file, the published file or the rollout marker should be and is not a regular
    /// file is moved aside first ([`crate::repair`]); returns what was.
    ///
    /// The lock file before the lock is taken: nobody holds a lock on what is not a regular
    /// file (the service refuses to open one), and a new lock file replaces it.
    pub fn set(&self, value: u64) -> Result<Vec<MovedAside>> {
        let mut moved: Vec<MovedAside> = repair::move_aside_unless_regular(self.lock_path())?
            .into_iter()
            .collect();
        let mut lease = Lease::acquire_for_repair(&self.site)?;
        for path in [self.path().to_owned(), rollout::marker_path(self.path())] {
            moved.extend(repair::move_aside_unless_regular(&path)?);
        }
        lease.set(value)?;
        Ok(moved)
    }

    /// Under the lock: removes the temporary files a crashed writer left, and makes the
    /// published file match the record, durably (after a crash or a power cut the record may
    /// be ahead). Returns the count. What start-up and `counter get` do.
    pub fn reconcile(&self) -> Result<u64> {
        let mut lease = self.lock()?;
        atomic::sweep_temp_files(self.path())?;
        lease.reconcile()?;
        Ok(lease.value())
    }

    /// `counter get`: the count, after [`CounterFile::reconcile`] if the lock is free at once;
    /// otherwise as read without the lock (whoever holds it publishes when it gives it back).
    ///
    /// Reconciling is best effort: a read-only or full volume is when an operator asks most.
    /// Where the volume refuses it (the lock file cannot be opened for writing, the published
    /// file cannot be replaced), the count is still the one the next lease starts from (the
    /// same rule, [`starting_count`]), and why it was not reconciled comes back beside it. A
    /// count that cannot be read (a corrupt file, a corrupt record) is the error.
    pub fn reconcile_if_free(&self) -> Result<(u64, Option<Error>)> {
        // No lock file, no record: nothing to reconcile, and a reader creates nothing.
        if self.read_record()?.is_none() {
            return Ok((self.read()?, None));
        }
        let taken = self
            .site
            .open_record_file()
            .and_then(|lock| Lease::try_acquire(&self.site, Arc::new(lock)));
        match taken {
            Ok(Some(mut lease)) => {
                let count = lease.value();
                match lease.reconcile() {
                    Ok(()) => Ok((lease.value(), None)),
                    Err(error) => Ok((count, Some(error))),
                }
            }
            Ok(None) => Ok((self.read()?, None)),
            Err(error) if !error.is_corrupt() => Ok((self.read()?, Some(error))),
            Err(error) => Err(error),
        }
    }

    /// Whether an increment could succeed now: the counter parses, can still advance, and the
    /// volume accepts writes (opening the lock file for writing fails on a read-only volume).
    /// For `/readyz`; it takes no lock and writes nothing.
    ///
    /// On a network filesystem the lock file is not opened by name for it (that open can wait
    /// seconds on CephFS, and the kubelet probes every few seconds): the readers' descriptor,
    /// kept open, tells whether the volume let it be opened for writing, and a volume that
    /// turns read-only later fails the next durable write, which readiness reports too.
    pub fn probe(&self) -> Result<u64> {
        let value = self.read()?;
        if value == u64::MAX {
            return Err(Error::Overflow {
                path: self.path().to_owned(),
                value,
                add: 1,
            });
        }
        let kept = self
            .reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match kept {
            Some(lock) if !lock.is_local() => {
                if !lock.is_writable() {
                    return Err(Error::io(
                        "open lock file",
                        self.lock_path(),
                        std::io::Error::from_raw_os_error(libc::EROFS),
                    ));
                }
            }
            _ => {
                open_lock_file(self.lock_path())?;
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_is_a_sibling() {
        let c = CounterFile::new("/v/pingpong_counter.txt");
        assert_eq!(c.lock_path(), Path::new("/v/pingpong_counter.txt.lock"));
    }
}
