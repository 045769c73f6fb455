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
//! So where the filesystem is not known to be local ([`is_local`], from `fstatfs`), the record
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

use rustix::fs::{FallocateFlags, fallocate, fstatfs};

use crate::record::{self, Slots};

/// The filesystems whose page cache is the node's own, by the name mountinfo gives them and
/// the magic number `fstatfs` gives them (`statfs(2)`'s `f_type`): disk and memory
/// filesystems, and overlayfs over those. The one list both [`is_local`] (how the record is
/// read) and the mount guard ([`crate::mounts`]) go by, so that a filesystem the guard lets
/// through as one node's is also read as one node's.
const LOCAL_FILESYSTEMS: &[(&str, u64)] = &[
    ("ext2", 0xEF53),
    ("ext3", 0xEF53),
    ("ext4", 0xEF53),
    ("xfs", 0x5846_5342),
    ("btrfs", 0x9123_683E),
    ("zfs", 0x2FC1_2FC1),
    ("f2fs", 0xF2F5_2010),
    ("jfs", 0x3153_464A),
    ("reiserfs", 0x5265_4973),
    ("nilfs2", 0x3434),
    ("bcachefs", 0xCA45_1A4E),
    ("tmpfs", 0x0102_1994),
    ("ramfs", 0x8584_58F6),
    ("overlay", 0x794C_7630),
    ("vfat", 0x4D44),
    ("msdos", 0x4D44),
    ("exfat", 0x2011_BAB0),
    ("ntfs3", 0x7366_746E),
    ("hfsplus", 0x482B),
    ("squashfs", 0x7371_7368),
    ("erofs", 0xE0F5_E1E2),
    ("iso9660", 0x9660),
];

/// Whether the filesystem type `name`, as mountinfo spells it, is one node's own.
pub(crate) fn is_local_type(name: &str) -> bool {
    LOCAL_FILESYSTEMS.iter().any(|&(local, _)| local == name)
}

/// Whether the filesystem magic number `magic`, as `fstatfs` gives it, is one node's own.
fn is_local_magic(magic: u64) -> bool {
    LOCAL_FILESYSTEMS.iter().any(|&(_, local)| local == magic)
}

/// Whether `file` is on a filesystem whose page cache every process on this node shares (see
/// the module docs); false for NFS, CephFS, SMB, every FUSE filesystem, and when `fstatfs`
/// fails.
pub fn is_local(file: &File) -> bool {
    fstatfs(file).is_ok_and(|stat| is_local_magic(stat.f_type as u64))
}

/// What the volume is, for reading the record: learnt from the filesystem ([`is_local`]), or
/// said by the operator (`VOLUME_KIND`) for a filesystem whose type does not tell, such as a
/// FUSE filesystem that only this node mounts (the power-loss tests' crashfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VolumeKind {
    /// [`is_local`] decides.
    #[default]
    Auto,
    /// One node's filesystem: the page cache is the truth.
    Local,
    /// Shared by several nodes: read past the client's caches.
    Network,
}

impl VolumeKind {
    /// `auto`, `local` or `network`, as `VOLUME_KIND` spells them.
    pub fn parse(value: &str) -> Option<VolumeKind> {
        match value {
            "auto" => Some(VolumeKind::Auto),
            "local" => Some(VolumeKind::Local),
            "network" => Some(VolumeKind::Network),
            _ => None,
        }
    }

    /// What `VOLUME_KIND` takes, in words, for its error.
    pub const EXPECTED: &'static str = "auto, local or network";

    /// Whether the volume of `file` is to be treated as local.
    pub fn is_local(self, file: &File) -> bool {
        match self {
            VolumeKind::Auto => is_local(file),
            VolumeKind::Local => true,
            VolumeKind::Network => false,
        }
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

    /// `statfs(2)`'s magic numbers, independent of the table the code uses: a wrong number
    /// there fails here. Every filesystem the mount guard calls local must be read through
    /// the page cache, and every other one past the client's caches.
    const MAGIC: &[(&str, u64)] = &[
        ("ext2", 0xEF53),
        ("ext3", 0xEF53),
        ("ext4", 0xEF53),
        ("xfs", 0x5846_5342),
        ("btrfs", 0x9123_683E),
        ("zfs", 0x2FC1_2FC1),
        ("f2fs", 0xF2F5_2010),
        ("jfs", 0x3153_464A),
        ("reiserfs", 0x5265_4973),
        ("nilfs2", 0x3434),
        ("bcachefs", 0xCA45_1A4E),
        ("tmpfs", 0x0102_1994),
        ("ramfs", 0x8584_58F6),
        ("overlay", 0x794C_7630),
        ("vfat", 0x4D44),
        ("msdos", 0x4D44),
        ("exfat", 0x2011_BAB0),
        ("ntfs3", 0x7366_746E),
        ("hfsplus", 0x482B),
        ("squashfs", 0x7371_7368),
        ("erofs", 0xE0F5_E1E2),
        ("iso9660", 0x9660),
        ("nfs", 0x6969),
        ("nfs4", 0x6969),
        ("cifs", 0xFF53_4D42),
        ("smb3", 0xFE53_4D42),
        ("ceph", 0x00C3_6400),
        ("fuse.glusterfs", 0x6573_5546),
        ("fuse.ceph-fuse", 0x6573_5546),
        ("fuse.sshfs", 0x6573_5546),
        ("9p", 0x0102_1997),
    ];

    #[test]
    fn the_mount_guard_and_the_read_path_agree_on_every_filesystem() {
        for &(name, magic) in MAGIC {
            let mountinfo = format!("1 0 8:1 / / rw - {name} /dev/x rw\n");
            let guard = matches!(
                crate::mounts::check_in(mountinfo.as_bytes(), Path::new("/")),
                Ok(crate::mounts::Verdict::Local { .. })
            );
            assert_eq!(
                (name, guard),
                (name, is_local_magic(magic)),
                "(name, local to the mount guard) vs (name, local to the read path)"
            );
        }
    }

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
        assert!(is_local(&file));
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
