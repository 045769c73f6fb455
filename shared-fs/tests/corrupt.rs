//! Guarantee 3: a corrupt counter file, or a record both of whose slots fail their checksum, is
//! never read as 0 and never overwritten by an increment; the error names the path and shows
//! the content. Only the operator's `set` replaces it. A single torn slot is what a power cut
//! leaves: the other slot holds the count.

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

#[tokio::test]
async fn a_record_whose_both_slots_fail_their_checksum_is_corrupt_until_set_rewrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    file.set(7).unwrap();
    // Something other than shared-fs scribbled over both slots of the lock file.
    let garbage = vec![0xa5; shared_fs::record::FILE_BYTES as usize];
    fs::write(file.lock_path(), &garbage).unwrap();
    let reason = format!(
        "corrupt counter record in {}: both slots fail their checksum; `pingpong counter set N` rewrites it",
        file.lock_path().display()
    );

    assert_eq!(file.read().unwrap_err().to_string(), reason);
    assert!(file.read().unwrap_err().is_corrupt());
    assert_eq!(file.add(1).unwrap_err().to_string(), reason);
    let counter = Counter::spawn(file.clone(), |_| {});
    assert_eq!(counter.increment().await.unwrap_err().to_string(), reason);
    assert_eq!(fs::read(file.lock_path()).unwrap(), garbage, "overwritten");

    file.set(7).unwrap();
    assert_eq!(counter.increment().await.unwrap(), 7);
    assert_eq!(file.read().unwrap(), 8);
}

#[test]
fn a_torn_slot_falls_back_to_the_other_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    file.set(40).unwrap();
    assert_eq!(file.add(1).unwrap(), 40);
    // The write of the next record cut short by a power cut: its slot is half old, half new.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file.lock_path())
        .unwrap();
    let slots = shared_fs::record::read_slots(&lock).unwrap();
    let latest = slots.latest().unwrap();
    let next = shared_fs::record::Record {
        seq: latest.record.unwrap().seq + 1,
        value: 99,
    }
    .encode();
    use std::os::unix::fs::FileExt;
    lock.write_all_at(
        &next[..20],
        shared_fs::record::slot_offset(latest.next_slot),
    )
    .unwrap();
    fs::write(file.path(), "40\n").unwrap();

    assert_eq!(file.read().unwrap(), 41, "the other slot holds the count");
    assert_eq!(file.add(1).unwrap(), 41);
    assert_eq!(file.read().unwrap(), 42);
}

/// A named pipe renamed over the published file while a lease is held: the lease's numbers are
/// durable in the record, and giving the lock back neither opens the pipe in a way that blocks
/// nor replaces it; it says why. Taking the lock again says so too.
#[test]
fn a_fifo_that_appears_under_a_lease_is_left_alone_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    let mut lease = file.lock().unwrap();
    assert!(matches!(
        lease.advance(3),
        shared_fs::lease::Advance::Durable { first: 0 }
    ));
    plant_fifo_over(file.path());
    let error = lease.release().expect_err("published over a FIFO");
    assert!(error.to_string().contains("named pipe"), "{error}");
    assert!(is_fifo(file.path()), "the FIFO was replaced");
    let error = file.lock().expect_err("took the lock over a FIFO");
    assert!(error.to_string().contains("named pipe"), "{error}");
    assert_eq!(file.read_record().unwrap(), Some(3));
}

/// The same while replicas of the previous release may be about (shared_fs::rollout), where
/// every batch is published before its numbers are handed out: the batch fails instead, and
/// its numbers are skipped, never handed out.
#[test]
fn a_fifo_that_appears_during_a_rollout_fails_the_next_batch_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    // Ahead of any record: as the previous release, or a hand, writes it.
    fs::write(file.path(), "10\n").unwrap();
    let mut lease = file.lock().unwrap();
    assert!(matches!(
        lease.advance(1),
        shared_fs::lease::Advance::Durable { first: 10 }
    ));
    assert_eq!(read_counter(file.path()).unwrap(), 11, "published at once");
    plant_fifo_over(file.path());
    match lease.advance(1) {
        shared_fs::lease::Advance::Failed { error, skipped } => {
            assert!(error.to_string().contains("named pipe"), "{error}");
            assert_eq!(skipped, Some(11..12));
        }
        other => panic!("a batch published over a FIFO: {other:?}"),
    }
    assert!(is_fifo(file.path()), "the FIFO was replaced");
}

