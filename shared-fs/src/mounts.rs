//! The mount that holds `DATA_DIR`, and whether its locks can exclude across nodes (SPEC §7.7).
//!
//! The counter is only as safe as the flock around it. On one node any local filesystem will
//! do; with replicas on several nodes the lock has to reach the server, and some mount options
//! make it silently local: each node then grants its own lock and two replicas hand out the
//! same number. [`check`] reads `/proc/self/mountinfo` at start, finds the mount that holds
//! `DATA_DIR`, and decides:
//!
//! | mount | decision |
//! |---|---|
//! | `nfs`, `nfs4` with `nolock`, `local_lock=flock` or `local_lock=all` | refused: flock is local (`local_lock=posix` leaves flock alone) |
//! | `nfs`, `nfs4` with `nocto` | refused: an open no longer revalidates, so a replica can read a count another node replaced |
//! | `cifs`, `smb3` with `nobrl` | refused: locks never reach the server |
//! | `fuse.sshfs` | refused: SFTP has no locks; FUSE keeps them per mount |
//! | `nfs`, `nfs4`, `cifs`, `smb3` otherwise; `ceph`, `fuse.ceph-fuse`, `fuse.glusterfs` | allowed, logged at info |
//! | a local filesystem (`ext4`, `xfs`, `btrfs`, `tmpfs`, `overlay`, ...: the one list in [`crate::volume`]) | allowed silently (debug) |
//! | anything else: another network or FUSE filesystem | allowed with a warning that names it |
//!
//! A [`Refusal`] displays as one line naming `DATA_DIR`, the filesystem, the mount point, the
//! option and the fix; the binaries print it and exit with status 2, like a malformed variable.
//!
//! Reading mountinfo (`proc(5)`): after the mount ID and its parent's ID come the device, the
//! root, the mount point (with ` `, tab, newline and `\` escaped as `\040`, `\011`, `\012`,
//! `\134`), the per-mount options, optional fields ended by a lone `-`, then the filesystem
//! type, the source and the super options. The per-mount options are the VFS flags only (`rw`,
//! `nosuid`, `relatime`); a filesystem's own options, NFS's `nolock`, `local_lock=` and `nocto`
//! and CIFS's `nobrl` among them, are printed by the filesystem among the super options, so
//! that is where they are looked for.
//!
//! Which mount holds a path is decided the way the kernel walks it, by parent IDs, not by line
//! order: a mount on top of another at the same point is the child of the one beneath, and a
//! mount on a directory above an older mount hides it. Lines need not be in mount order (on a
//! machine whose root was switched after boot, `/proc` is listed before `/`).

use std::{
    ffi::OsString,
    fmt, fs,
    os::unix::ffi::OsStringExt,
    path::{Component, Path, PathBuf},
    sync::mpsc,
    thread,
    time::Duration,
};

/// Where the kernel describes this process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// How long resolving `DATA_DIR`'s symlinks may take. Resolving touches the volume, and a
/// volume that hangs must not keep a server from starting (it answers 503 until the volume
/// answers); past this the mount is found from the path as written.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(2);

/// Checks the mount that holds `data_dir` (which need not exist yet) and logs the decision:
/// debug for a local filesystem, info for a known network one, a warning for one not known
/// here or when the mount cannot be found. An `Err` is a configuration known to make locks
/// node-local: the caller exits before it creates or writes anything there. Only metadata is
/// read (the symlinks on the way), and for at most 2 s.
pub fn check(data_dir: &Path) -> Result<Verdict, Refusal> {
    let verdict = match fs::read(MOUNTINFO) {
        Ok(mountinfo) => check_in(&mountinfo, data_dir)?,
        Err(error) => Verdict::Unchecked {
            data_dir: data_dir.to_owned(),
            why: format!("cannot read {MOUNTINFO}: {error}"),
        },
    };
    verdict.log();
    Ok(verdict)
}

