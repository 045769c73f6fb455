//! Real pingpong processes for the tests: started with `PORT=0` on a temp `DATA_DIR`, their
//! stderr collected (and drained, so a chatty server never blocks on a full pipe), killed when
//! dropped so a failing test leaves none behind.

#![allow(dead_code)] // each test file uses a different part

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_pingpong");

pub struct Server {
    child: Child,
    pub port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The thread reading stderr: it ends at the pipe's end, after the process has exited.
    reader: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Starts pingpong on `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// Starts pingpong on `data_dir` with more variables (`env`) and waits until it listens.
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::spawn(Command::new(BIN), data_dir, env)
    }

    /// Starts another pingpong binary (a previous release's) on `data_dir`.
    pub fn start_binary(bin: &Path, data_dir: &Path) -> Server {
        Server::spawn(Command::new(bin), data_dir, &[])
    }

    /// Starts pingpong with its open-file limit set to `nofile` (a container's limit: podman
    /// runs with 1024), through `sh -c 'ulimit -n'` and `exec`, so the pid is pingpong's.
    pub fn start_with_nofile(data_dir: &Path, nofile: u64) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\""))
            .arg(BIN);
        Server::spawn(command, data_dir, &[])
    }

    fn spawn(mut command: Command, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = command
            .env("PORT", "0")
            .env("DATA_DIR", data_dir)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting pingpong");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().expect("stderr"));
        let collected = stderr.clone();
        let reader = thread::spawn(move || {
            for line in lines.lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    let _ = port_tx.send(port);
                }
                collected.lock().expect("stderr lock").push(line);
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => port,
            Err(_) => panic!(
                "pingpong did not start listening: {:?}",
                stderr.lock().expect("stderr lock")
            ),
        };
        Server {
            child,
            port,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many descriptors the process has open now.
    pub fn open_fds(&self) -> usize {
        test_support::open_fds(self.pid())
    }

    /// The number of open descriptors once it has stopped changing (the server side of the
    /// last connection closes a moment after the client has read its answer).
    pub fn settled_fds(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut last, mut same) = (self.open_fds(), 0);
        while same < 20 {
            assert!(Instant::now() < deadline, "descriptors never settled");
            thread::sleep(Duration::from_millis(10));
            let now = self.open_fds();
            if now == last {
                same += 1;
            } else {
                (last, same) = (now, 0);
            }
        }
        last
    }

    /// What each open descriptor is (`socket:[…]`, a path), for failure messages.
    pub fn fd_targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("listing /proc/PID/fd")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|t| t.display().to_string())
            .collect();
        targets.sort();
        targets
    }

    /// Waits until the process has exactly `baseline` descriptors open.
    pub fn fds_return_to(&self, baseline: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.open_fds() != baseline {
            assert!(
                Instant::now() < deadline,
                "{} descriptors open {within:?} after the flood, baseline {baseline}: {:?}",
                self.open_fds(),
                self.fd_targets()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.port, path)
    }

    /// The process's peak resident memory (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        test_support::peak_rss(self.pid())
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("wait");
        if status.is_some() {
            self.read_stderr_to_the_end();
        }
        status
    }

    /// The exit status, waiting at most `within` (after a signal the test sent itself). Once
    /// it has exited, [`Server::stderr`] holds every line it wrote: the lines still in the pipe
    /// when it exited are read first.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                self.read_stderr_to_the_end();
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {within:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn read_stderr_to_the_end(&mut self) {
        let Some(reader) = self.reader.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reader.is_finished() {
            assert!(
                Instant::now() < deadline,
                "stderr still open 10 s after the exit"
            );
            thread::sleep(Duration::from_millis(5));
        }
        reader.join().expect("the stderr reader");
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lock").clone()
    }

    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // The workspace forbids unsafe code, so no libc::kill: the kill command does the same.
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM, then the exit status, waiting at most `within`.
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        self.signal(15);
        self.wait_exit(within)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value after `key` in a log line, up to the next space.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()
}

/// The port of a "pingpong listening" line, in either `LOG_FORMAT`.
pub fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("pingpong listening") {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(object) => object["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
        Err(_) => field(line, "port=")?.parse().ok(),
    }
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
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    status_and_body(&response)
}

/// A whole HTTP/1.1 answer as read from the socket: (status, body); an error says what is
/// missing.
pub fn status_and_body(response: &str) -> std::io::Result<(u16, String)> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {response:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_owned()))
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

/// Polls `check` until it returns `Some`, failing after `within`.
pub fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
