//! The counter file: its format, its cross-process lock, and one locked read-modify-write.
//!
//! Format (SPEC §3): the count in decimal ASCII followed by `\n`. Readers accept ASCII
//! whitespace around the digits; anything else (empty, a sign, letters, more than `u64::MAX`)
//! is [`Error::Corrupt`], never read as 0 and never overwritten by [`CounterFile::add`]. A
//! missing file means 0.
//!
//! The lock is an exclusive `flock` (std [`File::lock`]) on the sibling `<name>.lock`, an empty
//! file that is never deleted (deleting it would let two processes lock two different inodes).
//! It is held from reading the value on disk to the fsync of the directory, and the value is
//! always read back from disk under it, because another replica or a pod still terminating may
//! have advanced it. Readers take no lock: every write is an atomic rename.

use std::{
    fs::{self, File, OpenOptions},
    io::ErrorKind,
    path::{Path, PathBuf},
};

use crate::{
    atomic,
    error::{Error, Escaped, Result},
};

/// The counter's file name inside the data directory.
pub const COUNTER_FILE: &str = "pingpong_counter.txt";

/// Parses the content of the counter file at `path` (the path is only for the error).
pub fn parse_counter(path: &Path, bytes: &[u8]) -> Result<u64> {
    let corrupt = || Error::Corrupt {
        path: path.to_owned(),
        content: Escaped::new(bytes),
    };
    let digits = bytes.trim_ascii();
    // `u64::from_str` alone would accept a leading `+`.
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(corrupt());
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(corrupt)
}

/// Reads the counter at `path` without a lock; a missing file is 0.
pub fn read_counter(path: &Path) -> Result<u64> {
    match fs::read(path) {
        Ok(bytes) => parse_counter(path, &bytes),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// The counter file and its lock file, for writers.
#[derive(Debug, Clone)]
pub struct CounterFile {
    path: PathBuf,
    lock_path: PathBuf,
}

impl CounterFile {
    /// The counter at `path`, locked through `<path>.lock`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        CounterFile {
            path,
            lock_path: lock_path.into(),
        }
    }

    /// The counter [`COUNTER_FILE`] in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join(COUNTER_FILE))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// The current value, without a lock.
    pub fn read(&self) -> Result<u64> {
        read_counter(&self.path)
    }

    /// Under the lock: reads the value on disk, durably writes `value + n`, and returns `value`.
    /// The caller hands out `value .. value + n`. A corrupt file is left as it is.
    pub fn add(&self, n: u64) -> Result<u64> {
        let _lock = self.lock()?;
        let value = self.read()?;
        let next = value.checked_add(n).ok_or_else(|| Error::Overflow {
            path: self.path.clone(),
            value,
            add: n,
        })?;
        atomic::replace(&self.path, format!("{next}\n").as_bytes())?;
        Ok(value)
    }

    /// Under the lock, durably sets the value whatever the file held: the operator's repair.
    pub fn set(&self, value: u64) -> Result<()> {
        let _lock = self.lock()?;
        atomic::replace(&self.path, format!("{value}\n").as_bytes())
    }

    /// Under the lock, removes temporary files a crashed writer left; returns how many.
    pub fn sweep_temp_files(&self) -> Result<usize> {
        let _lock = self.lock()?;
        atomic::sweep_temp_files(&self.path)
    }

    /// Whether an increment could succeed now: the counter parses and the volume accepts
    /// writes (opening the lock file for writing fails on a read-only volume). For `/readyz`;
    /// it takes no lock and writes nothing.
    pub fn probe(&self) -> Result<u64> {
        let value = self.read()?;
        self.open_lock_file()?;
        Ok(value)
    }

    /// Takes the exclusive lock, blocking until it is free. Dropping the file releases it.
    fn lock(&self) -> Result<File> {
        let file = self.open_lock_file()?;
        file.lock()
            .map_err(|e| Error::io("lock", &self.lock_path, e))?;
        Ok(file)
    }

    fn open_lock_file(&self) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
            .map_err(|e| Error::io("open lock file", &self.lock_path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<u64> {
        parse_counter(Path::new("/v/c.txt"), bytes)
    }

    #[test]
    fn accepts_digits_with_surrounding_ascii_whitespace() {
        assert_eq!(parse(b"0\n").ok(), Some(0));
        assert_eq!(parse(b"42").ok(), Some(42));
        assert_eq!(parse(b" \t42\r\n\n").ok(), Some(42));
        assert_eq!(parse(b"007\n").ok(), Some(7));
        assert_eq!(parse(b"18446744073709551615\n").ok(), Some(u64::MAX));
    }

    #[test]
    fn rejects_everything_else_as_corrupt() {
        for bad in [
            &b""[..],
            b"\n",
            b"abc",
            b"-1",
            b"+1",
            b"12abc",
            b"1 2",
            b"1.0",
            b"18446744073709551616",
            b"\xff\xfe",
            b"\x001",
        ] {
            let err = parse(bad).expect_err("must be corrupt");
            assert!(err.is_corrupt(), "{err}");
            assert!(err.to_string().contains("/v/c.txt"), "{err}");
        }
    }

    #[test]
    fn lock_file_is_a_sibling() {
        let c = CounterFile::new("/v/pingpong_counter.txt");
        assert_eq!(c.lock_path(), Path::new("/v/pingpong_counter.txt.lock"));
    }
}
