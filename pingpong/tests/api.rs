//! The HTTP contract of SPEC §4, through the public API with `oneshot` on a temp directory: no
//! socket, no process.

use std::fs;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use pingpong::routes::app_for;
use service_kit::shutdown::Draining;
use shared_fs::CounterFile;
use test_support::router::call as call_app;
use tower::ServiceExt;

async fn call(app: &Router, method: &str, path: &str) -> (StatusCode, String, String) {
    let answer = call_app(app, method.parse().unwrap(), path).await;
    let content_type = answer.content_type.unwrap_or_default();
    (answer.status, answer.body, content_type)
}

async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let (status, body, _) = call(app, "GET", path).await;
    (status, body)
}

#[tokio::test]
async fn pong_counts_from_zero_and_pings_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(CounterFile::in_dir(dir.path()), Draining::default());

    let (status, body, content_type) = call(&app, "GET", "/pingpong").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong 0"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(
        get(&app, "/pingpong").await,
        (StatusCode::OK, "pong 1".into())
    );
    assert_eq!(get(&app, "/pings").await, (StatusCode::OK, "2".into()));
    assert_eq!(get(&app, "/pings").await, (StatusCode::OK, "2".into()));
    assert_eq!(
        get(&app, "/pingpong").await,
        (StatusCode::OK, "pong 2".into())
    );
    test_support::assert_published(&dir.path().join("pingpong_counter.txt"), "3\n");
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(CounterFile::in_dir(dir.path()), Draining::default());
    assert_eq!(get(&app, "/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&app, "POST", "/pingpong").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&app, "DELETE", "/pings").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(
        !dir.path().join("pingpong_counter.txt").exists(),
        "a 405 must not increment"
    );
}

#[tokio::test]
async fn a_corrupt_file_answers_503_naming_it_and_stays_untouched_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    fs::write(file.path(), b"12abc").unwrap();
    let app = app_for(file.clone(), Draining::default());
    let path = file.path().display().to_string();

    for route in ["/pingpong", "/readyz", "/pings"] {
        let (status, body) = get(&app, route).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{route}");
        assert!(
            body.contains(&path) && body.contains("12abc"),
            "{route}: {body}"
        );
    }
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    assert_eq!(fs::read(file.path()).unwrap(), b"12abc");

    // The operator's repair, as `pingpong counter set 5` does it; no restart.
    file.set(5).unwrap();
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
    assert_eq!(
        get(&app, "/pingpong").await,
        (StatusCode::OK, "pong 5".into())
    );
}

#[tokio::test]
async fn readyz_turns_503_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    let draining = Draining::default();
    let app = app_for(CounterFile::in_dir(dir.path()), draining.clone());
    assert_eq!(get(&app, "/readyz").await, (StatusCode::OK, "ready".into()));
    draining.start();
    assert_eq!(
        get(&app, "/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down".into()
        )
    );
}

#[tokio::test]
async fn metrics_count_requests_increments_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(CounterFile::in_dir(dir.path()), Draining::default());
    get(&app, "/pingpong").await;
    get(&app, "/pingpong").await;
    get(&app, "/nope").await;

    // What Prometheus asks for: OpenMetrics.
    let request = Request::builder()
        .uri("/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "pingpong_increments_total 2",
        "pingpong_batch_size_count 2",
        "pingpong_durable_write_seconds_count 2",
        r#"http_requests_total{route="/pingpong",method="GET",status="200"} 2"#,
        r#"http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"http_request_duration_seconds_count{route="/pingpong",method="GET",status="200"} 2"#,
        r#"http_request_duration_seconds_bucket{le="+Inf",route="/pingpong",method="GET",status="200"} 2"#,
        r#"http_request_duration_seconds_count{route="unmatched",method="GET",status="404"} 1"#,
        "# TYPE http_requests counter",
        "# EOF",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }

    // What curl and promtool get: Prometheus text 0.0.4, where a counter's family is named
    // with `_total`, and no `# EOF`.
    let (status, text, content_type) = call(&app, "GET", "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for line in [
        "# HELP http_requests_total HTTP requests answered, by matched route, method and status.",
        "# TYPE http_requests_total counter",
        "# TYPE pingpong_increments_total counter",
        "# TYPE http_request_duration_seconds histogram",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
        &format!(
            r#"build_info{{version="{}",commit="{}"}} 1"#,
            env!("CARGO_PKG_VERSION"),
            service_kit::metrics::process::COMMIT
        ),
        "pingpong_increments_total 2",
        r#"http_requests_total{route="/metrics",method="GET",status="200"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("# EOF"), "{text}");
    assert!(!text.contains("# TYPE http_requests counter"), "{text}");
}
