//! Leader mode (issue 23) as real processes on one local directory: several pingpong replicas,
//! each with `ADVERTISE_ADDR`, of which the one holding the counter's lock is the leader and
//! does every durable write while the others forward their batches to its internal port.
//!
//! What these tests hold the design to (SPEC §3, §4, §7): exactly one leader, which keeps the
//! lock; every number handed out once and the count's books kept (answered + abandoned ≤ the
//! count ≤ that + the forwards that got no answer); a leader killed, stopped gracefully or
//! frozen is followed by answers again and never by a number twice; a graceful hand-over fails
//! no request; the internal port refuses what is not a follower's and burns no number doing
//! so; `counter set` and replicas that take turns at the lock (without `ADVERTISE_ADDR`, or of
//! the release before leader mode) still get it.
//!
//! Speed is the benchmarks' business: each test waits for a condition with a generous
//! deadline, and prints the figures (the failover gap) without asserting them.

mod support;

use std::{
    collections::BTreeSet,
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use service_kit::connections::HEADER_READ_TIMEOUT;
use shared_fs::{CounterFile, leader_block::LeaderBlock, record_file::RecordFile};
use support::{BIN, Server, assert_each_number_once, eventually, metric, pong_number, try_get};
use test_support::{http, process::LISTENING_WITHIN};

/// The variables of a replica in leader mode on loopback; `PORT=0` comes from [`Server`].
const LEADER_MODE: &[(&str, &str)] = &[
    ("ADVERTISE_ADDR", "127.0.0.1"),
    ("INTERNAL_PORT", "0"),
    ("LISTEN_ADDRESS", "127.0.0.1"),
];

/// What the internal listener's log line contains.
const INTERNAL_LISTENING: &str = "pingpong internal listening";

/// How long a condition that follows a leader's change (a takeover, a hand-over, a replica
/// thawed) may take before a test fails: the design aims at well under a second, a debug build
/// on a loaded two-core machine may need far more, and only a hang should fail.
const WITHIN: Duration = Duration::from_secs(30);

/// A pingpong replica and its two ports.
struct Replica {
    server: Server,
    /// The internal port, in leader mode; `None` for a replica that takes turns at the lock.
    internal: Option<u16>,
}

impl Replica {
    /// A replica in leader mode on `dir`, once both its ports listen.
    fn leader_mode(dir: &Path) -> Replica {
        Replica::leader_mode_with(dir, &[])
    }

    /// [`Replica::leader_mode`] with more variables.
    fn leader_mode_with(dir: &Path, env: &[(&str, &str)]) -> Replica {
        let env: Vec<(&str, &str)> = LEADER_MODE.iter().chain(env).copied().collect();
        let server = Server::start_with(dir, &env);
        let internal = eventually(LISTENING_WITHIN, INTERNAL_LISTENING, || {
            server
                .stderr_lines()
                .iter()
                .find_map(|l| test_support::process::listening_port(l, INTERNAL_LISTENING))
        });
        Replica {
            server,
            internal: Some(internal),
        }
    }

    /// A replica without `ADVERTISE_ADDR`: it takes turns at the lock, as before leader mode.
    fn taking_turns(dir: &Path) -> Replica {
        Replica::from(Server::start_with(dir, &[("LISTEN_ADDRESS", "127.0.0.1")]))
    }

    fn port(&self) -> u16 {
        self.server.port
    }

    fn internal(&self) -> u16 {
        self.internal.expect("a replica in leader mode")
    }

    /// The value of metric `name` on this replica; panics if it has none.
    fn metric(&self, name: &str) -> u64 {
        let (status, body) = self.server.get("/metrics");
        assert_eq!(status, 200, "{body}");
        metric(&body, name).unwrap_or_else(|| panic!("no {name} in {body}"))
    }

    /// `pingpong_leader`, or `None` while the replica does not answer `/metrics`.
    fn leads(&self) -> Option<bool> {
        match try_get(self.port(), "/metrics") {
            Ok((200, body)) => metric(&body, "pingpong_leader").map(|v| v == 1),
            _ => None,
        }
    }

    /// The count, `/pings`.
    fn pings(&self) -> u64 {
        let (status, body) = self.server.get("/pings");
        assert_eq!(status, 200, "/pings: {body}");
        body.parse()
            .unwrap_or_else(|e| panic!("/pings {body:?}: {e}"))
    }

    fn log_lines(&self, needle: &str) -> Vec<String> {
        self.server
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

impl From<Server> for Replica {
    fn from(server: Server) -> Replica {
        Replica {
            server,
            internal: None,
        }
    }
}

/// What each replica logged about leading and following, for a failure message.
fn leadership_story(replicas: &[Replica]) -> String {
    let mut story = String::from("the replicas' leadership log:");
    for (i, replica) in replicas.iter().enumerate() {
        for line in replica.server.stderr_lines() {
            if [
                "leading",
                "following",
                "stepping down",
                "handing over",
                "courtesy",
                "leader",
            ]
            .iter()
            .any(|w| line.contains(w))
            {
                story.push_str(&format!("\n  replica {i}: {line}"));
            }
        }
    }
    story
}

/// The index of the one replica of `replicas` that reports `pingpong_leader 1` while every
/// other reports 0, waiting for that within `within`.
fn the_leader(replicas: &[&Replica], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let leads: Vec<Option<bool>> = replicas.iter().map(|r| r.leads()).collect();
        let leaders: Vec<usize> = (0..leads.len())
            .filter(|&i| leads[i] == Some(true))
            .collect();
        let followers = leads.iter().filter(|&&l| l == Some(false)).count();
        if leaders.len() == 1 && followers == replicas.len() - 1 {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single leader within {within:?}: pingpong_leader {leads:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The index of the leader of `replicas` once it also holds the counter's lock in `dir`.
fn leader_holding_the_lock(replicas: &[Replica], dir: &Path) -> usize {
    let all: Vec<&Replica> = replicas.iter().collect();
    eventually(WITHIN, "a leader that holds the lock", || {
        let leader = the_leader(&all, WITHIN);
        holds_the_lock(&replicas[leader], dir).then_some(leader)
    })
}

/// The count's books (SPEC §7, leader mode), summed over `replicas`: answered + abandoned ≤ the
/// count ≤ answered + abandoned + unknown (`pingpong_forward_unknown_total`: forwards that got
/// no answer, which the leader may or may not have written); equal on the left when no forward
/// went unanswered. Returns (abandoned, unknown).
fn assert_books(
    replicas: &[&Replica],
    answered: u64,
    count: u64,
    failures: &[(u16, String)],
) -> (u64, u64) {
    let sum = |name| replicas.iter().map(|r| r.metric(name)).sum::<u64>();
    let abandoned = sum("pingpong_abandoned_total");
    let unknown = sum("pingpong_forward_unknown_total");
    assert!(
        (answered + abandoned..=answered + abandoned + unknown).contains(&count),
        "the count {count} against {answered} answered, {abandoned} abandoned and {unknown} \
         unknown: answered + abandoned <= count <= answered + abandoned + unknown; failed \
         requests: {failures:?}"
    );
    (abandoned, unknown)
}

/// One answer a client got: when, from which port, which number.
#[derive(Debug, Clone, Copy)]
struct Answer {
    at: Instant,
    port: u16,
    number: u64,
}

/// Clients asking `/pingpong` on fresh connections, one request at a time each, until stopped;
/// they keep every `200` and every failure (another status, or no answer), as they come.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    failures: Arc<Mutex<Vec<(u16, String)>>>,
    clients: Vec<thread::JoinHandle<()>>,
}

impl Load {
    /// `threads` clients on each of `ports`.
    fn start(ports: &[u16], threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let clients = ports
            .iter()
            .flat_map(|&port| (0..threads).map(move |_| port))
            .map(|port| {
                let (stop, answers, failures) = (stop.clone(), answers.clone(), failures.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match try_get(port, "/pingpong") {
                            Ok((200, body)) => answers.lock().unwrap().push(Answer {
                                at: Instant::now(),
                                port,
                                number: pong_number(&body),
                            }),
                            Ok((status, body)) => {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push((port, format!("{status} {body}")));
                            }
                            Err(e) => {
                                failures.lock().unwrap().push((port, e.to_string()));
                                // A replica gone refuses at once: no busy loop.
                                thread::sleep(Duration::from_millis(10));
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            answers,
            failures,
            clients,
        }
    }

    /// How many answers came after `since` from any of `ports`.
    fn answered_since(&self, since: Instant, ports: &[u16]) -> usize {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.at > since && ports.contains(&a.port))
            .count()
    }

    /// Waits until `count` answers have come after `since` from `ports`.
    fn until_answered(&self, count: usize, since: Instant, ports: &[u16], what: &str) {
        eventually(WITHIN, what, || {
            (self.answered_since(since, ports) >= count).then_some(())
        });
    }

    /// Stops the clients once their requests in flight are answered: every answer and every
    /// failure.
    fn stop(self) -> (Vec<Answer>, Vec<(u16, String)>) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.join().expect("a client panicked");
        }
        let answers = std::mem::take(&mut *self.answers.lock().unwrap());
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (answers, failures)
    }
}

/// `requests` increments from each of `threads` clients on each of `ports`, all at once: every
/// answer and every failure (another status than `200`, or no answer).
fn load_each(ports: &[u16], threads: usize, requests: usize) -> (Vec<Answer>, Vec<(u16, String)>) {
    let clients: Vec<_> = ports
        .iter()
        .flat_map(|&port| (0..threads).map(move |_| port))
        .map(|port| {
            thread::spawn(move || {
                let (mut answers, mut failures) = (Vec::new(), Vec::new());
                for _ in 0..requests {
                    match try_get(port, "/pingpong") {
                        Ok((200, body)) => answers.push(Answer {
                            at: Instant::now(),
                            port,
                            number: pong_number(&body),
                        }),
                        Ok((status, body)) => failures.push((port, format!("{status} {body}"))),
                        Err(e) => failures.push((port, e.to_string())),
                    }
                }
                (answers, failures)
            })
        })
        .collect();
    let (mut answers, mut failures) = (Vec::new(), Vec::new());
    for client in clients {
        let (a, f) = client.join().expect("a client panicked");
        answers.extend(a);
        failures.extend(f);
    }
    (answers, failures)
}

fn numbers(answers: &[Answer]) -> Vec<u64> {
    answers.iter().map(|a| a.number).collect()
}

/// The longest stretch of `answers` without one, from `from` on: what clients saw of a
/// failover.
fn longest_silence(answers: &[Answer], from: Instant) -> Duration {
    let mut times: Vec<Instant> = answers.iter().map(|a| a.at).filter(|&t| t > from).collect();
    times.sort_unstable();
    let mut last = from;
    let mut longest = Duration::ZERO;
    for t in times {
        longest = longest.max(t - last);
        last = t;
    }
    longest
}

/// Straight to stderr, not `eprintln!`: libtest captures the macros of a passing test, and a
/// figure is printed to be seen.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

// 1. One leader, every number once, the count exact ------------------------------------------

/// Concurrent clients on each of `count` replicas in leader mode.
fn one_leader_among(count: usize) {
    const THREADS: usize = 3;
    const REQUESTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Replica> = (0..count)
        .map(|_| Replica::leader_mode(dir.path()))
        .collect();
    let ports: Vec<u16> = replicas.iter().map(Replica::port).collect();

    let (answers, failures) = load_each(&ports, THREADS, REQUESTS);

    let all: Vec<&Replica> = replicas.iter().collect();
    let leader = the_leader(&all, WITHIN);
    // One leader the whole time: nobody else ever took the lead, and all follow its epoch.
    let epoch = replicas[leader].metric("pingpong_leader_epoch");
    for (i, replica) in replicas.iter().enumerate() {
        let leading = replica.log_lines(" INFO leading ");
        assert_eq!(
            leading.len(),
            usize::from(i == leader),
            "replica {i} of {count} (leader now: {leader}) logged 'leading' {} times; {}",
            leading.len(),
            leadership_story(&replicas)
        );
        assert_eq!(
            replica.metric("pingpong_leader_epoch"),
            epoch,
            "replica {i}'s epoch (leader {leader}); {}",
            leadership_story(&replicas)
        );
    }

    let answered = answers.len() as u64;
    assert_eq!(
        answered + failures.len() as u64,
        (count * THREADS * REQUESTS) as u64
    );
    assert_each_number_once(&numbers(&answers));
    let all: Vec<&Replica> = replicas.iter().collect();
    let count_now = replicas[leader].pings();
    let (abandoned, unknown) = assert_books(&all, answered, count_now, &failures);
    for replica in &replicas {
        assert_eq!(
            replica.pings(),
            count_now,
            "every replica reads the same count"
        );
    }
    // Each follower forwarded what it answered (and any it got numbers for too late to hand
    // them out, which it counts as abandoned); the leader forwarded nothing.
    for (i, replica) in replicas.iter().enumerate() {
        let forwarded = replica.metric("pingpong_forwarded_total");
        if i == leader {
            assert_eq!(forwarded, 0, "the leader forwards nothing");
            continue;
        }
        let own = answers.iter().filter(|a| a.port == replica.port()).count() as u64;
        let own_abandoned = replica.metric("pingpong_abandoned_total");
        assert!(
            (own..=own + own_abandoned).contains(&forwarded),
            "follower {i}: pingpong_forwarded_total {forwarded}, answered {own}, abandoned {own_abandoned}"
        );
        assert_ne!(forwarded, 0, "follower {i} forwarded nothing");
    }
    report(&format!(
        "{count} replicas: {answered} answered, {} failed, {abandoned} abandoned, {unknown} \
         forwards unknown",
        failures.len()
    ));
}

#[test]
fn two_replicas_have_one_leader_and_hand_out_every_number_once_with_the_exact_count() {
    one_leader_among(2);
}

#[test]
fn three_replicas_have_one_leader_and_hand_out_every_number_once_with_the_exact_count() {
    one_leader_among(3);
}

// 2-4. The leader killed, stopped gracefully, frozen ------------------------------------------

/// `count` replicas in leader mode (with `env` too) and the index of their leader, found once
/// one increment has been answered (numbered 0).
fn replicas_with_a_leader(dir: &Path, count: usize, env: &[(&str, &str)]) -> (Vec<Replica>, usize) {
    let replicas: Vec<Replica> = (0..count)
        .map(|_| Replica::leader_mode_with(dir, env))
        .collect();
    assert_eq!(
        replicas[0].server.get("/pingpong"),
        (200, "pong 0".to_owned())
    );
    let leader = the_leader(&replicas.iter().collect::<Vec<_>>(), WITHIN);
    (replicas, leader)
}

#[test]
fn after_a_kill_9_of_the_leader_under_load_another_replica_leads_and_no_number_is_handed_out_twice()
{
    let dir = tempfile::tempdir().unwrap();
    let (mut replicas, _) = replicas_with_a_leader(dir.path(), 3, &[]);
    let ports: Vec<u16> = replicas.iter().map(Replica::port).collect();
    let load = Load::start(&ports, 2);
    let started = Instant::now();
    load.until_answered(
        60,
        started,
        &ports,
        "answers from every replica before the kill",
    );

    let leader = leader_holding_the_lock(&replicas, dir.path());
    let old_epoch = replicas[leader].metric("pingpong_leader_epoch");
    let killed = replicas.remove(leader);
    let killed_at = Instant::now();
    killed.server.kill9();

    let survivors: Vec<u16> = replicas.iter().map(Replica::port).collect();
    let new_leader = the_leader(&replicas.iter().collect::<Vec<_>>(), WITHIN);
    load.until_answered(60, killed_at, &survivors, "answers after the kill");
    let (answers, failures) = load.stop();

    let new_epoch = replicas[new_leader].metric("pingpong_leader_epoch");
    assert_ne!(new_epoch, old_epoch, "the new leader's epoch");
    for replica in &replicas {
        assert_eq!(replica.metric("pingpong_leader_epoch"), new_epoch);
    }
    let mut all = numbers(&answers);
    all.push(0);
    assert_each_number_once(&all);
    // None lost: every number answered, also by the leader that was killed, is below the count.
    let largest = *all.iter().max().unwrap();
    assert!(
        replicas[new_leader].pings() > largest,
        "pong {largest} was answered, the count is {}",
        replicas[new_leader].pings()
    );
    let failed_on_survivors = failures
        .iter()
        .filter(|(p, _)| survivors.contains(p))
        .count();
    report(&format!(
        "kill -9 of the leader: the longest stretch without an answer from the kill on (the \
         failover gap clients saw) {:?}; {failed_on_survivors} requests failed on the \
         survivors; epoch {old_epoch} -> {new_epoch}",
        longest_silence(&answers, killed_at - Duration::from_millis(1)),
    ));
}

#[test]
fn a_leader_stopped_with_sigterm_hands_over_without_one_failed_request_to_the_followers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut replicas, _) = replicas_with_a_leader(dir.path(), 3, &[("SHUTDOWN_DELAY", "1s")]);
    // Clients on the followers only, up to the signal: if the lead moved meanwhile (a follower
    // that took a courtesy turn's lock: the one-leader tests fail on that), again.
    let mut answers = Vec::new();
    let (leader, followers, load, started) = loop {
        let leader = leader_holding_the_lock(&replicas, dir.path());
        let followers: Vec<u16> = (0..replicas.len())
            .filter(|&i| i != leader)
            .map(|i| replicas[i].port())
            .collect();
        let load = Load::start(&followers, 2);
        let started = Instant::now();
        load.until_answered(
            40,
            started,
            &followers,
            "the followers' answers before SIGTERM",
        );
        if holds_the_lock(&replicas[leader], dir.path()) {
            break (leader, followers, load, started);
        }
        let (earlier, failures) = load.stop();
        assert_eq!(failures, [], "requests failed before SIGTERM");
        answers.extend(earlier);
    };

    let mut leaving = replicas.remove(leader);
    leaving.server.signal("TERM");
    let status = leaving.server.wait_exit(Duration::from_secs(30));
    let exited = Instant::now();
    assert_eq!(status.code(), Some(0), "the leader's exit after SIGTERM");
    let new_leader = the_leader(&replicas.iter().collect::<Vec<_>>(), WITHIN);
    load.until_answered(40, exited, &followers, "answers after the hand-over");
    let (later, failures) = load.stop();
    answers.extend(later);

    assert_eq!(
        failures,
        [],
        "requests failed during the hand-over; the leader's log from its SIGTERM on:\n{}\nthe \
         followers' warnings:\n{}",
        leaving
            .server
            .stderr_lines()
            .into_iter()
            .skip_while(|l| !l.contains("shutting down"))
            .collect::<Vec<_>>()
            .join("\n"),
        replicas
            .iter()
            .flat_map(|r| r.log_lines(" WARN "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut all = numbers(&answers);
    all.push(0);
    assert_each_number_once(&all);
    assert_books(
        &replicas.iter().collect::<Vec<_>>(),
        all.len() as u64,
        replicas[new_leader].pings(),
        &failures,
    );
    report(&format!(
        "SIGTERM of the leader: 0 of {} requests failed, longest silence {:?}",
        all.len(),
        longest_silence(&answers, started)
    ));
}

/// Asks `path` on `port` until `check` takes the answer, within [`WITHIN`]; the failure shows
/// the last answer.
fn until_answer<T>(port: u16, path: &str, mut check: impl FnMut(u16, &str) -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        let answer = try_get(port, path);
        if let Ok((status, body)) = &answer
            && let Some(value) = check(*status, body)
        {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{path} on port {port} after {WITHIN:?}: {answer:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// N and the error of a follower's readiness reason `no leader reachable for N s: <error>`;
/// panics on another reason.
fn no_leader_reachable(reason: &str) -> (u64, String) {
    reason
        .strip_prefix("no leader reachable for ")
        .and_then(|rest| rest.split_once(" s: "))
        .and_then(|(n, error)| Some((n.parse().ok()?, error.trim_end().to_owned())))
        .unwrap_or_else(|| panic!("not 'no leader reachable for N s: ...': {reason:?}"))
}

#[test]
fn while_the_leader_is_frozen_followers_are_unready_with_the_reason_and_after_it_thaws_answers_resume()
 {
    let dir = tempfile::tempdir().unwrap();
    let (replicas, _) = replicas_with_a_leader(dir.path(), 3, &[]);
    let all: Vec<&Replica> = replicas.iter().collect();
    let ports: Vec<u16> = replicas.iter().map(Replica::port).collect();
    let load = Load::start(&ports, 2);
    load.until_answered(40, Instant::now(), &ports, "answers before the freeze");

    // Frozen with its lock held: nobody can take over, and nobody may write beside it. (Frozen
    // in the instant of a courtesy turn, its lock is free and a follower rightly takes over:
    // thawed and frozen again then.)
    let leader = loop {
        let leader = the_leader(&all, WITHIN);
        replicas[leader].server.signal("STOP");
        if holds_the_lock(&replicas[leader], dir.path()) {
            break leader;
        }
        replicas[leader].server.signal("CONT");
    };
    let followers: Vec<&Replica> = (0..replicas.len())
        .filter(|&i| i != leader)
        .map(|i| &replicas[i])
        .collect();
    let follower_ports: Vec<u16> = followers.iter().map(|r| r.port()).collect();
    let frozen_at = Instant::now();
    for follower in &followers {
        let reason = until_answer(follower.port(), "/readyz", |status, body| {
            (status == 503).then(|| body.to_owned())
        });
        let (seconds, error) = no_leader_reachable(&reason);
        assert!(
            seconds >= 1,
            "unready before a second without a leader: {reason}"
        );
        assert!(!error.is_empty(), "no error in {reason:?}");
    }
    let unready_after = frozen_at.elapsed();

    replicas[leader].server.signal("CONT");
    let thawed_at = Instant::now();
    for follower in &followers {
        until_answer(follower.port(), "/readyz", |status, body| {
            ((status, body) == (200, "ready")).then_some(())
        });
    }
    load.until_answered(40, thawed_at, &follower_ports, "answers after the thaw");
    let (answers, failures) = load.stop();

    // One leader again (the design does not say whether a thawed leader leads on).
    let after = the_leader(&all, WITHIN);
    let mut all_numbers = numbers(&answers);
    all_numbers.push(0);
    assert_each_number_once(&all_numbers);
    let count = replicas[leader].pings();
    let largest = *all_numbers.iter().max().unwrap();
    assert!(
        count > largest,
        "pong {largest} was answered, the count is {count}"
    );
    // The forwards that got no answer while the leader was frozen may have been carried out
    // once it thawed: between the bounds.
    let (abandoned, unknown) = assert_books(&all, all_numbers.len() as u64, count, &failures);
    report(&format!(
        "SIGSTOP of the leader: followers unready {unready_after:?} after the freeze; {} \
         requests failed meanwhile, {abandoned} numbers abandoned, {unknown} forwards unknown; \
         after the thaw {} leads",
        failures.len(),
        if after == leader {
            "the same replica"
        } else {
            "another replica"
        }
    ));
}

// 6-8. Whoever takes the lock the old way still gets it ---------------------------------------

/// Whether `replica` holds the counter's lock in `dir` now.
fn holds_the_lock(replica: &Replica, dir: &Path) -> bool {
    test_support::holds_flock(replica.server.pid(), &dir.join("pingpong_counter.txt.lock"))
}

#[test]
fn counter_set_gets_the_lock_from_a_serving_leader_and_the_next_answer_is_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let (replicas, first) = replicas_with_a_leader(dir.path(), 2, &[]);
    assert_eq!(
        replicas[1 - first].server.get("/pingpong"),
        (200, "pong 1".to_owned())
    );
    // The leader keeps the lock while it serves, idle or not: `counter set` blocks in flock.
    let leader = leader_holding_the_lock(&replicas, dir.path());
    let follower = &replicas[1 - leader];

    let started = Instant::now();
    let (status, stdout, stderr) = test_support::process::run_to_end(
        Command::new(BIN)
            .args(["counter", "set", "100"])
            .env("DATA_DIR", dir.path()),
        WITHIN,
    );
    let took = started.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "counter set 100 (killed after {WITHIN:?} if None): {stdout}{stderr}"
    );
    report(&format!("counter set beside a leader took {took:?}"));

    assert_eq!(
        replicas[leader].server.get("/pingpong"),
        (200, "pong 100".to_owned())
    );
    assert_eq!(
        follower.server.get("/pingpong"),
        (200, "pong 101".to_owned())
    );
    assert_eq!(follower.pings(), 102);
}

#[test]
fn a_replica_taking_turns_beside_a_leader_both_answer_and_every_number_is_handed_out_once() {
    const THREADS: usize = 3;
    const REQUESTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let leading = Replica::leader_mode(dir.path());
    let turns = Replica::taking_turns(dir.path());
    let (answers, failures) = load_each(&[leading.port(), turns.port()], THREADS, REQUESTS);
    assert_eq!(failures, [], "requests failed");

    let total = answers.len() as u64;
    assert_eq!(total, (2 * THREADS * REQUESTS) as u64);
    assert_each_number_once(&numbers(&answers));
    assert_eq!(
        numbers(&answers).into_iter().collect::<BTreeSet<_>>(),
        (0..total).collect(),
        "a number was lost"
    );
    assert_eq!(leading.pings(), total);
    assert_eq!(turns.pings(), total);
}

/// pingpong of the release before leader mode, whose replicas take turns at the lock, or
/// `None` when `test` skips because this checkout lacks the history it is built from.
fn turn_taking_release(test: &str) -> Option<PathBuf> {
    test_support::binary_at_or_skip(test, test_support::TURNS_RELEASE, "pingpong", "pingpong")
}

#[test]
fn a_replica_of_the_release_before_beside_two_leader_mode_replicas_under_load_hands_out_every_number_once()
 {
    const TEST: &str = "a_replica_of_the_release_before_beside_two_leader_mode_replicas_under_load_hands_out_every_number_once";
    let Some(old) = turn_taking_release(TEST) else {
        return;
    };
    const THREADS: usize = 3;
    const REQUESTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::leader_mode(dir.path());
    let b = Replica::leader_mode(dir.path());
    let previous = Replica::from(Server::start_binary(&old, dir.path()));

    let (answers, failures) = load_each(&[a.port(), b.port(), previous.port()], THREADS, REQUESTS);
    assert_eq!(failures, [], "requests failed");

    let total = answers.len() as u64;
    assert_eq!(
        total,
        (3 * THREADS * REQUESTS) as u64,
        "every request answered 200"
    );
    assert_each_number_once(&numbers(&answers));
    assert_eq!(
        numbers(&answers).into_iter().collect::<BTreeSet<_>>(),
        (0..total).collect(),
        "a number was lost"
    );
    for replica in [&a, &b, &previous] {
        assert_eq!(replica.pings(), total);
    }
}

// 5. The internal port is not a new way in -----------------------------------------------------

/// An internal increment request as a follower sends it, `body` being n; the epoch and token
/// headers are left out when `None`.
fn internal_request(method: &str, epoch: Option<&str>, token: Option<&str>, body: &str) -> Vec<u8> {
    let mut head = format!("{method} /internal/increments HTTP/1.1\r\nHost: pingpong\r\n");
    if let Some(epoch) = epoch {
        head.push_str(&format!("x-pingpong-epoch: {epoch}\r\n"));
    }
    if let Some(token) = token {
        head.push_str(&format!("x-pingpong-token: {token}\r\n"));
    }
    format!(
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `raw` to the internal port and reads the answer (an error if the connection closed
/// without one).
fn to_internal(port: u16, raw: &[u8]) -> std::io::Result<http::Response> {
    http::exchange(http::loopback(port), raw, http::ANSWER_WITHIN)
}

/// Opens a connection to `port` that sends a request head one byte a second and never ends it;
/// the thread stops once the connection is closed or `stop` is set.
fn slowloris(port: u16, stop: Arc<AtomicBool>) -> TcpStream {
    let slow = TcpStream::connect(http::loopback(port)).expect("slowloris connect");
    let mut trickle = slow.try_clone().unwrap();
    thread::spawn(move || {
        let head = b"POST /internal/increments HTTP/1.1\r\nHost: pingpong\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if stop.load(Ordering::SeqCst) || trickle.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_secs(1));
        }
    });
    slow
}

#[test]
fn the_leaders_internal_port_refuses_hostile_requests_and_burns_no_number() {
    let dir = tempfile::tempdir().unwrap();
    let (replicas, leader) = replicas_with_a_leader(dir.path(), 2, &[]);
    let follower = &replicas[1 - leader];
    let leader = &replicas[leader];
    let port = leader.internal();
    let epoch = leader.metric("pingpong_leader_epoch").to_string();
    let old_epoch = (leader.metric("pingpong_leader_epoch") - 1).to_string();
    // The block names the leader: its epoch, its internal address, and the token followers
    // send, which the test reads as a follower does.
    let block = leader_block(dir.path());
    assert_eq!(block.epoch.to_string(), epoch);
    assert_eq!(block.address, http::loopback(port));
    assert!(!block.stepped_down);
    let token = block.token.hex();
    let wrong_token = "0123456789abcdef0123456789abcdef";
    assert_ne!(token, wrong_token);
    let count = leader.pings();

    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = slowloris(port, stop.clone());
    let opened = Instant::now();

    let (e, t) = (Some(epoch.as_str()), Some(token.as_str()));
    let cases: [(&str, Vec<u8>, u16); 12] = [
        (
            "a wrong token",
            internal_request("POST", e, Some(wrong_token), "1"),
            403,
        ),
        ("no token", internal_request("POST", e, None, "1"), 400),
        ("no epoch", internal_request("POST", None, t, "1"), 400),
        (
            "a wrong token for an old epoch: the token is checked first",
            internal_request("POST", Some(&old_epoch), Some(wrong_token), "1"),
            403,
        ),
        (
            "an old epoch",
            internal_request("POST", Some(&old_epoch), t, "1"),
            421,
        ),
        ("n = 0", internal_request("POST", e, t, "0"), 400),
        ("n = 1025", internal_request("POST", e, t, "1025"), 400),
        (
            "n not a number",
            internal_request("POST", e, t, "three"),
            400,
        ),
        ("n negative", internal_request("POST", e, t, "-1"), 400),
        (
            "GET instead of POST",
            internal_request("GET", e, t, ""),
            405,
        ),
        (
            "a huge Content-Length",
            format!(
                "POST /internal/increments HTTP/1.1\r\nHost: pingpong\r\nx-pingpong-epoch: \
                 {epoch}\r\nx-pingpong-token: {token}\r\nContent-Length: 1000000000\r\n\r\n1"
            )
            .into_bytes(),
            413,
        ),
        (
            "another path",
            String::from_utf8(internal_request("POST", e, t, "1"))
                .unwrap()
                .replacen("/internal/increments", "/internal/increment", 1)
                .into_bytes(),
            404,
        ),
    ];
    for (what, raw, expected) in cases {
        let answer = to_internal(port, &raw).unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert_eq!(
            answer.status,
            expected,
            "{what}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    // Garbage is refused as bad HTTP, or the connection closed without an answer.
    for garbage in [
        &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n"[..],
        b"\r\n\r\n\r\n",
        b"POST /internal/increments HTTP/9.9\r\n\r\n",
    ] {
        if let Ok(answer) = to_internal(port, garbage) {
            assert_eq!(answer.status, 400, "{}", garbage.escape_ascii());
        }
    }
    assert_eq!(leader.pings(), count, "a hostile request moved the count");

    // The slowloris is cut off at the header timeout, like one on the public port.
    let closed = http::closed_by(&mut slow, opened + HEADER_READ_TIMEOUT + WITHIN);
    stop.store(true, Ordering::SeqCst);
    assert!(
        closed,
        "a slowloris on the internal port still connected after {:?}",
        opened.elapsed()
    );

    // Nothing handed out, nothing burnt: the next numbers follow on; and the same request with
    // the leader's own epoch and token is what a follower sends, and is served.
    assert_eq!(leader.pings(), count);
    assert_eq!(
        leader.server.get("/pingpong"),
        (200, format!("pong {count}"))
    );
    let served = to_internal(port, &internal_request("POST", e, t, "3")).expect("a valid request");
    assert_eq!(
        (served.status, served.text().trim_end()),
        (200, (count + 1).to_string().as_str())
    );
    assert_eq!(
        follower.server.get("/pingpong"),
        (200, format!("pong {}", count + 4))
    );
    assert_eq!(leader.metric("pingpong_abandoned_total"), 0);
}

/// The leader block in `dir`'s lock file, read with shared-fs's own reader.
fn leader_block(dir: &Path) -> LeaderBlock {
    let counter = CounterFile::in_dir(dir);
    RecordFile::open_for_reading(counter.paths(), counter.volume_kind())
        .expect("opening the lock file")
        .expect("a lock file")
        .read_leader_block()
        .expect("reading the leader block")
        .0
        .expect("a leader block")
}
