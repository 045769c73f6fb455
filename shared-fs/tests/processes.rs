//! Guarantee 1 across processes: several OS processes incrementing one file through the lock
//! never hand out a number twice and lose none, and `kill -9` at any instant leaves a file that
//! parses and holds every increment that was reported durable.
//!
//! The children are this test binary run again on the ignored test `child`, steered by
//! environment variables; each prints `durable N` for every number it was handed.

use std::{
    collections::BTreeSet,
    env,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use shared_fs::{Counter, CounterFile, read_counter};

const CHILD_DIR: &str = "SHARED_FS_TEST_CHILD_DIR";
const CHILD_TASKS: &str = "SHARED_FS_TEST_CHILD_TASKS";
const CHILD_EACH: &str = "SHARED_FS_TEST_CHILD_EACH";

/// Not a test: the body of a child process. `EACH=0` means increment until killed.
#[test]
#[ignore = "run as a child process by the tests in this file"]
fn child() {
    let dir = env::var(CHILD_DIR).expect("run by the tests in this file");
    let tasks: u64 = env::var(CHILD_TASKS).unwrap().parse().unwrap();
    let each: u64 = env::var(CHILD_EACH).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let counter = Counter::spawn(CounterFile::in_dir(Path::new(&dir)), |_| {});
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut done = 0;
                    while each == 0 || done < each {
                        let n = counter.increment().await.unwrap();
                        // Printed only after the write is durable: the parent's evidence.
                        println!("durable {n}");
                        done += 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        // As pingpong does at exit: the writer publishes and gives the lock back first.
        let stopped = counter.stopped();
        drop(counter);
        assert!(
            stopped.wait(Duration::from_secs(5)),
            "the writer never ended"
        );
    });
}

/// A child process that is killed when dropped, so a failing test leaves none behind.
struct ChildProcess {
    child: Child,
    numbers: mpsc::Receiver<u64>,
}

impl ChildProcess {
    fn start(dir: &Path, tasks: u64, each: u64) -> Self {
        let mut child = Command::new(env::current_exe().unwrap())
            .args([
                "child",
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir)
            .env(CHILD_TASKS, tasks.to_string())
            .env(CHILD_EACH, each.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, numbers) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                // libtest may print `test child ... ` on the same line first.
                if let Some((_, n)) = line.split_once("durable ")
                    && tx.send(n.parse().unwrap()).is_err()
                {
                    break;
                }
            }
        });
        ChildProcess { child, numbers }
    }

    /// Waits for a normal exit and returns every number the child reported.
    fn finish(mut self) -> Vec<u64> {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
        self.numbers.iter().collect()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn processes_sharing_one_file_never_hand_out_a_number_twice() {
    const PROCESSES: u64 = 3;
    const TASKS: u64 = 8;
    const EACH: u64 = 40;
    let dir = tempfile::tempdir().unwrap();

    let children: Vec<_> = (0..PROCESSES)
        .map(|_| ChildProcess::start(dir.path(), TASKS, EACH))
        .collect();
    let mut numbers = BTreeSet::new();
    for child in children {
        for n in child.finish() {
            assert!(numbers.insert(n), "{n} handed out twice");
        }
    }

    let total = PROCESSES * TASKS * EACH;
    assert_eq!(numbers, (0..total).collect::<BTreeSet<_>>());
    let file = CounterFile::in_dir(dir.path());
    assert_eq!(file.read().unwrap(), total);
    // Every process published before it gave the lock back for the last time.
    assert_eq!(read_counter(file.path()).unwrap(), total);
}

#[test]
fn kill_9_at_any_instant_loses_no_reported_increment() {
    const TRIALS: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());

    for trial in 0..TRIALS {
        let before = file.read().unwrap();
        // One task: at most one increment is in flight when the kill lands.
        let mut child = ChildProcess::start(dir.path(), 1, 0);
        // Let it run a varying while so the kill lands at different points of the write.
        let first = child.numbers.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            first, before,
            "trial {trial}: the child must start from the file"
        );
        thread::sleep(Duration::from_micros(fastrand_like(trial) % 20_000));
        child.child.kill().unwrap();
        child.child.wait().unwrap();
        // Everything the child printed before it died, read to the end of the pipe: lines can
        // still be in the pipe after the kill, and the last of them is what counts.
        let reported: Vec<u64> = child.numbers.iter().collect();
        let last = reported.last().copied().unwrap_or(first);

        let on_disk = file
            .read()
            .unwrap_or_else(|e| panic!("trial {trial}: count unreadable after kill -9: {e}"));
        assert!(
            on_disk == last + 1 || on_disk == last + 2,
            "trial {trial}: last durable {last}, so the file must hold {} or {} (one in flight), holds {on_disk}",
            last + 1,
            last + 2
        );
    }

    // A crash can leave a temporary file, and the published file behind the record; the next
    // writer sweeps the one and publishes the other at start.
    let count = file.reconcile().unwrap();
    assert_eq!(read_counter(file.path()).unwrap(), count);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}

/// Spreads the kill instants without a dependency: a fixed, varied sequence per trial.
fn fastrand_like(trial: usize) -> u64 {
    (trial as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40
}
