//! log-writer and log-reader as real processes: the UUID's lifetime, signals, a corrupt
//! counter, configuration errors, and reads racing with constant replacement.

mod common;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, SystemTime},
};

use common::{DEADLINE, entry, get, poll_until, run_to_end, start_reader, start_writer};
use log_output::{
    config::{READER_HELP, WRITER_HELP},
    entry::format_entry,
};
use shared_fs::{CounterFile, GuardedFile};

const WRITER: &str = env!("CARGO_BIN_EXE_log-writer");
const READER: &str = env!("CARGO_BIN_EXE_log-reader");

#[test]
fn entries_advance_and_the_uuid_lives_exactly_as_long_as_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = start_writer(dir.path(), "100ms");
    let entries: Vec<_> = (0..3).map(|_| entry(&first.next_entry())).collect();
    let id = entries[0].id;
    for pair in entries.windows(2) {
        assert_eq!((pair[1].id, pair[1].pongs), (id, 0));
        assert!(pair[0].at < pair[1].at, "time advances: {entries:?}");
    }

    // The count follows the counter file from one entry to the next.
    CounterFile::in_dir(dir.path())
        .set(7)
        .expect("setting the counter");
    poll_until("an entry with the new count", || {
        let next = entry(&first.next_entry());
        assert_eq!(next.id, id);
        (next.pongs == 7).then_some(())
    });

    first.signal("TERM");
    assert_eq!(first.wait_exit(DEADLINE).code(), Some(0));
    let last_of_first =
        entry(&std::fs::read_to_string(dir.path().join("output.log")).expect("read"));

    let mut second = start_writer(dir.path(), "100ms");
    let restarted = entry(&second.next_entry());
    assert_ne!(restarted.id, id, "a new process has a new UUID");
    assert_eq!(last_of_first.id, id);
    assert_eq!(restarted.pongs, 7);
    assert_eq!(entry(&second.next_entry()).id, restarted.id);
    second.signal("TERM");
    assert_eq!(second.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn sigterm_and_sigint_exit_0_without_waiting_for_the_next_tick() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = start_writer(dir.path(), "1h");
        writer.next_entry();
        writer.signal(signal);
        // Far below the hour to the next tick.
        assert_eq!(writer.wait_exit(Duration::from_secs(3)).code(), Some(0));
        assert!(
            writer
                .stderr()
                .contains(&format!(r#"shutting down signal="SIG{signal}""#)),
            "{}",
            writer.stderr()
        );
    }
}

#[test]
fn a_corrupt_counter_keeps_the_last_entry_and_logs_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counter = CounterFile::in_dir(dir.path());
    counter.set(7).expect("setting the counter");
    let mut writer = start_writer(dir.path(), "100ms");
    let mut last_printed = writer.next_entry();
    assert_eq!(entry(&last_printed).pongs, 7);

    shared_fs::replace(counter.path(), b"-1\n").expect("corrupting the counter");
    let expected = format!(
        r#" ERROR entry skipped; output.log keeps the last good entry error=corrupt counter file {}: expected a decimal number from 0 to 18446744073709551615, found "-1\n""#,
        counter.path().display()
    );
    // Two skipped ticks, so the file is read after a skip, not just before one.
    poll_until("two logged errors", || {
        writer.assert_running();
        let errors = writer
            .stderr()
            .lines()
            .filter(|l| l.ends_with(&expected))
            .count();
        (errors >= 2).then_some(())
    });
    let on_disk = std::fs::read_to_string(dir.path().join("output.log")).expect("reading");
    assert_eq!(entry(&on_disk).pongs, 7, "the last good entry stays");
    // Entries printed between the corruption and the first skipped tick still had the good
    // count; the file holds the last of them (stdout may reach us after stderr).
    poll_until("the entry on disk among those printed", || {
        while let Ok(text) = writer.try_next_entry() {
            last_printed = text;
        }
        (last_printed == on_disk).then_some(())
    });
    assert_eq!(
        std::fs::read(counter.path()).expect("reading the counter"),
        b"-1\n",
        "never overwritten"
    );

    // Repaired by the operator: the very next entry has the new count, without a restart.
    counter.set(8).expect("repairing the counter");
    assert_eq!(entry(&writer.next_entry()).pongs, 8);
}

