//! pingpong as real processes: restarts, `kill -9` under load, two replicas on one volume, a
//! corrupt file repaired while running, and the command line (SPEC §2, §4, §6, §7).

mod support;

use shared_fs::CounterFile;

use std::{collections::BTreeSet, fs, process::Command, thread, time::Duration};

use support::{BIN, Server, eventually, pong_number, try_get};

const COUNTER: &str = "pingpong_counter.txt";

#[test]
fn a_restart_continues_exactly_where_the_last_answer_left_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for expected in 0..5 {
        assert_eq!(server.get("/pingpong"), (200, format!("pong {expected}")));
    }
    let status = server.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0");

    let server = Server::start(dir.path());
    assert_eq!(server.get("/pingpong"), (200, "pong 5".to_owned()));
    test_support::assert_published(&dir.path().join(COUNTER), "6\n");
}

/// Hammers `/pingpong` on `port` from `threads` threads until the server stops answering;
/// returns every number acknowledged with a 200.
fn load(port: u16, threads: usize) -> Vec<thread::JoinHandle<Vec<u64>>> {
    (0..threads)
        .map(|_| {
            thread::spawn(move || {
                let mut acknowledged = Vec::new();
                while let Ok((status, body)) = try_get(port, "/pingpong") {
                    assert_eq!(status, 200, "{body}");
                    acknowledged.push(pong_number(&body));
                }
                acknowledged
            })
        })
        .collect()
}

#[test]
fn kill_9_under_concurrent_load_never_loses_an_acknowledged_increment() {
    const CYCLES: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let mut every_answer = BTreeSet::new();

    for cycle in 0..CYCLES {
        let server = Server::start(dir.path());
        let before: u64 = server.get("/pings").1.parse().unwrap();
        let clients = load(server.port, 8);
        // Let the load run until answers arrive, then a different while each cycle.
        eventually(Duration::from_secs(20), "answers under load", || {
            let now: u64 = server.get("/pings").1.parse().unwrap();
            (now >= before + 20).then_some(())
        });
        thread::sleep(Duration::from_millis(7 * cycle));
        server.kill9();

        let acknowledged: Vec<u64> = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        for &n in &acknowledged {
            assert!(every_answer.insert(n), "cycle {cycle}: {n} answered twice");
        }
        // The published file is whole, and may trail the count: a kill -9 skips publishing
        // (a first cycle killed before its first publication leaves none).
        let published: u64 = match fs::read_to_string(dir.path().join(COUNTER)) {
            Ok(text) => text.trim().parse().unwrap_or_else(|e| {
                panic!("cycle {cycle}: counter file unparsable after kill -9: {e}")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && cycle == 0 => 0,
            Err(e) => panic!("cycle {cycle}: {e}"),
        };
        let on_disk = CounterFile::in_dir(dir.path()).read().unwrap();
        assert!(
            published <= on_disk,
            "cycle {cycle}: {published} > {on_disk}"
        );
        let largest = *acknowledged.iter().max().expect("some answers");
        assert!(
            on_disk > largest,
            "cycle {cycle}: pong {largest} was acknowledged but the count is {on_disk}"
        );

        // After the restart, the first answer is exactly the count, and it is published.
        let server = Server::start(dir.path());
        let (status, body) = server.get("/pingpong");
        assert_eq!(
            (status, body),
            (200, format!("pong {on_disk}")),
            "cycle {cycle}"
        );
        test_support::assert_published(&dir.path().join(COUNTER), &format!("{}\n", on_disk + 1));
        every_answer.insert(on_disk);
        server.kill9();
    }
}

#[test]
fn sigterm_under_load_finishes_in_flight_requests_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let port = server.port;
    let clients = load(port, 8);
    eventually(Duration::from_secs(20), "answers under load", || {
        let now: u64 = server.get("/pings").1.parse().unwrap();
        (now >= 50).then_some(())
    });
    let status = server.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "SIGTERM under load must exit 0");

    // Every answer sent before the exit is on disk, and the restart continues right after it.
    let acknowledged: Vec<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let largest = *acknowledged.iter().max().expect("some answers");
    let on_disk: u64 = fs::read_to_string(dir.path().join(COUNTER))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        on_disk,
        largest + 1,
        "a drained shutdown leaves no increment unanswered"
    );
    let server = Server::start(dir.path());
    assert_eq!(server.get("/pingpong"), (200, format!("pong {on_disk}")));
}

