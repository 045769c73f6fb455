//! Two writers of one file overlapping, as two log-writers do during a rollout (SPEC §3): each
//! replace and each start-up sweep of temporary files runs under `<name>.lock`, so a sweep never
//! removes a temporary file another writer is about to rename, and every replace succeeds.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use shared_fs::GuardedFile;

#[test]
fn sweeps_and_replaces_from_many_writers_never_break_a_replace() {
    let dir = tempfile::tempdir().unwrap();
    let file = GuardedFile::new(dir.path().join("output.log"));
    let stop = Arc::new(AtomicBool::new(false));

    // Writers starting up over and over: each start sweeps the temporary files.
    let sweepers: Vec<_> = (0..2)
        .map(|_| {
            let (file, stop) = (file.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    file.sweep_temp_files().unwrap();
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..3u8)
        .map(|id| {
            let file = file.clone();
            thread::spawn(move || {
                for i in 0..150u32 {
                    file.replace(format!("writer {id} entry {i}").as_bytes())
                        .unwrap_or_else(|e| panic!("writer {id}, entry {i}: {e}"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a replace failed");
    }
    stop.store(true, Ordering::Relaxed);
    for sweeper in sweepers {
        sweeper.join().unwrap();
    }

    let content = std::fs::read_to_string(file.path()).unwrap();
    assert!(content.ends_with("entry 149"), "{content}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["output.log", "output.log.lock"],
        "no temporary file is left"
    );
}

#[test]
fn the_sweep_removes_what_it_can_and_leaves_what_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let file = GuardedFile::new(dir.path().join("output.log"));
    // Named like a temporary file, but a directory: remove_file cannot take it. Before, the
    // sweep stopped at it with an error, and log-writer exited 1 on every start.
    let stuck = dir.path().join(".output.log.0123456789abcdef.tmp");
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("inside"), "x").unwrap();
    let stale = [
        dir.path().join(".output.log.0000000000000000.tmp"),
        dir.path().join(".output.log.ffffffffffffffff.tmp"),
    ];
    for path in &stale {
        std::fs::write(path, "half an entry").unwrap();
    }
    assert_eq!(file.sweep_temp_files().unwrap(), 2);
    assert!(stale.iter().all(|p| !p.exists()));
    assert!(
        stuck.join("inside").exists(),
        "the sweep removes files only"
    );
}
