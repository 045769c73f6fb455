//! The harness must be able to fail.
//!
//! - Names and synced data: a reference writer (the shared-fs recipe: temporary file, fsync,
//!   rename, fsync of the directory) is checked at every crash point of one replace, with each
//!   fsync removed in turn. The full recipe must pass in both models; without the directory
//!   fsync the strict model must lose an acknowledged value; without the file fsync both models
//!   must leave an empty file.
//! - Torn writes: a single record rewritten in place without a checksum (`pwrite` at offset 0,
//!   `fdatasync`) must be torn into a count nobody wrote at exactly the crash points found
//!   below, whether the crash points come from a plan (the recipe replayed per point) or from
//!   snapshots (the recipe run once per operation, each state cut every way); the two-slot checksummed record of `shared_fs::record` must never lose an
//!   acknowledged count nor yield a torn one, at every crash point of three increments in both
//!   models and under seeded random cuts, which must themselves catch the unchecksummed record.
//!
//! If these counts were zero the power-loss proof would prove nothing.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::FileExt,
    path::Path,
};

use crashfs::{
    CrashFs, Cut, Data, Model,
    env::{Replay, mount_or_skip, replay},
    points::{CrashPoint, every_crash_point, every_cut},
};
use shared_fs::record::{Record, read_slots, write_slot};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Recipe {
    Full,
    NoDirFsync,
    NoFileFsync,
}

fn replace(dir: &Path, value: u64, recipe: Recipe) {
    let tmp = dir.join(".counter.tmp");
    let mut f = File::create_new(&tmp).expect("create");
    f.write_all(format!("{value}\n").as_bytes()).expect("write");
    if recipe != Recipe::NoFileFsync {
        f.sync_all().expect("fsync");
    }
    drop(f);
    fs::rename(&tmp, dir.join("counter")).expect("rename");
    if recipe != Recipe::NoDirFsync {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .expect("fsync dir");
    }
}

/// What a cut left, as the services' readers would see it.
#[derive(Debug, Clone, PartialEq)]
enum After {
    Value(u64),
    Missing,
    Unparsable(Vec<u8>),
}

fn read_counter(dir: &Path) -> After {
    match fs::read(dir.join("counter")) {
        Ok(bytes) => match std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(v) => After::Value(v),
            None => After::Unparsable(bytes),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => After::Missing,
        Err(e) => panic!("reading the counter: {e}"),
    }
}

/// Every crash point k of replacing 1 with 2, after a durable 1: for each,
/// what the cut left and whether the writer's return came before the power failed (the value
/// was acknowledged). Returns the crash points that broke the guarantee: the file must always
/// hold a number, at least the last acknowledged one.
fn violations(fs: &mut CrashFs, recipe: Recipe, model: Model) -> Vec<(u64, After)> {
    let dir = fs.path().to_path_buf();
    let _ = fs::remove_file(dir.join("counter"));
    replace(&dir, 1, Recipe::Full);
    let before = fs.mutating_ops();
    replace(&dir, 2, recipe);
    let ops = fs.mutating_ops() - before;
    fs.cut_power(model).expect("cut");

    // k = ops + 1: the power fails after the writer returned.
    let mut found = Vec::new();
    for k in 0..=ops + 1 {
        replace(&dir, 1, Recipe::Full);
        fs.crash_after(k);
        replace(&dir, 2, recipe);
        let acknowledged = if fs.frozen() { 1 } else { 2 };
        fs.cut_power(model).expect("cut");
        let after = read_counter(&dir);
        if !matches!(after, After::Value(v) if v >= acknowledged) {
            found.push((k, after));
        }
        // A fresh start for the next crash point (a cut may leave the temporary file).
        let _ = fs::remove_file(dir.join("counter"));
        let _ = fs::remove_file(dir.join(".counter.tmp"));
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .expect("fsync dir");
    }
    found
}

