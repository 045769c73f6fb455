//! SPEC §7 guarantee 6 for `output.log`, proved with the real log-writer on crashfs (a FUSE
//! filesystem that forgets whatever was not fsynced when the power is cut): after a cut at any
//! instant the file holds one complete entry, the last one printed or a later one, never an
//! empty or partial file.
//!
//! - Random instants: a writer at a 100 ms interval, the power failing after a seeded random
//!   number of mutating operations, `POWER_LOSS_ROUNDS` rounds (default 100), each crashfs
//!   model chosen at random per round; the `POWER_LOSS_SEED` is printed for a replay.
//! - Every crash point of one entry's write, in both models, with the exact entry each leaves.
//!
//! These tests need root and `/dev/fuse`; without them they print why and pass, unless
//! `CRASHFS_REQUIRED=1` (CI) makes that a failure.

mod common;

use std::{fs, path::Path, sync::mpsc::TryRecvError, time::Duration};

use common::{Entry, Proc, eventually, parse_entry, start_writer};
use crashfs::{
    CrashFs, Cut, Model, Pending, Tear,
    env::{Outcome, Replay, mount_or_skip, old_or_new, replay, report},
};

const OUTPUT: &str = "output.log";

/// The entry a cut left, or why there is none.
fn on_disk(dir: &Path) -> Result<(String, Entry), String> {
    let bytes = fs::read(dir.join(OUTPUT)).map_err(|e| format!("{OUTPUT}: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|e| format!("{OUTPUT}: {e}"))?;
    let entry = parse_entry(&text)?;
    Ok((text, entry))
}

/// Cuts the power and removes what a crashed write left (temporary files), so that the next
/// writer's first operations are exactly its entry's. Returns how it tore what was pending.
fn cut(fs: &mut CrashFs, model: Model) -> Vec<(Pending, Tear)> {
    let tears = fs.cut_power(model).expect("cut");
    for entry in fs::read_dir(fs.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path).expect("remove temporary file");
        }
    }
    tears
}

#[test]
fn power_cuts_at_random_instants_leave_output_log_one_complete_entry() {
    let Some(mut fs) = mount_or_skip("log-writer power cuts at random instants") else {
        return;
    };
    let Replay { seed, rounds } = replay(100);
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = fs.path().to_path_buf();

    // The last entry printed before a power failure: the file must hold it or a later one.
    let writer = start_writer(&dir, "1h");
    let mut last_acknowledged = writer.next_entry();
    drop(writer);
    let mut acknowledged_entries = 1;
    let started = std::time::Instant::now();

    for round in 0..rounds {
        let at = format!("POWER_LOSS_SEED={seed}, round {round}");
        let model = if rng.bool() {
            Model::Strict
        } else {
            Model::NamesDurable
        };
        // 5 operations per entry, an entry at once and then every 100 ms (the shortest interval
        // allowed): up to 3 entries into the round.
        let k = rng.u64(0..15);
        let acknowledged_before = acknowledged_entries;
        fs.crash_after(k);
        let writer: Proc = start_writer(&dir, "100ms");
        let power = fs.probe();
        eventually(Duration::from_secs(30), "the power failure", || {
            loop {
                match writer.try_next_entry() {
                    // Looked at after it was printed: if the power has not failed yet, it was first.
                    Ok(entry) if !power.frozen() => {
                        last_acknowledged = entry;
                        acknowledged_entries += 1;
                    }
                    Ok(_) => {}
                    Err(TryRecvError::Empty) => return power.frozen().then_some(()),
                    Err(TryRecvError::Disconnected) => panic!("{at}: {}", writer.stderr()),
                }
            }
        });
        drop(writer); // killed and reaped
        // Whatever was written and not yet synced may survive torn (crashfs's data axis).
        let tears = fs
            .cut_power(Cut::seeded(model, rng.u64(..)))
            .unwrap_or_else(|e| panic!("{at}: cut: {e}"));
        let at = format!("{at} (tears {tears:?})");

        let (text, entry) =
            on_disk(&dir).unwrap_or_else(|e| panic!("{at} ({model:?}, k={k}): after the cut: {e}"));
        let acknowledged = parse_entry(&last_acknowledged).expect("a printed entry parses");
        report(&Outcome {
            test: "log-writer random instants",
            model,
            tears: &tears,
            after: k,
            of: None,
            expected: &format!("at or after {}", stamp(&last_acknowledged)),
            found: stamp(&text),
            acknowledged: acknowledged_entries - acknowledged_before,
        });
        assert!(
            entry.at >= acknowledged.at,
            "{at} ({model:?}, k={k}): {OUTPUT} went back to {entry:?} after {acknowledged:?} was printed"
        );
    }
    println!(
        "{rounds} rounds in {:.1?}, {acknowledged_entries} entries printed before a power failure",
        started.elapsed()
    );
}

/// An entry's timestamp, as [`report`] shows it.
fn stamp(entry: &str) -> &str {
    entry.split(": ").next().unwrap_or_default()
}

/// Whether the new entry survived at each crash point k = 0..=6 of one write (create, write,
/// fsync, rename, fsync of the directory; 6 is after it was printed): from the rename on in the
/// names-durable model, only from the directory fsync on in the strict one.
fn expected_outcomes(model: Model) -> Vec<bool> {
    let first_new = match model {
        Model::Strict => 5,
        Model::NamesDurable => 4,
    };
    (0..=OPS_PER_WRITE + 1).map(|k| k >= first_new).collect()
}

const OPS_PER_WRITE: u64 = 5;

#[test]
fn every_crash_point_of_one_entry_leaves_the_old_or_the_new_entry() {
    let Some(mut fs) = mount_or_skip("log-writer every crash point of one entry") else {
        return;
    };
    let dir = fs.path().to_path_buf();
    // A first writer creates what a start creates once (lock file); the second is measured.
    drop(start_writer(&dir, "1h").next_entry());
    let before = fs.mutating_ops();
    let writer = start_writer(&dir, "1h");
    let mut old = writer.next_entry();
    drop(writer);
    let ops = fs.mutating_ops() - before;

    for model in [Model::Strict, Model::NamesDurable] {
        let mut outcomes = Vec::new();
        for k in 0..=ops + 1 {
            let at = format!("{model:?}, crash point {k} of {ops}");
            fs.crash_after(k);
            let writer = start_writer(&dir, "1h");
            let new = writer.next_entry();
            let acknowledged = !fs.frozen();
            drop(writer);
            let tears = cut(&mut fs, model);

            let (text, _) = on_disk(&dir).unwrap_or_else(|e| panic!("{at}: {e}"));
            let is_new = if text == new {
                true
            } else if text == old && !acknowledged {
                false
            } else {
                panic!(
                    "{at}: {OUTPUT} holds {text:?}; old {old:?}, new {new:?} (acknowledged: {acknowledged})"
                )
            };
            outcomes.push(is_new);
            report(&Outcome {
                test: "log-writer entry",
                model,
                tears: &tears,
                after: k,
                of: Some(ops),
                expected: old_or_new(expected_outcomes(model).get(k as usize).copied()),
                found: old_or_new(Some(is_new)),
                acknowledged: u64::from(acknowledged),
            });
            if is_new {
                old = new;
            }
        }
        assert_eq!(outcomes, expected_outcomes(model), "{model:?}");
    }
    assert_eq!(ops, OPS_PER_WRITE);
}