/// [`check`] against the given mountinfo text instead of this process's, without logging
/// the decision. `data_dir` is still resolved on this machine: made absolute, symlinks
/// followed as far as it exists, and the rest taken as written.
pub fn check_in(mountinfo: &[u8], data_dir: &Path) -> Result<Verdict, Refusal> {
    let path = resolve_within(data_dir, RESOLVE_DEADLINE, resolve).unwrap_or_else(|as_written| {
        tracing::warn!(
            data_dir = %data_dir.display(),
            "DATA_DIR did not answer within {RESOLVE_DEADLINE:?}: its mount is found from the \
             path as written, without following symlinks"
        );
        as_written
    });
    judge(mountinfo, data_dir, &path)
}

/// An allowed `DATA_DIR`, and what is said about it. Displays as the line that is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A local filesystem: its flock excludes every process that can reach it.
    Local {
        data_dir: PathBuf,
        fs_type: String,
        mount_point: PathBuf,
    },
    /// A network filesystem whose locks reach the server (given the options the README lists).
    Shared {
        data_dir: PathBuf,
        fs_type: String,
        mount_point: PathBuf,
    },
    /// A filesystem not known here, network or FUSE: allowed, with a warning.
    Unknown {
        data_dir: PathBuf,
        fs_type: String,
        mount_point: PathBuf,
    },
    /// The mount could not be found: allowed, with a warning that says why.
    Unchecked { data_dir: PathBuf, why: String },
}

impl Verdict {
    /// Logs the decision: debug, info or warn, as [`check`] describes.
    pub fn log(&self) {
        match self {
            Verdict::Local { .. } => tracing::debug!("{self}"),
            Verdict::Shared { fs_type, .. } => tracing::info!(fs_type, "{self}"),
            Verdict::Unknown { fs_type, .. } => tracing::warn!(fs_type, "{self}"),
            Verdict::Unchecked { .. } => tracing::warn!("{self}"),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LOCAL_LOCKS: &str = "if its locks are local to each node, two replicas on \
                                   different nodes would hand out the same numbers";
        let on = |f: &mut fmt::Formatter<'_>, d: &Path, t: &str, m: &Path| {
            write!(
                f,
                "DATA_DIR {} is on the {t} mount at {}",
                Shown(d),
                Shown(m)
            )
        };
        match self {
            Verdict::Local {
                data_dir,
                fs_type,
                mount_point,
            } => {
                on(f, data_dir, fs_type, mount_point)?;
                f.write_str(", a local filesystem")
            }
            Verdict::Shared {
                data_dir,
                fs_type,
                mount_point,
            } => {
                on(f, data_dir, fs_type, mount_point)?;
                f.write_str(
                    ", a network filesystem whose locks reach the server; the README's \
                     \"Several nodes\" table lists the options it needs",
                )
            }
            Verdict::Unknown {
                data_dir,
                fs_type,
                mount_point,
            } => {
                on(f, data_dir, fs_type, mount_point)?;
                write!(
                    f,
                    ", a filesystem not known here: {LOCAL_LOCKS}; see the README's \
                     \"Several nodes\" table"
                )
            }
            Verdict::Unchecked { data_dir, why } => write!(
                f,
                "DATA_DIR {}: its mount could not be checked ({why}); {LOCAL_LOCKS}",
                Shown(data_dir)
            ),
        }
    }
}

/// A mount known to make locks node-local. Displays as one line: `DATA_DIR`, the filesystem,
/// the mount point, the option, what would go wrong and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub data_dir: PathBuf,
    pub fs_type: String,
    pub mount_point: PathBuf,
    /// The mount option at fault; `None` when the filesystem itself is (sshfs).
    pub option: Option<&'static str>,
    /// What would go wrong.
    pub hazard: &'static str,
    /// What to do instead.
    pub fix: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DATA_DIR {} is on the {} mount at {}",
            Shown(&self.data_dir),
            self.fs_type,
            Shown(&self.mount_point)
        )?;
        if let Some(option) = &self.option {
            write!(f, " with {option}")?;
        }
        write!(f, ": {}; {}", self.hazard, self.fix)
    }
}

impl std::error::Error for Refusal {}

const LOCAL_FLOCK: &str =
    "flock would be local to this node and two replicas would hand out the same numbers";
const NO_CTO: &str = "opening a file would not revalidate it, so a replica could read a count \
                      another node has already replaced and two replicas would hand out the \
                      same numbers";
