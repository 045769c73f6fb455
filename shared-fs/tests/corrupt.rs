//! Guarantee 3: a corrupt counter file is never read as 0 and never overwritten by an
//! increment; the error names the path and shows the content. Only the operator's `set`
//! replaces it.

use std::fs;

use shared_fs::{Counter, CounterFile, read_counter};

const CORRUPT: &[(&str, &[u8])] = &[
    ("empty", b""),
    ("letters", b"abc"),
    ("negative", b"-1"),
    ("trailing letters", b"12abc"),
    ("2^64", b"18446744073709551616\n"),
    ("binary", b"\x00\xff\x13\x37"),
];

#[tokio::test]
async fn every_corrupt_form_is_rejected_with_the_path_and_left_byte_identical() {
    for (what, content) in CORRUPT {
        let dir = tempfile::tempdir().unwrap();
        let file = CounterFile::in_dir(dir.path());
        fs::write(file.path(), content).unwrap();
        let path = file.path().display().to_string();

        let read = read_counter(file.path()).expect_err(what);
        assert!(read.is_corrupt(), "{what}: {read}");
        assert!(read.to_string().contains(&path), "{what}: {read}");

        let add = file.add(1).expect_err(what);
        assert!(add.is_corrupt(), "{what}: {add}");

        let counter = Counter::spawn(file.clone(), |_| {});
        let increment = counter.increment().await.expect_err(what);
        assert!(increment.to_string().contains(&path), "{what}: {increment}");

        assert_eq!(
            fs::read(file.path()).unwrap(),
            *content,
            "{what} was overwritten"
        );
    }
}

#[test]
fn the_error_shows_the_content_escaped_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    fs::write(file.path(), b"12abc\n").unwrap();
    assert_eq!(
        read_counter(file.path()).unwrap_err().to_string(),
        format!(
            "corrupt counter file {}: expected a decimal number from 0 to 18446744073709551615, found \"12abc\\n\"",
            file.path().display()
        )
    );
    fs::write(file.path(), [b'x'; 64]).unwrap();
    let message = read_counter(file.path()).unwrap_err().to_string();
    assert!(
        message.ends_with(&format!("found \"{}\"", "x".repeat(64))),
        "{message}"
    );
    // Longer than any counter: not read whole, reported with its size and its first 64 bytes.
    fs::write(file.path(), [b'x'; 200]).unwrap();
    assert_eq!(
        read_counter(file.path()).unwrap_err().to_string(),
        format!(
            "{} is too large: 200 bytes, at most 64 expected; it starts with \"{}...\"",
            file.path().display(),
            "x".repeat(64)
        )
    );
}

#[test]
fn whitespace_around_the_digits_is_accepted_and_a_missing_file_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    assert_eq!(read_counter(file.path()).unwrap(), 0);
    fs::write(file.path(), b"  41 \r\n").unwrap();
    assert_eq!(file.add(1).unwrap(), 41);
    assert_eq!(fs::read(file.path()).unwrap(), b"42\n");
}

#[test]
fn set_repairs_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    fs::write(file.path(), b"garbage").unwrap();
    file.set(5).unwrap();
    assert_eq!(file.add(1).unwrap(), 5);
    assert_eq!(fs::read(file.path()).unwrap(), b"6\n");
}

#[test]
fn the_counter_never_wraps_past_u64_max() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    file.set(u64::MAX).unwrap();
    let err = file.add(1).unwrap_err();
    assert!(err.to_string().contains("does not fit in a u64"), "{err}");
    assert_eq!(read_counter(file.path()).unwrap(), u64::MAX);
}
