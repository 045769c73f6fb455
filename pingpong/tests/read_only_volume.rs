//! A network volume read-only at start and writable later (GlusterFS turns a volume read-only
//! while it lacks quorum): `/readyz` says why while it is read-only and turns `200` once it is
//! writable again, without a restart. `VOLUME_KIND=network` takes the network path on a local
//! tmpfs, remounted read-only and back (needs root and CAP_SYS_ADMIN; elsewhere the test prints
//! why it skips).

mod support;

use std::time::Duration;

use shared_fs::CounterFile;
use support::{Server, eventually};
use test_support::Mount;

#[test]
fn a_network_volume_read_only_at_start_is_ready_once_it_is_writable() {
    let Some(volume) = Mount::tmpfs("1m") else {
        return;
    };
    let file = CounterFile::in_dir(volume.path());
    file.set(5).unwrap();
    volume.remount("ro");
    let server = Server::start_with(volume.path(), &[("VOLUME_KIND", "network")]);
    assert_eq!(server.get("/pings"), (200, "5".to_owned()));
    assert_eq!(
        server.get("/readyz"),
        (
            503,
            format!(
                "open lock file {}: Read-only file system (os error 30)",
                file.lock_path().display()
            )
        )
    );

    volume.remount("rw");
    eventually(Duration::from_secs(10), "/readyz 200", || {
        (server.get("/readyz").0 == 200).then_some(())
    });
    assert_eq!(server.get("/pingpong"), (200, "pong 5".to_owned()));
    assert_eq!(server.get("/pings"), (200, "6".to_owned()));
}
