//! Helpers for the tests: the binaries as child processes that are killed even when a test
//! fails, a minimal HTTP/1.1 client, polling with a deadline, and a strict entry parser.

// Each test file uses a different subset.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use uuid::Uuid;

/// Long enough for a debug build on a busy two-core machine, short enough to fail visibly.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A child process, killed and reaped when dropped (also when the test panics). Its stderr is
/// collected for assertions and for the panic message; with `entries`, stdout is split into
/// log-writer entries (two lines each).
pub struct Proc {
    name: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// The thread reading stderr: it ends at the pipe's end, after the process has exited.
    stderr_reader: Option<thread::JoinHandle<()>>,
    entries: Option<Receiver<String>>,
}

impl Proc {
    /// Starts `bin` with `env` added to the test's environment (`RUST_LOG` cleared so the
    /// default applies).
    pub fn start(bin: &str, env: &[(&str, &str)], entries: bool) -> Proc {
        let name = Path::new(bin)
            .file_name()
            .map_or_else(|| bin.to_owned(), |n| n.to_string_lossy().into_owned());
        let mut command = Command::new(bin);
        command
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(if entries {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));

        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut all = sink.lock().expect("stderr lock");
                all.push_str(&line);
                all.push('\n');
            }
        });

        let entries = child.stdout.take().map(|pipe| {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let mut lines = BufReader::new(pipe).lines().map_while(Result::ok);
                while let (Some(first), Some(second)) = (lines.next(), lines.next()) {
                    if tx.send(format!("{first}\n{second}")).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Proc {
            name,
            child,
            stderr,
            stderr_reader: Some(stderr_reader),
            entries,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident memory (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        test_support::peak_rss(self.pid())
    }

    /// Waits until the process has written `needle` to stderr, within [`DEADLINE`].
    pub fn wait_for_log(&mut self, needle: &str) {
        poll_until(&format!("{needle:?} on stderr"), || {
            self.assert_running();
            self.stderr().contains(needle).then_some(())
        });
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// The next entry the writer printed on stdout, within [`DEADLINE`].
    pub fn next_entry(&self) -> String {
        let entries = self.entries.as_ref().expect("started with entries = true");
        match entries.recv_timeout(DEADLINE) {
            Ok(entry) => entry,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "{}: no entry within {DEADLINE:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: stdout closed; stderr:\n{}", self.name, self.stderr())
            }
        }
    }

    /// An entry already printed, if any, without waiting.
    pub fn try_next_entry(&self) -> Result<String, mpsc::TryRecvError> {
        self.entries
            .as_ref()
            .expect("started with entries = true")
            .try_recv()
    }

    /// Panics with the process's stderr if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "{} exited with {status}; stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }

    /// Sends `signal` (`"TERM"`, `"INT"`) through kill(1): the workspace forbids `unsafe`, so
    /// no `libc::kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit, within `timeout`. Then [`Proc::stderr`] holds every
    /// line it wrote: the lines still in the pipe when it exited are read first.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.stderr_reader.take() {
                    while !reader.is_finished() {
                        assert!(
                            started.elapsed() < timeout + Duration::from_secs(10),
                            "{}: stderr still open 10 s after the exit",
                            self.name
                        );
                        thread::sleep(Duration::from_millis(5));
                    }
                    reader.join().expect("the stderr reader");
                }
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "{} still running {timeout:?} after it was asked to stop; stderr:\n{}",
                self.name,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already exited is fine; an error here must not hide the test's own panic.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bin` with `args` and `env` to its end (within [`DEADLINE`]): status, stdout, stderr.
pub fn run_to_end(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} {args:?} still running after {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    // The outputs are a few lines, well inside a pipe's buffer, so the child never blocked.
    let read = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            pipe.read_to_string(&mut text).expect("reading output");
        }
        text
    };
    let stdout = read(child.stdout.as_mut().map(|p| p as &mut dyn Read));
    let stderr = read(child.stderr.as_mut().map(|p| p as &mut dyn Read));
    (status, stdout, stderr)
}