#[test]
fn malformed_variables_and_arguments_exit_2_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 temp path");

    let (status, stdout, stderr) = run_to_end(
        WRITER,
        &[],
        &[("DATA_DIR", data_dir), ("LOG_INTERVAL", "abc")],
    );
    assert_eq!((status.code(), stdout.as_str()), (Some(2), ""));
    assert_eq!(
        stderr,
        "log-writer: invalid LOG_INTERVAL=\"abc\": expected a duration from 100ms to 24h, such as 250ms, 5s or 1m\n"
    );

    let (status, stdout, stderr) =
        run_to_end(READER, &[], &[("DATA_DIR", data_dir), ("PORT", "abc")]);
    assert_eq!((status.code(), stdout.as_str()), (Some(2), ""));
    assert_eq!(
        stderr,
        "log-reader: invalid PORT=\"abc\": expected a TCP port number from 0 to 65535\n"
    );

    let (status, stdout, stderr) = run_to_end(
        READER,
        &[],
        &[("DATA_DIR", data_dir), ("SHUTDOWN_DELAY", "5m")],
    );
    assert_eq!((status.code(), stdout.as_str()), (Some(2), ""));
    assert_eq!(
        stderr,
        "log-reader: invalid SHUTDOWN_DELAY=\"5m\": expected a duration from 0s to 60s such as 0s, 500ms or 5s\n"
    );

    let (status, _, stderr) = run_to_end(WRITER, &["--verbose"], &[("DATA_DIR", data_dir)]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "log-writer: unexpected argument \"--verbose\"; see --help\n"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("listing").count(),
        0,
        "nothing written before the configuration is valid"
    );
}

#[test]
fn help_and_version() {
    for (bin, name, help) in [
        (WRITER, "log-writer", WRITER_HELP),
        (READER, "log-reader", READER_HELP),
    ] {
        let (status, stdout, stderr) = run_to_end(bin, &["--version"], &[]);
        assert_eq!(
            (status.code(), stdout, stderr),
            (Some(0), format!("{name} 0.1.0\n"), String::new())
        );
        let (status, stdout, _) = run_to_end(bin, &["--help"], &[]);
        assert_eq!((status.code(), stdout.as_str()), (Some(0), help));
    }
    for variable in [
        "DATA_DIR",
        "LOG_INTERVAL",
        "RUST_LOG",
        "[default: 5s]",
        "PORT",
        "LISTEN_ADDRESS",
    ] {
        assert!(WRITER_HELP.contains(variable), "{variable}");
    }
    for variable in [
        "PORT",
        "LISTEN_ADDRESS",
        "[default: 3001]",
        "SHUTDOWN_DELAY",
        "[default: 0s]",
        "GET /readyz",
        "GET /metrics",
    ] {
        assert!(READER_HELP.contains(variable), "{variable}");
    }
}

