//! Hostile clients against a real pingpong on loopback (SPEC §4's limits): a flood of idle connections
//! above the connection bound (and above a container's 1024 open files), a slowloris, oversized
//! heads and bodies, a process out of descriptors. Each proves that everyone else is still served, that the server closes
//! what it must within the header timeout, and that its descriptors return to their baseline.

mod support;

use std::{
    io::{self, Read, Write},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use service_kit::connections::{
    EVICTION_SLACK, FD_RESERVE, HEADER_READ_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS,
    MAX_HEAD_BYTES, MIN_CONNECTIONS, connection_bound,
};
use support::{Response, Server, pong_number, try_get};
use test_support::http::{self, closed_by};

/// The open-file limit podman gives a container (ENGINE.md), and a flood past it.
const CONTAINER_NOFILE: u64 = 1024;
const FLOOD: usize = 1143;
/// Scheduling slack on top of the header timeout on a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

/// Raises this test process's soft open-file limit to its hard limit; returns the soft limit.
fn raise_own_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX),
        Err(_) => limit.current.unwrap_or(u64::MAX),
    }
}

/// Sends `raw` on a new connection and reads the whole answer, failing if the answer has not
/// ended within `within` of the connect.
fn exchange_within(port: u16, raw: &[u8], within: Duration) -> io::Result<(u16, String)> {
    http::exchange(http::loopback(port), raw, within).map(Response::status_and_text)
}

fn get_request(path: &str) -> Vec<u8> {
    http::request_bytes("GET", path)
}

#[test]
fn idle_connections_above_the_bound_leave_room_for_a_fresh_client_and_are_closed() {
    let own_nofile = raise_own_nofile();
    let bound = connection_bound(Some(CONTAINER_NOFILE));
    // Above 1024 when this process may open that many sockets; above the bound in any case.
    let flood = if own_nofile >= FLOOD as u64 + 256 {
        FLOOD
    } else {
        bound + 100
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_nofile(dir.path(), CONTAINER_NOFILE);
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    assert_eq!(server.get("/pings"), (200, "1".to_owned()));
    let baseline = server.settled_fds();

    let mut idle = Vec::with_capacity(flood);
    let mut most_fds = baseline;
    for i in 0..flood {
        let stream = TcpStream::connect(("127.0.0.1", server.port))
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        idle.push((Instant::now(), stream));
        if i % 64 == 0 {
            most_fds = most_fds.max(server.open_fds());
        }
    }
    most_fds = most_fds.max(server.open_fds());

    let (status, body) = exchange_within(
        server.port,
        &get_request("/pingpong"),
        Duration::from_secs(1),
    )
    .unwrap_or_else(|e| panic!("a fresh client behind {flood} idle connections: {e}"));
    assert_eq!((status, body.as_str()), (200, "pong 1"));
    assert!(
        most_fds <= baseline + bound + EVICTION_SLACK,
        "{most_fds} descriptors open during the flood: baseline {baseline} + bound {bound} + slack {EVICTION_SLACK}"
    );

    // Every idle connection is closed by the server: evicted at once, or at the header timeout.
    for (i, (opened, stream)) in idle.iter_mut().enumerate() {
        assert!(
            closed_by(stream, *opened + HEADER_READ_TIMEOUT + SLACK),
            "idle connection {i} of {flood} still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    drop(idle);
    server.fds_return_to(baseline, Duration::from_secs(5));
    assert_eq!(server.get("/pingpong"), (200, "pong 2".to_owned()));
}

#[test]
fn a_slowloris_is_disconnected_at_the_header_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let port = server.port;
    // The first increment opens the counter's lock file, which stays open: part of the baseline.
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    let baseline = server.settled_fds();

    // One header byte a second, never the blank line that ends the head.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let opened = Instant::now();
    let closed = Arc::new(AtomicBool::new(false));
    let trickle = {
        let mut slow = slow.try_clone().unwrap();
        let closed = closed.clone();
        thread::spawn(move || {
            let head = b"GET /pingpong HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
            let mut sent = 0;
            for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                if closed.load(Ordering::SeqCst) || slow.write_all(&[*byte]).is_err() {
                    return sent;
                }
                sent += 1;
                thread::sleep(Duration::from_secs(1));
            }
            sent
        })
    };

    // Meanwhile other clients are served, each on a new connection, with consecutive numbers.
    let others = {
        let closed = closed.clone();
        thread::spawn(move || {
            let mut numbers = Vec::new();
            while !closed.load(Ordering::SeqCst) {
                let (status, body) = try_get(port, "/pingpong").expect("another client");
                assert_eq!(status, 200, "{body}");
                numbers.push(pong_number(&body));
                thread::sleep(Duration::from_millis(50));
            }
            numbers
        })
    };

    let was_closed = closed_by(&mut slow, opened + HEADER_READ_TIMEOUT + SLACK);
    let after = opened.elapsed();
    closed.store(true, Ordering::SeqCst);
    let sent = trickle.join().unwrap();
    let numbers = others.join().unwrap();
    assert!(
        was_closed,
        "the slowloris is still connected after {after:?}, {sent} bytes"
    );
    assert!(
        after >= HEADER_READ_TIMEOUT,
        "closed after {after:?}, before the header timeout"
    );
    let served = numbers.len() as u64;
    assert_eq!(numbers, (1..=served).collect::<Vec<_>>());
    assert!(served >= 10, "only {served} others served in {after:?}");

    drop(slow);
    server.fds_return_to(baseline, Duration::from_secs(5));
}

#[test]
fn oversized_heads_and_bodies_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let port = server.port;
    let within = Duration::from_secs(4);

    // A head over the limit: 431, before the client has sent all of it.
    let big_header = format!(
        "GET /pingpong HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n",
        "a".repeat(2 * MAX_HEAD_BYTES)
    );
    let (status, _) = exchange_within(port, big_header.as_bytes(), within).expect("oversized head");
    assert_eq!(status, 431);

    // A declared body over the limit: 413 without the body, and no number handed out.
    let big_body = format!(
        "GET /pingpong HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\nabc",
        1_000_000_000
    );
    let (status, body) =
        exchange_within(port, big_body.as_bytes(), within).expect("oversized body");
    assert_eq!(
        (status, body.as_str()),
        (
            413,
            format!("request body over {MAX_BODY_BYTES} bytes\n").as_str()
        )
    );

    // A GET with a body announced but not (yet) sent is answered without waiting for it.
    let with_body = b"GET /pingpong HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n";
    let (status, body) = exchange_within(port, with_body, within).expect("GET with a body");
    assert_eq!((status, body.as_str()), (200, "pong 0"));
    assert_eq!(server.get("/pings"), (200, "1".to_owned()));
}

