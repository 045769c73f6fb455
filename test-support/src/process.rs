//! A service binary as a child process for a test: started with the variables the test gives,
//! its stderr collected line by line by a reader thread (so a chatty child never blocks on a
//! full pipe, and once it has exited every line it wrote is there, also the lines still in the
//! pipe at its exit), its listening port read from its log line, and killed and reaped when
//! dropped, also when the test panics.

use std::{
    ffi::OsStr,
    fmt::Display,
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use crate::poll::{DEADLINE, eventually};

/// How long a child may take to log that it listens: a debug build's start on a loaded machine.
pub const LISTENING_WITHIN: Duration = Duration::from_secs(20);

/// How a child is to be started: [`Spawn::start`] starts it.
#[derive(Debug)]
pub struct Spawn {
    name: String,
    command: Command,
    stdout_entries: Option<usize>,
    listening: Option<String>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
}

impl Spawn {
    /// `bin`, named in messages by its file name; stdin and stdout closed, stderr collected.
    pub fn new(bin: impl AsRef<OsStr>) -> Spawn {
        let bin = bin.as_ref();
        let name = Path::new(bin)
            .file_name()
            .unwrap_or(bin)
            .to_string_lossy()
            .into_owned();
        Spawn::command(name, Command::new(bin))
    }

    /// `command`, named `name` in messages (a `sh -c '… exec bin'` that becomes `bin`).
    pub fn command(name: impl Into<String>, command: Command) -> Spawn {
        Spawn {
            name: name.into(),
            command,
            stdout_entries: None,
            listening: None,
            stdout: None,
            stderr: None,
        }
    }

    /// Adds a variable to the test's environment.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spawn {
        self.command.env(key, value);
        self
    }

    /// Adds variables to the test's environment.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Spawn {
        self.command.envs(vars.iter().copied());
        self
    }

    /// Removes a variable of the test's environment (`RUST_LOG`, so the default applies).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Spawn {
        self.command.env_remove(key);
        self
    }

    /// Sends stdout to `stdout` (a pipe the test reads, or leaves full) instead of closing it.
    pub fn stdout(mut self, stdout: Stdio) -> Spawn {
        self.stdout = Some(stdout);
        self
    }

    /// Sends stderr to `stderr` (a pipe the test reads, or leaves full) instead of collecting
    /// it: [`Proc::stderr`] stays empty.
    pub fn stderr(mut self, stderr: Stdio) -> Spawn {
        self.stderr = Some(stderr);
        self
    }

    /// Collects stdout as entries of `lines` lines each (log-writer prints two-line entries),
    /// for [`Proc::next_entry`].
    pub fn stdout_entries(mut self, lines: usize) -> Spawn {
        self.stdout_entries = Some(lines);
        self
    }

    /// Makes [`Spawn::start`] wait (up to [`LISTENING_WITHIN`]) for a stderr line containing
    /// `marker` and read the port from it, in the text or the JSON log format: start such a
    /// child with `PORT=0` and no other process can take its port first.
    pub fn listening(mut self, marker: &str) -> Spawn {
        self.listening = Some(marker.to_owned());
        self
    }

    /// Starts the child; with [`Spawn::listening`], returns once it listens.
    pub fn start(self) -> Proc {
        let Spawn {
            name,
            mut command,
            stdout_entries,
            listening,
            stdout,
            stderr: stderr_to,
        } = self;
        let stdout = match (stdout, stdout_entries) {
            (Some(stdout), _) => stdout,
            (None, Some(_)) => Stdio::piped(),
            (None, None) => Stdio::null(),
        };
        let collect_stderr = stderr_to.is_none();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr_to.unwrap_or_else(Stdio::piped))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        // The parent's copies of a given pipe's write end close here, so that its reader sees
        // the end once the child has exited.
        drop(command);

        let waits_for_port = listening.is_some();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let sink = stderr.clone();
        let stderr_reader = child.stderr.take().filter(|_| collect_stderr).map(|pipe| {
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(marker) = &listening
                        && let Some(port) = listening_port(&line, marker)
                    {
                        let _ = port_tx.send(port);
                    }
                    sink.lock().expect("stderr lock").push(line);
                }
            })
        });

        let entries = child
            .stdout
            .take()
            .zip(stdout_entries)
            .map(|(pipe, lines)| read_entries(pipe, lines));
        let mut proc = Proc {
            name,
            child,
            port: None,
            stderr,
            stderr_reader,
            entries,
        };
        if waits_for_port {
            proc.port = Some(match port_rx.recv_timeout(LISTENING_WITHIN) {
                Ok(port) => port,
                Err(_) => panic!(
                    "{} did not start listening within {LISTENING_WITHIN:?}: {:?}",
                    proc.name,
                    proc.stderr_lines()
                ),
            });
        }
        proc
    }
}

