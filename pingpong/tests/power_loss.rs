//! SPEC §7 guarantee 6, proved with the real binary on crashfs (a FUSE filesystem that forgets
//! whatever was not fsynced when the power is cut): an answered `pong N` survives a power cut
//! at any instant, and the published counter file is never empty or partial afterwards, nor
//! ahead of the count. The count after a cut is what every reader in the workspace reads
//! (`shared_fs::CounterFile::read`: the larger of the durable record and the published file),
//! and a restarted server continues from it exactly.
//!
//! - Random instants: two pingpong processes under concurrent load (each in leader mode or
//!   taking turns at the lock, at random), the power failing after a seeded random number of
//!   mutating filesystem operations, for `POWER_LOSS_ROUNDS` rounds
//!   (default 300), each names model of crashfs chosen at random per round, and every write
//!   not yet synced torn a way drawn from the seed (lost, whole, a prefix, a suffix, some of
//!   its sectors). Reproduce a failure with the `POWER_LOSS_SEED` it prints.
//! - Every crash point of one increment and of one `pingpong counter set`, in both models, with
//!   the exact value each must leave; for the increment also every way each write pending at
//!   the crash point can be torn (crashfs's snapshots: the recipe runs once per point, its
//!   state is cut every way).
//! - Every crash point, torn writes included, of an increment during a rolling update
//!   (shared-fs `rollout`), entered three ways: the published file found ahead of the record,
//!   as a replica of the previous release leaves it, by a replica that holds a record and by
//!   the first one on a volume only the previous release wrote; and the marker alone. Each
//!   batch is then published durably before it is answered, so after a cut the published
//!   file, all an old replica reads, holds every acknowledged number too. Answer before
//!   publishing, or ignore the marker, and an old replica would hand an acknowledged number out
//!   again (crash point 3 of 7 fails); publish without the directory's fsync and crash point 7
//!   fails.
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
    CrashFs, Cut, Model, Pending, Probe, Tear,
    env::{Outcome, Replay, mount_or_skip, old_or_new, replay, report},
};
use shared_fs::{CounterFile, volume::VolumeKind};
use support::{BIN, Server, eventually, pong_number, try_get};

const COUNTER: &str = "pingpong_counter.txt";

/// crashfs is a FUSE filesystem, which pingpong would take for a network one: each proof runs
/// pingpong both ways (`VOLUME_KIND`), so that the single-node path is proved as well.
const KINDS: [&str; 2] = ["local", "network"];

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

