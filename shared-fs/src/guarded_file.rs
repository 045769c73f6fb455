//! A file on the volume that is only ever replaced under an exclusive lock on its sibling
//! `<name>.lock` (SPEC §3), [`GuardedFile`]: `output.log`, while two log-writers overlap in a
//! rollout. (The counter's lock file also holds its record: [`crate::record_file`].)
//!
//! The lock is a `flock` (std [`File::lock`]) on an empty file that is never deleted: deleting
//! it would let two processes lock two different inodes. The replace and the sweep of temporary
//! files both run under it, so a writer starting up can never sweep away the temporary file of
//! another writer that is between its write and its rename.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use crate::{
    atomic,
    error::{Error, Result},
    read::open_lock_file,
};

/// A file guarded by the lock `<path>.lock`: replaced, and swept, only under it.
#[derive(Debug, Clone)]
pub struct GuardedFile {
    path: PathBuf,
    lock_path: PathBuf,
}

impl GuardedFile {
    /// `path`, locked through `<path>.lock`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        GuardedFile {
            path,
            lock_path: lock_path.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Takes the exclusive lock, blocking until every other holder has released it: the lock
    /// file, locked; dropping it releases the lock.
    fn lock(&self) -> Result<File> {
        let file = self.open_lock_file()?;
        file.lock()
            .map_err(|e| Error::io("lock", &self.lock_path, e))?;
        Ok(file)
    }

    /// Under the lock, replaces the file atomically and durably ([`atomic::replace`]).
    pub fn replace(&self, contents: &[u8]) -> Result<()> {
        let _lock = self.lock()?;
        atomic::replace(&self.path, contents)
    }

    /// Under the lock, removes the temporary files a crashed writer left; returns how many.
    pub fn sweep_temp_files(&self) -> Result<usize> {
        let _lock = self.lock()?;
        atomic::sweep_temp_files(&self.path)
    }

    /// Opens (creating it if needed) the lock file for writing, without locking it: fails on a
    /// read-only volume, which is what readiness wants to know. Never blocks in `open`, and
    /// anything but a regular file there is [`Error::NotRegular`] (see [`crate::read`]).
    pub fn open_lock_file(&self) -> Result<File> {
        open_lock_file(&self.lock_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_is_a_sibling() {
        let f = GuardedFile::new("/v/output.log");
        assert_eq!(f.lock_path(), Path::new("/v/output.log.lock"));
    }
}
