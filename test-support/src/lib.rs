//! Dev-only: what the tests of pingpong and log-output share, so that each suite's own helpers
//! only wire it in:
//!
//! - [`process`]: a service binary as a child process, killed when dropped, its stderr
//!   collected to the end and its listening port read from its log;
//! - [`http`]: a raw HTTP/1.1 client over loopback;
//! - [`router`]: one request through an in-process `Router` (`oneshot`);
//! - [`eventually`]: polling for a condition with a deadline;
//! - [`Mount`]: a tiny tmpfs or a read-only view, mounted for one test;
//! - a child's resources read from `/proc`: its peak memory and its open descriptors, for the
//!   tests that show a huge file or a flood of connections costs nothing lasting, and whether
//!   it holds a file's lock (the leader of pingpong's replicas);
//! - a named pipe planted where a file should be, which stands for a volume that stops
//!   answering: opening it for reading blocks until a writer comes, and none does;
//! - a lock file held from another thread, as another replica or a `pingpong counter set`
//!   holds it;
//! - the published counter file checked within the bound SPEC §3 gives it after the last
//!   increment.

pub mod http;
mod mount;
mod poll;
pub mod process;
pub mod router;

pub use mount::Mount;
pub use poll::{DEADLINE, eventually};
pub use process::{Proc, Spawn};

use std::{
    path::Path,
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// The peak resident memory (`VmHWM`) of process `pid`, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// How many threads process `pid` has now.
pub fn threads(pid: u32) -> usize {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads in /proc/PID/status")
}

/// How many descriptors process `pid` has open now.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("listing /proc/PID/fd")
        .count()
}

/// Whether process `pid` holds a `flock` on the file at `path` now, as `/proc/locks` says
/// (which names the process that took each lock): not merely whether somebody does, and
/// without taking the lock to find out, which would disturb whoever wants it next.
pub fn holds_flock(pid: u32, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino();
    let locks = std::fs::read_to_string("/proc/locks").expect("reading /proc/locks");
    // `1: FLOCK  ADVISORY  WRITE 2876 fd:01:1316628 0 EOF`
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"FLOCK")
            && fields.get(4) == Some(&pid.to_string().as_str())
            && fields
                .get(5)
                .and_then(|device_inode| device_inode.rsplit(':').next())
                .is_some_and(|i| i == inode.to_string())
    })
}

/// A pipe whose buffer is one page (4 KiB, the least Linux allows): the read end for the test,
/// the write end for a child's stdout or stderr, which then fills after a few dozen lines.
pub fn small_pipe() -> (std::fs::File, std::os::fd::OwnedFd) {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    rustix::pipe::fcntl_setpipe_size(&write, 4096).expect("F_SETPIPE_SZ");
    assert_eq!(
        rustix::pipe::fcntl_getpipe_size(&write).expect("size"),
        4096
    );
    (std::fs::File::from(read), write)
}

/// Plants a named pipe at `path` (with mkfifo(1): the workspace forbids `unsafe`, so no
/// `libc::mkfifo`).
pub fn plant_fifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Holds an exclusive flock on `lock_path` (creating the file if needed) from another thread
/// until the returned sender is dropped; returns once the lock is held.
pub fn hold_lock(lock_path: &Path) -> mpsc::Sender<()> {
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let path = lock_path.to_owned();
    thread::spawn(move || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .expect("opening the lock file");
        file.lock().expect("taking the lock");
        held_tx.send(()).expect("test gone");
        let _ = release_rx.recv();
    });
    held_rx.recv().expect("lock thread died");
    release_tx
}

/// The release of the workspace that users run before this one: the last commit before the
/// durable record, whose pingpong knows only the rename recipe on `pingpong_counter.txt`. A
/// rolling update runs its replicas beside the new ones.
pub const PREVIOUS_RELEASE: &str = "470ef3c";

/// The release users run today, before leader mode: its replicas take 20 ms turns at the lock,
/// with the durable record in the lock file, and know nothing of the leader block. A rolling
/// update to leader mode runs its replicas beside the new ones.
pub const TURNS_RELEASE: &str = "fe02056";

/// The variable that turns a missing previous release into a failure: CI sets it to `1`, since
/// a rolling-update proof that silently skips proves nothing.
pub const ROLLING_UPDATE_REQUIRED: &str = "ROLLING_UPDATE_REQUIRED";

