//! Clients that leave while their increment waits (SPEC §4: N counts requests answered), as real
//! processes with the counter's lock held by this test, as another replica would hold it: a
//! request that gives up (its client reset the connection, or it timed out) leaves the writer's
//! queue at once, costs no number and is not counted as answered, and a flood of them while
//! the lock is stuck leaves neither a queue nor memory behind. And, in this process (a layer
//! holds the answer), a client that resets after its number is made and before hyper writes
//! it has the number counted abandoned, not answered.

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
        server.port,
        |body| metric(body, "pingpong_waiting"),
        &expected,
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
    port: u16,
    read: impl Fn(&str) -> Result<T, String>,
    expected: &T,
    within: Duration,
    what: &str,
) {
    let deadline = Instant::now() + within;
    loop {
        let now = match support::try_get(port, "/metrics") {
            Ok((200, body)) => read(&body),
            Ok((status, body)) => Err(format!("/metrics answered {status} {body:?}")),
            Err(e) => Err(format!("/metrics: {e}")),
        };
        if now.as_ref() == Ok(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now:?} after {within:?}, expected {expected:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// How long a value [`settles_at`] reached must then stay as it is.
const STAYS: Duration = Duration::from_millis(300);

/// Polls `/metrics` as [`until`] does until `read` gives `expected`, then keeps reading for
/// [`STAYS`], failing if the value moves. A `/pingpong` is counted once its answer is written,
/// a moment after its client may have read it, so a scrape on another connection waits for the
/// count; and a count that went on past the expected value is an over-count, which waiting
/// must not hide.
fn settles_at<T: PartialEq + std::fmt::Debug>(
    port: u16,
    read: impl Fn(&str) -> Result<T, String>,
    expected: T,
    within: Duration,
    what: &str,
) {
    until(port, &read, &expected, within, what);
    let until = Instant::now() + STAYS;
    while Instant::now() < until {
        let (status, body) = support::get(port, "/metrics");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            read(&body).as_ref(),
            Ok(&expected),
            "{what}: moved after it was reached"
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
        server.port,
        |body| {
            Ok((
                metric(body, "pingpong_waiting")?,
                metric(body, "http_connections_open")?,
            ))
        },
        &(0, 1),
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

    // No number was used for them, and none of them counts as answered (an answer counts once
    // it is written, a moment after the client may have read it).
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    settles_at(
        server.port,
        |body| Ok(pingpong_requests(body).join("\n")),
        r#"http_requests_total{route="/pingpong",method="GET",status="200"} 1"#.to_owned(),
        Duration::from_secs(10),
        "/pingpong's lines in http_requests_total",
    );
    let body = metrics(&server);
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

/// `(pingpong_increments_total, /pingpong's 200s in http_requests_total,
/// pingpong_abandoned_total)` in a `/metrics` body.
fn numbers_accounted(body: &str) -> Result<(u64, u64, u64), String> {
    let answered = body
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"http_requests_total{route="/pingpong",method="GET",status="200"} "#)
        })
        .map_or(Ok(0), |n| n.parse().map_err(|e| format!("{n:?}: {e}")))?;
    Ok((
        metric(body, "pingpong_increments_total")?,
        answered,
        metric(body, "pingpong_abandoned_total")?,
    ))
}

/// Whether the kernel still has the server's end of the connection from client port `client`
/// to server port `server` established (`/proc/net/tcp`: local and remote address, state `01`).
fn established(server: u16, client: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let (local, remote) = (format!(":{server:04X}"), format!(":{client:04X}"));
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3
            && fields[1].ends_with(&local)
            && fields[2].ends_with(&remote)
            && fields[3] == "01"
    })
}

/// Holds the answer to the next `/pingpong` once it is made (its number handed out, its count
/// and log line done), before hyper writes it, until told to go on: a reset that lands in
/// between is the one the readiness watch cannot see, which only the write can find out.
/// The wait blocks its thread on purpose, so that nothing else on the connection runs
/// meanwhile: the route's answer, then hyper's write, in one poll, as without the hold.
#[derive(Clone)]
struct HoldAnswer {
    armed: Arc<AtomicBool>,
    held: std::sync::mpsc::SyncSender<()>,
    go_on: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>,
}

#[test]
fn a_client_that_resets_after_its_number_is_made_and_before_it_is_written_has_it_counted_abandoned()
{
    use axum::{extract::Request, middleware::Next};

    let dir = tempfile::tempdir().unwrap();
    let (app, _writer) = pingpong::routes::service(
        shared_fs::CounterFile::in_dir(dir.path()),
        service_kit::shutdown::Draining::default(),
    );
    let (held_tx, held) = std::sync::mpsc::sync_channel(1);
    let (go_on, go_on_rx) = std::sync::mpsc::sync_channel(1);
    let hold = HoldAnswer {
        armed: Arc::new(AtomicBool::new(true)),
        held: held_tx,
        go_on: Arc::new(std::sync::Mutex::new(go_on_rx)),
    };
    let app = app.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let hold = hold.clone();
            async move {
                let pingpong = request.uri().path() == "/pingpong";
                let response = next.run(request).await;
                if pingpong && hold.armed.swap(false, Ordering::SeqCst) {
                    hold.held.send(()).expect("the test waits for the hold");
                    let go_on = hold.go_on.lock().expect("go-on lock");
                    go_on
                        .recv_timeout(Duration::from_secs(60))
                        .expect("the test lets the answer go");
                }
                response
            }
        },
    ));
    // The server in this process, on two workers: one may block in the hold.
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            service_kit::connections::serve(listener, app, async {
                let _ = stopped.await;
            })
            .await;
        });
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listening");

    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client.write_all(REQUEST).expect("request");
    held.recv_timeout(Duration::from_secs(20))
        .expect("the answer to /pingpong was made and held");
    let client_port = client.local_addr().unwrap().port();
    assert!(
        established(port, client_port),
        "the server's end of the connection is established while the answer is held"
    );
    reset(client);
    // The reset has reached the server's socket before the answer is let go: its write fails.
    let deadline = Instant::now() + Duration::from_secs(20);
    while established(port, client_port) {
        assert!(
            Instant::now() < deadline,
            "the server's socket never saw the reset"
        );
        thread::sleep(Duration::from_millis(5));
    }
    go_on.send(()).unwrap();

    // Number 0 was made durable and never reached its client: abandoned, not answered.
    settles_at(
        port,
        numbers_accounted,
        (1, 0, 1),
        Duration::from_secs(10),
        "after an answer whose write failed: (increments, answered 200s, abandoned)",
    );
    assert_eq!(support::get(port, "/pingpong"), (200, "pong 1".to_owned()));
    settles_at(
        port,
        numbers_accounted,
        (2, 1, 1),
        Duration::from_secs(10),
        "after one more /pingpong: (increments, answered 200s, abandoned)",
    );
    stop.send(()).unwrap();
    server.join().expect("server thread");
}
