//! What a client or a planted file can do to the answers, in-process (`oneshot`): only GET
//! hands out a number, labels stay a fixed set whatever the method, a huge counter file is
//! reported rather than read, and a counter at `u64::MAX` is not ready (SPEC §4, §7.3).

use std::fs;

use axum::http::{Method, StatusCode};
use pingpong::routes::app_for;
use service_kit::shutdown::Draining;
use shared_fs::CounterFile;
use test_support::router::call;

#[tokio::test]
async fn only_get_hands_out_a_number_head_included() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    let app = app_for(file.clone(), Draining::default());

    for method in [
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::from_bytes(b"INCREMENT").unwrap(),
    ] {
        let answer = call(&app, method.clone(), "/pingpong").await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.allow.as_deref(), Some("GET"), "{method}");
        if method != Method::HEAD {
            assert_eq!(
                answer.body, "method not allowed: only GET changes the count\n",
                "{method}"
            );
            assert!(answer.content_type.unwrap().starts_with("text/plain"));
        }
    }
    assert!(
        !file.path().exists(),
        "no method but GET may write the counter"
    );
    assert_eq!(call(&app, Method::GET, "/pingpong").await.body, "pong 0");

    // The read-only routes answer HEAD like GET, without a body, and change nothing.
    for path in ["/pings", "/healthz", "/readyz", "/metrics"] {
        let answer = call(&app, Method::HEAD, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, ""),
            "{path}"
        );
    }
    test_support::assert_published(file.path(), "1\n");

    let post = call(&app, Method::POST, "/pings").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.allow.as_deref(), Some("GET,HEAD"));
    assert_eq!(post.body, "method not allowed\n");
    let unknown = call(&app, Method::GET, "/pingpongX").await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (StatusCode::NOT_FOUND, "not found\n")
    );
}

#[tokio::test]
async fn invented_methods_never_become_metric_labels() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(CounterFile::in_dir(dir.path()), Draining::default());
    for i in 0..200 {
        let method = Method::from_bytes(format!("M{i}{}", "X".repeat(3_000)).as_bytes()).unwrap();
        call(&app, method, "/pingpong").await;
    }
    let metrics = call(&app, Method::GET, "/metrics").await.body;
    assert!(
        !metrics.contains("XXX"),
        "a client's method reached /metrics"
    );
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .collect();
    assert_eq!(
        lines,
        [r#"http_requests_total{route="/pingpong",method="other",status="405"} 200"#]
    );
}

#[tokio::test]
async fn a_huge_counter_file_is_reported_with_its_size_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    // 100 MB of zero bytes, sparse: it costs no disk, and reading it whole would cost 100 MB.
    fs::File::create(file.path())
        .unwrap()
        .set_len(100_000_000)
        .unwrap();
    let app = app_for(file.clone(), Draining::default());
    let expected = format!(
        "{} is too large: 100000000 bytes, at most 64 expected; it starts with \"{}...\"\n",
        file.path().display(),
        r"\x00".repeat(64)
    );
    for path in ["/pings", "/pingpong"] {
        let answer = call(&app, Method::GET, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, expected.as_str()),
            "{path}"
        );
    }
    let ready = call(&app, Method::GET, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body, expected.trim_end());
    assert_eq!(fs::metadata(file.path()).unwrap().len(), 100_000_000);
}

#[tokio::test]
async fn a_counter_at_u64_max_is_not_ready_because_it_cannot_advance() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    file.set(u64::MAX).unwrap();
    let app = app_for(file.clone(), Draining::default());
    let reason = format!(
        "counter file {}: 18446744073709551615 + 1 does not fit in a u64: the counter is at its maximum",
        file.path().display()
    );
    let ready = call(&app, Method::GET, "/readyz").await;
    assert_eq!(
        (ready.status, ready.body),
        (StatusCode::SERVICE_UNAVAILABLE, reason.clone())
    );
    let pong = call(&app, Method::GET, "/pingpong").await;
    assert_eq!(
        (pong.status, pong.body),
        (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"))
    );
    let pings = call(&app, Method::GET, "/pings").await;
    assert_eq!(
        (pings.status, pings.body.as_str()),
        (StatusCode::OK, "18446744073709551615")
    );
}
