//! What `http::finish` and `http::serve` promise for every request, whatever the stack is made
//! of: one log line at INFO (none at WARN), a `503` with its reason after exactly
//! `REQUEST_TIMEOUT`, an exact count by route, method and status, and `Connection: close` on
//! every answer once draining has started.
//!
//! Each test that captures log lines runs alone in a process of its own ([`Captured::alone`]):
//! tracing caches whether a callsite is enabled, and the most verbose level any subscriber
//! wants, once for the whole process, so subscribers at different levels on the threads of one
//! process can hide each other's lines (a WARN test's cache dropped an INFO test's lines and
//! span in about 1 run in 300 at `--test-threads=8` beside a CPU hog).

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use axum::{
    Router,
    http::{Method, StatusCode},
    routing::get,
};
use prometheus_client::registry::Registry;
use service_kit::{
    http::{self, REQUEST_TIMEOUT, ReadyCheck},
    shutdown::Draining,
};
use test_support::router::call;
use tracing_subscriber::EnvFilter;

fn ready() -> ReadyCheck {
    Arc::new(|| Box::pin(async { Ok(()) }))
}

/// `/pingpong` answers at once; `/stuck` never does (a volume that does not answer).
fn app(draining: Draining) -> Router {
    let routes = Router::new()
        .route("/pingpong", get(|| async { "pong 0" }))
        .route("/stuck", get(std::future::pending::<&'static str>));
    http::finish(routes, Registry::default(), draining, ready())
}

/// The log lines of the process running one test alone, formatted as `telemetry::init` formats
/// them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Set, to a test's name, in the process that runs that test alone.
const ALONE: &str = "EVERY_REQUEST_ALONE";

/// How long the process running one test alone may take: seconds in a debug build on a loaded
/// machine; a test that hangs is killed and fails.
const ALONE_WITHIN: Duration = Duration::from_secs(120);

impl Captured {
    /// In the process that runs `test` alone: installs, for the whole process, a subscriber at
    /// `filter` writing to the returned capture. Anywhere else: runs `test` again in a process
    /// of its own (this binary, `--exact test`), asserts that it passed there, and returns
    /// `None`, which the test answers by returning.
    fn alone(test: &str, filter: &str) -> Option<Captured> {
        if std::env::var_os(ALONE).is_some_and(|name| name == test) {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new(filter))
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_target(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            return Some(captured);
        }
        run_alone(test);
        None
    }

    /// Each line without its timestamp, with the number after `latency_us=` replaced by `N`.
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let (_timestamp, rest) = line.trim_start().split_once(' ').unwrap();
                let rest = rest.trim_start();
                match rest.split_once("latency_us=") {
                    Some((before, after)) => {
                        let end = after
                            .find(|c: char| !c.is_ascii_digit())
                            .unwrap_or(after.len());
                        assert!(end > 0, "no latency in {line:?}");
                        format!("{before}latency_us=N{}", &after[end..])
                    }
                    None => rest.to_owned(),
                }
            })
            .collect()
    }
}

