//! pingpong on a volume that hangs or fails, as a real process on crashfs (SPEC §4): probes and
//! reads during a hang pile up no threads and the service recovers when the volume does; a
//! failing disk makes `/readyz` 503 with the reason until a write succeeds again; and every
//! number a failed write used is counted abandoned, never handed out and never lost track of.
//!
//! These tests need root and `/dev/fuse`; without them they print why and pass, unless
//! `CRASHFS_REQUIRED=1` (CI) makes that a failure.

mod support;

use std::{thread, time::Duration};

use crashfs::env::mount_or_skip;
use shared_fs::CounterFile;
use support::{Server, eventually, get};

const COUNTER: &str = "pingpong_counter.txt";

/// `pingpong_abandoned_total` from `/metrics`.
fn abandoned(server: &Server) -> u64 {
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("pingpong_abandoned_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pingpong_abandoned_total in\n{metrics}"))
}

/// Resumes a hung crashfs when dropped.
struct Resume<'a>(&'a crashfs::CrashFs);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

#[test]
fn probes_and_reads_while_the_volume_hangs_pile_up_no_threads_and_the_service_recovers() {
    let Some(fs) = mount_or_skip("pingpong on a hung volume") else {
        return;
    };
    let server = Server::start(fs.path());
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    test_support::assert_published(&fs.path().join(COUNTER), "1\n");
    let baseline = test_support::threads(server.pid());

    fs.hang();
    // Declared after the server, so dropped before it: a failing assertion resumes the volume
    // before the server is killed (a process exiting with files open on a hung FUSE mount
    // waits for it).
    let _resume = Resume(&fs);
    // A kubelet probing and clients polling for as long as the hang lasts: 150 of each at once
    // (below the server's bound of 512 connections).
    let port = server.port;
    let requests: Vec<_> = (0..300)
        .map(|i| {
            let path = if i % 2 == 0 { "/readyz" } else { "/pings" };
            thread::spawn(move || get(port, path))
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    let during = test_support::threads(server.pid());
    for request in requests {
        let (status, body) = request.join().expect("request");
        assert_eq!(
            (status, body.as_str()),
            (503, "timed out after 5s waiting for the shared volume\n")
        );
    }
    assert!(
        during <= baseline + 2,
        "{during} threads during the hang, {baseline} before: blocked reads piled up"
    );

    fs.resume();
    eventually(Duration::from_secs(2), "readiness after the hang", || {
        (server.get("/readyz") == (200, "ready".to_owned())).then_some(())
    });
    assert_eq!(server.get("/pings"), (200, "1".to_owned()));
    assert_eq!(server.get("/pingpong"), (200, "pong 1".to_owned()));
}

#[test]
fn a_failing_disk_is_not_ready_until_a_write_succeeds_and_no_used_number_goes_uncounted() {
    let Some(fs) = mount_or_skip("pingpong on a failing disk") else {
        return;
    };
    let dir = fs.path();
    let server = Server::start(dir);
    let mut delivered = 0;
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    delivered += 1;
    test_support::assert_published(&dir.join(COUNTER), "1\n");
    let lock = dir.join(format!("{COUNTER}.lock"));

    // Directory fsyncs fail: an increment needs none (the record is written in place).
    fs.fail_syncs(false, true);
    assert_eq!(server.get("/pingpong"), (200, "pong 1".to_owned()));
    delivered += 1;
    // Every file fsync fails: the record's fdatasync fails after its write, so the number it
    // used may be visible; it is counted abandoned and never handed out.
    fs.fail_syncs(true, true);
    let reason = format!(
        "fdatasync {}: Input/output error (os error 5)",
        lock.display()
    );
    assert_eq!(server.get("/pingpong"), (503, format!("{reason}\n")));
    assert_eq!(server.get("/readyz"), (503, reason.clone()));
    assert_eq!(
        server.get("/readyz"),
        (503, reason.clone()),
        "still failing"
    );

    fs.fail_syncs(false, false);
    eventually(
        Duration::from_secs(2),
        "readiness after the disk heals",
        || (server.get("/readyz") == (200, "ready".to_owned())).then_some(()),
    );
    assert_eq!(server.get("/pingpong"), (200, "pong 3".to_owned()));
    delivered += 1;
    assert_eq!(abandoned(&server), 1);
    // Every number used was delivered or counted abandoned: none handed out twice, none lost.
    assert_eq!(
        CounterFile::in_dir(dir).read().unwrap(),
        delivered + abandoned(&server)
    );
}
