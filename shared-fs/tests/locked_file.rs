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

use shared_fs::LockedFile;

#[test]
fn sweeps_and_replaces_from_many_writers_never_break_a_replace() {
    let dir = tempfile::tempdir().unwrap();
    let file = LockedFile::new(dir.path().join("output.log"));
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
