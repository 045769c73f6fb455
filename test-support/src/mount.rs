//! A filesystem mounted on a temp directory for one test, unmounted when dropped: a tiny tmpfs
//! stands for a volume that fills up or turns read-only, a read-only bind mount for a volume
//! mounted read-only. Mounting needs root and mount(8); where the test process may not mount,
//! the constructors say so in one line and return `None`, and the test skips.

use std::{ffi::OsStr, path::Path, process::Command};

/// A mounted filesystem; see the module's documentation.
#[derive(Debug)]
pub struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    /// A tmpfs of `size` (`1m`, `256k`).
    pub fn tmpfs(size: &str) -> Option<Mount> {
        let mount = Mount::new(&[
            OsStr::new("-t"),
            OsStr::new("tmpfs"),
            OsStr::new("-o"),
            OsStr::new(&format!("size={size}")),
            OsStr::new("tmpfs"),
        ]);
        if mount.is_none() {
            println!("SKIPPED: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)");
        }
        mount
    }

    /// `source` mounted read-only at a new directory.
    pub fn read_only_view(source: &Path) -> Option<Mount> {
        let Some(mount) = Mount::new(&[OsStr::new("--bind"), source.as_os_str()]) else {
            eprintln!("skipped: cannot mount (needs root and mount(8))");
            return None;
        };
        if !mount.try_remount("remount,bind,ro") {
            eprintln!("skipped: cannot remount {source:?} read-only");
            return None;
        }
        Some(mount)
    }

    fn new(args: &[&OsStr]) -> Option<Mount> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(args)
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Mount { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts with `options` (`ro`, `rw`), failing the test if that fails.
    pub fn remount(&self, options: &str) {
        assert!(
            self.try_remount(&format!("remount,{options}")),
            "remount {options}"
        );
    }

    fn try_remount(&self, options: &str) -> bool {
        Command::new("mount")
            .args(["-o", options])
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
