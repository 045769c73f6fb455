//! Reading the record past the caches a network filesystem's client keeps.
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
//! So where the filesystem is not known to be local ([`crate::volume::is_local`], from `fstatfs`), the record
//! is read under the lock through a descriptor opened with `O_DIRECT`, which skips the kernel's
//! page cache, after an `fallocate(FALLOC_FL_KEEP_SIZE)` over blocks the file already has: a
//! no-op that changes nothing on disk but makes GlusterFS's quick-read drop its copy (with it,
//! 0 stale reads in 20 on GlusterFS with its default options, where `O_DIRECT` alone was not
//! enough). Where `O_DIRECT` is refused (`EINVAL`: tmpfs and some FUSE filesystems) the read is
//! buffered; where `fallocate` is not supported it is skipped. Both cost a round trip to the
//! server, once per lease, not per increment.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
};

use rustix::fs::{FallocateFlags, fallocate};

use crate::record::{self, Slots};

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
        match fallocate(file, FallocateFlags::KEEP_SIZE, 0, record::FILE_BYTES) {
            Ok(()) => {}
            // Not every filesystem has it (FUSE daemons without it answer ENOSYS, which the
            // kernel turns into EOPNOTSUPP); the O_DIRECT read is still the better read.
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    read_direct(reader)
}

/// `O_DIRECT` wants the buffer, the offset and the length aligned to the device's block: 4 KiB
/// covers every block size in use.
#[repr(align(4096))]
struct Aligned([u8; record::FILE_BYTES as usize]);

/// One read of the whole file into an aligned buffer: a direct read shorter than asked for
/// ends at the end of the file, and a second one from an unaligned offset would be refused.
fn read_direct(file: &File) -> io::Result<Slots> {
    let mut buffer = Box::new(Aligned([0; record::FILE_BYTES as usize]));
    let n = loop {
        match file.read_at(&mut buffer.0, 0) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    Ok(record::decode_slots(&buffer.0[..n]))
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
