//! The lock file `pingpong_counter.txt.lock`, opened ([`RecordFile`]): the descriptor the
//! counter's lock is taken on and its durable record ([`crate::record`]) is written through,
//! kept open from lease to lease; and the record read from it past the caches a network
//! filesystem's client keeps.
//!
//! # Reading past a network client's caches
//!
//! On a local filesystem every process on the node shares one page cache, which is the truth:
//! a `pread` sees the last `pwrite`, whoever made it. A network filesystem's FUSE client caches
//! on its own, per mount, and a flock is no coherence point for those caches (measured on two
//! mounts of one volume, `test/rwx/FACTS.md` §2): on GlusterFS a fresh `open` + `pread` of the
//! record returned the value from before another mount's write 20 times in 20 (quick-read, and
//! the kernel page cache kept across opens), and a descriptor opened before the write too; on
//! CephFS a descriptor opened before another mount's write was stale 19 times in 20 for a
//! larger file. A replica that read a stale record under the lock would hand out numbers
//! another replica already had.
//!
//! So where the filesystem is not known to be local ([`crate::volume::is_local`], from `fstatfs`),
//! the record is read under the lock through a descriptor opened with `O_DIRECT`, which skips the
//! kernel's page cache, after an `fallocate(FALLOC_FL_KEEP_SIZE)` over blocks the file already has:
//! a no-op that changes nothing on disk but makes GlusterFS's quick-read drop its copy (with it, 0
//! stale reads in 20 on GlusterFS with its default options, where `O_DIRECT` alone was not enough).
//! Where `O_DIRECT` is refused (`EINVAL`: tmpfs and some FUSE filesystems) the read is buffered;
//! where `fallocate` is not supported it is skipped. Both cost a round trip to the server, once per
//! lease, not per increment.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, ErrorKind},
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, atomic::AtomicBool},
    time::{Duration, Instant},
};

use rustix::fs::{AtFlags, FallocateFlags, StatxFlags, fallocate};

use crate::{
    error::{Error, Result},
    leader_block::{self, LeaderBlock},
    read::{open_lock_file, open_regular},
    record::{self, Record, Slots},
    volume::{CounterPaths, VolumeKind},
};

/// How often a reader checks that the lock file it keeps open is still the one at the path.
pub const READER_RECHECK: Duration = Duration::from_secs(1);

/// The lock file, opened once and kept open for many leases: opening a file by name costs a
/// lookup, and on CephFS an open by name in a directory another mount reads in waited up to
/// 5 s for the metadata server's tick (`test/rwx/FACTS.md` §8), where calls on an open
/// descriptor did not. Also holds a second descriptor opened with `O_DIRECT`, for reading the
/// record past a network client's caches (see the module docs), and whether the filesystem is
/// local. A writer drops it after an I/O error (a fenced descriptor answers nothing but errors)
/// and opens it again.
///
/// A flock locks a file, not a name: when the lock file is deleted (an operator's "reset") or
/// another file is renamed over it (a restore with `mv`), a process that kept it open would go
/// on locking a file nobody else can reach, while any process that opens the path locks
/// another, and both would hold "the lock". So every lease, once the lock is held, checks that
/// the locked file is still the one at the path (`fstat` of the descriptor against `stat` of
/// the path), and if not gives it up and takes the lock on the file at the path instead; readers
/// check once a [`READER_RECHECK`]. A process that moves over this way has held the old lock, so
/// every holder of the old file has published its count, and the new file's first holder reads it.
/// One that opens the path afresh and finds the file new (no record yet) while a count is published
/// cannot know whether a process still holds a lease on the old file with numbers not yet
/// published: it waits [`crate::lease::REPLACED_LOCK_FILE_WAIT`], holding the lock, before it reads
/// the count. What remains: a file with a record renamed over the lock file (a restore) while a
/// lease is under way on the old one, and a process opening the path afresh (a start,
/// `counter get`) before that lease ends, at most [`crate::lease::MAX_HOLD`] later: nothing
/// tells that process to wait, and the numbers of that lease not yet published can be handed
/// out twice.
#[derive(Debug)]
pub struct RecordFile {
    /// The lock file's path: where it is checked to still be.
    path: PathBuf,
    /// The descriptor the lock is taken on, and the record written through.
    pub(crate) file: File,
    /// Whether `file` may be written (readers open it read-only on a read-only volume).
    writable: bool,
    /// `O_DIRECT`, where the filesystem is not local and takes it.
    direct: Option<File>,
    /// Whether the filesystem is one node's ([`crate::volume::is_local`]).
    pub(crate) local: bool,
    /// The record whose count this process last published under this lock file: where the
    /// published file is not read under the lock (a network filesystem), a lease that finds
    /// the same record (the same sequence number: nobody wrote one since) skips publishing it
    /// again. Never a floor for the count: a record written since, by an operator's `set`
    /// too, may be lower.
    pub(crate) published: Mutex<Option<Record>>,
    /// When a reader last checked that this is still the lock file at the path.
    checked: Mutex<Instant>,
    /// Opened because the lock file before it left the path: until a lease has read it, its
    /// record may be older than the count (a restore from an older copy).
    pub(crate) replacing: AtomicBool,
    /// Found no longer at the path by a check off the writer's thread ([`crate::publisher`]).
    pub(crate) left_path: AtomicBool,
}