const NO_SFTP_LOCKS: &str = "SFTP has no locks, so flock would be local to this mount and two \
                             replicas would hand out the same numbers";

/// Network filesystems whose flock reaches the server unless an option refused below says
/// otherwise: NFS emulates it with a whole-file lock on the server (since Linux 2.6.12), CIFS
/// with a byte-range lock (Linux 5.5), CephFS and GlusterFS keep locks in the cluster.
const SHARED_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "ceph",
    "fuse.ceph-fuse",
    "fuse.glusterfs",
];

/// The decision for `data_dir` (as written, for the messages), resolved to `path`.
fn judge(mountinfo: &[u8], data_dir: &Path, path: &Path) -> Result<Verdict, Refusal> {
    let mounts = parse(mountinfo);
    let Some(mount) = holding(&mounts, path) else {
        return Ok(Verdict::Unchecked {
            data_dir: data_dir.to_owned(),
            why: format!("no mount in {MOUNTINFO} holds {}", Shown(path)),
        });
    };
    let refuse = |option: Option<&'static str>, hazard, fix| {
        Err(Refusal {
            data_dir: data_dir.to_owned(),
            fs_type: mount.fs_type.clone(),
            mount_point: mount.mount_point.clone(),
            option,
            hazard,
            fix,
        })
    };
    let has = |option: &str| mount.super_options.split(',').any(|o| o == option);
    match mount.fs_type.as_str() {
        // `nolock` first: it is what the administrator wrote, and it implies local_lock=all.
        "nfs" | "nfs4" if has("nolock") => {
            return refuse(Some("nolock"), LOCAL_FLOCK, "remount without nolock");
        }
        "nfs" | "nfs4" => {
            for option in ["local_lock=flock", "local_lock=all"] {
                if has(option) {
                    return refuse(
                        Some(option),
                        LOCAL_FLOCK,
                        "remount without local_lock (or with local_lock=none)",
                    );
                }
            }
            if has("nocto") {
                return refuse(Some("nocto"), NO_CTO, "remount without nocto");
            }
        }
        "cifs" | "smb3" if has("nobrl") => {
            return refuse(
                Some("nobrl"),
                LOCAL_FLOCK,
                "remount without nobrl (on Azure Files, drop it from the StorageClass's \
                 mountOptions)",
            );
        }
        "fuse.sshfs" => {
            return refuse(
                None,
                NO_SFTP_LOCKS,
                "put DATA_DIR on a filesystem from the README's \"Several nodes\" table",
            );
        }
        _ => {}
    }
    let (data_dir, fs_type, mount_point) = (
        data_dir.to_owned(),
        mount.fs_type.clone(),
        mount.mount_point.clone(),
    );
    Ok(if SHARED_TYPES.contains(&fs_type.as_str()) {
        Verdict::Shared {
            data_dir,
            fs_type,
            mount_point,
        }
    } else if crate::volume::is_local_type(&fs_type) {
        Verdict::Local {
            data_dir,
            fs_type,
            mount_point,
        }
    } else {
        Verdict::Unknown {
            data_dir,
            fs_type,
            mount_point,
        }
    })
}

/// One line of mountinfo, the fields this module reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    id: u64,
    parent: u64,
    mount_point: PathBuf,
    fs_type: String,
    super_options: String,
}

/// The lines of `mountinfo` that parse; a malformed line is skipped, not fatal.
fn parse(mountinfo: &[u8]) -> Vec<Mount> {
    mountinfo
        .split(|&b| b == b'\n')
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let number = |field: &[u8]| std::str::from_utf8(field).ok()?.parse().ok();
    let separator = 6 + fields.get(6..)?.iter().position(|f| *f == b"-")?;
    let mount_point = PathBuf::from(OsString::from_vec(unescape(fields.get(4)?)));
    let text = |field: &[u8]| String::from_utf8_lossy(&unescape(field)).into_owned();
    Some(Mount {
        id: number(fields.first()?)?,
        parent: number(fields.get(1)?)?,
        mount_point: mount_point.is_absolute().then_some(mount_point)?,
        fs_type: text(fields.get(separator + 1)?),
        super_options: fields
            .get(separator + 3)
            .map_or_else(String::new, |f| text(f)),
    })
}