/// Runs `test` in a process of its own and asserts that exactly it ran and passed.
fn run_alone(test: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--color=never"])
        .env(ALONE, test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let read_stdout = thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let read_stderr = thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + ALONE_WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{test} alone: still running after {ALONE_WITHIN:?}, killed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = read_stdout.join().unwrap().unwrap();
    let stderr = read_stderr.join().unwrap().unwrap();
    assert!(
        status.success() && stdout.contains("\ntest result: ok. 1 passed;"),
        "{test} alone: {status}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn every_request_is_one_line_at_info() {
    let Some(captured) = Captured::alone("every_request_is_one_line_at_info", "info") else {
        return;
    };
    let app = app(Draining::default());

    assert_eq!(call(&app, Method::GET, "/pingpong").await.status, 200);
    assert_eq!(call(&app, Method::GET, "/nope").await.status, 404);
    assert_eq!(call(&app, Method::DELETE, "/pingpong").await.status, 405);
    assert_eq!(
        captured.lines(),
        [
            r#"INFO request{method="GET" route="/pingpong"}: finished processing request status=200 latency_us=N"#,
            r#"INFO request{method="GET" route="unmatched"}: finished processing request status=404 latency_us=N"#,
            r#"INFO request{method="DELETE" route="/pingpong"}: finished processing request status=405 latency_us=N"#,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn at_warn_only_a_server_error_writes_a_line() {
    let Some(captured) = Captured::alone("at_warn_only_a_server_error_writes_a_line", "warn")
    else {
        return;
    };
    let app = app(Draining::default());

    assert_eq!(call(&app, Method::GET, "/pingpong").await.status, 200);
    assert_eq!(call(&app, Method::GET, "/nope").await.status, 404);
    assert_eq!(captured.lines(), Vec::<String>::new());
    assert_eq!(call(&app, Method::GET, "/stuck").await.status, 503);
    assert_eq!(
        captured.lines(),
        ["ERROR response failed classification=Status code: 503 Service Unavailable latency_us=N"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_that_takes_too_long_is_503_with_its_reason_after_exactly_the_timeout() {
    let Some(captured) = Captured::alone(
        "a_request_that_takes_too_long_is_503_with_its_reason_after_exactly_the_timeout",
        "info",
    ) else {
        return;
    };
    let app = app(Draining::default());

    let started = tokio::time::Instant::now();
    let answer = call(&app, Method::GET, "/stuck").await;
    assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body,
        "timed out after 5s waiting for the shared volume\n"
    );
    assert_eq!(
        captured.lines(),
        [
            r#"INFO request{method="GET" route="/stuck"}: finished processing request status=503 latency_us=N"#,
            r#"ERROR request{method="GET" route="/stuck"}: response failed classification=Status code: 503 Service Unavailable latency_us=N"#,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_that_times_out_says_what_its_route_waited_for_where_the_service_knows() {
    let routes = Router::new()
        .route("/pingpong", get(std::future::pending::<&'static str>))
        .route("/stuck", get(std::future::pending::<&'static str>));
    let reason: http::TimeoutReason = Arc::new(|route| {
        (route == "/pingpong").then(|| "waiting 5 s for the counter's lock".to_owned())
    });
    let app = http::finish_explaining_timeouts(
        routes,
        Registry::default(),
        Draining::default(),
        ready(),
        reason,
    );

    let started = tokio::time::Instant::now();
    let answer = call(&app, Method::GET, "/pingpong").await;
    assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body,
        "timed out after 5s: waiting 5 s for the counter's lock\n"
    );
    let answer = call(&app, Method::GET, "/stuck").await;
    assert_eq!(
        answer.body,
        "timed out after 5s waiting for the shared volume\n"
    );
}

#[tokio::test(start_paused = true)]
async fn every_answer_is_counted_by_route_method_and_status() {
    let app = app(Draining::default());
    for (method, path, status) in [
        (Method::GET, "/pingpong", 200),
        (Method::GET, "/pingpong", 200),
        (Method::HEAD, "/pingpong", 200),
        (Method::DELETE, "/pingpong", 405),
        (Method::GET, "/nope", 404),
        (Method::from_bytes(b"BREW").unwrap(), "/nope", 404),
        (Method::GET, "/stuck", 503),
        (Method::GET, "/healthz", 200),
    ] {
        assert_eq!(call(&app, method, path).await.status, status, "{path}");
    }
    let metrics = call(&app, Method::GET, "/metrics").await;
    let mut lines: Vec<&str> = metrics
        .body
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"http_requests_total{route="/healthz",method="GET",status="200"} 1"#,
            r#"http_requests_total{route="/pingpong",method="DELETE",status="405"} 1"#,
            r#"http_requests_total{route="/pingpong",method="GET",status="200"} 2"#,
            r#"http_requests_total{route="/pingpong",method="HEAD",status="200"} 1"#,
            r#"http_requests_total{route="/stuck",method="GET",status="503"} 1"#,
            r#"http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
            r#"http_requests_total{route="unmatched",method="other",status="404"} 1"#,
        ]
    );
}

/// Reads one answer's head and `Content-Length` body from `stream`: (head, body).
fn read_answer(stream: &mut TcpStream) -> (String, String) {
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0; 1024];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before a complete head: {bytes:?}");
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = bytes[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0; 1024];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the whole body");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn from_sigterm_on_every_answer_closes_its_connection() {
    let draining = Draining::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A long delay: the server keeps answering after draining starts, as a load balancer
    // that has not yet seen /readyz turn 503 expects.
    tokio::spawn(http::serve(
        listener,
        app(draining.clone()),
        draining.clone(),
        Duration::from_secs(600),
    ));
    // A client on a thread of its own: blocking reads with a deadline.
    let client = std::thread::spawn(move || {
        let request = b"GET /pingpong HTTP/1.1\r\nHost: test\r\n\r\n";
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();

        stream.write_all(request).unwrap();
        let (head, body) = read_answer(&mut stream);
        assert_eq!(body, "pong 0");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "before draining the connection stays open: {head}"
        );

        draining.start();
        stream.write_all(request).unwrap();
        let (head, body) = read_answer(&mut stream);
        assert_eq!(body, "pong 0");
        assert!(
            head.lines().any(|l| l == "connection: close"),
            "while draining every answer says it closes: {head}"
        );
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        assert_eq!(
            read.expect("the server closes the connection after the answer"),
            0
        );
    });
    tokio::task::spawn_blocking(move || client.join())
        .await
        .unwrap()
        .unwrap();
}
