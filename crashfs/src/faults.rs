//! Faults a test can switch on in a mounted crashfs, for what a power cut is not: a volume that
//! stops answering (a hung NFS server, a stopped FUSE daemon), one whose flushes fail (a
//! failing disk: `fsync` answering EIO), one whose flushes are slow (an HDD, a cloud disk out
//! of burst credits, writeback contention) and one whose renames are slow (CephFS's metadata
//! server completing a rename at its next tick while another client reads the directory).

use std::{
    sync::{
        Condvar, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Shared by the [`crate::CrashFs`] handle and the FUSE adapter.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    hung: Mutex<bool>,
    resumed: Condvar,
    fail_file_syncs: AtomicBool,
    fail_dir_syncs: AtomicBool,
    sync_delay: Mutex<Duration>,
    rename_delay: Mutex<Duration>,
    /// Slow renames not yet done.
    pub(crate) renames_in_flight: AtomicUsize,
}

impl Faults {
    pub(crate) fn set_hung(&self, hung: bool) {
        *self.hung.lock().unwrap_or_else(|e| e.into_inner()) = hung;
        self.resumed.notify_all();
    }

    /// Blocks the calling request while the volume is hung. The session answers one request
    /// at a time, so one blocked request blocks the whole filesystem, as a hung server does.
    pub(crate) fn wait_while_hung(&self) {
        let hung = self.hung.lock().unwrap_or_else(|e| e.into_inner());
        let _resumed = self
            .resumed
            .wait_while(hung, |hung| *hung)
            .unwrap_or_else(|e| e.into_inner());
    }

    pub(crate) fn fail_syncs(&self, files: bool, dirs: bool) {
        self.fail_file_syncs.store(files, Ordering::SeqCst);
        self.fail_dir_syncs.store(dirs, Ordering::SeqCst);
    }

    pub(crate) fn delay_syncs(&self, delay: Duration) {
        *self.sync_delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    pub(crate) fn delay_renames(&self, delay: Duration) {
        *self.rename_delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// How long a rename must take now before it is done and answered.
    pub(crate) fn rename_delay(&self) -> Duration {
        *self.rename_delay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long an fsync must take now before it is answered.
    pub(crate) fn sync_delay(&self) -> Duration {
        *self.sync_delay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an fsync (of a directory, if `dir`) must fail now.
    pub(crate) fn sync_fails(&self, dir: bool) -> bool {
        if dir {
            self.fail_dir_syncs.load(Ordering::SeqCst)
        } else {
            self.fail_file_syncs.load(Ordering::SeqCst)
        }
    }
}
