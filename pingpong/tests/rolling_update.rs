//! A rolling update from the previous release: replicas of the release before the
//! durable record, which know only the rename recipe on `pingpong_counter.txt` and read it under
//! the lock, and replicas of this one increment one volume at the same time, under load. No
//! number is handed out twice, none is lost, and a reader of the published file, like one of
//! the count, never sees it go back.
//!
//! The same rollout, forward and back, with this release in leader mode (SPEC §2
//! `ADVERTISE_ADDR`), from that release and from the one users run today
//! ([`test_support::TURNS_RELEASE`], whose replicas take turns at the lock and know the record
//! but not the leader block).
//!
//! The previous release is built from this repository's history
//! ([`test_support::PREVIOUS_RELEASE`], once, into `target/previous-release/`). A checkout
//! without that history (a shallow clone, a source archive) cannot build it: each test then
//! prints one line saying why and passes as skipped, unless `ROLLING_UPDATE_REQUIRED=1` (CI),
//! which makes that a failure.

mod support;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use shared_fs::CounterFile;
use support::{Server, assert_each_number_once, load_until, pong_number};
use test_support::{PREVIOUS_RELEASE, TURNS_RELEASE};

const COUNTER: &str = "pingpong_counter.txt";

/// `requests` increments on each of `threads` threads against every server of `ports` at once;
/// every answer must be `200 pong N`.
fn load(ports: &[u16], threads: usize, requests: usize) -> Vec<u64> {
    let clients: Vec<_> = ports
        .iter()
        .flat_map(|&port| {
            (0..threads).map(move |_| {
                thread::spawn(move || {
                    (0..requests)
                        .map(|_| {
                            let (status, body) = support::get(port, "/pingpong");
                            assert_eq!(status, 200, "port {port}: {body}");
                            pong_number(&body)
                        })
                        .collect::<Vec<_>>()
                })
            })
        })
        .collect();
    clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect()
}

/// Reads the published file and the count until `stop`, failing on anything unparsable or a
/// value going back; returns how many reads it made.
fn reader(dir: PathBuf, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let file = CounterFile::in_dir(&dir);
        let (mut published, mut count, mut reads) = (0, 0, 0);
        while !stop.load(Ordering::SeqCst) {
            let now = shared_fs::read_counter(file.path())
                .unwrap_or_else(|e| panic!("the published file after {reads} reads: {e}"));
            assert!(
                now >= published,
                "the published file went from {published} to {now}"
            );
            published = now;
            let now = file.read().unwrap_or_else(|e| panic!("the count: {e}"));
            assert!(now >= count, "the count went from {count} to {now}");
            count = now;
            reads += 1;
        }
        reads
    })
}

/// The previous release's pingpong, or `None` when `test` skips because this checkout lacks the
/// history it is built from.
fn previous_release(test: &str) -> Option<PathBuf> {
    test_support::binary_at_or_skip(test, PREVIOUS_RELEASE, "pingpong", "pingpong")
}

fn start_old(bin: &Path, dir: &Path) -> Server {
    Server::start_binary(bin, dir)
}

#[test]
fn replicas_of_the_previous_release_and_of_this_one_hand_out_every_number_once() {
    let test = "replicas_of_the_previous_release_and_of_this_one_hand_out_every_number_once";
    if let Some(old) = previous_release(test) {
        roll_forward_and_back(&old, &[]);
    }
}

#[test]
fn replicas_of_the_previous_release_and_of_this_one_in_leader_mode_hand_out_every_number_once() {
    let test = "replicas_of_the_previous_release_and_of_this_one_in_leader_mode_hand_out_every_number_once";
    if let Some(old) = previous_release(test) {
        roll_forward_and_back(&old, LEADER_MODE);
    }
}

#[test]
fn replicas_that_take_turns_at_the_lock_and_replicas_in_leader_mode_hand_out_every_number_once() {
    // The release users run today (fe02056): its replicas take 20 ms turns at the lock and
    // know the record, not the leader block; the new ones lead and forward. The leader's
    // courtesy turns let the old ones in, and once one has written it takes 20 ms turns too.
    let test = "replicas_that_take_turns_at_the_lock_and_replicas_in_leader_mode_hand_out_every_number_once";
    if let Some(old) = test_support::binary_at_or_skip(test, TURNS_RELEASE, "pingpong", "pingpong")
    {
        roll_forward_and_back(&old, LEADER_MODE);
    }
}

