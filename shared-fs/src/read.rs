//! Opening and reading a small file on the volume without trusting its size or its type.
//!
//! Every file this workspace reads is tiny (a counter is at most 20 digits, an entry under 200
//! bytes), but the volume is shared, and anyone can put anything at a path:
//!
//! - a 100 MB file at the counter's path, read whole, would take a 64 MiB pod past its memory
//!   limit and into a crash loop. So a read stops one byte past its limit and reports
//!   [`Error::TooLarge`] with the path and the size;
//! - a FIFO (or a device) there makes a plain `open` block until a writer comes, which may be
//!   never: a thread holding the counter's lock while it waits stalls every replica. So every
//!   file on the volume is opened with `O_NONBLOCK`, which never waits, and anything but a
//!   regular file is [`Error::NotRegular`], corrupt like unparsable content;
//! - a symbolic link there would make a write land in, or an error show the content of, a file
//!   outside the volume (a config the record is padded to 8 KiB over; a mounted secret, or
//!   `/proc/self/environ`, quoted in a public 503). So no file on the volume is opened through
//!   a link (`O_NOFOLLOW`), and a link is [`Error::NotRegular`], "a symbolic link". Only
//!   `DATA_DIR` itself, above every name opened here, may be a link.

use std::{
    fs::{self, File, FileType, OpenOptions},
    io::{ErrorKind, Read},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

use crate::error::{Error, Escaped, Result};

/// Opens `path` with `options`, never blocking in `open` and never through a symbolic link,
/// and refuses anything but a regular file; `None` when it does not exist (and `options` do not
/// create it).
pub fn open_regular(path: &Path, options: &OpenOptions) -> Result<Option<File>> {
    let mut options = options.clone();
    let file = match options
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // ELOOP is also a loop of links above the last name: only the last name is reported
        // as a link.
        Err(e)
            if e.raw_os_error() == Some(libc::ELOOP)
                && fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) =>
        {
            return Err(Error::NotRegular {
                path: path.to_owned(),
                kind: "a symbolic link",
            });
        }
        Err(e) if e.kind() == ErrorKind::IsADirectory => {
            return Err(Error::NotRegular {
                path: path.to_owned(),
                kind: "a directory",
            });
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let file_type = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .file_type();
    if file_type.is_file() {
        return Ok(Some(file));
    }
    let kind = kind_of(file_type);
    Err(Error::NotRegular {
        path: path.to_owned(),
        kind,
    })
}

/// Opens (creating it if needed) the lock file at `path` for writing, without locking it:
/// fails on a read-only volume, which is what readiness wants to know. Never blocks in `open`,
/// and anything but a regular file there is [`Error::NotRegular`].
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    let options = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .clone();
    open_regular(path, &options)?
        .ok_or_else(|| Error::io("open lock file", path, std::io::ErrorKind::NotFound.into()))
}

/// The content of `path`, at most `limit` bytes; `None` when the file does not exist. Longer
/// content is [`Error::TooLarge`], and no more than `limit + 1` bytes are ever read or held;
/// anything but a regular file is [`Error::NotRegular`], and opening it never blocks.
pub fn read_bounded(path: &Path, limit: usize) -> Result<Option<Vec<u8>>> {
    let Some(file) = open_regular(path, OpenOptions::new().read(true))? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(limit.min(4096) + 1);
    (&file)
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() > limit {
        let size = file.metadata().ok().map(|m| m.len());
        return Err(Error::TooLarge {
            path: path.to_owned(),
            size,
            limit,
            head: Escaped::new(&bytes),
        });
    }
    Ok(Some(bytes))
}

/// What a file type is, in the words errors and the operator's repair use.
pub(crate) fn kind_of(t: FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "something else"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_refuses_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(read_bounded(&path, 4).unwrap(), None);
        std::fs::write(&path, b"1234").unwrap();
        assert_eq!(read_bounded(&path, 4).unwrap(), Some(b"1234".to_vec()));
        std::fs::write(&path, b"12\n45").unwrap();
        let error = read_bounded(&path, 4).unwrap_err();
        assert!(error.is_corrupt());
        assert_eq!(
            error.to_string(),
            format!(
                r#"{} is too large: 5 bytes, at most 4 expected; it starts with "12\n45""#,
                path.display()
            )
        );
    }

    #[test]
    fn a_directory_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_bounded(dir.path(), 4).unwrap_err();
        assert!(error.is_corrupt());
        assert_eq!(
            error.to_string(),
            format!(
                "{} is a directory, not a regular file",
                dir.path().display()
            )
        );
    }
}
