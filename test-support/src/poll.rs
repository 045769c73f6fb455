//! Polling with a deadline: a test waits for a condition, never for a fixed time.

use std::{
    thread,
    time::{Duration, Instant},
};

/// Long enough for a debug build on a busy two-core machine, short enough to fail visibly.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Calls `check` every few milliseconds until it returns `Some`, or panics naming `what` once
/// `within` has passed.
pub fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}
