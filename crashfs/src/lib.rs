//! crashfs: a dev-only, in-memory FUSE filesystem that models what survives a power cut, so that
//! a test can cut the power under real processes and check what an fsync recipe really keeps.
//!
//! `kill -9` keeps the page cache, so it cannot tell a missing fsync from a present one; a power
//! cut can. A cut has two independent axes, a [`Cut`]: which names survive ([`Model`]: strict,
//! or names-durable as LazyFS) and which data ([`Data`]: only what a sync covered, or every
//! write not yet covered by a sync of its file torn: lost, whole, a byte prefix or suffix, or
//! any subset of its 512-byte sectors, drawn from a seed or given exactly). The layout:
//!
//! - [`model`]: the tree, with volatile data, durable data and pending changes per file and
//!   volatile and durable entries per directory, the journal of operations, and the model's
//!   limits.
//! - [`tear`]: what a cut may keep of a pending write, and every way it can.
//! - [`points`]: every crash point of a recipe, planned from its journal (each operation, and at
//!   each, every tear of what is pending, in both models).
//! - `fs`: the FUSE adapter (zero timeouts, direct I/O, real `fsync`/`fsyncdir`, locks left to
//!   the kernel).
//! - [`env`]: whether this machine can mount (root, `/dev/fuse`), the skip-or-fail rule of
//!   `CRASHFS_REQUIRED`, and the private mount namespace that keeps a mount from ever leaking.
//!
//! [`CrashFs`] is the handle a test holds: [`CrashFs::cut_power`] (refused with
//! [`Error::Busy`] while any process still uses the mount), [`CrashFs::crash_after`] to freeze
//! the durable state after the k-th mutating operation, [`CrashFs::pending`] for what a cut now
//! may tear, [`CrashFs::journal_since`] for what a recipe did, [`CrashFs::snapshot`] and
//! [`CrashFs::cut_power_from`] to cut one state many ways, and an unmount when dropped.
//!
//! Every crash point of a recipe, torn writes included:
//!
//! ```no_run
//! # fn recipe(_: &std::path::Path) {}
//! # let mut fs = crashfs::CrashFs::mount().unwrap();
//! let mark = fs.mutating_ops();
//! recipe(fs.path());
//! let plan = crashfs::points::every_crash_point(&fs.journal_since(mark));
//! for point in plan {
//!     // ... put the files back as they were before the recipe, then:
//!     fs.crash_after(point.after);
//!     recipe(fs.path());
//!     fs.cut_power(point.cut()).unwrap_or_else(|e| panic!("{point}: {e}"));
//!     // ... check what the files hold, naming `point` in the message.
//! }
//! ```

pub mod env;
mod faults;
mod fs;
pub mod model;
pub mod points;
pub mod tear;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// How long [`CrashFs::cut_power`] waits for a mount to stop being busy before it refuses.
pub const BUSY_WITHIN: Duration = Duration::from_secs(2);

use faults::Faults;
use model::Tree;
pub use model::{Cut, Data, Model, Op, Pending, Snapshot};
pub use tear::{Change, Tear};

