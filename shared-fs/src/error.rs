//! The errors of the shared volume. Every variant names the path it is about, because the
//! operator reading a log line or a 503 body needs to know which file to look at.

use std::{fmt, io, path::PathBuf, sync::Arc};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong on the volume.
///
/// `Clone` because one failed durable write fails every caller of its batch: each receives a
/// copy (the I/O error itself is shared behind an `Arc`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed. The OS error is part of the message (a 503 body shows
    /// only the message), so it is not also reported as the `source`, which would print it twice
    /// in an error chain.
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// What was being done, e.g. `"fsync"`.
        op: &'static str,
        path: PathBuf,
        error: Arc<io::Error>,
    },
    /// The counter file holds something other than a decimal `u64` with optional whitespace.
    /// The service never reads this as 0 and never overwrites it; an operator repairs it.
    #[error(
        "corrupt counter file {}: expected a decimal number from 0 to {}, found \"{content}\"",
        path.display(),
        u64::MAX
    )]
    Corrupt {
        path: PathBuf,
        /// The content, escaped and cut at 64 bytes.
        content: Escaped,
    },
    /// The file is longer than anything this workspace writes there: a 100 MB file is not read
    /// whole (see [`crate::read::read_bounded`]). Like [`Error::Corrupt`], never overwritten.
    #[error(
        "{} is too large: {}, at most {limit} expected; it starts with \"{head}\"",
        path.display(),
        match size { Some(n) => format!("{n} bytes"), None => format!("more than {limit} bytes") }
    )]
    TooLarge {
        path: PathBuf,
        /// The file's size, when it has one (a FIFO does not).
        size: Option<u64>,
        limit: usize,
        /// The first bytes, escaped and cut like [`Error::Corrupt`]'s content.
        head: Escaped,
    },
    /// Something other than a regular file where one should be: a FIFO, whose `open` would
    /// block until a writer comes (with the lock held, every replica would stall), a
    /// directory, a device, a socket. Corrupt like [`Error::Corrupt`]: only an operator
    /// replaces it.
    #[error("{} is {kind}, not a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    /// Both slots of the durable record fail their checksum: something other than shared-fs
    /// wrote the lock file (a power cut tears at most one slot). Never read as a value; the
    /// operator's `counter set` rewrites it.
    #[error(
        "corrupt counter record in {}: both slots fail their checksum; `pingpong counter set N` rewrites it",
        path.display()
    )]
    CorruptRecord { path: PathBuf },
    /// On a network filesystem, the lock was last known held so long ago (before a durable
    /// write was answered, or before one started) that it may have been given to another
    /// process meanwhile (the filesystem's lock timeout): nothing is handed out from the lease.
    /// `trust` is how long a lease is trusted ([`crate::lease::TRUST`]), carried here so that
    /// the errors stay below the modules that make them.
    #[error(
        "the lock on {} was last known held more than {:?} ago: on a network filesystem it may have expired meanwhile, so no number is handed out",
        path.display(),
        trust
    )]
    LeaseDistrusted {
        path: PathBuf,
        trust: std::time::Duration,
    },
    /// A lease has waited this long for the counter's lock, and waits still: another process
    /// holds it (a replica stuck or frozen with it, a paused `counter set`) or the volume does
    /// not answer the `flock` (a hung NFS server).
    #[error(
        "waiting {} s for the counter's lock on {}: another process holds it, or the volume does not answer",
        whole_seconds(*waited),
        path.display()
    )]
    AwaitingLock {
        path: PathBuf,
        waited: std::time::Duration,
    },
    /// The counter would pass `u64::MAX`.
    #[error(
        "counter file {}: {value} + {add} does not fit in a u64{}",
        path.display(),
        if *value == u64::MAX { ": the counter is at its maximum" } else { "" }
    )]
    Overflow { path: PathBuf, value: u64, add: u64 },
    /// The latest record holds the last sequence number, so no record can follow it: not
    /// reached by counting (a write a nanosecond would take centuries), only by a damaged or
    /// hand-made record. A sequence that wrapped would make the next record look older than
    /// the latest, and its numbers be handed out again; so nothing is written until the
    /// operator's `counter set` starts a fresh sequence.
    #[error(
        "the counter record in {} is at the last sequence number, {}: no record can follow \
         it; `pingpong counter set N` starts a fresh sequence",
        path.display(),
        u64::MAX
    )]
    SequenceExhausted { path: PathBuf },
    /// The group-commit writer thread is gone (it panicked or the process is exiting).
    #[error("the writer of {} has stopped", path.display())]
    WriterStopped { path: PathBuf },
    /// An increment forwarded by another replica reached one that does not lead the epoch it
    /// was sent for (SPEC §4 internal endpoint: 421): nothing was written; the sender asks again.
    #[error("not the leader of epoch {epoch} of the counter")]
    NotLeader { epoch: u64 },
    /// With leader mode on, this replica has found no leader to forward to and could not take
    /// the lock itself for this long (SPEC §4 readiness).
    #[error("no leader reachable for {} s: {reason}", whole_seconds(*waited))]
    NoLeader {
        waited: std::time::Duration,
        reason: String,
    },
    /// A forwarded batch failed at the leader, or its outcome is unknown (the leader did not
    /// answer in time, or the connection broke after the batch was sent): no number of it is
    /// handed out.
    #[error("the leader at {leader} did not give the increments' numbers: {reason}")]
    Forward { leader: String, reason: String },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            error: Arc::new(source),
        }
    }

    /// True for `ESTALE`: a network filesystem's handle to a file another client has replaced.
    pub fn is_stale_handle(&self) -> bool {
        matches!(self, Error::Io { error, .. } if error.raw_os_error() == Some(libc::ESTALE))
    }

    /// True when the error is about the content of the counter file, which only an operator can
    /// repair, rather than about the volume, which may heal by itself.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. }
                | Error::TooLarge { .. }
                | Error::NotRegular { .. }
                | Error::CorruptRecord { .. }
                | Error::SequenceExhausted { .. }
        )
    }
}

/// `d` in whole seconds, rounded to the nearest: what a person reads in a reason.
fn whole_seconds(d: std::time::Duration) -> u64 {
    (d + std::time::Duration::from_millis(500)).as_secs()
}

/// File content shown in an error: ASCII escaped (`\n`, `\xff`), at most the first 64 bytes,
/// and a trailing `...` when cut, so a binary or huge file cannot flood a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escaped(String);

impl Escaped {
    pub const MAX_BYTES: usize = 64;

    pub fn new(bytes: &[u8]) -> Self {
        let cut = &bytes[..bytes.len().min(Self::MAX_BYTES)];
        let mut shown = cut.escape_ascii().to_string();
        if bytes.len() > Self::MAX_BYTES {
            shown.push_str("...");
        }
        Escaped(shown)
    }
}

impl fmt::Display for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_shows_control_and_binary_bytes() {
        assert_eq!(Escaped::new(b"12\n\xff\0a").to_string(), r"12\n\xff\x00a");
    }

    #[test]
    fn escaped_cuts_at_64_bytes() {
        let long = [b'7'; 100];
        assert_eq!(
            Escaped::new(&long).to_string(),
            format!("{}...", "7".repeat(64))
        );
        assert_eq!(Escaped::new(&long[..64]).to_string(), "7".repeat(64));
    }
}
