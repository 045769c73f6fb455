//! log-output: two processes around one file on the shared volume (SPEC §5).
//!
//! **log-writer** keeps one random UUID for its life and, every `LOG_INTERVAL`, writes an entry
//! with the ping-pong count to `output.log`; **log-reader** serves that file over HTTP. They
//! share nothing but the volume, so either can restart without the other noticing.
//!
//! # Layout
//!
//! - [`config`]: each binary's environment variables, defaults and `--help` text (SPEC §2).
//! - [`entry`]: the exact text of one entry.
//! - [`volume`]: the file names on the volume and creating `DATA_DIR`.
//! - [`writer`]: the tick loop: read the counter, compose the entry, replace `output.log`.
//! - [`reader`]: the HTTP routes of log-reader.
//!
//! The binaries in `src/bin/` only parse arguments and the environment, set up logging and call
//! into these modules, so the tests reach everything the binaries do.

pub mod config;
pub mod entry;
pub mod reader;
pub mod volume;
pub mod writer;
