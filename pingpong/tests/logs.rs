//! What pingpong writes to stderr, and that writing it never holds up serving (SPEC §2
//! `LOG_FORMAT`).
//!
//! - A stderr that nobody reads (a stalled log collector, `| less`, Ctrl-S) costs log lines,
//!   never answers: they are dropped, counted in `log_lines_dropped_total`, and one line says
//!   how many once stderr drains.
//! - `LOG_FORMAT=json`: every line is one JSON object with `timestamp`, `level`, `message`, the
//!   request span's `method` and `route`, and the event's own fields (`status` and
//!   `latency_us` as numbers); `text` (the default): no line is JSON.

mod support;

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use serde_json::Value;
use support::{BIN, Response, Server, eventually, listening_port, metric, run_briefly};
use test_support::{Spawn, http, small_pipe};

/// Long enough for a debug build on a loaded machine; a request held up by logging waits for
/// ever, so any deadline tells the two apart.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One request on a fresh connection, answered within [`ANSWER_WITHIN`]: (status, body).
fn request(port: u16, method: &str, path: &str) -> io::Result<(u16, String)> {
    let raw = http::request_bytes(method, path);
    http::exchange(http::loopback(port), &raw, ANSWER_WITHIN).map(Response::status_and_text)
}

#[test]
fn a_stderr_nobody_reads_never_stops_serving_and_the_dropped_lines_are_counted() {
    const REQUESTS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (read, write) = small_pipe();
    let mut server = Spawn::new(BIN)
        .env("PORT", "0")
        .env("DATA_DIR", dir.path())
        .env("RUST_LOG", "info")
        .env_remove("LOG_FORMAT")
        .stderr(Stdio::from(write))
        .start();

    // Read stderr only up to the line that gives the port; from then on nobody reads it.
    let mut stderr = BufReader::new(read);
    let mut received = Vec::new();
    let port = loop {
        let mut line = String::new();
        assert_ne!(
            stderr.read_line(&mut line).expect("stderr"),
            0,
            "{received:?}"
        );
        let port = listening_port(&line);
        received.push(line);
        if let Some(port) = port {
            break port;
        }
    };

    // Each request logs a line; after a few dozen the pipe is full and stays full.
    let mut pongs = 0;
    for i in 0..REQUESTS {
        let path = if i % 2 == 0 { "/pingpong" } else { "/healthz" };
        let answer = request(port, "GET", path)
            .unwrap_or_else(|e| panic!("request {i} ({path}) with stderr full: {e}"));
        if i % 2 == 0 {
            assert_eq!(answer, (200, format!("pong {pongs}")), "request {i}");
            pongs += 1;
        } else {
            assert_eq!(answer, (200, "ok".to_owned()), "request {i}");
        }
    }
    let (status, body) = request(port, "GET", "/metrics").expect("/metrics with stderr full");
    assert_eq!(status, 200);
    let dropped_while_stalled = metric(&body, "log_lines_dropped_total").expect(&body);
    assert!(
        dropped_while_stalled > 0,
        "{REQUESTS} request lines through a 4 KiB pipe nobody reads, none dropped?"
    );

    // Once stderr is read again, everything still queued arrives, and one line says how many
    // were dropped: the same number /metrics shows.
    let (lines_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    received.extend(lines.try_iter());
    let notice = eventually(ANSWER_WITHIN, "the dropped-lines notice", || {
        received.extend(lines.try_iter());
        received
            .iter()
            .find(|l| l.contains("log lines dropped"))
            .cloned()
    });
    let dropped: u64 = notice
        .split_whitespace()
        .find_map(|w| w.strip_prefix("dropped=")?.parse().ok())
        .unwrap_or_else(|| panic!("no dropped=N in {notice:?}"));
    assert!(
        dropped >= dropped_while_stalled,
        "{notice} after {dropped_while_stalled}"
    );
    let (_, body) = request(port, "GET", "/metrics").expect("/metrics");
    assert_eq!(
        metric(&body, "log_lines_dropped_total"),
        Some(dropped),
        "{notice}"
    );

    // Every request logged one line: each was either written or counted as dropped.
    let requests = REQUESTS as u64 + 2;
    eventually(ANSWER_WITHIN, "every request line accounted for", || {
        received.extend(lines.try_iter());
        let written = received
            .iter()
            .filter(|l| l.contains("finished processing request"))
            .count() as u64;
        assert!(written + dropped <= requests, "{written} + {dropped}");
        (written + dropped == requests).then_some(())
    });
    assert_eq!(
        request(port, "GET", "/healthz").unwrap(),
        (200, "ok".to_owned())
    );
    server.signal("TERM");
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
}

/// The whole stderr of a process, parsed line by line as `format` says it must be: in `json`
/// every line is a JSON object with a timestamp, a level and a message; in `text` none is JSON.
fn parse_lines(format: &str, stderr: &[String]) -> Vec<Value> {
    assert!(!stderr.is_empty(), "nothing logged");
    let mut objects = Vec::new();
    for line in stderr {
        let parsed = serde_json::from_str::<Value>(line);
        match format {
            "json" => {
                let object = parsed.unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(object.is_object(), "{line}");
                let timestamp = object["timestamp"].as_str().expect(line);
                let at = humantime_rfc3339(timestamp);
                assert!(at, "timestamp {timestamp:?} is not RFC 3339 UTC: {line}");
                assert!(
                    ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                        .contains(&object["level"].as_str().expect(line)),
                    "{line}"
                );
                assert!(object["message"].is_string(), "{line}");
                // What Cloud Logging and Elastic read without configuration.
                let severity = match object["level"].as_str().expect(line) {
                    "TRACE" | "DEBUG" => "DEBUG",
                    "WARN" => "WARNING",
                    level => level,
                };
                assert_eq!(object["severity"], severity, "{line}");
                assert_eq!(object["@timestamp"], object["timestamp"], "{line}");
                assert_eq!(object["log.level"], object["level"], "{line}");
                objects.push(object);
            }
            _ => assert!(parsed.is_err(), "a JSON line in text format: {line}"),
        }
    }
    objects
}

/// `2024-05-01T12:00:00.123456Z`: RFC 3339, UTC, `Z`.
fn humantime_rfc3339(timestamp: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = timestamp.strip_suffix('Z') else {
        return false;
    };
    let Some((date, time)) = rest.split_once('T') else {
        return false;
    };
    let date: Vec<&str> = date.split('-').collect();
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let hms: Vec<&str> = hms.split(':').collect();
    date.len() == 3
        && hms.len() == 3
        && date.iter().chain(&hms).all(|p| digits(p))
        && digits(fraction)
}

/// The request lines: the one line each request logs once it is answered.
fn request_line<'a>(objects: &'a [Value], route: &str, method: &str, status: u64) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["message"] == "finished processing request"
                && o["route"] == route
                && o["method"] == method
                && o["status"] == status
        })
        .unwrap_or_else(|| panic!("no line for {method} {route} {status}: {objects:#?}"))
}

