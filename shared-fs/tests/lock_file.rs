//! The lock file replaced under running processes: deleted (an operator's "reset"), or another
//! file renamed over it (a restore with `mv`). A process keeps the lock file open from lease to
//! lease, and a flock locks the file it was taken on, not the name: a process still locking the
//! file that is no longer at the path and one locking the new file would both hold "the lock".
//! So each lease checks, once the lock is held, that the locked file is still the one at the
//! path, and moves to the new one if not; readers follow within a second.
//!
//! A lease already under way when the file leaves the path ends on the old file (within
//! `MAX_HOLD`, then it publishes); the tests replace the file between leases, except where a
//! new file makes the next process wait for that (see `shared_fs::record_file::RecordFile`).

use std::{fs, sync::Arc, thread, time::Duration};

use shared_fs::{
    Counter, CounterFile,
    lease::{Advance, Lease},
    read_counter,
    record_file::RecordFile,
    volume::VolumeKind,
};
use test_support::eventually;

/// The two ways a lock file leaves its path under running processes.
#[derive(Debug, Clone, Copy)]
enum Replace {
    /// `rm pingpong_counter.txt.lock`.
    Delete,
    /// `mv restored pingpong_counter.txt.lock`, a copy of the lock file as it was.
    RenameOver,
}

impl Replace {
    fn apply(self, file: &CounterFile) {
        match self {
            Replace::Delete => fs::remove_file(file.lock_path()).unwrap(),
            Replace::RenameOver => {
                let copy = file.lock_path().with_extension("restored");
                fs::copy(file.lock_path(), &copy).unwrap();
                fs::rename(&copy, file.lock_path()).unwrap();
            }
        }
    }
}

#[test]
fn a_lease_is_never_taken_on_a_lock_file_that_is_no_longer_at_the_path() {
    for replace in [Replace::Delete, Replace::RenameOver] {
        let dir = tempfile::tempdir().unwrap();
        let file = CounterFile::in_dir(dir.path());
        file.set(3).unwrap();
        // A running writer's descriptor, kept from lease to lease.
        let kept = Arc::new(RecordFile::open(file.paths(), file.volume_kind()).unwrap());
        replace.apply(&file);
        // A process that opens the lock file now (a new replica) takes the lock at the path.
        let mut held = file.lock().unwrap();
        assert!(matches!(held.advance(2), Advance::Durable { first: 3 }));

        let taken = Lease::try_acquire(file.lock_site(), kept.clone()).unwrap();
        assert!(
            taken.is_none(),
            "{replace:?}: a lease was taken on the old lock file while another process held the \
             lock on the file at the path"
        );
        held.release().unwrap();
        let mut taken = Lease::try_acquire(file.lock_site(), kept)
            .unwrap()
            .expect("the lock at the path is free");
        assert!(
            matches!(taken.advance(1), Advance::Durable { first: 5 }),
            "{replace:?}"
        );
        taken.release().unwrap();
        assert_eq!(file.read().unwrap(), 6, "{replace:?}");
    }
}

/// The writer of group commit keeps its lock file open for the life of the process; a number
/// handed out by a process holding the lock on the new file (which then died before it
/// published) is never handed out again by the running writer.
#[tokio::test]
async fn a_running_writer_moves_to_the_new_lock_file_and_hands_out_no_number_twice() {
    for replace in [Replace::Delete, Replace::RenameOver] {
        let dir = tempfile::tempdir().unwrap();
        let file = CounterFile::in_dir(dir.path());
        let counter = Counter::spawn(file.clone(), |_| {});
        for expected in 0..3 {
            assert_eq!(counter.increment().await.unwrap(), expected, "{replace:?}");
        }
        // The lock taken and given back: the writer's lease has ended, and it published.
        drop(file.lock().unwrap());
        assert_eq!(read_counter(file.path()).unwrap(), 3, "{replace:?}");
        replace.apply(&file);
        let other = CounterFile::in_dir(dir.path());
        let mut lease = other.lock().unwrap();
        assert!(matches!(lease.advance(1), Advance::Durable { first: 3 }));
        // Killed before it published: the number is in the record of the new lock file alone.
        drop(lease);

        assert_eq!(counter.increment().await.unwrap(), 4, "{replace:?}");
        assert_eq!(counter.increment().await.unwrap(), 5, "{replace:?}");
    }
}

/// A process that finds the lock file new (just created again after a delete) while a count is
/// published waits, holding the lock, for a holder of the old file to give it back and publish:
/// that holder's numbers are in the old file's record alone until then.
#[test]
fn a_lock_file_created_again_waits_for_the_old_holder_to_publish() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    assert_eq!(file.add(2).unwrap(), 0);
    let mut old = file.lock().unwrap();
    assert!(matches!(old.advance(5), Advance::Durable { first: 2 }));
    fs::remove_file(file.lock_path()).unwrap();

    let newcomer = {
        let file = CounterFile::in_dir(dir.path());
        thread::spawn(move || file.add(1).unwrap())
    };
    eventually(
        Duration::from_secs(10),
        "the new lock file to be created",
        || file.lock_path().exists().then_some(()),
    );
    old.release().unwrap();
    assert_eq!(newcomer.join().unwrap(), 7);
    assert_eq!(file.read().unwrap(), 8);
}

/// A reader on a network volume reads the record alone, through a descriptor kept open: it
/// follows a replaced lock file within a second or so.
#[test]
fn a_reader_follows_the_lock_file_at_the_path() {
    for replace in [Replace::Delete, Replace::RenameOver] {
        let dir = tempfile::tempdir().unwrap();
        let file = CounterFile::in_dir(dir.path()).with_volume_kind(VolumeKind::Network);
        file.set(10).unwrap();
        assert_eq!(file.read().unwrap(), 10);
        replace.apply(&file);
        CounterFile::in_dir(dir.path())
            .with_volume_kind(VolumeKind::Network)
            .set(20)
            .unwrap();
        eventually(
            Duration::from_secs(10),
            "the reader to read the new lock file",
            || (file.read().unwrap() == 20).then_some(()),
        );
    }
}

/// A lock file restored from an older copy holds an older record: the count does not go back
/// with it, also on a network volume, where the published file is otherwise not read once a
/// record exists.
#[tokio::test]
async fn a_lock_file_restored_from_an_older_copy_does_not_take_the_count_back() {
    for kind in [VolumeKind::Local, VolumeKind::Network] {
        let dir = tempfile::tempdir().unwrap();
        let file = CounterFile::in_dir(dir.path()).with_volume_kind(kind);
        let counter = Counter::spawn(file.clone(), |_| {});
        // The lock taken and given back: the writer's lease has ended, and it published.
        let published = |n: u64| {
            drop(file.lock().unwrap());
            assert_eq!(read_counter(file.path()).unwrap(), n, "{kind:?}");
        };
        for expected in 0..3 {
            assert_eq!(counter.increment().await.unwrap(), expected, "{kind:?}");
        }
        published(3);
        let backup = dir.path().join("backup");
        fs::copy(file.lock_path(), &backup).unwrap();
        for expected in 3..6 {
            assert_eq!(counter.increment().await.unwrap(), expected, "{kind:?}");
        }
        published(6);
        fs::rename(&backup, file.lock_path()).unwrap();

        assert_eq!(counter.increment().await.unwrap(), 6, "{kind:?}");
        published(7);
        assert_eq!(file.read().unwrap(), 7, "{kind:?}");
    }
}
