//! The operator's repair (`pingpong counter set N`, SPEC §3 "Repair"): something other than a
//! regular file where one of the counter's files should be (a directory, a FIFO, a socket, a
//! symlink, a device) is moved aside, kept under a new name beside it, and reported.
//!
//! The service never does this: it answers 503 naming the path and what is there, and leaves
//! it alone, since a hand put it there and may want it back. But the container has no shell,
//! so the explicit repair must get past it, or the only way out would be another pod with the
//! volume mounted. Nothing is deleted: `<name>.corrupt-<unix time>` keeps it.

use std::{
    fmt, fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::error::{Error, Result};

/// Something that stood where a regular file should be, and where it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// Where it was: one of the counter's files.
    pub from: PathBuf,
    /// What it is, e.g. `"a directory"`.
    pub kind: &'static str,
    /// Where it is kept: `<from>.corrupt-<unix time>` in the same directory.
    pub to: PathBuf,
}

impl fmt::Display for MovedAside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "moved {} ({}) aside to {}",
            self.from.display(),
            self.kind,
            self.to.display()
        )
    }
}

/// Moves what is at `path` aside unless it is a regular file or nothing. Looks at the name
/// itself (a symlink is moved, never followed), and never opens it, so a FIFO cannot block it.
pub(crate) fn move_aside_unless_regular(path: &Path) -> Result<Option<MovedAside>> {
    let file_type = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata.file_type(),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("stat", path, e)),
    };
    if file_type.is_file() {
        return Ok(None);
    }
    let to = aside_path(path)?;
    fs::rename(path, &to).map_err(|e| Error::io("move aside", path, e))?;
    let moved = MovedAside {
        from: path.to_owned(),
        kind: crate::read::kind_of(file_type),
        to,
    };
    tracing::warn!(
        path = %moved.from.display(),
        kind = moved.kind,
        to = %moved.to.display(),
        "moved aside: not a regular file"
    );
    Ok(Some(moved))
}

/// A free name for what is at `path`: `<path>.corrupt-<unix time>`, with `-2`, `-3`... after it
/// when that is taken (two repairs within a second).
fn aside_path(path: &Path) -> Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".corrupt-{secs}"));
    for n in 1u32.. {
        let mut candidate = base.clone();
        if n > 1 {
            candidate.push(format!("-{n}"));
        }
        let candidate = PathBuf::from(candidate);
        match fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(candidate),
            Err(e) => return Err(Error::io("stat", &candidate, e)),
            Ok(_) => {}
        }
    }
    unreachable!("a free name among 4 billion")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_or_nothing_stays_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(move_aside_unless_regular(&path).unwrap(), None);
        fs::write(&path, "1\n").unwrap();
        assert_eq!(move_aside_unless_regular(&path).unwrap(), None);
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
    }

    #[test]
    fn a_second_one_within_the_same_second_gets_a_name_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::create_dir(&path).unwrap();
        let first = move_aside_unless_regular(&path).unwrap().unwrap();
        fs::create_dir(&path).unwrap();
        let second = move_aside_unless_regular(&path).unwrap().unwrap();
        assert_ne!(first.to, second.to);
        assert!(first.to.is_dir() && second.to.is_dir());
        assert!(!path.exists());
    }
}
