//! A symbolic link on the volume is never followed (SPEC §3): `output.log` linked to a secret
//! is "a symbolic link" to log-reader, which never serves the secret.

use std::{fs, os::unix::fs::symlink, time::Duration};

use axum::http::{Method, StatusCode};
use log_output::reader;
use service_kit::shutdown::Draining;
use test_support::router::call;

const SECRET: &str = "password=hunter2\n";

#[tokio::test]
async fn an_output_log_linked_to_a_secret_is_never_served() {
    let away = tempfile::tempdir().unwrap();
    let secret = away.path().join("secret");
    fs::write(&secret, SECRET).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output.log");
    symlink(&secret, &output).unwrap();
    let app = reader::app(dir.path().to_owned(), Draining::default()).await;

    let expected = format!(
        "{} is a symbolic link, not a regular file\n",
        output.display()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = call(&app, Method::GET, "/").await;
        let (status, body) = (answer.status, answer.body);
        assert!(
            !body.contains("hunter2"),
            "served the secret: {status} {body}"
        );
        if (status, body.as_str()) == (StatusCode::SERVICE_UNAVAILABLE, expected.as_str()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still answering {status} {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
