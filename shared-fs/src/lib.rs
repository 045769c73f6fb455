//! The one crate that writes to the shared volume.
//!
//! Every public version of this system we measured lost data in the same few ways: the counter
//! file truncated in place (readers see it empty, a crash leaves it empty), no lock across
//! processes (two replicas hand out the same number), and an unreadable file silently read as
//! 0. This crate owns the answers, one module each:
//!
//! - [`atomic`]: replace a small file atomically and durably (temp file, fsync, rename, fsync of
//!   the directory), and sweep the temp files a crash may leave behind.
//! - [`lock`]: a file replaced only under an exclusive lock on its sibling `.lock` file (the
//!   counter, and `output.log` when two log-writers overlap).
//! - [`counter`]: the counter format (`N\n`, strict) and the locked read-modify-write of one
//!   batch.
//! - [`group_commit`]: the async handle whose `increment()` coalesces every request that arrives
//!   while a durable write is in flight into the next single durable write.
//! - [`read`]: reading a small file without trusting its size.
//! - [`mounts`]: the mount that holds the volume, refused at start when its locks would be
//!   local to one node (replicas on several nodes would hand out the same numbers).
//! - [`error`]: one error type; every variant names the path it is about.
//!
//! Nothing else in the workspace opens a file on the volume for writing.

pub mod atomic;
pub mod counter;
pub mod error;
pub mod group_commit;
pub mod lock;
pub mod mounts;
pub mod read;

pub use atomic::{replace, sweep_temp_files};
pub use counter::{
    COUNTER_FILE, CounterFile, Locked, MAX_COUNTER_BYTES, parse_counter, read_counter,
};
pub use error::{Error, Result};
pub use group_commit::{BatchReport, Counter, Observe};
pub use lock::{FileLock, LockedFile};
pub use read::read_bounded;
