//! log-writer and log-reader when the volume hangs or holds a huge file, and two writers
//! overlapping as in a rollout, as real processes (SPEC §3, §5, §6): a hanging file keeps
//! neither from exiting on SIGTERM; a huge file is reported, never loaded; two writers on one
//! directory never fail a tick and a reader never sees a torn entry.

mod common;

use std::{
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use common::{
    DEADLINE, Proc, entry, eventually, get, parse_entry, run_to_end, start_reader, start_writer,
};
use test_support::plant_fifo;

#[test]
fn a_writer_whose_counter_hangs_still_exits_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    plant_fifo(&dir.path().join("pingpong_counter.txt"));
    let mut writer = start_writer(dir.path(), "100ms");
    // Started: its first tick is now stuck opening the FIFO.
    writer.wait_for_log("writing entries");
    writer.signal("TERM");
    assert_eq!(writer.wait_exit(DEADLINE).code(), Some(0));
    assert!(!dir.path().join("output.log").exists());
}

#[test]
fn a_reader_whose_output_log_hangs_serves_503_and_exits_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("output.log");
    plant_fifo(&output);
    let (mut reader, port) = start_reader(dir.path());
    let answer = get(port, "/").expect("GET /");
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.text(),
        format!(
            "{} is a named pipe (FIFO), not a regular file\n",
            output.display()
        )
    );
    reader.signal("TERM");
    assert_eq!(reader.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn a_reader_follows_output_log_again_once_a_fifo_there_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("output.log");
    let first = "2020-03-30T12:15:17.705Z: 8523ecb1-c716-4cb6-a044-b9e83bb98e43.\nPing / Pongs: 3";
    let second = "2020-03-30T12:15:22.705Z: 8523ecb1-c716-4cb6-a044-b9e83bb98e43.\nPing / Pongs: 4";
    fs::write(&output, first).expect("writing the first entry");
    let (_reader, port) = start_reader(dir.path());
    assert_eq!(get(port, "/").expect("GET /").text(), first);

    let fifo = dir.path().join("fifo");
    plant_fifo(&fifo);
    fs::rename(&fifo, &output).expect("a FIFO over output.log");
    eventually(Duration::from_secs(2), "the FIFO to be reported", || {
        let answer = get(port, "/").expect("GET /");
        (answer.status == 503).then_some(())
    });
    let answer = get(port, "/").expect("GET /");
    assert_eq!(
        answer.text(),
        format!(
            "{} is a named pipe (FIFO), not a regular file\n",
            output.display()
        )
    );
    thread::sleep(Duration::from_millis(300));
    let next = dir.path().join("next");
    fs::write(&next, second).expect("writing the second entry");
    fs::rename(&next, &output).expect("replacing the FIFO");
    eventually(Duration::from_secs(2), "the entry after the FIFO", || {
        (get(port, "/").expect("GET /").text() == second).then_some(())
    });
}

#[test]
fn a_writer_writes_again_once_a_fifo_at_the_counter_path_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counter = dir.path().join("pingpong_counter.txt");
    fs::write(&counter, "3\n").expect("counter");
    let mut writer = start_writer(dir.path(), "100ms");
    assert_eq!(entry(&writer.next_entry()).pongs, 3);

    let fifo = dir.path().join("fifo");
    plant_fifo(&fifo);
    fs::rename(&fifo, &counter).expect("a FIFO over the counter");
    writer.wait_for_log(&format!(
        "{} is a named pipe (FIFO), not a regular file",
        counter.display()
    ));
    thread::sleep(Duration::from_millis(500));
    let repaired = dir.path().join("repaired");
    fs::write(&repaired, "7\n").expect("repaired counter");
    fs::rename(&repaired, &counter).expect("replacing the FIFO");
    eventually(
        Duration::from_secs(2),
        "an entry with the repaired count",
        || match writer.try_next_entry() {
            Ok(text) if entry(&text).pongs == 7 => Some(()),
            _ => None,
        },
    );
}