/// After a cut: the count every reader takes (as it reads a volume of `kind`: on a local one
/// the larger of the record and the published file, on crashfs otherwise the record alone once
/// there is one), having checked that the published file is whole (or was never written) and
/// not ahead of it.
fn count_after_cut(dir: &Path, kind: VolumeKind, at: &str) -> u64 {
    let count = CounterFile::in_dir(dir)
        .with_volume_kind(kind)
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
            // Once the power has failed the replicas are killed, the leader perhaps before the
            // follower, whose forward then breaks: a 503, no number. Before, only 200s.
            if status != 200 && power.frozen() {
                continue;
            }
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
    let mut a = start_replica(&dir, &mut rng);
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
        let b = start_replica(&dir, &mut rng);
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
        let tears = fs
            .cut_power(Cut::seeded(model, rng.u64(..)))
            .unwrap_or_else(|e| panic!("{at}: cut: {e}"));
        let at = format!("{at} (tears {tears:?})");

        let value = count_after_cut(&dir, VolumeKind::Auto, &format!("{at} ({model:?}, k={k})"));
        report(&Outcome {
            test: "pingpong random instants",
            model,
            tears: &tears,
            after: k,
            of: None,
            expected: &format!("at least {floor}"),
            found: &value.to_string(),
            acknowledged: (acknowledged.len() - acknowledged_before) as u64,
        });
        assert!(
            value >= floor,
            "{at} ({model:?}, k={k}): pong {} was acknowledged but the count is {value}",
            floor - 1
        );
        // The restarted server continues from the count, exactly, and publishes it at start.
        a = start_replica(&dir, &mut rng);
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

/// A replica for the random instants: it reads the record as on a local volume or as on a
/// network one, and runs in leader mode (SPEC §2 `ADVERTISE_ADDR`: one replica keeps the lock,
/// the other forwards its batches to it, and a takeover writes the record and the leader
/// block) or takes turns at the lock, each at random; two of them may be either, or one of
/// each (the leader's courtesy turns let the other in).
fn start_replica(dir: &Path, rng: &mut fastrand::Rng) -> Server {
    let kind = KINDS[rng.usize(..2)];
    if rng.bool() {
        Server::start_with(
            dir,
            &[
                ("VOLUME_KIND", kind),
                ("ADVERTISE_ADDR", "127.0.0.1"),
                ("INTERNAL_PORT", "0"),
                ("LISTEN_ADDRESS", "127.0.0.1"),
            ],
        )
    } else {
        Server::start_with(dir, &[("VOLUME_KIND", kind)])
    }
}

/// The guarantee at one crash point: the count is the old or the new value, never anything
/// else, and the new one if it was acknowledged. Returns whether it is the new one.
fn check_crash_point(
    dir: &Path,
    kind: VolumeKind,
    at: &str,
    old: u64,
    new: u64,
    acknowledged: bool,
) -> bool {
    match count_after_cut(dir, kind, at) {
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
fn one_increment(fs: &CrashFs, dir: &Path, kind: &str) -> (u64, bool) {
    let server = Server::start_with(dir, &[("VOLUME_KIND", kind)]);
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
    let mut value = 0;
    let mut cuts = 0;
    for kind in KINDS {
        let start = || Server::start_with(&dir, &[("VOLUME_KIND", kind)]);
        assert_eq!(one_increment(&fs, &dir, kind), (value, true));
        let before = fs.mutating_ops();
        assert_eq!(one_increment(&fs, &dir, kind), (value + 1, true));
        let ops = fs.mutating_ops() - before;
        assert_eq!(ops, OPS_PER_INCREMENT, "{kind}");
        value += 2;

        // k = ops + 1: the power fails after everything. The recipe runs once per k; the state
        // it left is then cut every way: both models, and every tear of each write pending.
        for k in 0..=ops + 1 {
            // Start-up publishes nothing here (the file is current): its operations are none.
            let server = start();
            fs.crash_after(k);
            let (status, body) = server.get("/pingpong");
            assert_eq!(
                (status, body),
                (200, format!("pong {value}")),
                "{kind}, k={k}"
            );
            let acknowledged = !fs.frozen();
            test_support::assert_published(&dir.join(COUNTER), &format!("{}\n", value + 1));
            server.kill9();
            let snapshot = fs.snapshot();
            let mut outcomes = Vec::new();
            // Before the record's write nothing changed; from its fdatasync (operation 2) on,
            // the new count is durable; in between, the write pending may be lost, whole or
            // torn, and a torn slot counts for nothing, so the count is the old or the new one.
            let expected = match k {
                0 => "old",
                1 => "old or new",
                _ => "new",
            };
            for cut in crashfs::points::every_cut(&fs.pending()) {
                let tears = fs
                    .cut_power_from(&snapshot, cut.clone())
                    .unwrap_or_else(|e| panic!("{kind}, k={k}, {cut:?}: {e}"));
                let at = format!(
                    "{kind}, crash point {k} of {ops}, {:?}, tears {tears:?}",
                    cut.names
                );
                remove_temporary_files(&dir);
                let new =
                    check_crash_point(&dir, VolumeKind::Auto, &at, value, value + 1, acknowledged);
                outcomes.push(new);
                report(&Outcome {
                    test: "pingpong increment",
                    model: cut.names,
                    tears: &tears,
                    after: k,
                    of: Some(ops),
                    expected,
                    found: old_or_new(Some(new)),
                    acknowledged: u64::from(acknowledged),
                });
                cuts += 1;
            }
            let seen = seen(&outcomes);
            assert_eq!(seen, expected, "{kind}, crash point {k} of {ops}");
            // The last cut's state goes on: the restart continues from its count, and
            // publishes it.
            let count = if *outcomes.last().expect("a cut") {
                value + 1
            } else {
                value
            };
            let server = start();
            assert_eq!(
                server.get("/pingpong"),
                (200, format!("pong {count}")),
                "{kind}, crash point {k}: the restart continues from the count"
            );
            test_support::assert_published(&dir.join(COUNTER), &format!("{}\n", count + 1));
            server.kill9();
            value = count + 1;
        }
    }
    println!("{cuts} cuts of one increment");
}

/// The operations of `pingpong counter set`: the record's write and `fdatasync`, then the
/// published file replaced durably (temporary file, write, fsync, rename, fsync of the
/// directory).
const OPS_PER_SET: u64 = 7;

#[test]
fn every_crash_point_of_counter_set_leaves_the_old_or_the_new_value() {
    let Some(mut fs) = mount_or_skip("pingpong every crash point of counter set") else {
        return;
    };
    let dir = fs.path().to_path_buf();
    let mut value = 8;
    for kind in KINDS {
        let set = |n: u64| {
            let out = Command::new(BIN)
                .args(["counter", "set", &n.to_string()])
                .env("DATA_DIR", &dir)
                .env("VOLUME_KIND", kind)
                .output()
                .expect("pingpong counter set");
            assert!(out.status.success(), "{out:?}");
        };
        set(value - 1);
        let before = fs.mutating_ops();
        set(value);
        let ops = fs.mutating_ops() - before;
        assert_eq!(ops, OPS_PER_SET, "{kind}");
        fs.cut_power(Model::NamesDurable).expect("cut");

        for model in [Model::Strict, Model::NamesDurable] {
            let mut outcomes = Vec::new();
            for k in 0..=ops + 1 {
                let at = format!("{kind}, {model:?}, crash point {k} of {ops}");
                let new = value + 100;
                fs.crash_after(k);
                set(new);
                let acknowledged = !fs.frozen();
                let tears = cut(&mut fs, model, k);

                let is_new =
                    check_crash_point(&dir, VolumeKind::Auto, &at, value, new, acknowledged);
                outcomes.push(is_new);
                report(&Outcome {
                    test: "pingpong counter set",
                    model,
                    tears: &tears,
                    after: k,
                    of: Some(ops),
                    expected: old_or_new(Some(k >= 2)),
                    found: old_or_new(Some(is_new)),
                    acknowledged: u64::from(acknowledged),
                });
                let count = if is_new { new } else { value };
                let server = Server::start_with(&dir, &[("VOLUME_KIND", kind)]);
                assert_eq!(
                    server.get("/pingpong"),
                    (200, format!("pong {count}")),
                    "{at}: the restart continues from the count"
                );
                server.kill9();
                value = count + 1;
            }
            // The record first: the new count is durable from its fdatasync (operation 2) on,
            // in both models, on both kinds of volume (the published file, durable from
            // operation 6 or 7, never ahead of it).
            assert_eq!(
                outcomes,
                (0..=ops + 1).map(|k| k >= 2).collect::<Vec<_>>(),
                "{kind}, {model:?}"
            );
        }
    }
}

/// Cuts the power (every process on the mount already killed), tearing what is pending as
/// drawn from `seed`, and removes what a crashed write left (temporary files), so that the
/// next operations are exactly the next request's.
fn cut(fs: &mut CrashFs, model: Model, seed: u64) -> Vec<(Pending, Tear)> {
    let tears = fs.cut_power(Cut::seeded(model, seed)).expect("cut");
    remove_temporary_files(fs.path());
    tears
}

fn remove_temporary_files(dir: &Path) {
    for entry in fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path).expect("remove temporary file");
        }
    }
}