#[test]
fn reader_answers_503_until_the_first_entry_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut reader, port) = start_reader(dir.path());
    let before = get(port, "/").expect("GET /");
    assert_eq!(before.status, 503);
    assert_eq!(
        before.text(),
        format!(
            "no entry yet: {} does not exist until log-writer writes its first entry\n",
            dir.path().join("output.log").display()
        )
    );
    assert_eq!(get(port, "/readyz").expect("GET /readyz").status, 200);

    let writer = start_writer(dir.path(), "1h");
    let first = writer.next_entry();
    // The reader re-reads the file every REFRESH (50 ms).
    let after = poll_until("the first entry on /", || {
        let answer = get(port, "/").expect("GET /");
        (answer.status == 200).then_some(answer)
    });
    assert_eq!(
        (after.content_type.as_deref(), after.text()),
        (Some("text/plain; charset=utf-8"), first)
    );

    reader.signal("TERM");
    assert_eq!(reader.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn thousands_of_reads_during_constant_replacement_are_all_whole_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counter = CounterFile::in_dir(dir.path());
    let (mut reader, port) = start_reader(dir.path());
    // The writer at its shortest interval; the thread below replaces the file as fast as fsync
    // allows on top, as a second writer overlapping in a rollout would.
    let writer = start_writer(dir.path(), "100ms");
    let id = entry(&writer.next_entry()).id;
    poll_until("the reader to serve the first entry", || {
        (get(port, "/").expect("GET /").status == 200).then_some(())
    });

    // Counts of different lengths, so a body cut or mixed from two entries cannot parse.
    let counts = [0, 7, 1234, 99_999_999, u64::MAX];
    let stop = Arc::new(AtomicBool::new(false));
    let changer = {
        let (stop, counter) = (stop.clone(), counter.clone());
        let output = GuardedFile::new(dir.path().join("output.log"));
        thread::spawn(move || {
            for n in counts.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                counter.set(*n).expect("setting the counter");
                let next = format_entry(SystemTime::now(), id, *n);
                output
                    .replace(next.as_bytes())
                    .expect("replacing output.log");
            }
        })
    };

    let clients: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                (0..750)
                    .map(|_| {
                        let answer = get(port, "/").expect("GET /");
                        assert_eq!(answer.status, 200, "{}", answer.text());
                        assert_eq!(
                            answer.content_type.as_deref(),
                            Some("text/plain; charset=utf-8")
                        );
                        answer.text()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let bodies: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client panicked"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    changer.join().expect("changer panicked");
    reader.assert_running();

    assert_eq!(bodies.len(), 3000);
    let mut distinct = HashSet::new();
    for body in &bodies {
        let read = entry(body);
        assert_eq!(read.id, id);
        assert!(counts.contains(&read.pongs), "{body}");
        distinct.insert(body.as_str());
    }
    // Otherwise the file never changed under the reads and this test proved nothing.
    assert!(
        distinct.len() > 1,
        "only {} distinct bodies",
        distinct.len()
    );
}

/// The value of `name` (no labels) in a `/metrics` body.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn with_port_set_log_writer_serves_its_entries_written_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 temp path");
    std::fs::write(dir.path().join("pingpong_counter.txt"), "7\n").expect("counter");
    // A day between ticks: the first entry is the only one while the test runs.
    let port = common::free_port();
    let mut writer = common::start(
        WRITER,
        &[
            ("DATA_DIR", data_dir),
            ("LOG_INTERVAL", "24h"),
            ("PORT", &port.to_string()),
            ("LISTEN_ADDRESS", "127.0.0.1"),
        ],
        true,
    );
    let first = entry(&writer.next_entry());
    assert_eq!(first.pongs, 7);
    common::wait_healthy(&mut writer, port);
    assert_eq!(get(port, "/readyz").expect("GET /readyz").status, 200);
    let body = get(port, "/metrics").expect("GET /metrics").text();
    assert_eq!(
        metric(&body, "log_writer_entries_total"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "log_writer_entries_skipped_total"),
        Some(0.0),
        "{body}"
    );
    let last = metric(&body, "log_writer_last_entry_timestamp_seconds").expect("last entry");
    let entry_millis = first
        .at
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    assert_eq!((last * 1000.0).floor() as u128, entry_millis, "{body}");
    writer.signal("TERM");
    assert_eq!(writer.wait_exit(DEADLINE).code(), Some(0));

    // A corrupt counter: the tick is skipped, and counted.
    std::fs::write(dir.path().join("pingpong_counter.txt"), "abc").expect("counter");
    let port = common::free_port();
    let mut writer = common::start(
        WRITER,
        &[
            ("DATA_DIR", data_dir),
            ("LOG_INTERVAL", "24h"),
            ("PORT", &port.to_string()),
        ],
        false,
    );
    common::wait_healthy(&mut writer, port);
    let body = poll_until("the skipped tick counted", || {
        let body = get(port, "/metrics").ok()?.text();
        (metric(&body, "log_writer_entries_skipped_total") == Some(1.0)).then_some(body)
    });
    assert_eq!(
        metric(&body, "log_writer_entries_total"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "log_writer_last_entry_timestamp_seconds"),
        Some(0.0),
        "{body}"
    );
    writer.signal("TERM");
    assert_eq!(writer.wait_exit(DEADLINE).code(), Some(0));
}
