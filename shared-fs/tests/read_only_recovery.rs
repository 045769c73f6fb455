//! A network volume read-only when a reader first opens the lock file (GlusterFS turns a volume
//! read-only while it lacks quorum) and writable again later: the reader, which keeps the lock
//! file open, must not keep its read-only descriptor for ever. That descriptor makes readiness
//! say "read-only" and skips the step that drops GlusterFS's cached copy of the record (see
//! `shared_fs::record_file`). It tries a writable open again, at most once a second, and switches.
//!
//! `VOLUME_KIND=network` takes the network path on a local tmpfs, remounted read-only and back
//! (needs root and CAP_SYS_ADMIN; elsewhere the test prints why it skips).

use std::{
    thread,
    time::{Duration, Instant},
};

use shared_fs::{CounterFile, volume::VolumeKind};
use test_support::Mount;

#[test]
fn a_reader_that_opened_a_read_only_volume_switches_once_it_is_writable() {
    let Some(volume) = Mount::tmpfs("1m") else {
        return;
    };
    let network = || CounterFile::in_dir(volume.path()).with_volume_kind(VolumeKind::Network);
    network().set(5).unwrap();
    volume.remount("ro");
    let reader = network();
    assert_eq!(reader.read().unwrap(), 5);
    assert_eq!(
        reader.probe().unwrap_err().to_string(),
        format!(
            "open lock file {}: Read-only file system (os error 30)",
            reader.lock_path().display()
        )
    );

    volume.remount("rw");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match reader.probe() {
            Ok(value) => {
                assert_eq!(value, 5);
                break;
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "still not ready 10 s after the volume became writable: {error}"
            ),
        }
        thread::sleep(Duration::from_millis(20));
    }
    // And it reads what a writer writes afterwards.
    network().set(9).unwrap();
    assert_eq!(reader.read().unwrap(), 9);
}
