//! What log-writer and log-reader write to stderr (SPEC §2 `LOG_FORMAT`), and what a stdout
//! nobody reads does to log-writer: it costs printed entries, never a tick.
//!
//! - `LOG_FORMAT=json`: every stderr line is one JSON object with `timestamp`, `level`,
//!   `message`, the request span's `method` and `route`, and the event's own fields (`status`
//!   and `latency_us` as numbers); `text` (the default): no line is JSON. log-writer's entries on
//!   stdout are the same in both.
//! - A stalled stdout costs printed entries, never the entries on the volume: `output.log` keeps
//!   advancing, and once stdout drains one line on stderr says how many entries were not printed.

mod common;

use std::{
    process::Stdio,
    time::{Duration, SystemTime},
};

use common::{
    DEADLINE, Spawn, entry, eventually, free_port, get, parse_entry, poll_until, request,
    run_to_end, wait_healthy,
};
use serde_json::Value;
use shared_fs::{CounterFile, GuardedFile};
use test_support::{process::read_entries, small_pipe};

const WRITER: &str = env!("CARGO_BIN_EXE_log-writer");
const READER: &str = env!("CARGO_BIN_EXE_log-reader");

/// Every line of `stderr`, parsed as `format` says it must be: in `json` a JSON object with an
/// RFC 3339 UTC timestamp, a level and a message; in `text` not JSON at all.
fn parse_lines(format: &str, stderr: &str) -> Vec<Value> {
    assert!(!stderr.is_empty(), "nothing logged");
    let mut objects = Vec::new();
    for line in stderr.lines() {
        let parsed = serde_json::from_str::<Value>(line);
        if format == "text" {
            assert!(parsed.is_err(), "a JSON line in text format: {line}");
            continue;
        }
        let object = parsed.unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let timestamp = object["timestamp"].as_str().expect(line);
        assert!(
            timestamp.ends_with('Z') && humantime::parse_rfc3339(timestamp).is_ok(),
            "{line}"
        );
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                .contains(&object["level"].as_str().expect(line)),
            "{line}"
        );
        assert!(object["message"].is_string(), "{line}");
        objects.push(object);
    }
    objects
}

fn find<'a>(objects: &'a [Value], what: &str, matches: impl Fn(&Value) -> bool) -> &'a Value {
    objects
        .iter()
        .find(|o| matches(o))
        .unwrap_or_else(|| panic!("no {what} line: {objects:#?}"))
}

#[test]
fn every_line_log_writer_writes_is_json_in_json_format_and_the_entries_stay_as_they_are() {
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = CounterFile::in_dir(dir.path());
        counter.set(3).expect("setting the counter");
        let data_dir = dir.path().to_str().expect("utf-8 temp path");
        let mut writer = common::start(
            WRITER,
            &[
                ("DATA_DIR", data_dir),
                ("LOG_INTERVAL", "100ms"),
                ("LOG_FORMAT", format),
            ],
            true,
        );
        assert_eq!(entry(&writer.next_entry()).pongs, 3);
        shared_fs::replace(counter.path(), b"-1\n").expect("corrupting the counter");
        writer.wait_for_log("entry skipped");
        counter.set(4).expect("repairing the counter");
        poll_until("an entry with the repaired count", || {
            (entry(&writer.next_entry()).pongs == 4).then_some(())
        });
        writer.signal("TERM");
        assert_eq!(writer.wait_exit(DEADLINE).code(), Some(0));

        let objects = parse_lines(format, &writer.stderr());
        if format == "text" {
            continue;
        }
        let started = find(&objects, "start", |o| o["message"] == "writing entries");
        assert_eq!(started["data_dir"], data_dir);
        assert_eq!(started["interval"], "100ms");
        let skipped = find(&objects, "skipped entry", |o| {
            o["level"] == "ERROR"
                && o["message"] == "entry skipped; output.log keeps the last good entry"
        });
        assert_eq!(
            skipped["error"],
            format!(
                r#"corrupt counter file {}: expected a decimal number from 0 to 18446744073709551615, found "-1\n""#,
                counter.path().display()
            )
        );
        find(&objects, "shutdown", |o| {
            o["message"] == "shutting down" && o["signal"] == "SIGTERM"
        });
    }
}

/// The line of the request `method route` answered `status`.
fn request_line<'a>(objects: &'a [Value], method: &str, route: &str, status: u64) -> &'a Value {
    find(objects, &format!("{method} {route} {status}"), |o| {
        o["message"] == "finished processing request"
            && o["span"] == "request"
            && o["method"] == method
            && o["route"] == route
            && o["status"] == status
            && o["latency_us"].is_u64()
    })
}