impl RecordFile {
    /// Opens (creating it if needed) the lock file for writing; anything but a regular file
    /// there is [`Error::NotRegular`], and the open never blocks.
    pub fn open(paths: &CounterPaths, kind: VolumeKind) -> Result<RecordFile> {
        RecordFile::with(paths.lock(), kind, open_lock_file(paths.lock())?, true)
    }

    /// Opens the lock file for a reader, who takes no lock: for writing too where the volume
    /// allows it (a network client's cache is dropped through a writable descriptor), else
    /// read-only. `None` when there is no lock file, so no record yet.
    pub fn open_for_reading(paths: &CounterPaths, kind: VolumeKind) -> Result<Option<RecordFile>> {
        let path = paths.lock();
        let (file, writable) = match open_regular(path, OpenOptions::new().read(true).write(true)) {
            Ok(file) => (file, true),
            Err(Error::Io { error, .. })
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EROFS | libc::EACCES | libc::EPERM)
                ) =>
            {
                (open_regular(path, OpenOptions::new().read(true))?, false)
            }
            Err(error) => return Err(error),
        };
        file.map(|file| RecordFile::with(path, kind, file, writable))
            .transpose()
    }

    fn with(path: &Path, kind: VolumeKind, file: File, writable: bool) -> Result<RecordFile> {
        let local = kind.is_local(&file);
        let direct = if local {
            None
        } else {
            open_direct(path).map_err(|e| Error::io("open", path, e))?
        };
        Ok(RecordFile {
            path: path.to_owned(),
            file,
            writable,
            direct,
            local,
            published: Mutex::new(None),
            checked: Mutex::new(Instant::now()),
            replacing: AtomicBool::new(false),
            left_path: AtomicBool::new(false),
        })
    }

    /// Whether the file this descriptor is open on is still the one at the lock file's path:
    /// false once it was deleted or another file was renamed over it.
    pub(crate) fn is_at_path(&self) -> Result<bool> {
        let path = self.path.as_path();
        let held = self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?;
        match fs::symlink_metadata(path) {
            Ok(at_path) => Ok(at_path.dev() == held.dev() && at_path.ino() == held.ino()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }

    /// Whether the file this descriptor is open on has no name left (deleted, or another file
    /// renamed over it): [`RecordFile::is_at_path`] without looking the name up, asked of the
    /// file itself (its link count, fetched afresh past the kernel's attribute cache). On
    /// CephFS a lookup by name in the directory another mount reads in can wait for the MDS's
    /// tick (`test/rwx/FACTS.md` §8); a leader's courtesy turn, every second, asks this instead,
    /// and the lookup runs on the publisher's thread ([`crate::publisher`]). What this misses,
    /// a lock file renamed to another name, that lookup finds.
    pub(crate) fn is_unlinked(&self) -> Result<bool> {
        let stat = rustix::fs::statx(
            &self.file,
            "",
            AtFlags::EMPTY_PATH | AtFlags::STATX_FORCE_SYNC,
            StatxFlags::NLINK,
        )
        .map_err(|e| Error::io("stat", &self.path, e.into()))?;
        Ok(stat.stx_nlink == 0)
    }

    /// Whether this file is known to have left the path without a lookup on the caller's
    /// thread: it has no name left ([`RecordFile::is_unlinked`]), or the publisher's lookup
    /// found it moved away ([`RecordFile::left_path`]).
    pub(crate) fn left_path_unlooked(&self) -> Result<bool> {
        if self.left_path.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(true);
        }
        self.is_unlinked()
    }

    /// For a reader that keeps this descriptor: whether to open the lock file again, checked
    /// at most once a [`READER_RECHECK`]. Yes when the file is no longer the one at the path,
    /// and when this descriptor is read-only but the volume takes a writable open again: a
    /// network volume can be read-only for a while (GlusterFS while it lacks quorum), and a
    /// read-only descriptor kept for good would keep readiness saying so and skip what drops
    /// a network client's cached copy of the record (see the module docs).
    pub fn outdated_for_reading(&self) -> bool {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            if checked.elapsed() < READER_RECHECK {
                return false;
            }
            *checked = Instant::now();
        }
        // An error here is the next read's to report, through a descriptor opened again.
        if !matches!(self.is_at_path(), Ok(true)) {
            return true;
        }
        !self.writable
            && open_regular(&self.path, OpenOptions::new().read(true).write(true))
                .is_ok_and(|file| file.is_some())
    }

    /// Whether the filesystem is local (see [`crate::volume::is_local`]).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Whether the volume let the file be opened for writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Both slots of the record: through the page cache on a local filesystem, past the
    /// client's caches on any other.
    pub fn read_slots(&self) -> Result<Slots> {
        let slots = if self.local {
            record::read_slots(&self.file)
        } else {
            read_slots_uncached(
                self.writable.then_some(&self.file),
                self.direct.as_ref().unwrap_or(&self.file),
            )
        };
        slots.map_err(|e| Error::io("read", &self.path, e))
    }
}

