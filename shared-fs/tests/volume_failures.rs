//! A volume that refuses writes makes the write fail cleanly: read-only, an error, the old file
//! intact, no temporary file left, and the next write after the volume heals succeeds with the
//! right number. Full, the record (overwritten in place, in blocks it already has) keeps
//! counting, and the published file catches up once there is room.
//!
//! A read-only directory cannot be simulated with permissions for root (root ignores them) and
//! a full disk cannot be simulated at all without a filesystem of its own, so these tests mount
//! a tiny tmpfs. That needs root (CAP_SYS_ADMIN); elsewhere they print why they skip.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    thread,
};

use shared_fs::{Counter, CounterFile};
use test_support::{Mount, assert_published};

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect()
}

#[tokio::test]
async fn a_read_only_volume_fails_the_batch_then_recovers_when_writable() {
    let Some(volume) = Mount::tmpfs("1m") else {
        return;
    };
    let file = CounterFile::in_dir(volume.path());
    file.set(5).unwrap();
    let counter = Counter::spawn(file.clone(), |_| {});

    volume.remount("ro");
    let err = counter.increment().await.expect_err("read-only volume");
    assert!(
        err.to_string()
            .contains(&volume.path().display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("Read-only file system"), "{err}");
    assert_eq!(fs::read(file.path()).unwrap(), b"5\n");
    assert_eq!(file.probe().unwrap_err().to_string(), err.to_string());

    volume.remount("rw");
    assert_eq!(counter.increment().await.unwrap(), 5);
    assert_published(file.path(), "6\n");
    assert_eq!(temp_files(volume.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn a_full_volume_keeps_counting_in_the_record_and_publishes_once_there_is_room() {
    let Some(volume) = Mount::tmpfs("64k") else {
        return;
    };
    let file = CounterFile::in_dir(volume.path());
    file.set(41).unwrap();
    let counter = Counter::spawn(file.clone(), |_| {});
    assert_eq!(counter.increment().await.unwrap(), 41);
    assert_published(file.path(), "42\n");

    // Fill every remaining block.
    let filler_path = volume.path().join("filler");
    let mut filler = fs::File::create(&filler_path).unwrap();
    let block = [0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    drop(filler);

    // The record is overwritten in place, in blocks it already has: increments stay durable.
    // The published file cannot be replaced (no room for the temporary file): it keeps its
    // whole old content, no temporary file is left, and readers take the record.
    assert_eq!(counter.increment().await.unwrap(), 42);
    assert_eq!(counter.increment().await.unwrap(), 43);
    assert_eq!(file.read().unwrap(), 44);
    // Time for the lease to end and its publication to be tried (and fail).
    thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(fs::read(file.path()).unwrap(), b"42\n");
    assert_eq!(temp_files(volume.path()), Vec::<PathBuf>::new());
    assert!(
        counter.health().is_none(),
        "increments work on a full volume"
    );

    fs::remove_file(&filler_path).unwrap();
    assert_eq!(counter.increment().await.unwrap(), 44);
    assert_published(file.path(), "45\n");
}

#[test]
fn replace_into_a_missing_directory_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("gone").join("output.log");
    let err = shared_fs::replace(&target, b"x").unwrap_err();
    assert!(
        err.to_string()
            .contains(&dir.path().join("gone").display().to_string()),
        "{err}"
    );
}