#[test]
fn every_line_pingpong_writes_is_json_in_json_format_and_none_is_in_text_format() {
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_with(
            dir.path(),
            &[("LOG_FORMAT", format), ("SHUTDOWN_DELAY", "1s")],
        );
        assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
        assert_eq!(server.get("/nowhere").0, 404);
        assert_eq!(request(server.port, "POST", "/pingpong").unwrap().0, 405);
        server.signal(15);
        eventually(Duration::from_secs(5), "/readyz 503 while draining", || {
            (server.get("/readyz").0 == 503).then_some(())
        });
        assert_eq!(server.wait_exit(Duration::from_secs(15)).code(), Some(0));
        let stderr = server.stderr_lines();
        let objects = parse_lines(format, &stderr);
        if format == "text" {
            let answered = |needle: &str| {
                assert!(
                    stderr
                        .iter()
                        .any(|l| l.contains("finished processing request") && l.contains(needle)),
                    "no request line with {needle}: {stderr:#?}"
                );
            };
            answered(
                r#"request{method="GET" route="/pingpong"}: finished processing request status=200 latency_us="#,
            );
            answered(
                r#"request{method="GET" route="unmatched"}: finished processing request status=404"#,
            );
            answered(
                r#"request{method="POST" route="/pingpong"}: finished processing request status=405"#,
            );
            answered(
                r#"request{method="GET" route="/readyz"}: finished processing request status=503 latency_us="#,
            );
            // A graceful shutdown's 503s from /readyz are expected: no ERROR line.
            assert!(
                stderr.iter().all(|l| !l.contains(" ERROR ")),
                "an ERROR line in a graceful shutdown: {stderr:#?}"
            );
            assert!(
                stderr.iter().any(|l| l.contains(" INFO ")
                    && l.contains(r#"route="/readyz"}: finished processing request status=503"#)
                    && l.ends_with(r#" reason="draining""#)),
                "no INFO line with reason=\"draining\": {stderr:#?}"
            );
            continue;
        }
        let pong = request_line(&objects, "/pingpong", "GET", 200);
        assert!(pong["latency_us"].is_u64(), "{pong}");
        assert_eq!(pong["span"], "request", "{pong}");
        request_line(&objects, "unmatched", "GET", 404);
        request_line(&objects, "/pingpong", "POST", 405);
        let readyz = request_line(&objects, "/readyz", "GET", 503);
        assert_eq!(readyz["level"], "INFO", "{readyz}");
        assert_eq!(readyz["reason"], "draining", "{readyz}");
        assert!(
            objects.iter().all(|o| o["level"] != "ERROR"),
            "an ERROR line in a graceful shutdown: {objects:#?}"
        );
        let message = |m: &str| {
            objects
                .iter()
                .find(|o| o["message"] == m)
                .unwrap_or_else(|| panic!("no {m:?} line: {objects:#?}"))
        };
        let listening = message("pingpong listening");
        assert!(listening["port"].is_u64(), "{listening}");
        assert_eq!(message("shutting down")["signal"], "SIGTERM");
        message("pingpong stopped cleanly");
    }
}

/// `pingpong counter get|set` with `LOG_FORMAT`.
fn counter(args: &[&str], data_dir: &std::path::Path, format: &str) -> Output {
    Command::new(BIN)
        .arg("counter")
        .args(args)
        .env("DATA_DIR", data_dir)
        .env("LOG_FORMAT", format)
        .env_remove("RUST_LOG")
        .output()
        .expect("pingpong counter")
}

#[test]
fn counter_get_and_set_log_in_the_chosen_format_and_print_the_same_answer() {
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().unwrap();
        let set = counter(&["set", "5"], dir.path(), format);
        assert!(set.status.success(), "{set:?}");
        let get = counter(&["get"], dir.path(), format);
        assert_eq!(String::from_utf8(get.stdout).unwrap(), "5\n", "{format}");

        std::fs::write(dir.path().join("pingpong_counter.txt"), "pong NaN\n").unwrap();
        let corrupt = counter(&["get"], dir.path(), format);
        assert_eq!(corrupt.status.code(), Some(1), "{corrupt:?}");
        assert!(corrupt.stdout.is_empty(), "{corrupt:?}");
        let stderr: Vec<String> = String::from_utf8(corrupt.stderr)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let objects = parse_lines(format, &stderr);
        let error = if format == "json" {
            let error = objects
                .iter()
                .find(|o| o["level"] == "ERROR")
                .unwrap_or_else(|| panic!("no error: {stderr:?}"));
            error["error"].as_str().expect("an error field").to_owned()
        } else {
            stderr.join("\n")
        };
        assert!(error.contains("corrupt counter file"), "{error}");
        assert!(error.contains(r"pong NaN\n"), "{error}");
    }
}

#[test]
fn a_malformed_log_format_exits_2_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&[][..], &["counter", "get"]] {
        for bad in ["JSON", "xml", "json "] {
            let mut command = Command::new(BIN);
            command
                .args(args)
                .env("PORT", "0")
                .env("DATA_DIR", dir.path())
                .env("LOG_FORMAT", bad);
            let (code, stderr) = run_briefly(command);
            assert_eq!(code, Some(2), "{args:?} LOG_FORMAT={bad:?}: {stderr}");
            assert_eq!(
                stderr,
                format!("pingpong: invalid LOG_FORMAT={bad:?}: expected text or json\n")
            );
        }
    }
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("LOG_FORMAT") && help.contains("text or json"),
        "{help}"
    );
}

#[test]
fn an_oversized_body_with_a_long_method_and_path_logs_neither() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // A head under the 16 KiB limit, a declared body over it: answered 413 before any route.
    let (method, path) = ("X".repeat(6000), format!("/{}", "p".repeat(6000)));
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response:?}");
    let line = eventually(ANSWER_WITHIN, "the 413 log line", || {
        server
            .stderr_lines()
            .into_iter()
            .find(|l| l.contains("answering 413"))
    });
    assert!(
        line.len() < 300,
        "a log line of {} bytes: {line}",
        line.len()
    );
    assert!(line.contains(r#"method="other""#), "{line}");
}