/// The entries of `lines` lines each read from `pipe` by a thread of their own, as they come.
pub fn read_entries(pipe: impl Read + Send + 'static, lines: usize) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut pipe = BufReader::new(pipe).lines().map_while(Result::ok);
        loop {
            let entry: Vec<String> = pipe.by_ref().take(lines).collect();
            if entry.len() < lines || tx.send(entry.join("\n")).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running child; see the module's documentation.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    port: Option<u16>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The thread reading stderr: it ends at the pipe's end, after the process has exited.
    stderr_reader: Option<thread::JoinHandle<()>>,
    entries: Option<Receiver<String>>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port read from the listening line; panics unless started with [`Spawn::listening`].
    pub fn port(&self) -> u16 {
        self.port.expect("started without Spawn::listening")
    }

    /// Every line the process wrote to stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Everything the process wrote to stderr so far, each line ended by a newline.
    pub fn stderr(&self) -> String {
        let lines = self.stderr.lock().expect("stderr lock");
        lines.iter().flat_map(|l| [l.as_str(), "\n"]).collect()
    }

    /// Waits until the process has written `needle` to stderr, within [`DEADLINE`]; panics
    /// with its stderr if it exits first.
    pub fn wait_for_log(&mut self, needle: &str) {
        eventually(DEADLINE, &format!("{needle:?} on stderr"), || {
            self.assert_running();
            self.stderr().contains(needle).then_some(())
        });
    }

    /// The next entry the process printed on stdout, within [`DEADLINE`].
    pub fn next_entry(&self) -> String {
        let entries = self
            .entries
            .as_ref()
            .expect("started with Spawn::stdout_entries");
        match entries.recv_timeout(DEADLINE) {
            Ok(entry) => entry,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "{}: no entry on stdout within {DEADLINE:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: stdout closed; stderr:\n{}", self.name, self.stderr())
            }
        }
    }

    /// A entry already printed, if any, without waiting.
    pub fn try_next_entry(&self) -> Result<String, mpsc::TryRecvError> {
        self.entries
            .as_ref()
            .expect("started with Spawn::stdout_entries")
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

    /// Sends `signal` (`TERM`, `15`) through kill(1): the workspace forbids `unsafe`, so no
    /// `libc::kill`.
    pub fn signal(&self, signal: impl Display) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// SIGTERM, then the exit status, waiting at most `within`.
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(within)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// The exit status, waiting as long as it takes.
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().expect("wait");
        self.read_stderr_to_the_end();
        status
    }

    /// The exit status if the process has exited, without waiting; then [`Proc::stderr`]
    /// holds every line it wrote.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("try_wait");
        if status.is_some() {
            self.read_stderr_to_the_end();
        }
        status
    }

    /// Waits for the process to exit, within `within`. Then [`Proc::stderr`] holds every line
    /// it wrote: the lines still in the pipe when it exited are read first.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "{} still running {within:?} after it was asked to stop; stderr:\n{}",
                self.name,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn read_stderr_to_the_end(&mut self) {
        let Some(reader) = self.stderr_reader.take() else {
            return;
        };
        let exited = Instant::now();
        while !reader.is_finished() {
            assert!(
                exited.elapsed() < Duration::from_secs(10),
                "{}: stderr still open 10 s after the exit",
                self.name
            );
            thread::sleep(Duration::from_millis(5));
        }
        reader.join().expect("the stderr reader");
    }

    /// How many descriptors the process has open now.
    pub fn open_fds(&self) -> usize {
        crate::open_fds(self.pid())
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

    /// The process's peak resident memory (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        crate::peak_rss(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already exited is fine; an error here must not hide the test's own panic.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value after `key` in a log line, up to the next space.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()
}

/// The port of a log line containing `marker`, in either log format: `port=N` in text, a
/// `port` field in JSON.
pub fn listening_port(line: &str, marker: &str) -> Option<u16> {
    if !line.contains(marker) {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(object) => object["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
        Err(_) => field(line, "port=")?.parse().ok(),
    }
}

/// Runs `command` to its end, waiting at most `within`: its exit status (`None` when it was
/// still running at the deadline and was killed), stdout and stderr. Its outputs must fit a
/// pipe's buffer (a few lines), or it blocks writing them.
pub fn run_to_end(command: &mut Command, within: Duration) -> (Option<ExitStatus>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
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