#[test]
fn the_harness_catches_each_missing_fsync() {
    let Some(mut fs) = mount_or_skip("the_harness_catches_each_missing_fsync") else {
        return;
    };
    // Crash point k: the power fails right after the k-th mutating operation of the replace
    // (create, write, fsync, rename, fsync dir, minus the one removed); the last k is after the
    // writer returned, when the new value counts as acknowledged.
    let cases = [
        (Recipe::Full, Model::Strict, vec![]),
        (Recipe::Full, Model::NamesDurable, vec![]),
        // The rename is never made durable: the value the writer acknowledged is gone.
        (
            Recipe::NoDirFsync,
            Model::Strict,
            vec![(5, After::Value(1))],
        ),
        // Names are durable at once here, so this model cannot see the missing fsync.
        (Recipe::NoDirFsync, Model::NamesDurable, vec![]),
        // The renamed file's data was never fsynced: an empty file where a number should be.
        (
            Recipe::NoFileFsync,
            Model::Strict,
            vec![
                (4, After::Unparsable(Vec::new())),
                (5, After::Unparsable(Vec::new())),
            ],
        ),
        (
            Recipe::NoFileFsync,
            Model::NamesDurable,
            vec![
                (3, After::Unparsable(Vec::new())),
                (4, After::Unparsable(Vec::new())),
                (5, After::Unparsable(Vec::new())),
            ],
        ),
    ];
    for (recipe, model, expected) in cases {
        assert_eq!(
            violations(&mut fs, recipe, model),
            expected,
            "{recipe:?} under {model:?}"
        );
    }
}

fn fsync_dir(dir: &Path) {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

/// Makes `path` a durable file holding `bytes`, with nothing pending.
fn fresh(path: &Path, bytes: &[u8]) {
    let _ = fs::remove_file(path);
    let mut f = File::create_new(path).expect("create");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
    fsync_dir(path.parent().expect("a directory"));
}

/// A single record, rewritten in place without a checksum.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plain {
    /// `N\n` in decimal, as `pingpong_counter.txt`.
    Decimal,
    /// 8 bytes, little-endian.
    Raw,
}

impl Plain {
    fn encode(self, value: u64) -> Vec<u8> {
        match self {
            Plain::Decimal => format!("{value}\n").into_bytes(),
            Plain::Raw => value.to_le_bytes().to_vec(),
        }
    }

    /// `pwrite` at offset 0, then `fdatasync`: the in-place recipe, minus the checksum.
    fn write(self, path: &Path, value: u64) {
        let f = OpenOptions::new().write(true).open(path).expect("open");
        f.write_all_at(&self.encode(value), 0).expect("pwrite");
        f.sync_data().expect("fdatasync");
    }

    fn read(self, path: &Path) -> After {
        let bytes = fs::read(path).expect("read");
        let value = match self {
            Plain::Decimal => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            Plain::Raw => bytes.try_into().ok().map(u64::from_le_bytes),
        };
        value.map_or_else(
            || After::Unparsable(fs::read(path).expect("read")),
            After::Value,
        )
    }
}

/// Every crash point of rewriting `old` with `old + 1` in place, torn writes included: those
/// where the file holds neither the old value (unacknowledged) nor the new one.
fn plain_violations(fs: &mut CrashFs, plain: Plain, old: u64) -> Vec<(String, After)> {
    let path = fs.path().join("counter");
    fresh(&path, &plain.encode(old));
    let mark = fs.mutating_ops();
    plain.write(&path, old + 1);
    let plan = every_crash_point(&fs.journal_since(mark));
    fs.cut_power(Model::Strict).expect("cut");
    // A pwrite and an fdatasync, in both models: 1 + (the write's tears) + 1 + 1 each.
    let tears = match plain {
        Plain::Decimal => 2 + 2 * 2, // 3 bytes: lost, whole, 2 prefixes, 2 suffixes
        Plain::Raw => 2 + 2 * 7,
    };
    assert_eq!(plan.len(), 2 * (3 + tears), "{plan:?}");

    let mut found = Vec::new();
    for point in plan {
        fresh(&path, &plain.encode(old));
        fs.crash_after(point.after);
        plain.write(&path, old + 1);
        let acknowledged = !fs.frozen();
        fs.cut_power(point.cut())
            .unwrap_or_else(|e| panic!("{point}: {e}"));
        let after = plain.read(&path);
        let fine = match after {
            After::Value(v) => v == old + 1 || (v == old && !acknowledged),
            _ => false,
        };
        if !fine {
            found.push((point.to_string(), after));
        }
    }
    found
}

