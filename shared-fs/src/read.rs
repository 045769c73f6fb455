//! Reading a small file from the volume without trusting its size.
//!
//! Every file this workspace reads is tiny (a counter is at most 20 digits, an entry under 200
//! bytes), but the volume is shared: a 100 MB file planted at the counter's path, read whole,
//! would take a 64 MiB pod past its memory limit and into a crash loop. So a read stops one byte
//! past its limit and reports [`Error::TooLarge`] with the path and the size.

use std::{
    fs::File,
    io::{ErrorKind, Read},
    path::Path,
};

use crate::error::{Error, Escaped, Result};

/// The content of `path`, at most `limit` bytes; `None` when the file does not exist. Longer
/// content is [`Error::TooLarge`], and no more than `limit + 1` bytes are ever read or held,
/// also from something that is no regular file (a FIFO, a device).
pub fn read_bounded(path: &Path, limit: usize) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let mut bytes = Vec::with_capacity(limit.min(4096) + 1);
    (&file)
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() > limit {
        // A regular file knows its size; a stream does not, and then it is "more than".
        let size = file.metadata().ok().map(|m| m.len()).filter(|&n| n > 0);
        return Err(Error::TooLarge {
            path: path.to_owned(),
            size,
            limit,
            head: Escaped::new(&bytes),
        });
    }
    Ok(Some(bytes))
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
}
