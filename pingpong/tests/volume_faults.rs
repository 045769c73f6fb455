//! pingpong on a volume that hangs, fails or is slow, as a real process on crashfs (SPEC §3,
//! §4): probes and reads during a hang pile up no threads and the service recovers when the
//! volume does; a failing disk makes `/readyz` 503 with the reason until a write succeeds again;
//! every number a failed write used is counted abandoned, never handed out and never lost track
//! of; a slow local disk answers slowly, not with errors; on a network volume a lease that
//! stalled longer than the trust window hands nothing out from it; readiness held up behind
//! the lock says so; and a leader on a network volume whose renames are slow (CephFS at its
//! default tick) answers at once, and never gives the lock back with a publication in flight.
//!
//! These tests need root and `/dev/fuse`; without them they print why and pass, unless
//! `CRASHFS_REQUIRED=1` (CI) makes that a failure.

mod support;

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use crashfs::env::mount_or_skip;
use shared_fs::{CounterFile, lease::TRUST};
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

#[test]
fn a_slow_local_disk_answers_slowly_not_with_errors() {
    let Some(fs) = mount_or_skip("pingpong on a slow local disk") else {
        return;
    };
    let dir = fs.path();
    // crashfs is a FUSE filesystem, which `auto` takes for one several nodes share; this one
    // only this node mounts, as an ext4 or XFS volume would be.
    let server = Server::start_with(dir, &[("VOLUME_KIND", "local")]);
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    test_support::assert_published(&dir.join(COUNTER), "1\n");

    // An HDD, a cloud disk out of burst credits: every flush takes longer than the trust window
    // of a network filesystem's lock, and still well within the request timeout. A local flock
    // cannot expire while its holder lives, so nothing is distrusted.
    fs.delay_syncs(TRUST + Duration::from_millis(500));
    for n in 1..=2 {
        assert_eq!(server.get("/pingpong"), (200, format!("pong {n}")));
        // The lock is given back with a publication, one more slow flush, before the next
        // increment can take it: waited for, so that the next answer is one flush away.
        let published = format!("{}\n", n + 1);
        eventually(Duration::from_secs(20), "the count published", || {
            (fs::read_to_string(dir.join(COUNTER)).ok()? == published).then_some(())
        });
        assert_eq!(server.get("/readyz"), (200, "ready".to_owned()));
    }
    fs.delay_syncs(Duration::ZERO);
    assert_eq!(abandoned(&server), 0);
    assert_eq!(CounterFile::in_dir(dir).read().unwrap(), 3);
}

#[test]
fn on_a_network_volume_a_lease_that_stalled_while_it_was_taken_hands_out_nothing() {
    let Some(fs) = mount_or_skip("pingpong stalled while taking the lock") else {
        return;
    };
    let dir = fs.path();
    let server = Server::start_with(dir, &[("VOLUME_KIND", "network")]);
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    // The lock given back, so that the next increment takes it again.
    let lock_path = dir.join(format!("{COUNTER}.lock"));
    let lock = fs::File::open(&lock_path).unwrap();
    eventually(Duration::from_secs(10), "the lock to be given back", || {
        lock.try_lock().ok().map(|()| lock.unlock().unwrap())
    });

    // The volume stops answering; flock does not need it (the kernel keeps crashfs's locks),
    // so the writer takes the lock and stalls reading the record under it, longer than the
    // trust window: on a filesystem that does not fence, the lock may have expired meanwhile
    // and another client written the record.
    fs.hang();
    let resume = Resume(&fs);
    let port = server.port;
    let request = thread::spawn(move || get(port, "/pingpong"));
    eventually(
        Duration::from_secs(10),
        "the writer to take the lock",
        || match lock.try_lock() {
            Err(fs::TryLockError::WouldBlock) => Some(()),
            Ok(()) => {
                lock.unlock().unwrap();
                None
            }
            Err(fs::TryLockError::Error(e)) => panic!("try_lock: {e}"),
        },
    );
    thread::sleep(TRUST + Duration::from_millis(500));
    drop(resume);

    let distrusted = format!(
        "the lock on {} was last known held more than 2s ago: on a network filesystem it may have expired meanwhile, so no number is handed out\n",
        lock_path.display()
    );
    assert_eq!(request.join().unwrap(), (503, distrusted));
    // Nothing was written from the distrusted lease: no number was used.
    assert_eq!(server.get("/pingpong"), (200, "pong 1".to_owned()));
    assert_eq!(abandoned(&server), 0);
}

