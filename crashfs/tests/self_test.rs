//! The harness must be able to fail: a reference writer (the shared-fs recipe: temporary file,
//! fsync, rename, fsync of the directory) is checked at every crash point of one replace, with
//! each fsync removed in turn. The full recipe must pass in both models; without the directory
//! fsync the strict model must lose an acknowledged value; without the file fsync both models
//! must leave an empty file. If these counts were zero the power-loss proof would prove nothing.

use std::{
    fs::{self, File},
    io::Write,
    path::Path,
};

use crashfs::{CrashFs, Model, env::mount_or_skip};

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
#[derive(Debug, PartialEq)]
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