/// How far ahead of the record a replica of the previous release leaves the published file in
/// the rollout proofs (it served that many requests while this release's replica was idle).
const OLD_REPLICA_SERVED: u64 = 1000;

/// A replica of the previous release hands out `served` numbers: under the lock (its file
/// created if missing, as that release did: empty, no record), the published file read and
/// replaced (temporary file, fsync, rename, fsync of the directory) by the larger count; the
/// record, which it does not know, is left behind. Returns the new published count.
fn old_replica_serves(dir: &Path, served: u64) -> u64 {
    let lock = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(format!("{COUNTER}.lock")))
        .expect("open the lock file");
    lock.lock().expect("lock");
    let OnDisk::Value(count) = published(dir) else {
        panic!("an old replica finds {:?}", published(dir));
    };
    let count = count + served;
    let tmp = dir.join(format!(".{COUNTER}.old-replica.tmp"));
    let mut file = fs::File::create_new(&tmp).expect("create the temporary file");
    std::io::Write::write_all(&mut file, format!("{count}\n").as_bytes()).expect("write");
    file.sync_all().expect("fsync");
    fs::rename(&tmp, dir.join(COUNTER)).expect("rename");
    sync_dir(dir);
    count
}

fn sync_dir(dir: &Path) {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync the directory");
}

/// Removes `path` if it is there.
fn remove_if_there(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing {}: {e}", path.display()),
    }
}

/// Waits until the published file holds `count`: the lock given back, so that nothing is left
/// to write. A synchronisation point, not the 100 ms promise (SPEC §3, proved elsewhere): a
/// loaded machine can take longer.
fn published_eventually(dir: &Path, count: u64) {
    let expected = format!("{count}\n");
    test_support::assert_published_within(&dir.join(COUNTER), &expected, Duration::from_secs(30));
}

