//! Where crashfs can run, and how it keeps a mount from leaking.
//!
//! Mounting needs root and `/dev/fuse` (fuser calls mount(2) itself; no libfuse, no
//! fusermount). Without them a test skips with a printed reason, unless `CRASHFS_REQUIRED=1`
//! (CI sets it), when it fails instead: a proof that silently skips proves nothing.
//!
//! Every mount lives in a private mount namespace of the thread that made it (unshare
//! `CLONE_NEWNS`, then `/` made recursively private so nothing propagates back). Nobody outside
//! sees it, the processes the thread starts inherit it, and when the test process ends, killed
//! or not, the namespace and the mount vanish with it: no "Transport endpoint is not connected"
//! left behind. The namespace is per thread (each test of a test binary runs on its own), so
//! the thread that mounts must be the one that starts the processes and cuts the power.
//!
//! `POWER_LOSS_REPORT=path` makes every cut of a proof append one line to `path` ([`report`]),
//! the data `bench/plots.py` draws the proof's crash points from.

use std::{cell::Cell, io::Write, path::Path};

use crate::{CrashFs, Model, Pending, Tear};

/// The variable that turns a skip into a failure.
pub const REQUIRED: &str = "CRASHFS_REQUIRED";

/// `Err(reason)` when this machine cannot mount a crashfs.
pub fn available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root (mount(2) of a FUSE filesystem needs it)".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("no /dev/fuse".into());
    }
    Ok(())
}

/// One run of seeded random power cuts. `POWER_LOSS_SEED` and `POWER_LOSS_ROUNDS` replay a run
/// that failed; unset, the seed is random and the rounds are the test's default.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    pub seed: u64,
    pub rounds: u64,
}

/// Reads the run's [`Replay`] from the environment and prints it, where the test harness shows
/// it when the test fails.
pub fn replay(default_rounds: u64) -> Replay {
    let replay = Replay {
        seed: env_u64("POWER_LOSS_SEED").unwrap_or_else(|| fastrand::u64(..)),
        rounds: env_u64("POWER_LOSS_ROUNDS").unwrap_or(default_rounds),
    };
    println!(
        "POWER_LOSS_SEED={} POWER_LOSS_ROUNDS={}",
        replay.seed, replay.rounds
    );
    replay
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// Whether `CRASHFS_REQUIRED=1`.
pub fn required() -> bool {
    std::env::var(REQUIRED).is_ok_and(|v| v == "1")
}

/// Mounts a crashfs, or returns `None` after printing why this test is skipped. Panics when the
/// machine cannot mount and [`REQUIRED`] is `1`, or when mounting fails on a machine that can.
pub fn mount_or_skip(test: &str) -> Option<CrashFs> {
    if let Err(reason) = available() {
        assert!(
            !required(),
            "{test}: {REQUIRED}=1 but crashfs cannot run here: {reason}"
        );
        // Straight to stderr, not eprintln!: libtest captures the macros of a passing test, and
        // a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: {reason} (set {REQUIRED}=1 to make this a failure)"
        );
        return None;
    }
    match CrashFs::mount() {
        Ok(fs) => Some(fs),
        // Root without the capability to mount (a restricted container): a skip too, unless
        // required.
        Err(crate::Error::Io(e))
            if !required() && e.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: cannot mount: {e} (set {REQUIRED}=1 to make this a failure)"
            );
            None
        }
        Err(e) => panic!("{test}: mounting crashfs: {e}"),
    }
}

thread_local! {
    static PRIVATE: Cell<bool> = const { Cell::new(false) };
}

/// Moves the calling thread into a mount namespace of its own (once per thread), with `/`
/// recursively private so no mount made here propagates to the parent namespace.
pub fn private_mount_namespace() -> std::io::Result<()> {
    if PRIVATE.get() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    PRIVATE.set(true);
    Ok(())
}

/// The variable naming the file [`report`] appends to.
pub const REPORT: &str = "POWER_LOSS_REPORT";

/// What one power cut of a proof left, as [`report`] records it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// Which proof, e.g. `pingpong increment`.
    pub test: &'a str,
    /// The names model of the cut, and how it tore each pending write (what
    /// [`crate::CrashFs::cut_power`] returned; empty when nothing was pending).
    pub model: Model,
    pub tears: &'a [(Pending, Tear)],
    /// The crash point: the power failed after this many mutating operations.
    pub after: u64,
    /// The mutating operations of the one write whose every crash point is enumerated; `None`
    /// for a cut at a random instant.
    pub of: Option<u64>,
    /// What the proof accepts, and what the cut left (both as the test words them).
    pub expected: &'a str,
    pub found: &'a str,
    /// Answers (or entries) acknowledged before the cut.
    pub acknowledged: u64,
}

/// Appends `outcome` as one JSON object on one line to the file named by `POWER_LOSS_REPORT`, if
/// set; does nothing otherwise. One `write` of an `O_APPEND` file per line, so that tests
/// running at once do not interleave their lines. Panics if the file cannot be written: a proof
/// asked for its report must not lose it silently.
pub fn report(outcome: &Outcome<'_>) {
    let Some(path) = std::env::var_os(REPORT) else {
        return;
    };
    let of = outcome.of.map_or("null".to_owned(), |n| n.to_string());
    let tears: Vec<String> = outcome
        .tears
        .iter()
        .map(|(_, tear)| json_string(&format!("{tear:?}")))
        .collect();
    let line = format!(
        "{{\"test\":{},\"model\":{},\"tears\":[{}],\"after\":{},\"of\":{of},\"expected\":{},\"found\":{},\"acknowledged\":{}}}\n",
        json_string(outcome.test),
        json_string(&format!("{:?}", outcome.model)),
        tears.join(","),
        outcome.after,
        json_string(outcome.expected),
        json_string(outcome.found),
        outcome.acknowledged,
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("{REPORT}={}: {e}", Path::new(&path).display()));
}

/// How an [`Outcome`] at an enumerated crash point words what it found: whether the write's new
/// content is there (`Some(true)`), the old one (`Some(false)`), or the proof has no expectation.
pub fn old_or_new(new: Option<bool>) -> &'static str {
    match new {
        Some(true) => "new",
        Some(false) => "old",
        None => "unknown",
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(json_string("pong 3"), "\"pong 3\"");
        assert_eq!(
            json_string("Unparsable(\"\\n\n\")"),
            "\"Unparsable(\\\"\\\\n\\u000a\\\")\""
        );
    }
}
