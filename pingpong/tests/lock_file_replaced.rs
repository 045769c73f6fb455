//! `rm pingpong_counter.txt.lock` (what an operator does to "reset" the count) or a restore
//! with `mv` over it, while replicas run under load, and a replica started after it: a running
//! replica must not go on locking the file that left the path while another locks the one at
//! the path. Every number answered is handed out once, and the count is exact. The same with
//! the replicas in leader mode (SPEC §3 "The leader"), on a volume taken for a local one and
//! for a network one: there a leader's courtesy turn asks the locked file whether it still has
//! a name, and its publisher thread looks the name up.

mod support;

use std::{
    fs,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use support::{Server, assert_each_number_once, eventually, load_until, metric};

const LOCK: &str = "pingpong_counter.txt.lock";

/// A copy of the lock file as it is now, renamed over it: a restore with `mv`.
fn restore_over(lock: &Path) {
    let copy = lock.with_extension("restored");
    fs::copy(lock, &copy).unwrap();
    fs::rename(&copy, lock).unwrap();
}

#[test]
fn a_lock_file_deleted_or_replaced_under_load_hands_out_every_number_once() {
    deleted_and_replaced_under_load(&[]);
}

#[test]
fn in_leader_mode_a_lock_file_deleted_or_replaced_under_load_hands_out_every_number_once() {
    deleted_and_replaced_under_load(&[
        ("ADVERTISE_ADDR", "127.0.0.1"),
        ("INTERNAL_PORT", "0"),
        ("LISTEN_ADDRESS", "127.0.0.1"),
    ]);
}

#[test]
fn in_leader_mode_on_a_network_volume_a_lock_file_deleted_or_replaced_hands_out_every_number_once()
{
    deleted_and_replaced_under_load(&[
        ("ADVERTISE_ADDR", "127.0.0.1"),
        ("INTERNAL_PORT", "0"),
        ("LISTEN_ADDRESS", "127.0.0.1"),
        ("VOLUME_KIND", "network"),
    ]);
}

/// Two replicas with the variables `env`, the second started after the lock file was
/// deleted, then the lock file replaced and deleted again under both.
fn deleted_and_replaced_under_load(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join(LOCK);
    let stop = Arc::new(AtomicBool::new(false));
    let a = Server::start_with(dir.path(), env);
    let mut clients = load_until(a.port, 3, &stop);
    eventually(Duration::from_secs(20), "answers from a", || {
        (support::get(a.port, "/pings").1 != "0").then_some(())
    });

    // The reset, then a replica started after it, which creates the lock file again.
    fs::remove_file(&lock).unwrap();
    let b = Server::start_with(dir.path(), env);
    clients.extend(load_until(b.port, 3, &stop));
    thread::sleep(Duration::from_secs(3));
    // Replaced under both, then deleted under both.
    restore_over(&lock);
    thread::sleep(Duration::from_millis(500));
    fs::remove_file(&lock).unwrap();
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);

    let answers: Vec<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    assert_each_number_once(&answers);
    // Every number used was answered, or skipped and counted as abandoned: none was lost. A
    // number whose answer could not be written is counted abandoned as its connection ends, a
    // moment after the client has stopped: read with the count until both agree.
    let abandoned = || -> u64 {
        [&a, &b]
            .iter()
            .map(|s| metric(&s.get("/metrics").1, "pingpong_abandoned_total").unwrap())
            .sum()
    };
    for server in [&a, &b] {
        eventually(Duration::from_secs(10), "the exact count", || {
            let total = (answers.len() as u64 + abandoned()).to_string();
            (server.get("/pings") == (200, total)).then_some(())
        });
    }
}
