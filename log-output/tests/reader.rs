//! log-reader's routes in-process (`oneshot`, no socket): what `/` answers before and after the
//! first entry, the shared endpoints, and unknown paths and methods.

use std::{fs, path::Path};

use axum::{
    Router,
    http::{Method, StatusCode},
};
use log_output::reader;
use service_kit::shutdown::Draining;
use test_support::router::call;

const ENTRY: &str =
    "2020-03-30T12:15:17.705Z: 8523ecb1-c716-4cb6-a044-b9e83bb98e43.\nPing / Pongs: 3";

async fn app(data_dir: &Path) -> Router {
    reader::app(data_dir.to_owned(), Draining::default()).await
}

#[tokio::test]
async fn root_is_503_with_the_reason_before_the_first_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let answer = call(&app(dir.path()).await, Method::GET, "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        answer.body,
        format!(
            "no entry yet: {} does not exist until log-writer writes its first entry\n",
            dir.path().join("output.log").display()
        )
    );
}

#[tokio::test]
async fn root_serves_output_log_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    shared_fs::replace(&dir.path().join("output.log"), ENTRY.as_bytes()).expect("writing");
    let app = app(dir.path()).await;
    let answer = call(&app, Method::GET, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(answer.body, ENTRY);

    // A new entry is served within one refresh period.
    let next = ENTRY.replace("Pongs: 3", "Pongs: 4");
    shared_fs::replace(&dir.path().join("output.log"), next.as_bytes()).expect("writing");
    tokio::time::sleep(reader::REFRESH * 2).await;
    assert_eq!(call(&app, Method::GET, "/").await.body, next);
}

#[tokio::test]
async fn root_is_503_with_the_reason_when_output_log_cannot_be_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory where the file should be: not a regular file, so not an entry.
    fs::create_dir(dir.path().join("output.log")).expect("mkdir");
    let answer = call(&app(dir.path()).await, Method::GET, "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body,
        format!(
            "{} is a directory, not a regular file\n",
            dir.path().join("output.log").display()
        )
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path()).await;
    assert_eq!(
        call(&app, Method::GET, "/output.log").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, Method::POST, "/").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&app, Method::DELETE, "/").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn healthz_is_200_and_readyz_follows_the_data_dir_and_draining() {
    let root = tempfile::tempdir().expect("tempdir");
    let data_dir = root.path().join("files");
    fs::create_dir(&data_dir).expect("mkdir");
    let draining = Draining::default();
    let app = reader::app(data_dir.clone(), draining.clone()).await;

    assert_eq!(
        call(&app, Method::GET, "/healthz").await.status,
        StatusCode::OK
    );
    let ready = call(&app, Method::GET, "/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "ready")
    );

    fs::remove_dir(&data_dir).expect("rmdir");
    let gone = call(&app, Method::GET, "/readyz").await;
    assert_eq!(gone.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        gone.body,
        format!(
            "data directory {}: No such file or directory (os error 2)",
            data_dir.display()
        )
    );

    fs::create_dir(&data_dir).expect("mkdir");
    assert_eq!(
        call(&app, Method::GET, "/readyz").await.status,
        StatusCode::OK
    );
    draining.start();
    let draining = call(&app, Method::GET, "/readyz").await;
    assert_eq!(
        (draining.status, draining.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down")
    );
    assert_eq!(
        call(&app, Method::GET, "/healthz").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path()).await;
    call(&app, Method::GET, "/").await;
    shared_fs::replace(&dir.path().join("output.log"), ENTRY.as_bytes()).expect("writing");
    tokio::time::sleep(reader::REFRESH * 2).await;
    call(&app, Method::GET, "/").await;
    call(&app, Method::GET, "/").await;
    let metrics = call(&app, Method::GET, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let mut lines: Vec<&str> = metrics
        .body
        .lines()
        .filter(|l| l.starts_with("http_requests_total{route=\"/\""))
        .collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"http_requests_total{route="/",method="GET",status="200"} 2"#,
            r#"http_requests_total{route="/",method="GET",status="503"} 1"#,
        ]
    );
}
