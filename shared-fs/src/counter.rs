//! The counter file: its format, its cross-process lock, and one locked read-modify-write.
//!
//! Format (SPEC §3): the count in decimal ASCII followed by `\n`. Readers accept ASCII
//! whitespace around the digits; anything else (empty, a sign, letters, more than `u64::MAX`)
//! is [`Error::Corrupt`], never read as 0 and never overwritten by [`CounterFile::add`]. A
//! missing file means 0.
//!
//! The lock ([`crate::lock`]) is held from reading the value on disk to the fsync of the
//! directory, and the value is always read back from disk under it, because another replica or
//! a pod still terminating may have advanced it. Readers take no lock: every write is an atomic
//! rename. A file longer than [`MAX_COUNTER_BYTES`] is not read, and is corrupt too.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    atomic,
    error::{Error, Escaped, Result},
    lock::{FileLock, LockedFile},
    read::read_bounded,
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

/// The most a counter file may hold: 20 digits of `u64::MAX` and room for whitespace. A longer
/// file is [`Error::TooLarge`], read no further.
pub const MAX_COUNTER_BYTES: usize = 64;

/// Reads the counter at `path` without a lock; a missing file is 0.
pub fn read_counter(path: &Path) -> Result<u64> {
    match read_bounded(path, MAX_COUNTER_BYTES)? {
        Some(bytes) => parse_counter(path, &bytes),
        None => Ok(0),
    }
}

/// The counter file and its lock file, for writers.
#[derive(Debug, Clone)]
pub struct CounterFile {
    file: LockedFile,
}

impl CounterFile {
    /// The counter at `path`, locked through `<path>.lock`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CounterFile {
            file: LockedFile::new(path),
        }
    }

    /// The counter [`COUNTER_FILE`] in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join(COUNTER_FILE))
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn lock_path(&self) -> &Path {
        self.file.lock_path()
    }

    /// The current value, without a lock.
    pub fn read(&self) -> Result<u64> {
        read_counter(self.path())
    }

    /// Under the lock: reads the value on disk, durably writes `value + n`, and returns `value`.
    /// The caller hands out `value .. value + n`. A corrupt file is left as it is.
    pub fn add(&self, n: u64) -> Result<u64> {
        let locked = self.lock()?;
        let value = locked.read()?;
        locked.write(locked.checked_add(value, n)?)?;
        Ok(value)
    }

    /// Takes the exclusive lock, blocking until it is free; the value can then be read and
    /// written without another process (or a `counter set`) moving it in between. The group
    /// commit writer uses the steps one by one, to tell waiting for the lock from writing.
    pub fn lock(&self) -> Result<Locked<'_>> {
        Ok(Locked {
            _lock: self.file.lock()?,
            counter: self,
        })
    }

    /// Creates the directory that holds the counter, if missing.
    pub fn create_dir(&self) -> Result<()> {
        let dir = atomic::parent_dir(self.path());
        fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
    }

    /// Under the lock, durably sets the value whatever the file held: the operator's repair.
    pub fn set(&self, value: u64) -> Result<()> {
        self.lock()?.write(value)
    }

    /// Under the lock, removes temporary files a crashed writer left; returns how many.
    pub fn sweep_temp_files(&self) -> Result<usize> {
        self.file.sweep_temp_files()
    }

    /// Whether an increment could succeed now: the counter parses, can still advance, and the
    /// volume accepts writes (opening the lock file for writing fails on a read-only volume).
    /// For `/readyz`; it takes no lock and writes nothing.
    pub fn probe(&self) -> Result<u64> {
        let value = self.read()?;
        if value == u64::MAX {
            return Err(Error::Overflow {
                path: self.path().to_owned(),
                value,
                add: 1,
            });
        }
        self.file.open_lock_file()?;
        Ok(value)
    }
}

/// The counter while this process holds its lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Locked<'a> {
    counter: &'a CounterFile,
    _lock: FileLock,
}

impl Locked<'_> {
    /// The value on disk, which another process may have advanced since this one last looked.
    pub fn read(&self) -> Result<u64> {
        self.counter.read()
    }

    /// `value + n`, or [`Error::Overflow`].
    pub fn checked_add(&self, value: u64, n: u64) -> Result<u64> {
        value.checked_add(n).ok_or_else(|| Error::Overflow {
            path: self.counter.path().to_owned(),
            value,
            add: n,
        })
    }

    /// Durably replaces the counter with `value`.
    pub fn write(&self, value: u64) -> Result<()> {
        atomic::replace(self.counter.path(), format!("{value}\n").as_bytes())
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