/// Leader mode on loopback (SPEC §2): what `deploy/rwx` runs.
const LEADER_MODE: &[(&str, &str)] = &[
    ("ADVERTISE_ADDR", "127.0.0.1"),
    ("INTERNAL_PORT", "0"),
    ("LISTEN_ADDRESS", "127.0.0.1"),
];

/// Two replicas of `old`, then this release's (with `new_env`) coming in one by one beside them
/// under load, as a rollout with `maxSurge 1` does, then back to `old`: every answer 200, every
/// number once, none lost, and readers never see the count go back.
fn roll_forward_and_back(old: &Path, new_env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = reader(dir.path().to_owned(), stop.clone());
    let mut answers = Vec::new();

    // Before: two replicas of the previous release.
    let old_a = start_old(old, dir.path());
    let old_b = start_old(old, dir.path());
    answers.extend(load(&[old_a.port, old_b.port], 4, 50));
    // The rollout starts a new replica beside them (maxSurge 1): all three under load at once.
    let new_c = Server::start_with(dir.path(), new_env);
    answers.extend(load(&[old_a.port, old_b.port, new_c.port], 4, 100));
    // One old replica leaves, a second new one comes: old and new again side by side.
    assert_eq!(old_a.terminate(Duration::from_secs(10)).code(), Some(0));
    let new_d = Server::start_with(dir.path(), new_env);
    answers.extend(load(&[old_b.port, new_c.port, new_d.port], 4, 100));
    assert_eq!(old_b.terminate(Duration::from_secs(10)).code(), Some(0));
    answers.extend(load(&[new_c.port, new_d.port], 4, 50));
    stop.store(true, Ordering::SeqCst);
    assert!(reads.join().expect("a reader saw the count go back") > 0);

    let total = answers.len() as u64;
    let distinct: BTreeSet<u64> = answers.iter().copied().collect();
    assert_eq!(
        distinct.len() as u64,
        total,
        "a number was handed out twice"
    );
    assert_eq!(distinct, (0..total).collect(), "a number was lost");
    test_support::assert_published(&dir.path().join(COUNTER), &format!("{total}\n"));
    assert_eq!(new_c.get("/pings"), (200, total.to_string()));
    assert_eq!(
        fs::read_to_string(dir.path().join(COUNTER)).unwrap(),
        format!("{total}\n")
    );
    // And back (a downgrade): once the new replicas have stopped, which publishes, a replica of
    // the previous release continues exactly.
    assert_eq!(new_c.terminate(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(new_d.terminate(Duration::from_secs(10)).code(), Some(0));
    let again = start_old(old, dir.path());
    assert_eq!(again.get("/pingpong"), (200, format!("pong {total}")));
}

#[test]
fn a_new_replica_killed_during_the_rollout_leaves_no_number_an_old_one_hands_out_again() {
    // A new replica that dies without its SIGTERM (kill -9, its node failing) while it holds
    // the lock has not published that lease's numbers; a replica of the previous release that
    // takes the lock next knows only the published file.
    let Some(old) = previous_release(
        "a_new_replica_killed_during_the_rollout_leaves_no_number_an_old_one_hands_out_again",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let old_a = start_old(&old, dir.path());
    let mut answers = load(&[old_a.port], 4, 20);
    for _ in 0..6 {
        let new = Server::start(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = load_until(old_a.port, 2, &stop)
            .into_iter()
            .chain(load_until(new.port, 4, &stop))
            .collect();
        thread::sleep(Duration::from_millis(300));
        new.kill9();
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            answers.extend(c.join().expect("client"));
        }
    }
    assert_each_number_once(&answers);
}

#[test]
fn a_new_replica_started_later_in_the_rollout_knows_old_replicas_are_about() {
    // The second new replica of a rollout may never see an old replica's write itself (the old
    // one idle while it runs); what the first new replica saw must reach it.
    let Some(old) =
        previous_release("a_new_replica_started_later_in_the_rollout_knows_old_replicas_are_about")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let old_a = start_old(&old, dir.path());
    let mut answers = load(&[old_a.port], 4, 20);
    let new_c = Server::start(dir.path());
    answers.extend(load(&[old_a.port, new_c.port], 4, 20));
    // Only new replicas serve for a while: the published file is theirs, level with the record.
    answers.extend(load(&[new_c.port], 4, 50));
    for _ in 0..4 {
        let new_d = Server::start(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let clients = load_until(new_d.port, 4, &stop);
        thread::sleep(Duration::from_millis(200));
        new_d.kill9();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            answers.extend(c.join().expect("client"));
        }
        // The old replica takes the lock next.
        answers.extend(load(&[old_a.port], 2, 10));
    }
    assert_each_number_once(&answers);
}