#[test]
fn out_of_descriptors_the_server_logs_once_pauses_and_keeps_serving() {
    // So few open files that the connection bound cannot be reached: accept fails with EMFILE.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_nofile(dir.path(), 20);
    let port = server.port;
    let cpu_before = cpu_ticks(server.pid());
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).expect("connect (backlog)"));
    }
    // Each freed descriptor admits the next connection from the backlog, 50 ms apart.
    let (status, body) = exchange_within(port, &get_request("/healthz"), Duration::from_secs(10))
        .expect("a fresh client while accept fails with EMFILE");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let cpu = cpu_ticks(server.pid()) - cpu_before;
    drop(idle);
    // The episode ends at the first accept after a quiet second.
    support::eventually(Duration::from_secs(10), "accepting again", || {
        assert_eq!(server.get("/healthz"), (200, "ok".to_owned()));
        server
            .stderr_lines()
            .iter()
            .any(|l| l.contains("accepting again"))
            .then_some(())
    });
    let failing: Vec<String> = server
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("accept failing"))
        .collect();
    assert_eq!(failing.len(), 1, "one warning per episode: {failing:?}");
    assert!(failing[0].contains("Too many open files"), "{failing:?}");
    // A busy loop would burn a core for the whole episode; pausing uses next to nothing.
    assert!(cpu < 50, "{cpu} CPU ticks (1/100 s) during the episode");
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
}