/// [`plain_violations`] the other way: the recipe run once per `k`, the state it left cut every
/// way [`every_cut`] lists, from a snapshot. Must find the same crash points.
fn plain_violations_by_snapshot(fs: &mut CrashFs, plain: Plain, old: u64) -> Vec<(String, After)> {
    let path = fs.path().join("counter");
    fresh(&path, &plain.encode(old));
    let mark = fs.mutating_ops();
    plain.write(&path, old + 1);
    let ops = fs.mutating_ops() - mark;
    fs.cut_power(Model::Strict).expect("cut");

    let mut found = Vec::new();
    for k in 0..=ops + 1 {
        fresh(&path, &plain.encode(old));
        fs.crash_after(k);
        plain.write(&path, old + 1);
        let acknowledged = !fs.frozen();
        let snapshot = fs.snapshot();
        for cut in every_cut(&fs.pending()) {
            let Data::Exactly(tears) = cut.data.clone() else {
                panic!("{cut:?}");
            };
            let point = CrashPoint {
                after: k,
                names: cut.names,
                tears,
            };
            fs.cut_power_from(&snapshot, cut)
                .unwrap_or_else(|e| panic!("{point}: {e}"));
            let after = plain.read(&path);
            if !matches!(after, After::Value(v) if v == old + 1 || (v == old && !acknowledged)) {
                found.push((point.to_string(), after));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn a_single_record_without_a_checksum_is_torn_into_a_count_nobody_wrote() {
    let Some(mut fs) = mount_or_skip("a_single_record_without_a_checksum_is_torn") else {
        return;
    };
    // "9\n" rewritten as "10\n": its first byte alone makes "1\n", its last two "90\n".
    let torn = |model| {
        [
            (
                format!("{model:?}, after 1: write 3 B at 0 Prefix(1)"),
                After::Value(1),
            ),
            (
                format!("{model:?}, after 1: write 3 B at 0 Suffix(2)"),
                After::Value(90),
            ),
        ]
    };
    let expected = [torn(Model::Strict), torn(Model::NamesDurable)].concat();
    assert_eq!(plain_violations(&mut fs, Plain::Decimal, 9), expected);
    let mut sorted = expected;
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        plain_violations_by_snapshot(&mut fs, Plain::Decimal, 9),
        sorted
    );
    // 255 as 8 raw bytes, ff 00 .., rewritten as 256, 00 01 ..: the first byte alone makes 0
    // (the count lost), the last seven 511 (a count never reached).
    let torn = |model| {
        [
            (
                format!("{model:?}, after 1: write 8 B at 0 Prefix(1)"),
                After::Value(0),
            ),
            (
                format!("{model:?}, after 1: write 8 B at 0 Suffix(7)"),
                After::Value(511),
            ),
        ]
    };
    assert_eq!(
        plain_violations(&mut fs, Plain::Raw, 255),
        [torn(Model::Strict), torn(Model::NamesDurable)].concat()
    );
}

/// One increment of the two-slot record, as the durable counter makes it: read both slots,
/// write the next record into the slot not holding the latest, `fdatasync`. Returns the count
/// written.
fn increment(lock: &Path) -> u64 {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(lock)
        .expect("open");
    let latest = read_slots(&file)
        .expect("read")
        .latest()
        .expect("never two torn slots");
    let previous = latest.record.unwrap_or(Record { seq: 0, value: 0 });
    let record = Record {
        seq: previous.seq + 1,
        value: previous.value + 1,
    };
    write_slot(&file, latest.next_slot, &record).expect("pwrite");
    file.sync_data().expect("fdatasync");
    record.value
}

/// The count the record holds after a cut (0 for none yet), or why it holds none: the reader
/// must always find a record it can trust, never two torn slots, never a torn value.
fn record_after_cut(lock: &Path) -> Result<u64, String> {
    let file = File::open(lock).map_err(|e| format!("open: {e}"))?;
    let slots = read_slots(&file).map_err(|e| format!("read: {e}"))?;
    let latest = slots
        .latest()
        .map_err(|_| format!("both slots torn: {slots:?}"))?;
    match latest.record {
        None => Ok(0),
        // Each increment adds one to both: anything else was made by a tear.
        Some(Record { seq, value }) if seq == value => Ok(value),
        Some(record) => Err(format!("a record nobody wrote: {record:?}")),
    }
}

/// Runs `increments` increments of the record at `lock`, stopping early never: returns the last
/// count acknowledged before the power failed (the increment's fdatasync returned first).
fn run_increments(fs: &CrashFs, lock: &Path, increments: u64, mut acknowledged: u64) -> u64 {
    for _ in 0..increments {
        let value = increment(lock);
        if !fs.frozen() {
            acknowledged = value;
        }
    }
    acknowledged
}

/// Checks one cut of the record: the count is the acknowledged one or the one in flight then.
fn check_record(lock: &Path, at: &str, acknowledged: u64) -> u64 {
    match record_after_cut(lock) {
        Ok(v) if v == acknowledged || v == acknowledged + 1 => v,
        Ok(v) => panic!("{at}: the record holds {v}; acknowledged {acknowledged}"),
        Err(e) => panic!("{at}: {e}"),
    }
}

#[test]
fn the_two_slot_record_survives_every_crash_point_of_three_increments_in_both_models() {
    let Some(mut fs) = mount_or_skip("the_two_slot_record_survives_every_crash_point") else {
        return;
    };
    let lock = fs.path().join("pingpong_counter.txt.lock");
    // From a new, empty lock file: slot 0, then slot 1 (the file grows to 4 KiB + 32), then
    // slot 0 again over a valid record.
    fresh(&lock, b"");
    let mark = fs.mutating_ops();
    assert_eq!(run_increments(&fs, &lock, 3, 0), 3);
    let journal = fs.journal_since(mark);
    let plan: Vec<CrashPoint> = every_crash_point(&journal);
    fs.cut_power(Model::Strict).expect("cut");
    // 3 × (pwrite, fdatasync); 64 tears of each 32-byte write; k = 0..=7 in both models.
    assert_eq!(journal.len(), 6);
    assert_eq!(plan.len(), 2 * (5 + 3 * 64));

    let mut outcomes = [0u64; 4];
    for point in &plan {
        let at = point.to_string();
        fresh(&lock, b"");
        fs.crash_after(point.after);
        let acknowledged = run_increments(&fs, &lock, 3, 0);
        fs.cut_power(point.cut())
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        let value = check_record(&lock, &at, acknowledged);
        outcomes[value as usize] += 1;
        // The next increment after the cut continues from it, whichever slot was torn.
        assert_eq!(increment(&lock), value + 1, "{at}: the next increment");
    }
    // Every count from none to the third came out of some crash point.
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}

/// A writer of a count in the file `counter`, for [`random_cuts`].
struct Writer<'a> {
    /// The bytes of a count of 0.
    zero: &'a [u8],
    increment: &'a dyn Fn(&Path) -> u64,
    read: &'a dyn Fn(&Path) -> Result<u64, String>,
}

/// Seeded random torn cuts of a writer that increments a count: `(round, what went wrong)` for
/// each round whose cut lost an acknowledged count or made one nobody wrote. The state carries
/// over from round to round, torn slots included.
fn random_cuts(
    fs: &mut CrashFs,
    Replay { seed, rounds }: Replay,
    Writer {
        zero,
        increment,
        read,
    }: Writer,
) -> Vec<(u64, String)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut found = Vec::new();
    let path = fs.path().join("counter");
    fresh(&path, zero);
    let mut acknowledged = 0;
    for round in 0..rounds {
        let names = if rng.bool() {
            Model::Strict
        } else {
            Model::NamesDurable
        };
        // Two operations per increment: the power fails within the first 10 increments.
        let k = rng.u64(0..20);
        fs.crash_after(k);
        for _ in 0..12 {
            let value = increment(&path);
            if !fs.frozen() {
                acknowledged = value;
            }
        }
        let tears = fs.cut_power(Cut::seeded(names, rng.u64(..))).expect("cut");
        match read(&path) {
            Ok(v) if v == acknowledged || v == acknowledged + 1 => acknowledged = v,
            outcome => {
                found.push((
                    round,
                    format!("{names:?}, k={k}, {tears:?}: {outcome:?} after {acknowledged}"),
                ));
                // Go on from a clean count.
                fresh(&path, zero);
                acknowledged = 0;
            }
        }
    }
    found
}

#[test]
fn the_two_slot_record_survives_random_torn_cuts_that_catch_a_plain_record() {
    let Some(mut fs) = mount_or_skip("the_two_slot_record_survives_random_torn_cuts") else {
        return;
    };
    // The plain decimal record first, with a fixed seed: the random cuts must be able to fail.
    let read_plain = |p: &Path| match Plain::Decimal.read(p) {
        After::Value(v) => Ok(v),
        other => Err(format!("{other:?}")),
    };
    let plain = Writer {
        zero: b"0\n",
        increment: &|p| {
            let next = read_plain(p).expect("a count") + 1;
            Plain::Decimal.write(p, next);
            next
        },
        read: &read_plain,
    };
    let broken = random_cuts(
        &mut fs,
        Replay {
            seed: 1,
            rounds: 100,
        },
        plain,
    );
    println!("plain decimal record: {} of 100 rounds broke", broken.len());
    assert!(
        !broken.is_empty(),
        "100 random torn cuts never broke a plain record"
    );

    let two_slots = Writer {
        zero: b"",
        increment: &increment,
        read: &record_after_cut,
    };
    let broken = random_cuts(&mut fs, replay(300), two_slots);
    assert_eq!(broken, [], "the two-slot record broke");
}
