//! Real pingpong processes for the tests: [`test_support::Proc`] started with `PORT=0` on a
//! temp `DATA_DIR`, with the port pingpong logs that it listens on.

#![allow(dead_code, unused_imports)] // each test file uses a different part

use std::{
    collections::BTreeSet,
    ops::{Deref, DerefMut},
    path::Path,
    process::{Command, ExitStatus},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use test_support::{Proc, Spawn};
pub use test_support::{eventually, http::Response};

pub const BIN: &str = env!("CARGO_BIN_EXE_pingpong");

/// What a pingpong's listening line contains.
const LISTENING: &str = "pingpong listening";

/// A pingpong process and the port it listens on.
#[derive(Debug)]
pub struct Server {
    proc: Proc,
    pub port: u16,
}

impl Server {
    /// Starts pingpong on `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// Starts pingpong on `data_dir` with more variables (`env`) and waits until it listens.
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::spawn(Spawn::new(BIN), data_dir, env)
    }

    /// Starts another pingpong binary (a previous release's) on `data_dir`.
    pub fn start_binary(bin: &Path, data_dir: &Path) -> Server {
        Server::spawn(Spawn::command("pingpong", Command::new(bin)), data_dir, &[])
    }

    /// Starts pingpong with its open-file limit set to `nofile` (a container's limit: podman
    /// runs with 1024), through `sh -c 'ulimit -n'` and `exec`, so the pid is pingpong's.
    pub fn start_with_nofile(data_dir: &Path, nofile: u64) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\""))
            .arg(BIN);
        Server::spawn(Spawn::command("pingpong", command), data_dir, &[])
    }

    fn spawn(spawn: Spawn, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let proc = spawn
            .env("PORT", "0")
            .env("DATA_DIR", data_dir)
            .env("RUST_LOG", "info")
            .envs(env)
            .listening(LISTENING)
            .start();
        let port = proc.port();
        Server { proc, port }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.port, path)
    }

    /// SIGTERM, then the exit status, waiting at most `within`.
    pub fn terminate(self, within: Duration) -> ExitStatus {
        self.proc.terminate(within)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(self) {
        self.proc.kill9()
    }
}

impl Deref for Server {
    type Target = Proc;

    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// The port of a "pingpong listening" line, in either `LOG_FORMAT`.
pub fn listening_port(line: &str) -> Option<u16> {
    test_support::process::listening_port(line, LISTENING)
}

/// The value of the metric `name` (full name, no labels) in a `/metrics` body.
pub fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path).unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"))
}

pub fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    test_support::http::get(port, path).map(Response::status_and_text)
}

/// `pong N` -> N.
pub fn pong_number(body: &str) -> u64 {
    body.strip_prefix("pong ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a pong: {body:?}"))
}

/// Holds the counter's lock in `data_dir`, as another replica or a `pingpong counter set`
/// would, until the returned sender is dropped.
pub fn hold_counter_lock(data_dir: &Path) -> mpsc::Sender<()> {
    test_support::hold_lock(&data_dir.join("pingpong_counter.txt.lock"))
}

/// Runs `command` to its end, or kills it after 5 s (a server that accepted what it should
/// have refused would otherwise serve for ever): its exit code (`None` if killed) and stderr.
pub fn run_briefly(mut command: Command) -> (Option<i32>, String) {
    let (status, _, stderr) =
        test_support::process::run_to_end(&mut command, Duration::from_secs(5));
    (status.and_then(|s| s.code()), stderr)
}

/// Asks `port` for `/pingpong` on `threads` threads until `stop`, keeping every number answered
/// `200`; a replica killed under it just stops answering.
pub fn load_until(
    port: u16,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Vec<u64>>> {
    (0..threads)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut numbers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((200, body)) = try_get(port, "/pingpong") {
                        numbers.push(pong_number(&body));
                    }
                }
                numbers
            })
        })
        .collect()
}

/// No number in `answers` twice; the failure says how many and shows a few.
pub fn assert_each_number_once(answers: &[u64]) {
    let mut seen = BTreeSet::new();
    let twice: Vec<u64> = answers
        .iter()
        .copied()
        .filter(|&n| !seen.insert(n))
        .collect();
    assert!(
        twice.is_empty(),
        "{} numbers handed out twice of {} answers, e.g. {:?}",
        twice.len(),
        answers.len(),
        &twice[..twice.len().min(5)]
    );
}