/// What can go wrong with the mount itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Some process still has a file, a directory or its working directory on the mount: a cut
    /// now would pretend its requests never happened while it carries on.
    #[error("the mount is busy: kill and reap every process using it first")]
    Busy,
    /// Mounting or unmounting failed.
    #[error("mount: {0}")]
    Io(#[from] std::io::Error),
    /// The filesystem's session with the kernel ended with an error.
    #[error("FUSE session: {0}")]
    Session(std::io::Error),
    /// A [`Data::Exactly`] cut named other changes than those pending; nothing was cut.
    #[error(transparent)]
    Mismatch(#[from] model::Mismatch),
}

/// A mounted crashfs. Dropping it unmounts it (lazily if still busy, as in a panicking test).
#[derive(Debug)]
pub struct CrashFs {
    tree: Arc<Mutex<Tree>>,
    /// Open handles in the current mount (see `fs::Adapter`).
    handles: Arc<AtomicU64>,
    /// The faults switched on ([`CrashFs::hang`], [`CrashFs::fail_syncs`],
    /// [`CrashFs::delay_syncs`]).
    faults: Arc<Faults>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
    /// The (empty) directory the filesystem is mounted on; removed after the unmount.
    _dir: tempfile::TempDir,
}

impl CrashFs {
    /// Mounts an empty crashfs on a fresh temporary directory, in this thread's private mount
    /// namespace ([`env::private_mount_namespace`] is called first). Use [`env::mount_or_skip`]
    /// in tests.
    pub fn mount() -> Result<CrashFs, Error> {
        env::private_mount_namespace().map_err(Error::Io)?;
        let dir = tempfile::Builder::new()
            .prefix("crashfs.")
            .tempdir()
            .map_err(Error::Io)?;
        let tree = Arc::new(Mutex::new(Tree::default()));
        let handles = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(Faults::default());
        let mountpoint = dir.path().to_path_buf();
        let session = spawn(&tree, &handles, &faults, &mountpoint)?;
        Ok(CrashFs {
            tree,
            handles,
            faults,
            session: Some(session),
            mountpoint,
            _dir: dir,
        })
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mutating operations (creates, writes, truncations, name changes, fsyncs) so far.
    pub fn mutating_ops(&self) -> u64 {
        self.tree().mutating_ops()
    }

    /// Freezes the durable state after `k` more mutating operations: from then on, as if the
    /// power had failed, nothing more becomes durable, while processes carry on seeing their
    /// writes. `crash_after(0)` is "the power fails now". The next [`CrashFs::cut_power`]
    /// applies it.
    pub fn crash_after(&self, k: u64) {
        self.tree().crash_after(k);
    }

    /// The writes and truncations a cut now may tear (made before the freeze, if any, and not
    /// covered by a sync of their file), in the order made.
    pub fn pending(&self) -> Vec<Pending> {
        self.tree().pending()
    }

    /// The mutating operations from number `mark` on, `mark` as [`CrashFs::mutating_ops`]
    /// returned it: what a recipe did, for [`points::every_crash_point`]. Each write is one
    /// operation however many sectors it touches; its tears are counted by
    /// [`Change::tears`].
    pub fn journal_since(&self, mark: u64) -> Vec<Op> {
        self.tree().journal_since(mark).to_vec()
    }

    /// The files and directories as they are now (volatile, durable and pending), to cut many
    /// ways with [`CrashFs::cut_power_from`]. Take it once every process on the mount is gone.
    pub fn snapshot(&self) -> Snapshot {
        self.tree().snapshot()
    }

    /// Whether the durable state is frozen (the simulated power failure has happened). An
    /// answer a client received while this was still false was sent before the failure.
    pub fn frozen(&self) -> bool {
        self.tree().frozen()
    }

    /// The volume stops answering: every request blocks until [`CrashFs::resume`], as on a
    /// hung network filesystem. Nothing is lost; dropping the handle resumes first.
    pub fn hang(&self) {
        self.faults.set_hung(true);
    }

    /// Ends [`CrashFs::hang`]: the blocked requests are answered in order.
    pub fn resume(&self) {
        self.faults.set_hung(false);
    }

    /// From now on, an `fsync`/`fdatasync` of a file (`files`) or of a directory (`dirs`)
    /// fails with EIO and makes nothing durable, as on a failing disk; `false, false` heals it.
    pub fn fail_syncs(&self, files: bool, dirs: bool) {
        self.faults.fail_syncs(files, dirs);
    }

    /// From now on, every `fsync`/`fdatasync` of a file or a directory is answered `delay`
    /// after it arrives, as on a slow disk; everything else keeps answering meanwhile (reads
    /// come from the cache, writes go to it). `Duration::ZERO` makes flushes fast again.
    pub fn delay_syncs(&self, delay: Duration) {
        self.faults.delay_syncs(delay);
    }

    /// From now on, every rename is done and answered `delay` after it arrives, as on CephFS
    /// when its metadata server waits for its tick; everything else keeps answering meanwhile.
    /// `Duration::ZERO` makes renames fast again.
    pub fn delay_renames(&self, delay: Duration) {
        self.faults.delay_renames(delay);
    }

    /// How many slow renames have arrived and are not done yet. The kernel holds the
    /// directory's lock across a rename, so a listing cannot show one in flight; this can.
    pub fn renames_in_flight(&self) -> usize {
        self.faults
            .renames_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A handle other threads (load clients) can ask whether the power has failed yet.
    pub fn probe(&self) -> Probe {
        Probe {
            tree: self.tree.clone(),
        }
    }

    /// The power cut: unmounts (refusing with [`Error::Busy`] while any process uses the
    /// mount), keeps only what is durable under `cut` (a [`Model`] alone keeps only synced
    /// data), and mounts again, so the kernel has forgotten every cached name, attribute, page
    /// and lock. Returns each pending change with the [`Tear`] it got, for a failure message.
    ///
    /// A file closed just before may still have its RELEASE on the way (the kernel sends it
    /// asynchronously), so this first waits, up to [`BUSY_WITHIN`], for every handle to be
    /// released and for the unmount to stop answering EBUSY; a mount still busy then is
    /// really in use. On [`Error::Mismatch`] nothing was cut, and the mount is back.
    pub fn cut_power(&mut self, cut: impl Into<Cut>) -> Result<Vec<(Pending, Tear)>, Error> {
        self.cut_with(None, cut.into())
    }

    /// [`CrashFs::cut_power`], but of the state `snapshot` holds instead of the current one:
    /// the files and directories are put back as they were when it was taken, then cut. The
    /// same snapshot can be cut again, another way, after a check.
    pub fn cut_power_from(
        &mut self,
        snapshot: &Snapshot,
        cut: impl Into<Cut>,
    ) -> Result<Vec<(Pending, Tear)>, Error> {
        self.cut_with(Some(snapshot), cut.into())
    }

    fn cut_with(
        &mut self,
        snapshot: Option<&Snapshot>,
        cut: Cut,
    ) -> Result<Vec<(Pending, Tear)>, Error> {
        let deadline = Instant::now() + BUSY_WITHIN;
        while self.handles.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // umount(2) without MNT_DETACH: EBUSY while anything is open or is a working directory.
        loop {
            match nix::mount::umount(&self.mountpoint) {
                Ok(()) => break,
                Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(nix::errno::Errno::EBUSY) => return Err(Error::Busy),
                Err(e) => return Err(Error::Io(e.into())),
            }
        }
        if let Some(session) = self.session.take() {
            // The session thread sees ENODEV and ends; fuser skips its own unmount.
            match session.join() {
                Ok(()) => {}
                // Seen on a loaded machine: the kernel ends the connection of a filesystem just
                // unmounted with ECONNABORTED rather than ENODEV. Nothing is lost: the unmount
                // succeeded, so no process had anything open, and what can still be queued
                // (an asynchronous RELEASE, a FORGET) changes nothing durable.
                Err(e) if e.raw_os_error() == Some(nix::libc::ECONNABORTED) => {}
                Err(e) => return Err(Error::Session(e)),
            }
        }
        let kept = {
            let mut tree = self.tree();
            if let Some(snapshot) = snapshot {
                tree.restore(snapshot);
            }
            tree.cut(cut)
        };
        // Mounted again even when the cut was refused: the test carries on either way.
        self.handles = Arc::new(AtomicU64::new(0));
        self.session = Some(spawn(
            &self.tree,
            &self.handles,
            &self.faults,
            &self.mountpoint,
        )?);
        Ok(kept?)
    }
}

/// Asks a [`CrashFs`] from any thread whether the simulated power failure has happened.
#[derive(Debug, Clone)]
pub struct Probe {
    tree: Arc<Mutex<Tree>>,
}

impl Probe {
    /// See [`CrashFs::frozen`]. Ask it *after* an answer arrived: if it is still false, the
    /// answer was sent before the power failed, so its promise must hold after the cut.
    pub fn frozen(&self) -> bool {
        self.tree.lock().unwrap_or_else(|e| e.into_inner()).frozen()
    }

    /// See [`CrashFs::mutating_ops`].
    pub fn mutating_ops(&self) -> u64 {
        self.tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mutating_ops()
    }
}

impl Drop for CrashFs {
    fn drop(&mut self) {
        self.faults.set_hung(false);
        if let Some(session) = self.session.take() {
            if nix::mount::umount(&self.mountpoint).is_ok() {
                let _ = session.join();
            } else {
                // Still busy (a panicking test with children alive): detach it, and leave the
                // session thread to end when they do; the namespace dies with the process.
                let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                drop(session);
            }
        }
    }
}

fn spawn(
    tree: &Arc<Mutex<Tree>>,
    handles: &Arc<AtomicU64>,
    faults: &Arc<Faults>,
    mountpoint: &Path,
) -> Result<fuser::BackgroundSession, Error> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("crashfs".into()),
        fuser::MountOption::Subtype("crashfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    fuser::spawn_mount(
        fs::Adapter {
            tree: tree.clone(),
            handles: handles.clone(),
            faults: faults.clone(),
        },
        mountpoint,
        &config,
    )
    .map_err(Error::Io)
}