#[test]
fn every_line_log_reader_writes_is_json_in_json_format_and_none_is_in_text_format() {
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().to_str().expect("utf-8 temp path");
        let port = free_port();
        let mut reader = common::start(
            READER,
            &[
                ("DATA_DIR", data_dir),
                ("PORT", &port.to_string()),
                ("LOG_FORMAT", format),
            ],
            false,
        );
        wait_healthy(&mut reader, port);
        assert_eq!(get(port, "/").expect("GET /").status, 503);
        assert_eq!(get(port, "/nowhere").expect("GET /nowhere").status, 404);
        assert_eq!(request(port, "POST", "/").expect("POST /").status, 405);
        // log-reader exports the process-wide metrics too.
        let metrics = get(port, "/metrics").expect("GET /metrics").text();
        for line in [
            "log_lines_dropped_total 0\n",
            "http_connections_evicted_total 0\n",
            "http_connections_refused_total 0\n",
            "# TYPE http_connections_open gauge\n",
        ] {
            assert!(metrics.contains(line), "no {line:?} in {metrics}");
        }
        GuardedFile::new(dir.path().join("output.log"))
            .replace(b"an entry")
            .expect("writing output.log");
        poll_until("the entry on /", || {
            (get(port, "/").expect("GET /").status == 200).then_some(())
        });
        reader.signal("TERM");
        assert_eq!(reader.wait_exit(DEADLINE).code(), Some(0));

        let stderr = reader.stderr();
        let objects = parse_lines(format, &stderr);
        if format == "text" {
            for needle in [
                r#"request{method="GET" route="/"}: finished processing request status=503 latency_us="#,
                r#"request{method="GET" route="unmatched"}: finished processing request status=404"#,
                r#"request{method="POST" route="/"}: finished processing request status=405"#,
                r#"request{method="GET" route="/"}: finished processing request status=200"#,
            ] {
                assert!(stderr.contains(needle), "no {needle:?} in\n{stderr}");
            }
            continue;
        }
        request_line(&objects, "GET", "/", 503);
        request_line(&objects, "GET", "unmatched", 404);
        request_line(&objects, "POST", "/", 405);
        request_line(&objects, "GET", "/", 200);
        request_line(&objects, "GET", "/healthz", 200);
        let listening = find(&objects, "listening", |o| {
            o["message"] == "log-reader listening"
        });
        assert_eq!(listening["data_dir"], data_dir);
        find(&objects, "shutdown", |o| {
            o["message"] == "shutting down" && o["signal"] == "SIGTERM"
        });
        find(&objects, "exit", |o| o["message"] == "drained; exiting");
    }
}

#[test]
fn a_malformed_log_format_exits_2_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 temp path");
    for (bin, name) in [(WRITER, "log-writer"), (READER, "log-reader")] {
        let (status, stdout, stderr) = run_to_end(
            bin,
            &[],
            &[
                ("DATA_DIR", data_dir),
                ("PORT", "0"),
                ("LOG_FORMAT", "yaml"),
            ],
        );
        assert_eq!((status.code(), stdout.as_str()), (Some(2), ""));
        assert_eq!(
            stderr,
            format!("{name}: invalid LOG_FORMAT=\"yaml\": expected text or json\n")
        );
        let (_, help, _) = run_to_end(bin, &["--help"], &[]);
        assert!(help.contains("LOG_FORMAT"), "{help}");
    }
}

#[test]
fn a_stdout_nobody_reads_stops_the_printed_entries_not_output_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (read, write) = small_pipe();
    let writer = Spawn::new(WRITER)
        .env("DATA_DIR", dir.path())
        .env("LOG_INTERVAL", "100ms")
        .env_remove("RUST_LOG")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::from(write))
        .start();
    let started = SystemTime::now();

    // A 4 KiB pipe holds 50 entries, 5 s of them, and the queue 16 more: by 9 s some 20
    // entries could not be printed. The file must advance regardless.
    let output = dir.path().join("output.log");
    let late = eventually(Duration::from_secs(30), "output.log past 9 s", || {
        let text = std::fs::read_to_string(&output).ok()?;
        let at = parse_entry(&text).ok()?.at;
        (at.duration_since(started).ok()? >= Duration::from_secs(9)).then_some(text)
    });
    let id = entry(&late).id;

    // Once stdout is read again the printed entries resume, each exactly as SPEC §5 has it, and
    // stderr says how many were not printed.
    let entries = read_entries(read, 2);
    let mut stderr = Vec::new();
    let notice = eventually(DEADLINE, "the entries-not-printed notice", || {
        stderr = writer.stderr_lines();
        stderr
            .iter()
            .find(|l| l.contains("entries not printed"))
            .cloned()
    });
    let not_printed: u64 = notice
        .split_whitespace()
        .find_map(|w| w.strip_prefix("dropped=")?.parse().ok())
        .unwrap_or_else(|| panic!("no dropped=N in {notice:?}"));
    assert!(not_printed > 0, "{notice}");
    let printed: Vec<_> = eventually(DEADLINE, "an entry printed after the notice", || {
        let printed: Vec<_> = entries.try_iter().collect();
        (!printed.is_empty()).then_some(printed)
    });
    for text in &printed {
        assert_eq!(entry(text).id, id);
    }
    assert!(stderr.iter().all(|l| !l.contains("ERROR")), "{stderr:#?}");
}
