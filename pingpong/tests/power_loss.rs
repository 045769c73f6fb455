//! SPEC §7 guarantee 6, proved with the real binary on crashfs (a FUSE filesystem that forgets
//! whatever was not fsynced when the power is cut): an answered `pong N` survives a power cut
//! at any instant, and the published counter file is never empty or partial afterwards, nor
//! ahead of the count. The count after a cut is what every reader in the workspace reads
//! (`shared_fs::CounterFile::read`: the larger of the durable record and the published file),
//! and a restarted server continues from it exactly.
//!
//! - Random instants: two pingpong processes under concurrent load, the power failing after a
//!   seeded random number of mutating filesystem operations, for `POWER_LOSS_ROUNDS` rounds
//!   (default 300), each names model of crashfs chosen at random per round, and every write
//!   not yet synced torn a way drawn from the seed (lost, whole, a prefix, a suffix, some of
//!   its sectors). Reproduce a failure with the `POWER_LOSS_SEED` it prints.
//! - Every crash point of one increment and of one `pingpong counter set`, in both models, with
//!   the exact value each must leave; for the increment also every way each write pending at
//!   the crash point can be torn (crashfs's snapshots: the recipe runs once per point, its
//!   state is cut every way).
//!
//! The recipe of one increment is one record write and one `fdatasync` of the lock file; the
//! published file is replaced (temporary file, fsync, rename) when the lock is given back, and
//! durably (with the directory's fsync) at start. Remove the `fdatasync` and acknowledged pongs
//! are lost; remove the temporary file's fsync and the published file is empty after a cut
//! (see the README's guarantee table and BENCHMARKS.md for what was seen).
//!
//! These tests need root and `/dev/fuse`; without them they print why and pass, unless
//! `CRASHFS_REQUIRED=1` (CI) makes that a failure.

mod support;

use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crashfs::{
    CrashFs, Cut, Model, Probe,
    env::{Replay, mount_or_skip, replay},
};
use shared_fs::CounterFile;
use support::{BIN, Server, eventually, pong_number, try_get};

const COUNTER: &str = "pingpong_counter.txt";

/// What a cut left in the published counter file.
#[derive(Debug, PartialEq, Eq)]
enum OnDisk {
    Missing,
    Value(u64),
    Unparsable(String),
}