/// What the volume holds when a rollout proof's recipe starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollout {
    /// A replica of this release that holds a record (and has started: its start-up's
    /// operations are not the recipe's) finds the published file ahead of it.
    AheadOfTheRecord,
    /// The first replica of this release on a volume only the previous release wrote: an empty
    /// lock file and the published file. Its start-up is part of the recipe.
    NoRecordYet,
    /// The published file equal to the record, the marker of a rollout fresh: an old replica
    /// was seen writing a moment ago, by another replica (most leases of a rollout find no
    /// more than that). Start-up's operations are not the recipe's.
    MarkerOnly,
}

impl Rollout {
    /// The mutating operations of the recipe: start-up's, where it is part of it, then one
    /// increment's (the record's write and `fdatasync`, then, before the answer, the published
    /// file replaced durably: temporary file, write, fsync, rename, fsync of the directory),
    /// and none when the lock is given back (the file already holds the count).
    fn ops(self) -> u64 {
        match self {
            Rollout::AheadOfTheRecord | Rollout::MarkerOnly => 7,
            // Before those: the lock file allocated (8 KiB of zeros, fdatasync, the
            // directory's fsync) and the marker created.
            Rollout::NoRecordYet => 4 + 7,
        }
    }

    /// The operation after which the record holding the new count is durable (its
    /// `fdatasync`): before its write the count is the old one, while it is pending either.
    fn record_durable_at(self) -> u64 {
        self.ops() - 5
    }
}

/// Every crash point of one rollout recipe (see [`Rollout`]), torn writes included, in both
/// models; returns the number of cuts. Each k runs the recipe once, from a volume the previous
/// release has just written ([`old_replica_serves`]), and cuts the state it left every way.
/// Besides what every cut must leave (the count, as a reader on a local volume takes it, the old
/// or the acknowledged value; the published file whole and not ahead of it), the published
/// file, which is all an old replica reads, must hold every acknowledged number: otherwise the
/// old replica that takes the lock first after the restart hands it out a second time.
fn every_crash_point_of_a_rollout(fs: &mut CrashFs, rollout: Rollout) -> usize {
    let dir = fs.path().to_path_buf();
    let marker = dir.join(format!("{COUNTER}.rollout"));
    let start = || Server::start_with(&dir, &[("VOLUME_KIND", "local")]);
    let ops = rollout.ops();
    let mut ops_seen = Vec::new();
    let mut cuts = 0;
    // k = ops + 1: the power fails after everything.
    for k in 0..=ops + 1 {
        // Gone, so that each recipe must find the evidence itself (a cut may have taken the
        // marker's name already).
        remove_if_there(&marker);
        let old = match rollout {
            Rollout::AheadOfTheRecord => old_replica_serves(&dir, OLD_REPLICA_SERVED),
            Rollout::NoRecordYet => {
                remove_if_there(&dir.join(format!("{COUNTER}.lock")));
                old_replica_serves(&dir, OLD_REPLICA_SERVED)
            }
            Rollout::MarkerOnly => {
                // Made now (its time the creation's), its name durable.
                fs::File::create_new(&marker).expect("create the marker");
                sync_dir(&dir);
                let recorded = CounterFile::in_dir(&dir)
                    .with_volume_kind(VolumeKind::Local)
                    .read_record()
                    .expect("the record");
                let count = recorded.expect("a record");
                assert_eq!(
                    published(&dir),
                    OnDisk::Value(count),
                    "k={k}: the published file not ahead: only the marker says rollout"
                );
                count
            }
        };
        let new = old + 1;
        let (server, mark) = match rollout {
            Rollout::AheadOfTheRecord => {
                let server = start();
                // Start-up's reconciliation finds the published file ahead of the record and
                // notes the rollout; once the marker is there it has nothing left to write.
                eventually(
                    Duration::from_secs(30),
                    &format!("{rollout:?}, k={k}: the marker of a rollout"),
                    || marker.exists().then_some(()),
                );
                let mark = fs.mutating_ops();
                fs.crash_after(k);
                (server, mark)
            }
            Rollout::NoRecordYet => {
                let mark = fs.mutating_ops();
                fs.crash_after(k);
                (start(), mark)
            }
            // Start-up writes nothing here (the published file is current, the marker there).
            Rollout::MarkerOnly => {
                let server = start();
                let mark = fs.mutating_ops();
                fs.crash_after(k);
                (server, mark)
            }
        };
        let (status, body) = server.get("/pingpong");
        assert_eq!(
            (status, body),
            (200, format!("pong {old}")),
            "{rollout:?}, k={k}"
        );
        let acknowledged = !fs.frozen();
        assert!(
            marker.exists(),
            "{rollout:?}, k={k}: the published file was found ahead of the record, and no \
             rollout noted"
        );
        published_eventually(&dir, new);
        server.kill9();
        ops_seen.push(fs.mutating_ops() - mark);
        let snapshot = fs.snapshot();
        let durable_at = rollout.record_durable_at();
        let expected = match k {
            k if k + 1 < durable_at => "old",
            k if k + 1 == durable_at => "old or new",
            _ => "new",
        };
        // Durable from the directory's fsync (the last operation) on; in the names-durable
        // model from the rename, the temporary file's content synced before it.
        let published_new = |names| k >= ops || (k + 1 == ops && names == Model::NamesDurable);
        let mut outcomes = Vec::new();
        for cut in crashfs::points::every_cut(&fs.pending()) {
            let tears = fs
                .cut_power_from(&snapshot, cut.clone())
                .unwrap_or_else(|e| panic!("{rollout:?}, k={k}, {cut:?}: {e}"));
            let at = format!(
                "{rollout:?}, crash point {k} of {ops}, {:?}, tears {tears:?}",
                cut.names
            );
            remove_temporary_files(&dir);
            let is_new = check_crash_point(&dir, VolumeKind::Local, &at, old, new, acknowledged);
            // What an old replica taking the lock now hands out first.
            let old_replica_next = match published(&dir) {
                OnDisk::Value(v) => v,
                other => panic!("{at}: an old replica finds the published file {other:?}"),
            };
            assert!(
                old_replica_next == new || (old_replica_next == old && !acknowledged),
                "{at}: pong {old} was {}acknowledged, and an old replica would hand out \
                 pong {old_replica_next} next (the published file)",
                if acknowledged { "" } else { "not " }
            );
            assert_eq!(
                old_replica_next == new,
                published_new(cut.names),
                "{at}: the published file holds {old_replica_next}"
            );
            outcomes.push(is_new);
            let test = match rollout {
                Rollout::AheadOfTheRecord => "pingpong increment in a rollout",
                Rollout::NoRecordYet => "pingpong first start in a rollout",
                Rollout::MarkerOnly => "pingpong increment in a rollout, by its marker",
            };
            report(&Outcome {
                test,
                model: cut.names,
                tears: &tears,
                after: k,
                of: Some(ops),
                expected,
                found: old_or_new(Some(is_new)),
                acknowledged: u64::from(acknowledged),
            });
            cuts += 1;
        }
        let seen = seen(&outcomes);
        assert_eq!(seen, expected, "{rollout:?}, crash point {k} of {ops}");
        // The last cut's state goes on: the restart continues from its count.
        let count = if *outcomes.last().expect("a cut") {
            new
        } else {
            old
        };
        let server = start();
        assert_eq!(
            server.get("/pingpong"),
            (200, format!("pong {count}")),
            "{rollout:?}, crash point {k}: the restart continues from the count"
        );
        published_eventually(&dir, count + 1);
        server.kill9();
    }
    // Checked last, so that a recipe that answers before it publishes fails on what an old
    // replica would hand out, not on its number of operations.
    assert_eq!(
        ops_seen,
        vec![ops; ops as usize + 2],
        "{rollout:?}: the operations of each recipe"
    );
    cuts
}

