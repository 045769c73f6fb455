//! Atomic, durable replacement of a small file.
//!
//! The promise: a reader opening the target sees either the whole old content or the whole new
//! content, never an empty or partial file, and once [`replace`] returns `Ok` the new content
//! survives a crash or power loss. The recipe is the one `atomicwrites` and
//! `atomic-write-file` use (`tempfile`'s `persist` skips both fsyncs):
//!
//! 1. write a temporary file `.<name>.<random>.tmp` in the same directory (same filesystem, so
//!    the rename is atomic);
//! 2. fsync the file, so its data is on disk before its name is;
//! 3. rename it over the target (atomic for readers);
//! 4. fsync the directory, so the rename itself is on disk.
//!
//! `kill -9` cannot show why steps 2 and 4 are there (the page cache survives it); a power cut
//! can. The proof runs the real binaries on `crashfs` (the workspace's power-loss filesystem)
//! and cuts the power at every crash point and at hundreds of random instants:
//! `pingpong/tests/power_loss.rs` and `log-output/tests/power_loss.rs`. Without step 4 the strict
//! model there loses acknowledged increments (`pong 33 was acknowledged but the file holds 14`);
//! without step 2 the file is empty after a cut (`the counter is Unparsable("")`). The same two
//! failures on a minimal writer: `crashfs/tests/self_test.rs`.
//!
//! The temporary file is removed on every error path before the rename; a crash can still leave
//! one, which [`sweep_temp_files`] removes at the next start.

use std::{
    ffi::OsStr,
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

/// Replaces `path` with `contents` atomically and durably (see the module docs).
pub fn replace(path: &Path, contents: &[u8]) -> Result<()> {
    replace_content_durably(path, contents)?;
    // Without this the rename may still be only in memory: after a power loss the old file
    // would be back, and an acknowledged increment lost.
    sync_dir(parent_dir(path))
}

/// Steps 1 to 3 of [`replace`]: after a power cut `path` holds the old content or the new
/// one, both whole, but which one is not promised until the directory is fsynced. For a file
/// whose content is also kept durably elsewhere (`pingpong_counter.txt`, behind the record).
pub fn replace_content_durably(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let guard = RemoveOnDrop(Some(&tmp));

    // `create_new` (O_EXCL) already refuses a link at the name; O_NOFOLLOW says so too.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(contents)
        .map_err(|e| Error::io("write", &tmp, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(file);

    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    guard.disarm();
    Ok(())
}

/// fsyncs the directory `dir`, so that the names changed in it are durable. Opened with
/// `O_DIRECTORY`, which fails at once, without blocking, on anything but a directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Removes the temporary files of `target` (`.<name>.*.tmp` beside it) that a crash left
/// behind, and returns how many it removed. A missing directory has none.
///
/// What it cannot remove (a directory planted under such a name, a file it may not delete) is
/// logged and left: a leftover temporary name costs nothing but its space, so it must never
/// stop a service from starting. Only a directory that cannot be listed is an error.
///
/// Only call this when no other process can be writing `target` at the same moment: for the
/// counter, under its lock.
pub fn sweep_temp_files(target: &Path) -> Result<usize> {
    let dir = parent_dir(target);
    let Some(name) = target.file_name().and_then(OsStr::to_str) else {
        return Ok(0);
    };
    let prefix = format!(".{name}.");
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if !(file_name.starts_with(&prefix) && file_name.ends_with(".tmp")) {
            continue;
        }
        let stale = entry.path();
        match fs::remove_file(&stale) {
            Ok(()) => {
                tracing::info!(path = %stale.display(), "removed a temporary file left by a crash");
                removed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(
                path = %stale.display(),
                %error,
                "cannot remove a temporary file left by a crash; leaving it"
            ),
        }
    }
    Ok(removed)
}

/// The directory holding `path`; `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_path(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap_or(OsStr::new("file"));
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{:016x}.tmp", fastrand::u64(..)));
    parent_dir(target).join(tmp_name)
}

/// Removes the temporary file unless the rename consumed it.
struct RemoveOnDrop<'a>(Option<&'a Path>);

impl RemoveOnDrop<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_is_hidden_sibling_of_target() {
        let tmp = temp_path(Path::new("/data/output.log"));
        let name = tmp.file_name().and_then(OsStr::to_str).unwrap_or_default();
        assert_eq!(tmp.parent(), Some(Path::new("/data")));
        assert!(name.starts_with(".output.log."), "{name}");
        assert!(name.ends_with(".tmp"), "{name}");
        assert_eq!(name.len(), ".output.log.".len() + 16 + ".tmp".len());
    }

    #[test]
    fn bare_file_name_lives_in_current_directory() {
        assert_eq!(parent_dir(Path::new("counter.txt")), Path::new("."));
    }
}