fn published(dir: &Path) -> OnDisk {
    match fs::read(dir.join(COUNTER)) {
        Ok(bytes) => match std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(v) => OnDisk::Value(v),
            None => OnDisk::Unparsable(String::from_utf8_lossy(&bytes).into_owned()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OnDisk::Missing,
        Err(e) => panic!("reading the counter: {e}"),
    }
}

/// After a cut: the count every reader takes, having checked that the published file is whole
/// (or was never written) and not ahead of it.
fn count_after_cut(dir: &Path, at: &str) -> u64 {
    let count = CounterFile::in_dir(dir)
        .read()
        .unwrap_or_else(|e| panic!("{at}: after the cut the count is unreadable: {e}"));
    match published(dir) {
        OnDisk::Missing => {}
        OnDisk::Value(v) if v <= count => {}
        other => panic!("{at}: after the cut the published file is {other:?}, the count {count}"),
    }
    count
}

/// Hammers `/pingpong` on `port` until the server is gone; returns each answered number and
/// whether it arrived before the power failed (an acknowledged answer).
fn client(port: u16, power: Probe) -> thread::JoinHandle<Vec<(u64, bool)>> {
    thread::spawn(move || {
        let mut answers = Vec::new();
        while let Ok((status, body)) = try_get(port, "/pingpong") {
            assert_eq!(status, 200, "{body}");
            // Asked after the answer arrived: if the power has not failed yet, it came first.
            answers.push((pong_number(&body), !power.frozen()));
        }
        answers
    })
}

#[test]
fn power_cuts_at_random_instants_under_two_processes_never_lose_an_acknowledged_pong() {
    let Some(mut fs) = mount_or_skip("pingpong power cuts at random instants") else {
        return;
    };
    let Replay { seed, rounds } = replay(300);
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = fs.path().to_path_buf();
    let started = Instant::now();

    // Every acknowledged number (each must be distinct) and the least the file may hold.
    let mut acknowledged = BTreeSet::new();
    let mut floor = 0;
    let mut a = Server::start(&dir);
    let (status, body) = a.get("/pingpong");
    assert_eq!((status, body.as_str()), (200, "pong 0"));
    acknowledged.insert(0);
    floor = floor.max(1);

    for round in 0..rounds {
        let at = format!("POWER_LOSS_SEED={seed}, round {round}");
        let model = if rng.bool() {
            Model::Strict
        } else {
            Model::NamesDurable
        };
        // 5 operations per durable write: up to about 20 writes into the round.
        let k = rng.u64(0..100);
        let b = Server::start(&dir);
        fs.crash_after(k);
        let clients: Vec<_> = [a.port, a.port, b.port, b.port]
            .into_iter()
            .map(|port| client(port, fs.probe()))
            .collect();
        let power = fs.probe();
        eventually(Duration::from_secs(30), "the power failure", || {
            power.frozen().then_some(())
        });
        a.kill9();
        b.kill9();
        for (n, before_the_cut) in clients.into_iter().flat_map(|c| c.join().expect("client")) {
            if before_the_cut {
                assert!(acknowledged.insert(n), "{at}: pong {n} acknowledged twice");
                floor = floor.max(n + 1);
            }
        }
        let tears = fs
            .cut_power(Cut::seeded(model, rng.u64(..)))
            .unwrap_or_else(|e| panic!("{at}: cut: {e}"));
        let at = format!("{at} (tears {tears:?})");

        let value = count_after_cut(&dir, &format!("{at} ({model:?}, k={k})"));
        assert!(
            value >= floor,
            "{at} ({model:?}, k={k}): pong {} was acknowledged but the count is {value}",
            floor - 1
        );
        // The restarted server continues from the count, exactly, and publishes it at start.
        a = Server::start(&dir);
        assert_eq!(
            a.get("/pingpong"),
            (200, format!("pong {value}")),
            "{at}: the restart does not continue from the count"
        );
        assert!(acknowledged.insert(value), "{at}: pong {value} twice");
        floor = value + 1;
    }
    let elapsed = started.elapsed();
    println!(
        "{rounds} rounds in {elapsed:.1?} ({:.1} rounds/s), {} acknowledged answers",
        rounds as f64 / elapsed.as_secs_f64(),
        acknowledged.len()
    );
}

/// The guarantee at one crash point: the count is the old or the new value, never anything
/// else, and the new one if it was acknowledged. Returns whether it is the new one.
fn check_crash_point(dir: &Path, at: &str, old: u64, new: u64, acknowledged: bool) -> bool {
    match count_after_cut(dir, at) {
        v if v == new => true,
        v if v == old && !acknowledged => false,
        other => panic!(
            "{at}: the count is {other}; expected {}",
            if acknowledged {
                format!("the acknowledged {new}")
            } else {
                format!("{old} or {new}")
            }
        ),
    }
}

/// Starts pingpong on `dir`, increments once and waits until the count is published (the
/// lock given back), returning the number answered and whether the answer came before the
/// power failed.
fn one_increment(fs: &CrashFs, dir: &Path) -> (u64, bool) {
    let server = Server::start(dir);
    let (status, body) = server.get("/pingpong");
    assert_eq!(status, 200, "{body}");
    let acknowledged = !fs.frozen();
    let n = pong_number(&body);
    test_support::assert_published(&dir.join(COUNTER), &format!("{}\n", n + 1));
    server.kill9();
    (n, acknowledged)
}

/// The operations of one increment, in order: the record's write and `fdatasync` (the
/// durability point), then, when the lock is given back, the published file's temporary file,
/// its write, its fsync and the rename.
const OPS_PER_INCREMENT: u64 = 6;

#[test]
fn every_crash_point_of_one_increment_leaves_the_old_or_the_acknowledged_value() {
    let Some(mut fs) = mount_or_skip("pingpong every crash point of one increment") else {
        return;
    };
    let dir = fs.path().to_path_buf();
    assert_eq!(one_increment(&fs, &dir), (0, true));
    let before = fs.mutating_ops();
    assert_eq!(one_increment(&fs, &dir), (1, true));
    let ops = fs.mutating_ops() - before;
    assert_eq!(ops, OPS_PER_INCREMENT);
    let mut value = 2;
    let mut cuts = 0;

    // k = ops + 1: the power fails after everything. The recipe runs once per k; the state it
    // left is then cut every way: both models, and every tear of each write still pending.
    for k in 0..=ops + 1 {
        // Start-up publishes nothing here (the file is current): its operations are none.
        let server = Server::start(&dir);
        fs.crash_after(k);
        let (status, body) = server.get("/pingpong");
        assert_eq!((status, body), (200, format!("pong {value}")), "k={k}");
        let acknowledged = !fs.frozen();
        test_support::assert_published(&dir.join(COUNTER), &format!("{}\n", value + 1));
        server.kill9();
        let snapshot = fs.snapshot();
        let mut outcomes = Vec::new();
        for cut in crashfs::points::every_cut(&fs.pending()) {
            let tears = fs
                .cut_power_from(&snapshot, cut.clone())
                .unwrap_or_else(|e| panic!("k={k}, {cut:?}: {e}"));
            let at = format!("crash point {k} of {ops}, {:?}, tears {tears:?}", cut.names);
            remove_temporary_files(&dir);
            outcomes.push(check_crash_point(&dir, &at, value, value + 1, acknowledged));
            cuts += 1;
        }
        // Before the record's write nothing changed; from its fdatasync (operation 2) on, the
        // new count is durable; in between, the write pending may be lost, whole or torn, and
        // a torn slot counts for nothing, so the count is the old one or the new one.
        let expected = match k {
            0 => "old",
            1 => "old or new",
            _ => "new",
        };
        let seen = match (outcomes.contains(&false), outcomes.contains(&true)) {
            (true, false) => "old",
            (true, true) => "old or new",
            (false, true) => "new",
            (false, false) => "no cut",
        };
        assert_eq!(seen, expected, "crash point {k} of {ops}");
        // The last cut's state goes on: the restart continues from its count, and publishes it.
        let count = if *outcomes.last().expect("a cut") {
            value + 1
        } else {
            value
        };
        let server = Server::start(&dir);
        assert_eq!(
            server.get("/pingpong"),
            (200, format!("pong {count}")),
            "crash point {k}: the restart continues from the count"
        );
        test_support::assert_published(&dir.join(COUNTER), &format!("{}\n", count + 1));
        server.kill9();
        value = count + 1;
    }
    println!("{cuts} cuts of one increment");
}

/// The operations of `pingpong counter set`: the published file replaced durably (temporary
/// file, write, fsync, rename, fsync of the directory), then the record's write and
/// `fdatasync`.
const OPS_PER_SET: u64 = 7;

#[test]
fn every_crash_point_of_counter_set_leaves_the_old_or_the_new_value() {
    let Some(mut fs) = mount_or_skip("pingpong every crash point of counter set") else {
        return;
    };
    let dir = fs.path().to_path_buf();
    let set = |n: u64| {
        let out = Command::new(BIN)
            .args(["counter", "set", &n.to_string()])
            .env("DATA_DIR", &dir)
            .output()
            .expect("pingpong counter set");
        assert!(out.status.success(), "{out:?}");
    };
    set(7);
    let before = fs.mutating_ops();
    set(8);
    let ops = fs.mutating_ops() - before;
    assert_eq!(ops, OPS_PER_SET);
    fs.cut_power(Model::NamesDurable).expect("cut");
    let mut value = 8;

    for model in [Model::Strict, Model::NamesDurable] {
        let mut outcomes = Vec::new();
        for k in 0..=ops + 1 {
            let at = format!("{model:?}, crash point {k} of {ops}");
            let new = value + 100;
            fs.crash_after(k);
            set(new);
            let acknowledged = !fs.frozen();
            cut(&mut fs, model, k);

            let is_new = check_crash_point(&dir, &at, value, new, acknowledged);
            outcomes.push(is_new);
            let count = if is_new { new } else { value };
            let server = Server::start(&dir);
            assert_eq!(
                server.get("/pingpong"),
                (200, format!("pong {count}")),
                "{at}: the restart continues from the count"
            );
            server.kill9();
            value = count + 1;
        }
        // The count is the larger of the two files: the new value counts from the published
        // file's rename in the names-durable model, from its directory's fsync in the strict one.
        let first_new = match model {
            Model::Strict => 5,
            Model::NamesDurable => 4,
        };
        assert_eq!(
            outcomes,
            (0..=ops + 1).map(|k| k >= first_new).collect::<Vec<_>>(),
            "{model:?}"
        );
    }
}

/// Cuts the power (every process on the mount already killed), tearing what is pending as
/// drawn from `seed`, and removes what a crashed write left (temporary files), so that the
/// next operations are exactly the next request's.
fn cut(fs: &mut CrashFs, model: Model, seed: u64) {
    fs.cut_power(Cut::seeded(model, seed)).expect("cut");
    remove_temporary_files(fs.path());
}

fn remove_temporary_files(dir: &Path) {
    for entry in fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path).expect("remove temporary file");
        }
    }
}