/// Undoes the kernel's octal escapes (`\040` is a space); any other backslash stays as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| {
            field[i] == b'\\' && d[0] <= b'3' && d.iter().all(|b| (b'0'..=b'7').contains(b))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mount that holds `path` (absolute, without `.` or `..`), found as the kernel's path walk
/// finds it: from the root mount, each component may enter the mount whose parent is the
/// current one and whose mount point it is, and then the topmost of those stacked there.
/// Without a root mount (a chroot hides it), the longest mount point that is a prefix of
/// `path`, by components, the last listed winning a tie.
fn holding<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let slash = Path::new("/");
    let on = |under: &Mount, at: &Path| {
        mounts
            .iter()
            .rev()
            .find(|m| m.parent == under.id && m.id != under.id && m.mount_point == at)
    };
    // Bounded: a malformed file could make the parents a cycle.
    let topmost = |mut m: &'a Mount| {
        for _ in 0..mounts.len() {
            match on(m, &m.mount_point) {
                Some(over) => m = over,
                None => break,
            }
        }
        m
    };
    let root = mounts.iter().rev().find(|m| {
        m.mount_point == slash
            && !mounts
                .iter()
                .any(|p| p.id == m.parent && p.id != m.id && p.mount_point == slash)
    });
    let Some(root) = root else {
        return mounts
            .iter()
            .filter(|m| path.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.components().count());
    };
    let mut current = topmost(root);
    let mut prefix = PathBuf::from(slash);
    for component in path.components().skip(1) {
        prefix.push(component);
        if let Some(child) = on(current, &prefix) {
            current = topmost(child);
        }
    }
    Some(current)
}

/// `data_dir` as the kernel will find it once it exists: absolute, symlinks resolved in the
/// longest part that exists (the nearest existing ancestor) and a dangling symlink followed to
/// where it points, the rest taken as written, with `..` removing the component before it.
fn resolve(data_dir: &Path) -> PathBuf {
    resolve_following(data_dir, 40)
}

/// [`resolve`], following at most `links` dangling symlinks (Linux's own limit is 40).
fn resolve_following(data_dir: &Path, links: u32) -> PathBuf {
    let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let components: Vec<Component> = absolute.components().collect();
    for n in (1..=components.len()).rev() {
        let existing: PathBuf = components[..n].iter().collect();
        if let Ok(real) = fs::canonicalize(&existing) {
            return lexical(real, &components[n..]);
        }
        if links > 0
            && let Ok(target) = fs::read_link(&existing)
        {
            let mut followed = lexical(PathBuf::new(), &components[..n - 1]).join(target);
            followed.extend(&components[n..]);
            return resolve_following(&followed, links - 1);
        }
    }
    lexical(PathBuf::new(), &components)
}

/// `base` followed by `rest`, `..` taken lexically.
fn lexical(mut base: PathBuf, rest: &[Component]) -> PathBuf {
    for component in rest {
        match component {
            Component::ParentDir => {
                base.pop();
            }
            Component::CurDir => {}
            other => base.push(other),
        }
    }
    base
}

/// `resolve(data_dir)` if it returns within `deadline`; else (the volume hangs) `data_dir`
/// made absolute without touching the filesystem. The resolving thread is left to finish
/// whenever the volume answers.
fn resolve_within(
    data_dir: &Path,
    deadline: Duration,
    resolve: fn(&Path) -> PathBuf,
) -> Result<PathBuf, PathBuf> {
    let (tx, rx) = mpsc::channel();
    let owned = data_dir.to_owned();
    let spawned = thread::Builder::new()
        .name("resolve DATA_DIR".into())
        .spawn(move || tx.send(resolve(&owned)));
    if spawned.is_err() {
        return Ok(resolve(data_dir));
    }
    rx.recv_timeout(deadline).map_err(|_| {
        let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        lexical(PathBuf::new(), &absolute.components().collect::<Vec<_>>())
    })
}

/// A path in a one-line message: control characters (a newline in a directory name) escaped.
struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.to_string_lossy().chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
