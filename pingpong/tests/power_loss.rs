//! SPEC §7 guarantee 6, proved with the real binary on crashfs (a FUSE filesystem that forgets
//! whatever was not fsynced when the power is cut): an answered `pong N` survives a power cut
//! at any instant, and the counter file is never missing, empty or partial afterwards.
//!
//! - Random instants: two pingpong processes under concurrent load, the power failing after a
//!   seeded random number of mutating filesystem operations, for `POWER_LOSS_ROUNDS` rounds
//!   (default 300), each model of crashfs chosen at random per round. Reproduce a failure with
//!   the `POWER_LOSS_SEED` it prints.
//! - Every crash point of one increment and of one `pingpong counter set`, in both models, with
//!   the exact value each must leave.
//!
//! Each `shared_fs::replace` fsync is needed here: remove the directory fsync and the strict
//! model loses acknowledged increments; remove the file fsync and the file is empty after a
//! cut (see the README's guarantee table and BENCHMARKS.md for what was seen).
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
    CrashFs, Model, Probe,
    env::{Cut, Replay, mount_or_skip, old_or_new, replay, report},
};
use support::{BIN, Server, eventually, pong_number, try_get};

const COUNTER: &str = "pingpong_counter.txt";

/// What a cut left in the counter file.
#[derive(Debug, PartialEq, Eq)]
enum OnDisk {
    Missing,
    Value(u64),
    Unparsable(String),
}

fn on_disk(dir: &Path) -> OnDisk {
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
        let acknowledged_before = acknowledged.len();
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
        fs.cut_power(model)
            .unwrap_or_else(|e| panic!("{at}: cut: {e}"));

        let value = match on_disk(&dir) {
            OnDisk::Value(v) => v,
            other => panic!("{at} ({model:?}, k={k}): after the cut the counter is {other:?}"),
        };
        report(&Cut {
            test: "pingpong random instants",
            model,
            after: k,
            of: None,
            expected: &format!("at least {floor}"),
            found: &value.to_string(),
            acknowledged: (acknowledged.len() - acknowledged_before) as u64,
        });
        assert!(
            value >= floor,
            "{at} ({model:?}, k={k}): pong {} was acknowledged but the file holds {value}",
            floor - 1
        );
        // The restarted server continues from the file, exactly.
        a = Server::start(&dir);
        assert_eq!(
            a.get("/pingpong"),
            (200, format!("pong {value}")),
            "{at}: the restart does not continue from the file"
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

/// Kills every process on the mount, cuts the power, and removes what a crashed write left
/// (temporary files), so that the next operations are exactly the next request's.
fn cut(fs: &mut CrashFs, model: Model) {
    fs.cut_power(model).expect("cut");
    for entry in fs::read_dir(fs.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path).expect("remove temporary file");
        }
    }
}

/// Whether the new value survived at each crash point k = 0..=6 of one durable write (create,
/// write, fsync, rename, fsync of the directory; 6 is after the answer): from the rename on in
/// the names-durable model, only from the directory fsync on in the strict one.
fn expected_outcomes(model: Model) -> Vec<bool> {
    let first_new = match model {
        Model::Strict => 5,
        Model::NamesDurable => 4,
    };
    (0..=OPS_PER_WRITE + 1).map(|k| k >= first_new).collect()
}

const OPS_PER_WRITE: u64 = 5;

/// The guarantee at one crash point: the file holds the old or the new value, never anything
/// else, and the new one if it was acknowledged. Returns whether it holds the new one.
fn check_crash_point(dir: &Path, at: &str, old: u64, new: u64, acknowledged: bool) -> bool {
    match on_disk(dir) {
        OnDisk::Value(v) if v == new => true,
        OnDisk::Value(v) if v == old && !acknowledged => false,
        other => panic!(
            "{at}: the file holds {other:?}; expected {}",
            if acknowledged {
                format!("the acknowledged {new}")
            } else {
                format!("{old} or {new}")
            }
        ),
    }
}

#[test]
fn every_crash_point_of_one_increment_leaves_the_old_or_the_acknowledged_value() {
    let Some(mut fs) = mount_or_skip("pingpong every crash point of one increment") else {
        return;
    };
    let dir = fs.path().to_path_buf();
    let server = Server::start(&dir);
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    let before = fs.mutating_ops();
    assert_eq!(server.get("/pingpong"), (200, "pong 1".to_owned()));
    let ops = fs.mutating_ops() - before;
    server.kill9();
    let mut value = 2;

    for model in [Model::Strict, Model::NamesDurable] {
        let mut outcomes = Vec::new();
        // k = ops + 1: the power fails after the answer.
        for k in 0..=ops + 1 {
            let at = format!("{model:?}, crash point {k} of {ops}");
            let server = Server::start(&dir);
            fs.crash_after(k);
            assert_eq!(
                server.get("/pingpong"),
                (200, format!("pong {value}")),
                "{at}"
            );
            let acknowledged = !fs.frozen();
            server.kill9();
            cut(&mut fs, model);

            let new = check_crash_point(&dir, &at, value, value + 1, acknowledged);
            outcomes.push(new);
            let on_file = if new { value + 1 } else { value };
            report(&Cut {
                test: "pingpong increment",
                model,
                after: k,
                of: Some(ops),
                expected: old_or_new(expected_outcomes(model).get(k as usize).copied()),
                found: old_or_new(Some(new)),
                acknowledged: u64::from(acknowledged),
            });
            let server = Server::start(&dir);
            assert_eq!(
                server.get("/pingpong"),
                (200, format!("pong {on_file}")),
                "{at}: the restart continues from the file"
            );
            server.kill9();
            value = on_file + 1;
        }
        assert_eq!(outcomes, expected_outcomes(model), "{model:?}");
    }
    assert_eq!(ops, OPS_PER_WRITE);
}

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
            cut(&mut fs, model);

            let is_new = check_crash_point(&dir, &at, value, new, acknowledged);
            outcomes.push(is_new);
            let on_file = if is_new { new } else { value };
            report(&Cut {
                test: "pingpong counter set",
                model,
                after: k,
                of: Some(ops),
                expected: old_or_new(expected_outcomes(model).get(k as usize).copied()),
                found: old_or_new(Some(is_new)),
                acknowledged: u64::from(acknowledged),
            });
            let server = Server::start(&dir);
            assert_eq!(
                server.get("/pingpong"),
                (200, format!("pong {on_file}")),
                "{at}: the restart continues from the file"
            );
            server.kill9();
            value = on_file + 1;
        }
        assert_eq!(outcomes, expected_outcomes(model), "{model:?}");
    }
    assert_eq!(ops, OPS_PER_WRITE);
}