/// The rollout mode in the power-loss proof, each way into it ([`Rollout`]). Only on a local
/// volume: the previous release never ran on a network one, and there this release does not
/// read the published file under the lock.
#[test]
fn during_a_rollout_every_crash_point_leaves_an_old_replica_nothing_to_hand_out_again() {
    let Some(mut fs) = mount_or_skip("pingpong every crash point in a rollout") else {
        return;
    };
    let started = Instant::now();
    let dir = fs.path().to_path_buf();
    // This release alone first: a record, the published file equal to it, no marker.
    assert_eq!(one_increment(&fs, &dir, "local"), (0, true));
    assert!(
        !dir.join(format!("{COUNTER}.rollout")).exists(),
        "a rollout noted before any old replica wrote"
    );
    let mut cuts = Vec::new();
    for rollout in [
        Rollout::AheadOfTheRecord,
        Rollout::NoRecordYet,
        Rollout::MarkerOnly,
    ] {
        let pass = Instant::now();
        let n = every_crash_point_of_a_rollout(&mut fs, rollout);
        cuts.push(format!("{rollout:?}: {n} cuts in {:.1?}", pass.elapsed()));
    }
    println!("{} ({:.1?} in all)", cuts.join(", "), started.elapsed());
}

/// What the cuts of one crash point left: the old count, the new one, or either.
fn seen(outcomes: &[bool]) -> &'static str {
    match (outcomes.contains(&false), outcomes.contains(&true)) {
        (true, false) => "old",
        (true, true) => "old or new",
        (false, true) => "new",
        (false, false) => "no cut",
    }
}