/// log-writer on `data_dir`, entries every `interval` (e.g. `"100ms"`).
pub fn start_writer(data_dir: &Path, interval: &str) -> Proc {
    Proc::start(
        env!("CARGO_BIN_EXE_log-writer"),
        &[
            ("DATA_DIR", data_dir.to_str().expect("utf-8 temp path")),
            ("LOG_INTERVAL", interval),
        ],
        true,
    )
}

/// log-reader on `data_dir` and a free port, once `/healthz` answers.
pub fn start_reader(data_dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let mut reader = Proc::start(
        env!("CARGO_BIN_EXE_log-reader"),
        &[
            ("DATA_DIR", data_dir.to_str().expect("utf-8 temp path")),
            ("PORT", &port.to_string()),
        ],
        false,
    );
    wait_healthy(&mut reader, port);
    (reader, port)
}

/// Polls `GET /healthz` until it answers 200; fails with stderr if the process exits first.
pub fn wait_healthy(process: &mut Proc, port: u16) {
    poll_until(&format!("port {port} healthy"), || {
        process.assert_running();
        get(port, "/healthz").ok().filter(|r| r.status == 200)
    });
}

/// A port that was free a moment ago. Another process could take it before the child binds;
/// the child then exits and the test fails with its stderr, which says so.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

/// Calls `check` every few milliseconds until it returns `Some`, or panics after [`DEADLINE`].
pub fn poll_until<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll_within(DEADLINE, what, check)
}

/// Calls `check` every few milliseconds until it returns `Some`, or panics after `timeout`.
pub fn poll_within<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
}

/// `GET path` over a fresh connection.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    request(port, "GET", path)
}

/// One HTTP/1.1 request with `Connection: close`; the body is what follows the head until the
/// server closes. A `Content-Length` that disagrees with it is an error: a cut body must fail.
pub fn request(port: u16, method: &str, path: &str) -> std::io::Result<Response> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no end of head in {:?}",
                raw.escape_ascii().to_string()
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line in {head:?}")))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    if let Some(length) = header("content-length")
        && length != body.len().to_string()
    {
        return Err(bad(format!(
            "content-length {length} but {} body bytes",
            body.len()
        )));
    }
    Ok(Response {
        status,
        content_type: header("content-type"),
        body,
    })
}

/// An entry as SPEC §5 defines it, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: SystemTime,
    pub id: Uuid,
    pub pongs: u64,
}

/// Parses `text` strictly: `<RFC 3339 UTC with milliseconds>Z: <lowercase UUID v4>.\nPing /
/// Pongs: <decimal>` and nothing else, no trailing newline.
pub fn parse_entry(text: &str) -> Result<Entry, String> {
    let malformed = || format!("malformed entry {text:?}");
    let (first, second) = text.split_once('\n').ok_or_else(malformed)?;
    let (time, rest) = first.split_once(": ").ok_or_else(malformed)?;
    let id_text = rest.strip_suffix('.').ok_or_else(malformed)?;
    let at = humantime::parse_rfc3339(time).map_err(|_| malformed())?;
    // Formatting back must give the same text: exactly milliseconds, UTC, `Z`.
    if humantime::format_rfc3339_millis(at).to_string() != time {
        return Err(malformed());
    }
    let id = Uuid::parse_str(id_text)
        .ok()
        .filter(|id| id.get_version_num() == 4 && id.hyphenated().to_string() == id_text)
        .ok_or_else(malformed)?;
    let count = second
        .strip_prefix("Ping / Pongs: ")
        .ok_or_else(malformed)?;
    let pongs: u64 = count.parse().map_err(|_| malformed())?;
    // `parse` alone accepts `+3` and `03`.
    if pongs.to_string() != count {
        return Err(malformed());
    }
    Ok(Entry { at, id, pongs })
}

/// [`parse_entry`], panicking on a malformed entry.
pub fn entry(text: &str) -> Entry {
    parse_entry(text).unwrap_or_else(|e| panic!("{e}"))
}
