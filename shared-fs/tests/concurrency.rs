//! Guarantees 1 and 2 inside one process: concurrent increments each get their own number, none
//! is lost, and a reader polling the file never sees it empty, partial or going backwards.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use shared_fs::{Counter, CounterFile, read_counter};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_increment_answers_zero_and_leaves_one_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let counter = Counter::spawn(CounterFile::in_dir(dir.path()), |_| {});
    assert_eq!(counter.increment().await.unwrap(), 0);
    assert_eq!(std::fs::read(counter.file().path()).unwrap(), b"1\n");
    assert_eq!(counter.increment().await.unwrap(), 1);
    assert_eq!(std::fs::read(counter.file().path()).unwrap(), b"2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_are_distinct_contiguous_and_all_on_disk() {
    const TASKS: u64 = 64;
    const EACH: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = batches.clone();
    let counter = Counter::spawn(CounterFile::in_dir(dir.path()), move |report| {
        seen.lock().unwrap().push(report.size);
    });

    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..EACH {
                    got.push(counter.increment().await.unwrap());
                }
                got
            })
        })
        .collect();
    let mut numbers = BTreeSet::new();
    for task in tasks {
        for n in task.await.unwrap() {
            assert!(numbers.insert(n), "{n} handed out twice");
        }
    }

    assert_eq!(numbers, (0..TASKS * EACH).collect::<BTreeSet<_>>());
    assert_eq!(read_counter(counter.file().path()).unwrap(), TASKS * EACH);
    let batches = batches.lock().unwrap();
    assert_eq!(batches.iter().sum::<u64>(), TASKS * EACH);
    // The point of group commit: far fewer durable writes than increments.
    assert!(
        batches.len() < (TASKS * EACH / 4) as usize,
        "{} writes for {} increments",
        batches.len(),
        TASKS * EACH
    );
}

#[test]
fn a_polling_reader_never_sees_an_error_an_empty_file_or_a_decrease() {
    const WRITERS: u64 = 2;
    const EACH: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    file.set(0).unwrap();
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let path = file.path().to_owned();
        let done = done.clone();
        thread::spawn(move || {
            let mut last = 0;
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) {
                let value = read_counter(&path).unwrap_or_else(|e| panic!("read {reads}: {e}"));
                assert!(value >= last, "counter went back from {last} to {value}");
                last = value;
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let file = file.clone();
            thread::spawn(move || {
                for _ in 0..EACH {
                    file.add(1).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();

    assert_eq!(read_counter(file.path()).unwrap(), WRITERS * EACH);
    assert!(reads > 0);
    println!(
        "{reads} reads while {} increments were written",
        WRITERS * EACH
    );
}
