//! `SHUTDOWN_DELAY` on a real pingpong process (SPEC §2, §6): after SIGTERM `/readyz`
//! answers 503 at once while `/pingpong` keeps answering on new connections for the delay; then
//! the listener closes, and the process exits 0 with every answered number on disk.

mod support;

use std::{
    fs,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use support::{Server, eventually, pong_number, try_get};

const DELAY: Duration = Duration::from_secs(1);

#[test]
fn after_sigterm_readyz_turns_503_at_once_and_requests_are_answered_for_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &[("SHUTDOWN_DELAY", "1s")]);
    let port = server.port;

    // One client, one request at a time, each on a new connection (what a load balancer that
    // has not yet noticed the 503 does): at most one request in flight, so the numbers it gets
    // are consecutive, and answers received after the 503 was seen can only come from the delay.
    let answered = Arc::new(AtomicUsize::new(0));
    let client = {
        let answered = answered.clone();
        thread::spawn(move || {
            let mut answers = Vec::new();
            loop {
                match try_get(port, "/pingpong") {
                    Ok(answer) => {
                        answers.push((Instant::now(), answer));
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    // Refused (or reset in the backlog) once the listener is closed.
                    Err(end) => return (answers, end),
                }
            }
        })
    };
    eventually(Duration::from_secs(20), "answers before SIGTERM", || {
        (answered.load(Ordering::SeqCst) >= 5).then_some(())
    });

    let signalled = Instant::now();
    server.signal(15);
    // Until the signal is handled /readyz still says 200; it must never refuse a connection.
    let (seen_503, readyz) = eventually(Duration::from_secs(5), "/readyz 503", || {
        let (status, body) = try_get(port, "/readyz")
            .unwrap_or_else(|e| panic!("/readyz refused during the delay: {e}"));
        match status {
            503 => Some((Instant::now(), body)),
            200 => None,
            other => panic!("/readyz answered {other}: {body}"),
        }
    });
    assert_eq!(readyz, "draining: shutting down");

    let status = server.wait_exit(DELAY + Duration::from_secs(10));
    let exited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "SIGTERM with a delay must exit 0");
    assert!(
        exited >= DELAY,
        "exited {exited:?} after SIGTERM, before the {DELAY:?} delay ended"
    );

    let (answers, end) = client.join().unwrap();
    let numbers: Vec<u64> = answers
        .iter()
        .map(|(_, (status, body))| {
            assert_eq!(*status, 200, "{body}");
            pong_number(body)
        })
        .collect();
    let total = numbers.len() as u64;
    assert_eq!(
        numbers,
        (0..total).collect::<Vec<_>>(),
        "every request answered, in order"
    );
    let after_503 = answers.iter().filter(|(at, _)| *at > seen_503).count();
    assert!(
        after_503 >= 3,
        "only {after_503} answers after /readyz turned 503; the delay keeps serving (client ended with: {end})"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("pingpong_counter.txt")).unwrap(),
        format!("{total}\n"),
        "every answered number is on disk, and nothing more"
    );
}
