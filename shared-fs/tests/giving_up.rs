//! Callers that give up and a lock held for seconds (SPEC §3, §4): a caller that leaves before
//! its batch is written gets no number and costs none; one that leaves later is counted, so
//! every number on disk is either delivered or reported; and a stalled lock leaves no trace on
//! the requests that come after it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use shared_fs::{BatchReport, Counter, CounterFile, Observe};

/// Holds the counter's lock from another thread, as another replica or a `pingpong counter
/// set` would, until the returned sender is dropped.
fn hold_lock(file: &CounterFile) -> std::sync::mpsc::Sender<()> {
    test_support::hold_lock(file.lock_path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_while_the_lock_is_held_costs_no_number() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    let counter = Counter::spawn(file.clone(), |_| {});
    assert_eq!(counter.increment().await.unwrap(), 0);

    let release = hold_lock(&file);
    let gave_up = tokio::time::timeout(Duration::from_millis(300), counter.increment()).await;
    assert!(
        gave_up.is_err(),
        "the lock is held: no increment can finish"
    );
    drop(release);

    assert_eq!(
        counter.increment().await.unwrap(),
        1,
        "the caller that gave up must not have consumed a number"
    );
    assert_eq!(file.read().unwrap(), 2);
}

struct CountAbandoned(Arc<AtomicU64>);

impl Observe for CountAbandoned {
    fn batch(&mut self, _: &BatchReport) {}

    fn abandoned(&mut self, numbers: &[u64]) {
        self.0.fetch_add(numbers.len() as u64, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_number_on_disk_was_delivered_or_reported_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    let abandoned = Arc::new(AtomicU64::new(0));
    let counter = Counter::spawn_observed(file.clone(), CountAbandoned(abandoned.clone()));

    // Callers that give up after anything from nothing to a few writes' time: some leave while
    // queued, some while their batch is being written.
    let tasks: Vec<_> = (0..64u64)
        .map(|task| {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut delivered = 0;
                for round in 0..40u64 {
                    let patience = Duration::from_micros((task * 7 + round * 13) % 1500);
                    if let Ok(answer) = tokio::time::timeout(patience, counter.increment()).await {
                        answer.unwrap();
                        delivered += 1;
                    }
                }
                delivered
            })
        })
        .collect();
    let mut delivered = 0;
    for task in tasks {
        delivered += task.await.unwrap();
    }
    // Two more, one after the other: the writer reports a batch's abandoned numbers after its
    // answers, so only once the second is answered has every earlier batch been reported.
    for _ in 0..2 {
        counter.increment().await.unwrap();
        delivered += 1;
    }

    let on_disk = file.read().unwrap();
    assert_eq!(
        on_disk,
        delivered + abandoned.load(Ordering::SeqCst),
        "a number was written that was neither delivered nor reported abandoned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_stalled_lock_lone_increments_are_not_held_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    let longest_write = Arc::new(Mutex::new(Duration::ZERO));
    let seen = longest_write.clone();
    let counter = Counter::spawn(file.clone(), move |batch| {
        let mut longest = seen.lock().unwrap();
        *longest = (*longest).max(batch.elapsed);
    });

    // Steady load from 16 callers, so batches of about 16 are being written...
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..16)
        .map(|_| {
            let (counter, stop) = (counter.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    counter.increment().await.unwrap();
                }
            })
        })
        .collect();
    while file.read().unwrap() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ... when another process holds the lock for 3 s; the load ends with that batch.
    let release = hold_lock(&file);
    stop.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(release);
    for caller in load {
        caller.await.unwrap();
    }
    // The batch that waited 3 s for the lock is timed from when it held it: the wait for the
    // lock says nothing about how long the volume takes to write.
    let longest = *longest_write.lock().unwrap();
    assert!(
        longest < Duration::from_secs(1),
        "a write was timed at {longest:?}"
    );

    // Then one request at a time, as a quiet service sees them: each is one write, not a wait
    // sized by the stalled batch (3 s with the lock wait).
    let first = file.read().unwrap();
    for expected in first..first + 5 {
        let started = Instant::now();
        assert_eq!(counter.increment().await.unwrap(), expected);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "a lone increment took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_while_the_lock_is_held_leave_the_queue_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = CounterFile::in_dir(dir.path());
    let counter = Counter::spawn(file.clone(), |_| {});
    let waiting = counter.waiting();
    let release = hold_lock(&file);

    // A thousand callers queue behind the held lock, and give up.
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move { counter.increment().await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting.get() != 1000 {
        assert!(
            Instant::now() < deadline,
            "{} queued of 1000",
            waiting.get()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for caller in &callers {
        caller.abort();
    }
    for caller in callers {
        assert!(caller.await.unwrap_err().is_cancelled());
    }
    // With the lock still held: nothing of them is left queued.
    assert_eq!(waiting.get(), 0);

    drop(release);
    assert_eq!(counter.increment().await.unwrap(), 0);
    assert_eq!(file.read().unwrap(), 1);
}
