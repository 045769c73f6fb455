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
    io::ErrorKind,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
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

/// Whether an old replica's write was seen less than [`WINDOW`] ago, by any replica.
///
/// Errs on the side of publishing every batch, which costs only speed, and reports what it
/// cannot read:
/// - a marker from the future (a clock that was ahead, a hand's `touch -d`) counts as a sight
///   now, and is set to now, so that the window ends [`WINDOW`] from here rather than when the
///   clock catches up, which may be years (where it cannot be set, [`WINDOW`] after this
///   process first saw it);
/// - anything but a regular file at the marker's name (a directory, a FIFO, a symlink), or a
///   marker that cannot be looked at, is logged and counts as recent: it cannot be touched, so
///   a later sight would go unremembered. `pingpong counter set` moves it aside.
pub fn recent(counter_path: &Path) -> bool {
    recent_at(counter_path, Instant::now())
}

/// [`recent`], with `now` for this process's own clock.
fn recent_at(counter_path: &Path, now: Instant) -> bool {
    let marker = marker_path(counter_path);
    let metadata = match fs::symlink_metadata(&marker) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            REPORTED.store(false, Ordering::Relaxed);
            return false;
        }
        Err(error) => {
            report(&marker, &error.to_string());
            return true;
        }
    };
    if !metadata.is_file() {
        report(
            &marker,
            &format!(
                "it is {}, not a regular file",
                crate::read::kind_of(metadata.file_type())
            ),
        );
        return true;
    }
    REPORTED.store(false, Ordering::Relaxed);
    let Ok(seen) = metadata.modified() else {
        return true;
    };
    match SystemTime::now().duration_since(seen) {
        Ok(age) => age < WINDOW,
        Err(_) => from_the_future(counter_path, &marker, seen, now),
    }
}

/// A marker from the future: set to now, so that every replica's window ends [`WINDOW`] from
/// here. Where it cannot be (owned by another user, as a hand's `touch -d` leaves it; a
/// read-only volume), this process remembers when it first saw it, and its window ends
/// [`WINDOW`] after that.
fn from_the_future(counter_path: &Path, marker: &Path, seen: SystemTime, now: Instant) -> bool {
    note(counter_path);
    let set_to_now = fs::symlink_metadata(marker)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t <= SystemTime::now());
    if set_to_now {
        return true;
    }
    let mut first = FIRST_SEEN_FROM_THE_FUTURE
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match &*first {
        Some((path, time, at)) if path == marker && *time == seen => {
            now.saturating_duration_since(*at) < WINDOW
        }
        _ => {
            *first = Some((marker.to_owned(), seen, now));
            true
        }
    }
}

/// The marker from the future this process could not set to now, its time, and when this
/// process first saw it.
static FIRST_SEEN_FROM_THE_FUTURE: Mutex<Option<(PathBuf, SystemTime, Instant)>> = Mutex::new(None);

/// Whether a marker this process cannot use was reported already: once per spell, not once
/// per lease (a busy process takes hundreds a second).
static REPORTED: AtomicBool = AtomicBool::new(false);

fn report(marker: &Path, why: &str) {
    if !REPORTED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            path = %marker.display(),
            reason = why,
            "the rollout marker is unusable: every batch is published before it is answered \
             until `pingpong counter set N` moves it aside"
        );
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

    /// Sets the modification time of `path` itself, not of what a symlink points at.
    fn set_mtime(path: &Path, to: SystemTime) {
        let secs = to.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let touched = std::process::Command::new("touch")
            .args(["-h", "-d", &format!("@{secs}")])
            .arg(path)
            .status()
            .unwrap();
        assert!(touched.success(), "touch {}", path.display());
    }

    #[test]
    fn a_marker_from_the_future_counts_as_seen_now() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("pingpong_counter.txt");
        note(&counter);
        let marker = marker_path(&counter);
        set_mtime(
            &marker,
            SystemTime::now() + Duration::from_secs(365 * 24 * 3600),
        );
        let before = SystemTime::now();
        assert!(recent(&counter), "a sight from the future is recent");
        let after = SystemTime::now();
        let seen = fs::metadata(&marker).unwrap().modified().unwrap();
        assert!(
            before <= seen && seen <= after,
            "the marker now says {seen:?}, not between {before:?} and {after:?}: the window \
             would last until the clock catches up"
        );
    }

    #[test]
    fn a_marker_from_the_future_that_cannot_be_set_to_now_still_ends_its_window() {
        let dir = tempfile::tempdir().unwrap();
        note(&dir.path().join("pingpong_counter.txt"));
        let future = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
        set_mtime(
            &marker_path(&dir.path().join("pingpong_counter.txt")),
            future,
        );
        // The marker cannot be touched there, as when a hand's `touch -d` left it owned by
        // another user.
        let Some(view) = ReadOnlyView::of(dir.path()) else {
            return;
        };
        let counter = view.path().join("pingpong_counter.txt");
        let seen = Instant::now();
        assert!(recent_at(&counter, seen), "seen now");
        assert!(recent_at(&counter, seen + WINDOW - Duration::from_secs(1)));
        assert!(
            !recent_at(&counter, seen + WINDOW + Duration::from_secs(1)),
            "still recent a window after it was first seen"
        );
        let still = fs::metadata(marker_path(&counter))
            .unwrap()
            .modified()
            .unwrap();
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(still), secs(future), "the marker is as it was");
    }

    /// A read-only bind mount of a directory, unmounted when dropped.
    struct ReadOnlyView(tempfile::TempDir);

    impl ReadOnlyView {
        /// `None`, with a line saying why, where this process may not mount.
        fn of(source: &Path) -> Option<ReadOnlyView> {
            let run = |args: &[&std::ffi::OsStr]| {
                std::process::Command::new("mount")
                    .args(args)
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let view = ReadOnlyView(tempfile::tempdir().unwrap());
            let target = view.0.path().as_os_str();
            if !run(&["--bind".as_ref(), source.as_os_str(), target]) {
                eprintln!("skipped: cannot bind-mount (needs root and mount(8))");
                return None;
            }
            if !run(&["-o".as_ref(), "remount,bind,ro".as_ref(), target]) {
                eprintln!("skipped: cannot remount a bind mount read-only");
                return None;
            }
            Some(view)
        }

        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    impl Drop for ReadOnlyView {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    #[test]
    fn anything_but_a_regular_file_at_the_marker_keeps_every_batch_published() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("pingpong_counter.txt");
        let marker = marker_path(&counter);
        let long_ago = SystemTime::now() - WINDOW - Duration::from_secs(60);

        fs::create_dir(&marker).unwrap();
        set_mtime(&marker, long_ago);
        note(&counter);
        assert!(recent(&counter), "a directory");
        fs::remove_dir(&marker).unwrap();

        std::os::unix::fs::symlink(dir.path().join("nowhere"), &marker).unwrap();
        set_mtime(&marker, long_ago);
        assert!(recent(&counter), "a dangling symlink");
    }

    #[test]
    fn a_fifo_at_the_marker_never_blocks_the_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("pingpong_counter.txt");
        test_support::plant_fifo(&marker_path(&counter));
        note(&counter); // would wait for a reader for ever with a blocking open
    }
}
