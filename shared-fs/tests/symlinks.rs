//! A symbolic link on the volume is never followed: anyone who can write to the volume could
//! otherwise make the services write into a file outside `DATA_DIR` (the record padded to
//! 8 KiB over a config file) or show another file's content in an error (a mounted secret, a
//! process's environment). A link where a file should be is corrupt, "a symbolic link", like a
//! FIFO; only `DATA_DIR` itself may be a link.

use std::{fs, os::unix::fs::symlink, path::Path};

use shared_fs::{Counter, CounterFile, GuardedFile, rollout};

const PRECIOUS: &[u8] = b"precious config\n";
const SECRET: &[u8] = b"password=hunter2\n";

/// A directory outside the volume holding `name` with `content`.
fn outside(name: &str, content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, content).unwrap();
    (dir, path)
}

fn a_link(path: &Path) -> String {
    format!("{} is a symbolic link, not a regular file", path.display())
}

#[tokio::test]
async fn a_lock_file_that_is_a_link_is_refused_and_its_target_left_byte_for_byte() {
    let (_keep, target) = outside("config", PRECIOUS);
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    symlink(&target, file.lock_path()).unwrap();

    assert_eq!(
        file.add(1).unwrap_err().to_string(),
        a_link(file.lock_path())
    );
    assert!(file.add(1).unwrap_err().is_corrupt());
    assert_eq!(
        file.read().unwrap_err().to_string(),
        a_link(file.lock_path())
    );
    assert_eq!(
        file.probe().unwrap_err().to_string(),
        a_link(file.lock_path())
    );
    let counter = Counter::spawn(file.clone(), |_| {});
    assert_eq!(
        counter.increment().await.unwrap_err().to_string(),
        a_link(file.lock_path())
    );
    assert_eq!(fs::read(&target).unwrap(), PRECIOUS);
    assert!(fs::symlink_metadata(file.lock_path()).unwrap().is_symlink());

    // The operator's repair moves the link aside, kept and followed by nothing, and writes a
    // lock file of its own.
    let moved = file.set(5).unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].from, file.lock_path());
    assert_eq!(moved[0].kind, "a symbolic link");
    assert!(fs::symlink_metadata(&moved[0].to).unwrap().is_symlink());
    assert!(fs::symlink_metadata(file.lock_path()).unwrap().is_file());
    assert_eq!(fs::read(&target).unwrap(), PRECIOUS);
    assert_eq!(file.read().unwrap(), 5);
}

#[test]
fn a_counter_that_is_a_link_never_shows_the_target_s_content() {
    let (_keep, target) = outside("secret", SECRET);
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    symlink(&target, file.path()).unwrap();

    assert_eq!(file.read().unwrap_err().to_string(), a_link(file.path()));
    assert_eq!(file.add(1).unwrap_err().to_string(), a_link(file.path()));
    assert_eq!(
        shared_fs::read_counter(file.path())
            .unwrap_err()
            .to_string(),
        a_link(file.path())
    );
    assert_eq!(fs::read(&target).unwrap(), SECRET);
}

#[test]
fn a_lock_of_a_replaced_file_that_is_a_link_is_refused() {
    let (_keep, target) = outside("config", PRECIOUS);
    let dir = tempfile::tempdir().unwrap();
    let output = GuardedFile::new(dir.path().join("output.log"));
    symlink(&target, output.lock_path()).unwrap();

    assert_eq!(
        output.replace(b"entry").unwrap_err().to_string(),
        a_link(output.lock_path())
    );
    assert_eq!(fs::read(&target).unwrap(), PRECIOUS);
    assert!(!output.path().exists(), "replaced without the lock");
}

#[test]
fn a_file_read_through_a_link_is_refused() {
    let (_keep, target) = outside("secret", SECRET);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("output.log");
    symlink(&target, &path).unwrap();
    assert_eq!(
        shared_fs::read_bounded(&path, 1024)
            .unwrap_err()
            .to_string(),
        a_link(&path)
    );
}

#[test]
fn the_rollout_marker_is_never_created_through_a_link() {
    let away = tempfile::tempdir().unwrap();
    let target = away.path().join("created-outside");
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join(shared_fs::COUNTER_FILE);
    symlink(&target, rollout::marker_path(&counter)).unwrap();
    rollout::note(&counter);
    assert!(!target.exists(), "a file was created outside the volume");
}

#[test]
fn only_the_data_dir_itself_may_be_a_link() {
    let real = tempfile::tempdir().unwrap();
    let links = tempfile::tempdir().unwrap();
    let data_dir = links.path().join("files");
    symlink(real.path(), &data_dir).unwrap();
    let file = CounterFile::in_dir(&data_dir);
    assert_eq!(file.add(1).unwrap(), 0);
    assert_eq!(file.read().unwrap(), 1);
    assert_eq!(
        fs::read(real.path().join(shared_fs::COUNTER_FILE)).unwrap(),
        b"1\n"
    );
}