/// [`binary_at`], or `None` after printing one line saying why `test` skips, when this checkout
/// cannot give `commit`: a shallow clone (`git clone --depth 1`, CI checkouts), a source archive
/// without `.git`, no `git` installed. With [`ROLLING_UPDATE_REQUIRED`]`=1` that is a failure
/// instead. A build that fails once the source is there is always a failure.
pub fn binary_at_or_skip(
    test: &str,
    commit: &str,
    package: &str,
    binary: &str,
) -> Option<std::path::PathBuf> {
    if let Err(reason) = history_has(commit) {
        let required = std::env::var(ROLLING_UPDATE_REQUIRED).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{test}: {ROLLING_UPDATE_REQUIRED}=1 but the previous release {commit} cannot be \
             built here: {reason}"
        );
        // Straight to stderr, not eprintln!: libtest captures the macros of a passing test, and
        // a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: the previous release {commit} cannot be built here: {reason} (set \
             {ROLLING_UPDATE_REQUIRED}=1 to make this a failure)"
        );
        return None;
    }
    Some(binary_at(commit, package, binary))
}

/// `Err(reason)` unless the workspace's git history holds `commit`.
fn history_has(commit: &str) -> Result<(), String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace())
            .args(args)
            .output()
    };
    let first_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let shallow = match git(&["rev-parse", "--is-shallow-repository"]) {
        Err(e) => return Err(format!("cannot run git: {e}")),
        Ok(out) if !out.status.success() => {
            return Err(format!(
                "{} is not a git checkout (a source archive?): {}",
                workspace().display(),
                first_line(&out.stderr)
            ));
        }
        Ok(out) => out.stdout.starts_with(b"true"),
    };
    match git(&["cat-file", "-e", &format!("{commit}^{{commit}}")]) {
        Err(e) => Err(format!("cannot run git: {e}")),
        Ok(out) if out.status.success() => Ok(()),
        Ok(_) if shallow => Err(format!(
            "this clone is shallow and its history stops before {commit} (`git fetch \
             --unshallow` brings it)"
        )),
        Ok(_) => Err(format!(
            "{commit} is not in the history of {}",
            workspace().display()
        )),
    }
}

/// The workspace's root directory.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives in the workspace")
}

/// The `binary` of `package` as built at `commit` of this repository's history: checked out
/// with `git archive` and built once with cargo into `target/previous-release/<commit>/`, then
/// reused. Panics with the reason if the history or the build is not there; a test that may
/// run on a checkout without the history calls [`binary_at_or_skip`] instead.
pub fn binary_at(commit: &str, package: &str, binary: &str) -> std::path::PathBuf {
    let workspace = workspace();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let home = target.join("previous-release").join(commit);
    let built = home.join("target/debug").join(binary);
    // One build at a time, also across test binaries running at once.
    std::fs::create_dir_all(&home).expect("creating the previous release's directory");
    let lock = std::fs::File::create(home.join(".lock")).expect("lock file");
    lock.lock().expect("taking the build lock");
    if built.exists() {
        return built;
    }
    let source = home.join("src");
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).expect("source directory");
    let archive = Command::new("sh")
        .arg("-c")
        .arg(format!("git -C \"$0\" archive {commit} | tar -x -C \"$1\""))
        .arg(workspace)
        .arg(&source)
        .status()
        .expect("running git archive");
    assert!(
        archive.success(),
        "cannot check out {commit} from the history of {}: a full clone is needed",
        workspace.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = Command::new(cargo)
        .args(["build", "--locked", "-p", package, "--bin", binary])
        .current_dir(&source)
        .env("CARGO_TARGET_DIR", home.join("target"))
        .status()
        .expect("running cargo build");
    assert!(build.success(), "building {binary} at {commit} failed");
    built
}

/// How long tests of the published file poll for it. pingpong publishes within `MAX_HOLD`
/// plus one publication once idle (SPEC §3), but on a loaded machine a publication's fsyncs
/// can take far longer: a test checks what is published, not how fast (speed is the
/// benchmarks' business), so the deadline only bounds a test that would otherwise hang.
pub const PUBLISHED_WITHIN: Duration = Duration::from_secs(10);

/// The content of the published counter file at `path` once it is `expected`, polling for
/// [`PUBLISHED_WITHIN`]; panics with what it held last if it never does.
pub fn assert_published(path: &Path, expected: &str) {
    assert_published_within(path, expected, PUBLISHED_WITHIN);
}

/// [`assert_published`], polling for `within` (a test whose load makes it need longer).
pub fn assert_published_within(path: &Path, expected: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let content = std::fs::read_to_string(path);
        if content.as_deref().ok() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {content:?} {within:?} after the last increment, not {expected:?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(peak_rss(me) > 0);
        let before = open_fds(me);
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(open_fds(me), before + 1);
        drop(file);
    }

    #[test]
    fn plants_a_fifo() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile_free_dir();
        let path = dir.join("fifo");
        plant_fifo(&path);
        assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A fresh directory without a tempfile dependency.
    fn tempfile_free_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("test-support-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