/// User and system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn help_states_the_limits() {
    let help = std::process::Command::new(support::BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for needle in [
        format!("within {} s", HEADER_READ_TIMEOUT.as_secs()),
        format!("heads over {} KiB: 431", MAX_HEAD_BYTES / 1024),
        format!("bodies over {} KiB: 413", MAX_BODY_BYTES / 1024),
        format!(
            "within {}s, else 503",
            service_kit::http::REQUEST_TIMEOUT.as_secs()
        ),
        format!("at most {MAX_CONNECTIONS} connections"),
    ] {
        assert!(help.contains(&needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// Sends `raw`, half-closes (`shutdown(SHUT_WR)`, as `nc -N` and some proxies do), and reads
/// the answer until the server closes, within `within`.
fn exchange_half_closed(port: u16, raw: &[u8], within: Duration) -> io::Result<(u16, String)> {
    http::exchange_half_closed(http::loopback(port), raw, within).map(Response::status_and_text)
}

#[test]
fn a_request_followed_by_a_half_close_is_answered_and_hands_out_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut expected = 0;
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        for _ in 0..3 {
            let request = format!("GET /pingpong {version}\r\nHost: localhost\r\n\r\n");
            let answer = exchange_half_closed(server.port, request.as_bytes(), SLACK)
                .unwrap_or_else(|e| panic!("{version}, half-closed after the request: {e}"));
            assert_eq!(answer, (200, format!("pong {expected}")), "{version}");
            expected += 1;
        }
        let request = format!("GET /healthz {version}\r\nHost: localhost\r\n\r\n");
        let answer = exchange_half_closed(server.port, request.as_bytes(), SLACK)
            .unwrap_or_else(|e| panic!("{version} /healthz, half-closed: {e}"));
        assert_eq!(answer, (200, "ok".to_owned()), "{version}");
    }
    assert_eq!(server.get("/pings"), (200, "6".to_owned()));
    let (_, metrics) = server.get("/metrics");
    assert_eq!(
        support::metric(&metrics, "pingpong_abandoned_total"),
        Some(0),
        "{metrics}"
    );
    assert_eq!(
        support::metric(&metrics, "pingpong_increments_total"),
        Some(6),
        "{metrics}"
    );
}

/// One keep-alive connection that scrapes `/metrics` again and again, as Prometheus does: it
/// stays one connection of the table, and having been answered it is evicted last.
struct Scraper(TcpStream);

impl Scraper {
    fn connect(port: u16) -> Scraper {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("scraper");
        stream.set_read_timeout(Some(SLACK)).expect("read timeout");
        Scraper(stream)
    }

    /// The connection metrics: (open, evicted, refused).
    fn connections(&mut self) -> (u64, u64, u64) {
        let Self(stream) = self;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("scrape");
        let mut response = Vec::new();
        let mut buf = [0; 16 * 1024];
        while !http::complete(&response) {
            let n = stream.read(&mut buf).expect("scrape answer");
            assert_ne!(
                n,
                0,
                "scraper closed: {}",
                String::from_utf8_lossy(&response)
            );
            response.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8(response).expect("utf-8");
        let value =
            |name| support::metric(&body, name).unwrap_or_else(|| panic!("no {name} in {body}"));
        (
            value("http_connections_open"),
            value("http_connections_evicted_total"),
            value("http_connections_refused_total"),
        )
    }

    /// Scrapes until the metrics are `expected`, failing with the last ones after `SLACK`.
    fn until(&mut self, expected: (u64, u64, u64), what: &str) {
        let deadline = Instant::now() + SLACK;
        loop {
            let now = self.connections();
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: (open, evicted, refused) = {now:?}, expected {expected:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The open-file limit at which the connection bound is its least, 16.
const SMALL_NOFILE: u64 = (MIN_CONNECTIONS + FD_RESERVE + EVICTION_SLACK) as u64;

#[test]
fn open_connections_and_evictions_at_the_bound_are_exported_exactly() {
    let bound = connection_bound(Some(SMALL_NOFILE));
    assert_eq!(bound, MIN_CONNECTIONS);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_nofile(dir.path(), SMALL_NOFILE);
    let mut scraper = Scraper::connect(server.port);
    scraper.until((1, 0, 0), "the scraper alone");

    // Up to the bound, every connection is admitted and none evicted (all well within the
    // header timeout, after which hyper closes idle ones without an eviction).
    let mut idle: Vec<TcpStream> = (1..bound)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("idle connection"))
        .collect();
    scraper.until((bound as u64, 0, 0), "at the bound");

    // Past it, each newcomer evicts one idle connection that never sent a request: the
    // scraper, answered already, is never the one.
    const NEWCOMERS: u64 = 5;
    for _ in 0..NEWCOMERS {
        idle.push(TcpStream::connect(("127.0.0.1", server.port)).expect("newcomer"));
    }
    scraper.until((bound as u64, NEWCOMERS, 0), "after the newcomers");
    let closed = idle
        .iter_mut()
        .map(|s| closed_by(s, Instant::now() + Duration::from_millis(1)))
        .filter(|closed| *closed)
        .count();
    assert_eq!(closed as u64, NEWCOMERS, "the evicted ones are closed");

    drop(idle);
    scraper.until((1, NEWCOMERS, 0), "once the idle connections are gone");
}

#[test]
fn connections_refused_while_every_connection_is_busy_are_exported_exactly() {
    let bound = connection_bound(Some(SMALL_NOFILE));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_nofile(dir.path(), SMALL_NOFILE);
    let port = server.port;

    // Every connection busy: increments wait for a lock another process holds.
    let lock = support::hold_counter_lock(dir.path());
    let busy: Vec<_> = (0..bound)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("busy connection");
            stream
                .write_all(&get_request("/pingpong"))
                .expect("request");
            stream
        })
        .collect();
    // Each attempt is refused unless a busy one had not been read yet: then the newcomer waits
    // the eviction protection out, long enough for the request to arrive. Whatever happens, the
    // metric counts exactly the refusals the clients saw.
    let mut refused = 0;
    for _ in 0..3 {
        let (status, body) =
            exchange_within(port, &get_request("/healthz"), SLACK).expect("an answer, 503 or 200");
        if (status, body.as_str()) == (503, "too many connections; retry later\n") {
            refused += 1;
        } else {
            assert_eq!((status, body.as_str()), (200, "ok"));
        }
    }
    assert_ne!(refused, 0, "nothing refused with {bound} busy connections");
    drop(lock);
    let numbers: Vec<u64> = busy
        .into_iter()
        .map(|mut stream| {
            let mut response = String::new();
            stream.set_read_timeout(Some(SLACK)).unwrap();
            stream.read_to_string(&mut response).expect("busy answer");
            let body = response.split_once("\r\n\r\n").expect("head").1;
            pong_number(body)
        })
        .collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..bound as u64).collect::<Vec<_>>(), "{numbers:?}");
    // The server side of the busy connections closes a moment after their answers.
    server.settled_fds();
    let mut scraper = Scraper::connect(port);
    scraper.until((1, 0, refused), "after the busy requests");
}