#[test]
fn a_temporary_name_that_cannot_be_removed_is_reported_and_the_writer_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stuck = dir.path().join(".output.log.0123456789abcdef.tmp");
    fs::create_dir(&stuck).expect("a directory named like a temporary file");
    let mut writer = start_writer(dir.path(), "100ms");
    entry(&writer.next_entry());
    writer.wait_for_log(&format!(
        "cannot remove a temporary file left by a crash; leaving it path={}",
        stuck.display()
    ));
    writer.assert_running();
}

#[test]
fn huge_files_are_reported_by_size_and_never_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["output.log", "pingpong_counter.txt"] {
        fs::File::create(dir.path().join(name))
            .expect("creating")
            .set_len(100_000_000)
            .expect("growing");
    }
    let (reader, port) = start_reader(dir.path());
    let answer = get(port, "/").expect("GET /");
    assert_eq!(answer.status, 503);
    assert!(
        answer
            .text()
            .contains("is too large: 100000000 bytes, at most 1024 expected"),
        "{}",
        answer.text()
    );
    let mut writer = start_writer(dir.path(), "100ms");
    writer.wait_for_log("is too large: 100000000 bytes, at most 64 expected");
    for (name, process) in [("log-reader", &reader), ("log-writer", &writer)] {
        let peak = process.peak_rss();
        assert!(
            peak < 32 << 20,
            "{name}: peak RSS {} MiB with 100 MB files (the pod's limit is 32 Mi)",
            peak >> 20
        );
    }
    assert_eq!(
        fs::metadata(dir.path().join("output.log"))
            .expect("stat")
            .len(),
        100_000_000,
        "a tick with a corrupt counter writes nothing"
    );
}

#[test]
fn two_writers_on_one_volume_never_fail_a_tick_nor_tear_an_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("output.log");
    let stop = Arc::new(AtomicBool::new(false));
    let reads = {
        let (stop, output) = (stop.clone(), output.clone());
        thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match fs::read_to_string(&output) {
                    Ok(text) => {
                        parse_entry(&text).unwrap_or_else(|e| panic!("torn read: {e}"));
                        reads += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("reading output.log: {e}"),
                }
            }
            reads
        })
    };
    // The old writer runs; new ones start beside it one after another, each sweeping the
    // temporary files at start, as a rollout with maxSurge 1 does.
    let mut old = start_writer(dir.path(), "100ms");
    old.next_entry();
    let mut starts = Vec::new();
    for _ in 0..5 {
        let mut new: Proc = start_writer(dir.path(), "100ms");
        new.next_entry();
        new.next_entry();
        new.signal("TERM");
        assert_eq!(new.wait_exit(DEADLINE).code(), Some(0));
        starts.push(new.stderr());
    }
    old.next_entry();
    old.signal("TERM");
    assert_eq!(old.wait_exit(DEADLINE).code(), Some(0));
    stop.store(true, Ordering::Relaxed);
    let reads = reads.join().expect("a read saw a torn entry");

    assert!(reads > 0);
    starts.push(old.stderr());
    for stderr in starts {
        assert!(
            !stderr.contains("ERROR"),
            "a writer failed a tick:\n{stderr}"
        );
    }
}

#[test]
fn log_interval_outside_100ms_to_24h_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8");
    for interval in ["1ns", "99ms", "25h"] {
        let (status, _, stderr) = run_to_end(
            env!("CARGO_BIN_EXE_log-writer"),
            &[],
            &[("DATA_DIR", data_dir), ("LOG_INTERVAL", interval)],
        );
        assert_eq!(status.code(), Some(2), "{interval}");
        assert_eq!(
            stderr,
            format!(
                "log-writer: invalid LOG_INTERVAL=\"{interval}\": expected a duration from 100ms to 24h, such as 250ms, 5s or 1m\n"
            )
        );
    }
}
