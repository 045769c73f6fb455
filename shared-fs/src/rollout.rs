//! Replicas of the previous release beside this one: a rolling update in progress.
//!
//! A replica of the release before the durable record knows only `pingpong_counter.txt`, which
//! it reads under the same lock. This release publishes that file only when it gives the lock
//! back, so while it holds a lease the file trails the numbers it has handed out. If it dies
//! then without giving the lock back (`kill -9`, its node failing) and an old replica takes the
//! lock before a new one, the old replica reads the trailing file and hands those numbers out
//! a second time (`pingpong/tests/rolling_update.rs` saw 3 to 8 in 4 000 answers).
//!
//! So while old replicas may be about, every batch is published, durably, before its numbers
//! are handed out: a crash then leaves nothing an old replica could hand out again. The
//! evidence is the published file found *ahead* of the record when the lock is taken: only a
//! writer that does not know the record (the previous release, or an operator's hand) puts it
//! there, since this release never publishes past its own record. Each process that sees it
//! touches a marker file beside the counter, so that replicas started later know it too, and
//! publishes per batch while the marker's time is less than [`WINDOW`] old. Old replicas that
//! serve requests write the file again within seconds, which renews the evidence; once they are
//! gone, the marker ages out and leases publish only when they end.
//!
//! Only on a local volume: the previous release never ran on a network filesystem (it had no
//! way to read a record past a client's cache), and there the published file is not read
//! under the lock at all. What remains: a downgrade's first old replica, before its first write,
//! finds a new replica that has not seen it yet; README "The durable record" says what to do.

use std::{
    fs::{self, OpenOptions},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// How long after the last sight of an old replica's write every batch is still published.
/// Longer than an old replica serving traffic goes without writing, and than a rollout's steps.
pub const WINDOW: Duration = Duration::from_secs(10 * 60);

/// The marker beside the counter: `pingpong_counter.txt.rollout`. Its modification time is
/// when a replica last found the published file ahead of the record. Never read for its
/// content; a leftover is harmless once older than [`WINDOW`].
pub fn marker_path(counter_path: &Path) -> PathBuf {
    let mut name = counter_path.as_os_str().to_owned();
    name.push(".rollout");
    PathBuf::from(name)
}

/// Records that an old replica (or a hand) wrote the published file just now. Best effort: a
/// volume that takes no writes fails the batch anyway, and this process publishes per batch
/// whatever the marker says, since it saw the evidence itself.
pub fn note(counter_path: &Path) {
    // O_NONBLOCK: a FIFO planted at the marker's name fails this open (ENXIO) instead of
    // stopping the lock's holder; nothing on the volume is opened in a way that can block.
    // O_NOFOLLOW: a link there fails it too (ELOOP), rather than create or touch a file
    // outside the volume (crate::read).
    let _ = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(marker_path(counter_path))
        .and_then(|marker| marker.set_modified(SystemTime::now()));
}

/// Whether an old replica's write was seen less than [`WINDOW`] ago, by any replica. A time
/// in the future (the clock was set back) counts as recent.
pub fn recent(counter_path: &Path) -> bool {
    match fs::symlink_metadata(marker_path(counter_path)).and_then(|m| m.modified()) {
        Ok(seen) => SystemTime::now()
            .duration_since(seen)
            .map_or(true, |age| age < WINDOW),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sight_is_remembered_for_the_window_and_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("pingpong_counter.txt");
        assert!(!recent(&counter), "nothing seen yet");
        note(&counter);
        assert!(recent(&counter), "seen just now");
        let marker = fs::File::options()
            .write(true)
            .open(marker_path(&counter))
            .unwrap();
        marker
            .set_modified(SystemTime::now() - WINDOW - Duration::from_secs(1))
            .unwrap();
        assert!(!recent(&counter), "seen longer ago than the window");
        note(&counter);
        assert!(recent(&counter), "a new sight renews it");
    }

    #[test]
    fn a_fifo_at_the_marker_never_blocks_the_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("pingpong_counter.txt");
        test_support::plant_fifo(&marker_path(&counter));
        note(&counter); // would wait for a reader for ever with a blocking open
    }
}