fn plant_fifo_over(path: &std::path::Path) {
    let fifo = path.with_extension("fifo");
    test_support::plant_fifo(&fifo);
    fs::rename(&fifo, path).unwrap();
}

fn is_fifo(path: &std::path::Path) -> bool {
    std::os::unix::fs::FileTypeExt::is_fifo(&fs::symlink_metadata(path).unwrap().file_type())
}

/// A record at the last sequence number (a damaged or hand-made record: counting never gets
/// there) cannot be followed by another: the writer says so and hands out nothing, and the
/// operator's `set` starts both slots on a fresh sequence.
#[test]
fn a_record_at_the_last_sequence_number_stops_the_writer_until_set_starts_a_fresh_sequence() {
    use shared_fs::record::{Record, Slot, Slots, read_slots, write_slot};
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    file.set(100).unwrap();
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file.lock_path())
        .unwrap();
    for slot in 0..2 {
        write_slot(
            &lock,
            slot,
            &Record {
                seq: u64::MAX - 1 + slot as u64,
                value: 100,
            },
        )
        .unwrap();
    }
    let reason = format!(
        "the counter record in {} is at the last sequence number, 18446744073709551615: no record \
         can follow it; `pingpong counter set N` starts a fresh sequence",
        file.lock_path().display()
    );

    let error = file.add(1).unwrap_err();
    assert_eq!(error.to_string(), reason);
    assert!(error.is_corrupt(), "only the operator can repair it");
    assert_eq!(file.read().unwrap(), 100);
    assert_eq!(
        read_slots(&lock).unwrap(),
        Slots([
            Slot::Valid(Record {
                seq: u64::MAX - 1,
                value: 100
            }),
            Slot::Valid(Record {
                seq: u64::MAX,
                value: 100
            }),
        ]),
        "nothing written"
    );

    file.set(7).unwrap();
    assert_eq!(
        read_slots(&lock).unwrap(),
        Slots([
            Slot::Valid(Record { seq: 1, value: 7 }),
            Slot::Valid(Record { seq: 2, value: 7 }),
        ])
    );
    assert_eq!(file.add(1).unwrap(), 7);
    assert_eq!(file.add(2).unwrap(), 8);
    assert_eq!(
        read_slots(&lock).unwrap(),
        Slots([
            Slot::Valid(Record { seq: 3, value: 8 }),
            Slot::Valid(Record { seq: 4, value: 10 }),
        ])
    );
    assert_eq!(file.read().unwrap(), 10);
}

/// Near `u64::MAX` a batch larger than what is left hands out the numbers that fit, in order,
/// and only the rest are refused.
#[tokio::test]
async fn a_batch_that_does_not_fit_hands_out_what_fits_and_refuses_the_rest() {
    use std::{
        future::Future,
        pin::Pin,
        task::{Context, Waker},
    };
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    file.set(u64::MAX - 3).unwrap();
    // Held while the ten increments queue, so that the writer takes them as one batch.
    let held = file.lock().unwrap();
    let counter = Counter::spawn(file.clone(), |_| {});
    let mut increments: Vec<Pin<Box<dyn Future<Output = shared_fs::Result<u64>> + Send>>> = (0..10)
        .map(|_| {
            let counter = counter.clone();
            Box::pin(async move { counter.increment().await }) as Pin<Box<_>>
        })
        .collect();
    let mut context = Context::from_waker(Waker::noop());
    for increment in &mut increments {
        assert!(increment.as_mut().poll(&mut context).is_pending(), "queued");
    }
    drop(held);
    let mut answers = Vec::new();
    for increment in increments {
        answers.push(increment.await.map_err(|e| e.to_string()));
    }
    let full = format!(
        "counter file {}: 18446744073709551615 + 1 does not fit in a u64: the counter is at its \
         maximum",
        file.path().display()
    );
    let mut expected = vec![Ok(u64::MAX - 3), Ok(u64::MAX - 2), Ok(u64::MAX - 1)];
    expected.resize(10, Err(full));
    assert_eq!(answers, expected);
    assert_eq!(file.read().unwrap(), u64::MAX);
}
