//! Durable increments per second, group commit against one durable write per increment,
//! measured side by side in one run (the machine is shared and noisy: only ratios measured
//! together mean anything).
//!
//!     cargo bench -p shared-fs --bench increments [-- SECONDS_PER_RUN RUNS]
//!
//! For each number of concurrent callers it alternates baseline and group-commit runs and
//! prints the median of each and their ratio as a Markdown table for BENCHMARKS.md. The files
//! live in a temp directory under `BENCH_DIR` (default: the system temp dir); put it on the
//! disk you care about.

use std::{
    sync::Arc,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shared_fs::{Counter, CounterFile};

const CALLERS: [usize; 3] = [1, 8, 64];

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let seconds: f64 = args
        .next()
        .map_or(2.0, |s| s.parse().expect("seconds per run"));
    let runs: usize = args.next().map_or(5, |s| s.parse().expect("runs"));
    let run_for = Duration::from_secs_f64(seconds);
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    println!(
        "{runs} runs of {seconds} s per cell, median; files under {}",
        base.display()
    );
    println!();
    println!("| callers | one write per increment (/s) | group commit (/s) | ratio | mean batch |");
    println!("|---:|---:|---:|---:|---:|");
    for callers in CALLERS {
        let mut baseline = Vec::new();
        let mut grouped = Vec::new();
        let mut batch_means = Vec::new();
        for _ in 0..runs {
            let dir = tempfile::tempdir_in(&base).expect("bench dir");
            let file = CounterFile::in_dir(dir.path());
            baseline.push(runtime.block_on(one_write_per_increment(file, callers, run_for)));

            let dir = tempfile::tempdir_in(&base).expect("bench dir");
            let file = CounterFile::in_dir(dir.path());
            let (rate, mean_batch) = runtime.block_on(group_commit(file, callers, run_for));
            grouped.push(rate);
            batch_means.push(mean_batch);
        }
        let (b, g) = (median(&mut baseline), median(&mut grouped));
        println!(
            "| {callers} | {b:.0} | {g:.0} | {:.2}x | {:.1} |",
            g / b,
            median(&mut batch_means)
        );
    }
}

/// The baseline: every caller does its own locked, durable read-modify-write, on the blocking
/// pool as a careful service without group commit would.
async fn one_write_per_increment(file: CounterFile, callers: usize, run_for: Duration) -> f64 {
    let file = Arc::new(file);
    drive(callers, run_for, move || {
        let file = file.clone();
        async move {
            tokio::task::spawn_blocking(move || file.add(1))
                .await
                .expect("join")
                .expect("durable write");
        }
    })
    .await
}

/// Group commit: every caller awaits `Counter::increment`.
async fn group_commit(file: CounterFile, callers: usize, run_for: Duration) -> (f64, f64) {
    let writes = Arc::new(AtomicU64::new(0));
    let counted = writes.clone();
    let counter = Counter::spawn(file, move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    let done = drive(callers, run_for, move || {
        let counter = counter.clone();
        async move {
            counter.increment().await.expect("durable write");
        }
    })
    .await;
    let writes = writes.load(Ordering::Relaxed).max(1) as f64;
    (done, done * run_for.as_secs_f64() / writes)
}

/// Runs `callers` loops of `one` for `run_for` and returns completed calls per second.
async fn drive<F, Fut>(callers: usize, run_for: Duration, one: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (stop, completed, one) = (stop.clone(), completed.clone(), one.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    one().await;
                    completed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("caller");
    }
    completed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}