#[test]
fn readiness_stuck_behind_the_lock_after_a_failed_write_says_it_waits_for_the_lock() {
    let Some(fs) = mount_or_skip("readiness behind the lock after a failed write") else {
        return;
    };
    let dir = fs.path();
    let server = Server::start(dir);
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    fs.fail_syncs(true, true);
    assert_eq!(server.get("/pingpong").0, 503);
    fs.fail_syncs(false, false);

    // After a failed write, readiness asks the writer for a new one, and the writer has to take
    // the lock for it, which another process holds.
    let held = support::hold_counter_lock(dir);
    let (status, body) = server.get("/readyz");
    assert_eq!(status, 503);
    let lock = dir.join(format!("{COUNTER}.lock"));
    let waited = body
        .strip_prefix("timed out after 5s: waiting ")
        .and_then(|rest| rest.split_once(" s for the counter's lock"))
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("not waiting for the lock: {body:?}"));
    assert_eq!(
        body,
        format!(
            "timed out after 5s: waiting {waited} s for the counter's lock on {}: another process holds it, or the volume does not answer\n",
            lock.display()
        )
    );
    // The writer began waiting just after the probe came: 5 s ago, give or take a loaded
    // machine's scheduling.
    assert!((4..=5).contains(&waited), "{body}");

    drop(held);
    eventually(
        Duration::from_secs(10),
        "readiness once the lock is had",
        || (server.get("/readyz") == (200, "ready".to_owned())).then_some(()),
    );
    assert_eq!(server.get("/pingpong"), (200, "pong 2".to_owned()));
}

/// A replica in leader mode (SPEC §3 "The leader") on a volume taken for a network one, as
/// CephFS is.
const LEADER_ON_A_NETWORK_VOLUME: &[(&str, &str)] = &[
    ("VOLUME_KIND", "network"),
    ("ADVERTISE_ADDR", "127.0.0.1"),
    ("INTERNAL_PORT", "0"),
    ("LISTEN_ADDRESS", "127.0.0.1"),
];

/// How long a slow rename takes here: CephFS at its default MDS tick completes a rename in the
/// directory another mount reads in at its next tick, up to 5 s later (test/rwx/FACTS.md §9);
/// longer than a request's timeout (5 s), so that a request that waited for one would fail.
const SLOW_RENAME: Duration = Duration::from_secs(6);

/// A leader on `dir` taken for a network volume, once it has answered `pong 0` and its
/// publisher has published 1.
fn leader_that_published_once(dir: &std::path::Path) -> Server {
    let server = Server::start_with(dir, LEADER_ON_A_NETWORK_VOLUME);
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    test_support::assert_published_within(&dir.join(COUNTER), "1\n", Duration::from_secs(20));
    server
}

#[test]
fn a_leaders_slow_publication_on_a_network_volume_delays_no_increment() {
    let Some(fs) = mount_or_skip("a leader whose renames are slow") else {
        return;
    };
    let dir = fs.path();
    let server = leader_that_published_once(dir);

    // Requests one at a time with pauses: the leader goes idle between them (where it used to
    // publish on its writer thread) and reaches its courtesy turns (every second, where it
    // published before giving the lock back).
    fs.delay_renames(SLOW_RENAME);
    let started = Instant::now();
    let mut n = 1;
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(server.get("/pingpong"), (200, format!("pong {n}")));
        n += 1;
        thread::sleep(Duration::from_millis(50));
    }
    fs.delay_renames(Duration::ZERO);
    // Published once the slow rename is done, by the next publication.
    test_support::assert_published_within(&dir.join(COUNTER), &format!("{n}\n"), SLOW_RENAME * 3);
    assert_eq!(abandoned(&server), 0);
}

#[test]
fn a_leader_on_a_network_volume_never_gives_the_lock_back_while_a_publication_is_in_flight() {
    let Some(fs) = mount_or_skip("a leader's courtesy turn during a slow rename") else {
        return;
    };
    let dir = fs.path();
    let server = leader_that_published_once(dir);

    fs.delay_renames(Duration::from_secs(3));
    assert_eq!(server.get("/pingpong"), (200, "pong 1".to_owned()));
    eventually(
        Duration::from_secs(10),
        "the publication of 2 to be in flight",
        || (fs.renames_in_flight() == 1).then_some(()),
    );
    // The leader gives the lock back for a moment every second (its courtesy turn, for
    // `counter set` and replicas that know only flock); whoever takes it then may publish. The
    // lock is taken here at the first such moment: the rename in flight must have landed
    // before, or it could land after that publication and take the published count back.
    let lock = fs::File::open(dir.join(format!("{COUNTER}.lock"))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_micros(50));
            }
            Err(e) => panic!("the leader's courtesy turn never came: {e:?}"),
        }
    }
    let published = fs::read_to_string(dir.join(COUNTER)).unwrap();
    lock.unlock().unwrap();
    fs.delay_renames(Duration::ZERO);
    assert_eq!(
        published, "2\n",
        "the lock was given back while the publication of 2 was in flight"
    );
    assert_eq!(server.get("/pingpong"), (200, "pong 2".to_owned()));
}
