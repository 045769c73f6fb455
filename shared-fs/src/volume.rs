//! The volume the counter lives on, and where on it: what kind of filesystem it is (one node's,
//! or shared by several nodes), and the paths of the counter's files. The floor every other
//! module of the counter stands on; it uses none of them.
//!
//! The kind decides how the durable record is read ([`crate::record_file`]: through the page cache
//! on one node's filesystem, past the client's caches on a shared one), whether a lease can be
//! distrusted ([`crate::lease`]), and what the mount guard lets through ([`crate::mounts`]).

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use rustix::fs::fstatfs;

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
pub(crate) fn is_local_magic(magic: u64) -> bool {
    LOCAL_FILESYSTEMS.iter().any(|&(_, local)| local == magic)
}

/// Whether `file` is on a filesystem whose page cache every process on this node shares (see
/// [`crate::record_file`]); false for NFS, CephFS, SMB, every FUSE filesystem, and when `fstatfs`
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

/// The counter's two files: `pingpong_counter.txt`, the published count, and its sibling
/// `pingpong_counter.txt.lock`, the lock and the durable record.
#[derive(Debug, Clone)]
pub struct CounterPaths {
    published: PathBuf,
    lock: PathBuf,
}

impl CounterPaths {
    /// The counter published at `published`, locked through `<published>.lock`.
    pub fn new(published: impl Into<PathBuf>) -> Self {
        let published = published.into();
        let mut lock = published.clone().into_os_string();
        lock.push(".lock");
        CounterPaths {
            published,
            lock: lock.into(),
        }
    }

    /// `pingpong_counter.txt`: the published count.
    pub fn published(&self) -> &Path {
        &self.published
    }

    /// `pingpong_counter.txt.lock`: the lock, and the durable record.
    pub fn lock(&self) -> &Path {
        &self.lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_is_a_sibling() {
        let paths = CounterPaths::new("/v/pingpong_counter.txt");
        assert_eq!(paths.published(), Path::new("/v/pingpong_counter.txt"));
        assert_eq!(paths.lock(), Path::new("/v/pingpong_counter.txt.lock"));
    }
}
