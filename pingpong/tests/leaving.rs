//! Clients that leave while their increment waits (SPEC §4: N counts requests answered), as real
//! processes with the counter's lock held by this test, as another replica would hold it: a
//! request that gives up (its client reset the connection, or it timed out) leaves the writer's
//! queue at once, costs no number and is not counted as answered, and a flood of them while
//! the lock is stuck leaves neither a queue nor memory behind.

mod support;

use std::{
    io::Write,
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use service_kit::http::REQUEST_TIMEOUT;
use support::{Server, hold_counter_lock};

const REQUEST: &[u8] = b"GET /pingpong HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Closes `stream` with a reset (`SO_LINGER` 0), as a client that crashed or gave up does.
fn reset(stream: TcpStream) {
    rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO)).expect("SO_LINGER 0");
    drop(stream);
}

/// The server's `/metrics`.
fn metrics(server: &Server) -> String {
    let (status, body) = server.get("/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `pingpong_waiting` until it is `expected`, failing after `within` with the last
/// reading.
fn until_waiting(server: &Server, expected: u64, within: Duration, what: &str) {
    until(
        server,
        |body| metric(body, "pingpong_waiting"),
        expected,
        within,
        what,
    );
}

/// `name`'s value in a `/metrics` body, or why there is none.
fn metric(body: &str, name: &str) -> Result<u64, String> {
    support::metric(body, name).ok_or_else(|| format!("no {name} in {body}"))
}

/// Polls `/metrics` until `read` gives `expected`, failing after `within` with the last reading
/// (while every connection is busy the server refuses new ones, the scrape's too).
fn until<T: PartialEq + std::fmt::Debug>(
    server: &Server,
    read: impl Fn(&str) -> Result<T, String>,
    expected: T,
    within: Duration,
    what: &str,
) {
    let deadline = Instant::now() + within;
    loop {
        let now = match support::try_get(server.port, "/metrics") {
            Ok((200, body)) => read(&body),
            Ok((status, body)) => Err(format!("/metrics answered {status} {body:?}")),
            Err(e) => Err(format!("/metrics: {e}")),
        };
        if now.as_ref() == Ok(&expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now:?} after {within:?}, expected {expected:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The resident memory (`VmRSS`) of process `pid` now, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// What a flood of requests that give up may leave resident on top of what the server used
/// before it: up to the connection bound (512) of connections at once, each with its buffers
/// (about 10 MiB measured), which the allocator keeps for the next ones. A queue of every
/// request that gave up grows without a bound instead.
const FLOOD_RSS_ALLOWANCE: u64 = 16 * 1024 * 1024;

#[test]
fn a_flood_of_requests_that_give_up_while_the_lock_is_held_leaves_no_queue_and_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    let before = rss(server.pid());

    let held = hold_counter_lock(dir.path());
    // Clients that send their increment and reset at once, for a while: each request waits
    // for the lock until it is given up (by the reset, or at the latest by its time limit).
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let port = server.port;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (stop, sent) = (stop.clone(), sent.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    if stream.write_all(REQUEST).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    reset(stream);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("flood client");
    }

    // Every one of them has given up by its time limit: none is left queued, with the lock
    // still held, and their connections are gone (only the scrape's own is open).
    until(
        &server,
        |body| {
            Ok((
                metric(body, "pingpong_waiting")?,
                metric(body, "http_connections_open")?,
            ))
        },
        (0, 1),
        REQUEST_TIMEOUT + Duration::from_secs(20),
        &format!(
            "{} requests given up while the lock is held: (pingpong_waiting, http_connections_open)",
            sent.load(Ordering::Relaxed)
        ),
    );
    let after = rss(server.pid());
    assert!(
        after < before + FLOOD_RSS_ALLOWANCE,
        "resident memory {after} bytes after {} requests gave up, {before} before",
        sent.load(Ordering::Relaxed)
    );

    drop(held);
    assert_eq!(server.get("/pingpong"), (200, "pong 1".to_owned()));
    let body = metrics(&server);
    assert_eq!(
        support::metric(&body, "pingpong_abandoned_total"),
        Some(0),
        "{body}"
    );
    assert_eq!(
        support::metric(&body, "pingpong_increments_total"),
        Some(2),
        "{body}"
    );
}

/// The `http_requests_total` lines of `/pingpong`, sorted.
fn pingpong_requests(body: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with(r#"http_requests_total{route="/pingpong""#))
        .collect();
    lines.sort_unstable();
    lines
}

#[test]
fn a_client_that_resets_while_its_increment_waits_costs_no_number_and_is_not_counted_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let held = hold_counter_lock(dir.path());
    let clients: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
            stream.write_all(REQUEST).expect("request");
            stream
        })
        .collect();
    until_waiting(&server, 10, Duration::from_secs(10), "10 requests sent");

    for stream in clients {
        reset(stream);
    }
    // The server notices each reset while the request waits, well before the request's time
    // limit would have given it up: the requests leave the queue with the lock still held.
    until_waiting(
        &server,
        0,
        REQUEST_TIMEOUT - Duration::from_secs(1),
        "10 requests whose clients reset",
    );
    drop(held);

    // No number was used for them, and none of them counts as answered.
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    let body = metrics(&server);
    assert_eq!(
        pingpong_requests(&body),
        [r#"http_requests_total{route="/pingpong",method="GET",status="200"} 1"#],
        "{body}"
    );
    assert_eq!(
        support::metric(&body, "pingpong_abandoned_total"),
        Some(0),
        "{body}"
    );
    assert_eq!(
        support::metric(&body, "pingpong_increments_total"),
        Some(1),
        "{body}"
    );
    test_support::assert_published(&dir.path().join("pingpong_counter.txt"), "1\n");
}