#[test]
fn two_processes_on_one_volume_hand_out_distinct_numbers_and_the_exact_total() {
    const THREADS_EACH: usize = 4;
    const REQUESTS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(dir.path());
    let b = Server::start(dir.path());

    let clients: Vec<_> = [a.port, b.port]
        .into_iter()
        .flat_map(|port| {
            (0..THREADS_EACH).map(move |_| {
                thread::spawn(move || {
                    (0..REQUESTS)
                        .map(|_| pong_number(&support::get(port, "/pingpong").1))
                        .collect::<Vec<_>>()
                })
            })
        })
        .collect();
    let mut answers = BTreeSet::new();
    for client in clients {
        for n in client.join().unwrap() {
            assert!(answers.insert(n), "pong {n} answered twice");
        }
    }

    let total = 2 * THREADS_EACH as u64 * REQUESTS;
    assert_eq!(answers, (0..total).collect::<BTreeSet<_>>());
    test_support::assert_published(&dir.path().join(COUNTER), &format!("{total}\n"));
    assert_eq!(a.get("/pings"), (200, total.to_string()));
    assert_eq!(b.get("/pings"), (200, total.to_string()));
}

#[test]
fn a_corrupt_file_keeps_the_server_up_until_counter_set_repairs_it_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(COUNTER);
    fs::write(&path, b"pong NaN\n").unwrap();
    let server = Server::start(dir.path());

    for route in ["/pingpong", "/readyz"] {
        let (status, body) = server.get(route);
        assert_eq!(status, 503, "{route}");
        assert!(
            body.contains(&path.display().to_string()),
            "{route}: {body}"
        );
        assert!(body.contains(r"pong NaN\n"), "{route}: {body}");
    }
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(fs::read(&path).unwrap(), b"pong NaN\n");
    assert!(
        server
            .stderr_lines()
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("corrupt counter file")),
        "the error is logged: {:?}",
        server.stderr_lines()
    );

    let repair = Command::new(BIN)
        .args(["counter", "set", "5"])
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(repair.status.success(), "{repair:?}");

    assert_eq!(server.get("/readyz").0, 200);
    assert_eq!(server.get("/pingpong"), (200, "pong 5".to_owned()));
    let get = Command::new(BIN)
        .args(["counter", "get"])
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(get.stdout).unwrap(), "6\n");
}

#[test]
fn a_malformed_variable_exits_2_with_one_line_naming_it() {
    for (var, value) in [
        ("PORT", "abc"),
        ("PORT", "-1"),
        ("RUST_LOG", "[[["),
        ("SHUTDOWN_DELAY", "5"),
        ("SHUTDOWN_DELAY", "-1s"),
        ("SHUTDOWN_DELAY", "61s"),
    ] {
        let out = Command::new(BIN).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("{var}={value:?}")), "{stderr}");
    }
}

#[test]
fn help_version_and_bad_operator_input() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for needle in [
        "PORT",
        "LISTEN_ADDRESS",
        "DATA_DIR",
        "RUST_LOG",
        "SHUTDOWN_DELAY",
        "[default: 0s]",
        "/pingpong",
        "/readyz",
        "counter set N",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap(),
        format!("pingpong {}\n", env!("CARGO_PKG_VERSION"))
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = Command::new(BIN)
        .args(["counter", "set", "-3"])
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        !dir.path().join(COUNTER).exists(),
        "a refused set writes nothing"
    );
}
