//! The one crate that writes to the shared volume.
//!
//! Every public version of this system we measured lost data in the same few ways: the counter
//! file truncated in place (readers see it empty, a crash leaves it empty), no lock across
//! processes (two replicas hand out the same number), and an unreadable file silently read as
//! 0. This crate owns the answers, one module each, in layers: each module uses only those
//! listed above it (`checks/module-layers.py` fails CI on an import cycle), so an increment
//! walks down once, `group_commit` → `lease` → `record_file` → `record`, `published` → `read`,
//! `atomic`.
//!
//! - [`error`]: one error type; every variant names the path it is about.
//! - [`volume`]: what the volume is (one node's filesystem or one several nodes share) and the
//!   paths of the counter's files.
//! - [`read`]: opening and reading a small file without trusting its size or its type.
//! - [`atomic`]: replace a small file atomically and durably (temp file, fsync, rename, fsync of
//!   the directory), and sweep the temp files a crash may leave behind.
//! - [`record`]: the counter's durable record, written in place in two checksummed slots of the
//!   lock file: one `pwrite` and one `fdatasync` make an increment durable.
//! - [`record_file`]: the lock file opened and kept open ([`RecordFile`](record_file::RecordFile)),
//!   the descriptor the lock is taken on and the record written through, and reading the
//!   record past the caches a network filesystem's client keeps.
//! - [`published`]: the published file's format (`N\n`, strict) and reading it.
//! - [`publisher`]: a leader's publisher thread on a network volume, so that a slow rename
//!   delays the published file, never an increment; the lock is never given back while a
//!   publication is in flight.
//! - [`rollout`]: replicas of the previous release beside this one, seen and remembered, so
//!   that every batch is published before it is handed out while they may be about.
//! - [`repair`]: the operator's `counter set` getting past what is not a regular file where
//!   one of the counter's files should be: moved aside, kept, reported.
//! - [`guarded_file`]: [`GuardedFile`], a file replaced only under an exclusive lock on its
//!   sibling `.lock` file (`output.log` when two log-writers overlap).
//! - [`leader_block`]: who leads the replicas, in the lock file after the record: address,
//!   epoch, heartbeat, token.
//! - [`leadership`]: leader mode's rules and timings, what the writer shares with the internal
//!   endpoint ([`Role`](leadership::Role)), and how the service forwards
//!   ([`Forward`](leadership::Forward)).
//! - [`lease`]: the counter's lock held across many durable writes while busy, the published
//!   file brought up to date before it is given back, and when a lease stops being trusted.
//! - [`counter`]: [`CounterFile`], the handle readers, the operator's commands and the writer
//!   share: the count read without the lock, leases, `set`, reconciling, readiness.
//! - [`group_commit`]: the async handle whose `increment()` coalesces every request that arrives
//!   while a durable write is in flight into the next single durable write.
//! - [`mounts`]: the mount that holds the volume, refused at start when its locks would be
//!   local to one node (replicas on several nodes would hand out the same numbers).
//!
//! Nothing else in the workspace opens a file on the volume for writing.

pub mod atomic;
pub mod counter;
pub mod error;
pub mod group_commit;
pub mod guarded_file;
pub mod leader_block;
pub mod leadership;
pub mod lease;
pub mod mounts;
pub mod published;
pub mod publisher;
pub mod read;
pub mod record;
pub mod record_file;
pub mod repair;
pub mod rollout;
pub mod volume;

pub use atomic::{replace, sweep_temp_files};
pub use counter::CounterFile;
pub use error::{Error, Result};
pub use group_commit::{BatchReport, Counter, Observe};
pub use guarded_file::GuardedFile;
pub use lease::Lease;
pub use published::{COUNTER_FILE, MAX_COUNTER_BYTES, parse_counter, read_counter};
pub use read::read_bounded;
