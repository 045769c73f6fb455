//! The published file `pingpong_counter.txt`: what users, `cat` and the previous release read
//! (SPEC §3). The count in decimal ASCII followed by `\n`, replaced atomically, never written in
//! place.
//!
//! Format of the published file: readers accept ASCII whitespace around the digits; anything
//! else (empty, a sign, letters, more than `u64::MAX`) is [`Error::Corrupt`], never read as 0 and
//! never overwritten by an increment. A missing file means 0. A file longer than
//! [`MAX_COUNTER_BYTES`] is not read, and is corrupt too.

use std::path::Path;

use crate::{
    error::{Error, Escaped, Result},
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

/// Reads the published file at `path` alone, without a lock; a missing file is 0. The count
/// itself is [`crate::CounterFile::read`], which also reads the durable record.
pub fn read_counter(path: &Path) -> Result<u64> {
    match read_bounded(path, MAX_COUNTER_BYTES)? {
        Some(bytes) => parse_counter(path, &bytes),
        None => Ok(0),
    }
}

/// The count from the record and, where it counts, the published file at `path`: the one rule
/// for a lease taking the lock, for readers without it and for `counter get` (SPEC §3), so
/// that what they show is what the next lease starts from. The larger of the two, except on a
/// network volume once there is a record: there the record stands alone (see
/// [`crate::CounterFile::read`]). With what the published file holds, where it was read.
pub(crate) fn starting_count(
    path: &Path,
    recorded: Option<u64>,
    local: bool,
) -> Result<(u64, Option<u64>)> {
    match recorded {
        Some(count) if !local => Ok((count, None)),
        _ => {
            let published = read_counter(path)?;
            Ok((recorded.unwrap_or(0).max(published), Some(published)))
        }
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
}
