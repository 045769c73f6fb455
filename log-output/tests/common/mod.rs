//! Helpers for the tests: the binaries as [`test_support::Proc`]esses (log-writer's stdout
//! split into entries, two lines each), the raw HTTP client and polling of test-support, and a
//! strict entry parser.

// Each test file uses a different subset.
#![allow(dead_code, unused_imports)]

use std::{net::TcpListener, path::Path, process::ExitStatus, time::SystemTime};

pub use test_support::{
    DEADLINE, Proc, Spawn, eventually,
    http::{Response, get, request},
};
use uuid::Uuid;

/// Starts `bin` with `env` added to the test's environment (`RUST_LOG` cleared so the default
/// applies); with `entries`, its stdout is split into log-writer entries for
/// [`Proc::next_entry`].
pub fn start(bin: &str, env: &[(&str, &str)], entries: bool) -> Proc {
    let spawn = Spawn::new(bin).env_remove("RUST_LOG").envs(env);
    if entries {
        spawn.stdout_entries(2).start()
    } else {
        spawn.start()
    }
}

/// Runs `bin` with `args` and `env` to its end (within [`DEADLINE`]): status, stdout, stderr.
pub fn run_to_end(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut command = std::process::Command::new(bin);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied());
    let (status, stdout, stderr) = test_support::process::run_to_end(&mut command, DEADLINE);
    let status =
        status.unwrap_or_else(|| panic!("{bin} {args:?} still running after {DEADLINE:?}"));
    (status, stdout, stderr)
}

/// log-writer on `data_dir`, entries every `interval` (e.g. `"100ms"`).
pub fn start_writer(data_dir: &Path, interval: &str) -> Proc {
    start(
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
    let mut reader = start(
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

/// [`eventually`] within [`DEADLINE`].
pub fn poll_until<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    eventually(DEADLINE, what, check)
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
