//! The whole system as processes: pingpong, log-writer and log-reader sharing one temporary
//! `DATA_DIR`, as in the pod. pingpong is another crate's binary: `cargo test --workspace`
//! builds it into the same directory as log-output's.

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::{entry, eventually, free_port, get, poll_until, start_reader, start_writer};

/// log-writer's interval here: long enough that "within two intervals" leaves a whole interval
/// of slack for a busy machine, short enough to keep the test quick.
const INTERVAL: Duration = Duration::from_secs(1);

fn pingpong_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_log-writer")).with_file_name("pingpong");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

#[test]
fn the_reader_shows_the_count_of_pings_within_two_intervals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 temp path");
    let pingpong_port = free_port();
    let mut pingpong = common::start(
        pingpong_binary().to_str().expect("utf-8 path"),
        &[("DATA_DIR", data_dir), ("PORT", &pingpong_port.to_string())],
        false,
    );
    common::wait_healthy(&mut pingpong, pingpong_port);
    let writer = start_writer(
        dir.path(),
        &humantime::format_duration(INTERVAL).to_string(),
    );
    let (_reader, reader_port) = start_reader(dir.path());

    let first = entry(&writer.next_entry());
    let before = poll_until("an entry on /", || {
        get(reader_port, "/").ok().filter(|r| r.status == 200)
    });
    assert_eq!(entry(&before.text()).pongs, 0, "{}", before.text());

    for n in 0..3 {
        let pong = get(pingpong_port, "/pingpong").expect("GET /pingpong");
        assert_eq!((pong.status, pong.text()), (200, format!("pong {n}")));
    }
    let after = eventually(2 * INTERVAL, "Ping / Pongs: 3 on /", || {
        let after = entry(&get(reader_port, "/").expect("GET /").text());
        (after.pongs == 3).then_some(after)
    });
    assert_eq!(after.id, first.id, "the same writer throughout");
}