impl RecordFile {
    /// The leader block ([`crate::leader_block`]): its latest valid slot and the slot to write
    /// next, read as the record is (past a network client's caches).
    pub fn read_leader_block(&self) -> Result<(Option<LeaderBlock>, usize)> {
        let read = || -> io::Result<(Option<LeaderBlock>, usize)> {
            let mut buffer = Box::new(Aligned([0; leader_block::REGION_BYTES]));
            if !self.local
                && let Some(file) = self.writable.then_some(&self.file)
            {
                drop_cached(
                    file,
                    leader_block::OFFSET,
                    leader_block::REGION_BYTES as u64,
                )?;
            }
            let reader = if self.local {
                &self.file
            } else {
                self.direct.as_ref().unwrap_or(&self.file)
            };
            let n = read_once(reader, &mut buffer.0, leader_block::OFFSET)?;
            Ok(leader_block::latest(&buffer.0[..n]))
        };
        read().map_err(|e| Error::io("read", &self.path, e))
    }
}

/// The lock file at `path` opened with `O_DIRECT`, for [`read_slots_uncached`]; `None` where
/// the filesystem refuses `O_DIRECT` (`EINVAL`: tmpfs, some FUSE filesystems).
pub fn open_direct(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT | libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Both slots of the record, read past the client's caches: the `fallocate` through
/// `writable` (any writable descriptor of the file; none on a read-only volume), then one read
/// through `reader` (the `O_DIRECT` descriptor from [`open_direct`], or a plain one where there
/// is none).
pub fn read_slots_uncached(writable: Option<&File>, reader: &File) -> io::Result<Slots> {
    if let Some(file) = writable {
        drop_cached(file, 0, record::FILE_BYTES)?;
    }
    read_direct(reader)
}

/// The `fallocate` (keeping the size) that makes a network client drop what it caches of
/// `len` bytes at `offset` (GlusterFS: see the module docs).
fn drop_cached(file: &File, offset: u64, len: u64) -> io::Result<()> {
    match fallocate(file, FallocateFlags::KEEP_SIZE, offset, len) {
        Ok(()) => Ok(()),
        // Not every filesystem has it (FUSE daemons without it answer ENOSYS, which the
        // kernel turns into EOPNOTSUPP); the O_DIRECT read is still the better read.
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `O_DIRECT` wants the buffer, the offset and the length aligned to the device's block: 4 KiB
/// covers every block size in use.
#[repr(align(4096))]
struct Aligned<const N: usize>([u8; N]);

/// One read of the whole file into an aligned buffer: a direct read shorter than asked for
/// ends at the end of the file, and a second one from an unaligned offset would be refused.
fn read_direct(file: &File) -> io::Result<Slots> {
    let mut buffer = Box::new(Aligned([0; record::FILE_BYTES as usize]));
    let n = read_once(file, &mut buffer.0, 0)?;
    Ok(record::decode_slots(&buffer.0[..n]))
}

/// One read at `offset`, retried only when interrupted.
fn read_once(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buffer, offset) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, Slot};

    #[test]
    fn a_local_directory_is_local_and_an_uncached_read_sees_what_a_buffered_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        // The workspace's temporary directories are on a local filesystem here (ext4 or tmpfs).
        assert!(crate::volume::is_local(&file));
        record::allocate(&file).unwrap();
        record::write_slot(&file, 1, &Record { seq: 3, value: 9 }).unwrap();
        // ext4 takes O_DIRECT; tmpfs may not, and then the read is a plain one.
        let direct = open_direct(&path).unwrap();
        let reader = direct.as_ref().unwrap_or(&file);
        let uncached = read_slots_uncached(Some(&file), reader).unwrap();
        assert_eq!(uncached, record::read_slots(&file).unwrap());
        assert_eq!(
            uncached.0,
            [Slot::Empty, Slot::Valid(Record { seq: 3, value: 9 })]
        );
        assert_eq!(read_slots_uncached(None, reader).unwrap(), uncached);
    }
}
