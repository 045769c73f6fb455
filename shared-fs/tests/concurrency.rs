//! Guarantees 1 and 2 inside one process: concurrent increments each get their own number, none
//! is lost, and a reader polling the published file, or the count (record and file), never
//! sees it empty, partial or going backwards; once the writers are idle the published file
//! holds the count.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use shared_fs::{Counter, CounterFile, read_counter};
use test_support::assert_published;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_increment_answers_zero_and_leaves_one_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let counter = Counter::spawn(CounterFile::in_dir(dir.path()), |_| {});
    assert_eq!(counter.increment().await.unwrap(), 0);
    assert_eq!(counter.file().read().unwrap(), 1);
    assert_published(counter.file().path(), "1\n");
    assert_eq!(counter.increment().await.unwrap(), 1);
    assert_eq!(counter.file().read().unwrap(), 2);
    assert_published(counter.file().path(), "2\n");
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
    assert_eq!(counter.file().read().unwrap(), TASKS * EACH);
    assert_published(counter.file().path(), &format!("{}\n", TASKS * EACH));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_reader_never_sees_an_error_an_empty_file_or_a_decrease() {
    const TASKS: u64 = 8;
    const EACH: u64 = 300;
    const ADDS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    file.set(0).unwrap();
    let done = Arc::new(AtomicBool::new(false));

    // One reader of the published file as `cat` or the previous release reads it, one of the
    // count as the workspace's readers do (the larger of the record and the file).
    let published = poll(done.clone(), {
        let path = file.path().to_owned();
        move || read_counter(&path)
    });
    let count = poll(done.clone(), {
        let file = file.clone();
        move || file.read()
    });
    // Two writers contending for the lock: the group-commit writer keeping it across batches,
    // and one durable write per lock, as a second replica without group commit would.
    let adder = {
        let file = file.clone();
        thread::spawn(move || {
            for _ in 0..ADDS {
                file.add(1).unwrap();
            }
        })
    };
    let counter = Counter::spawn(file.clone(), |_| {});
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move {
                for _ in 0..EACH {
                    counter.increment().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    adder.join().unwrap();
    let total = TASKS * EACH + ADDS;
    assert_published(file.path(), &format!("{total}\n"));
    done.store(true, Ordering::SeqCst);
    let (published, count) = (published.join().unwrap(), count.join().unwrap());

    assert_eq!(file.read().unwrap(), total);
    assert!(published > 0 && count > 0);
    println!("{published} reads of the file and {count} of the count during {total} increments");
}

/// Reads with `read` until `done`, failing on an error or a decrease; returns how many reads.
fn poll(
    done: Arc<AtomicBool>,
    read: impl Fn() -> shared_fs::Result<u64> + Send + 'static,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut last = 0;
        let mut reads = 0u64;
        while !done.load(Ordering::SeqCst) {
            let value = read().unwrap_or_else(|e| panic!("read {reads}: {e}"));
            assert!(value >= last, "the count went back from {last} to {value}");
            last = value;
            reads += 1;
        }
        reads
    })
}
