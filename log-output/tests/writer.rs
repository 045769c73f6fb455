//! The writer loop in-process on a paused tokio clock: the timing assertions are exact and the
//! tests take no real time waiting for intervals.

mod common;

use std::{
    fs,
    path::Path,
    time::{Duration, SystemTime},
};

use log_output::{
    config::WriterConfig,
    writer::{self, StartError},
};
use shared_fs::CounterFile;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};
use uuid::Uuid;

const INTERVAL: Duration = Duration::from_secs(5);

/// A writer task whose entries arrive on a channel and which stops when `stop` is sent.
struct Running {
    entries: mpsc::UnboundedReceiver<String>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StartError>>,
}

fn spawn_writer(data_dir: &Path, id: Uuid) -> Running {
    let (sink, entries) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = WriterConfig {
        data_dir: data_dir.to_owned(),
        interval: INTERVAL,
        volume_kind: shared_fs::volume::VolumeKind::Auto,
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(writer::run(config, id, shutdown, move |entry: &str| {
        let _ = sink.send(entry.to_owned());
    }));
    Running {
        entries,
        stop,
        task,
    }
}

impl Running {
    async fn next_entry(&mut self) -> String {
        self.entries.recv().await.expect("the writer stopped")
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("writer task panicked")
            .expect("writer failed");
    }
}

fn output(data_dir: &Path) -> String {
    fs::read_to_string(data_dir.join("output.log")).expect("reading output.log")
}

#[tokio::test(start_paused = true)]
async fn first_entry_at_once_then_one_per_interval_until_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = Uuid::new_v4();
    let started = Instant::now();
    let before = SystemTime::now();
    let mut writer = spawn_writer(dir.path(), id);

    for n in 0..4 {
        let text = writer.next_entry().await;
        assert_eq!(started.elapsed(), INTERVAL * n, "entry {n}");
        let entry = common::entry(&text);
        assert_eq!((entry.id, entry.pongs), (id, 0), "missing counter is 0");
        assert!(entry.at >= before - Duration::from_millis(1), "{text}");
        assert_eq!(
            output(dir.path()),
            text,
            "output.log holds the entry printed"
        );
    }
    // Stopping does not wait for the next tick: the paused clock would have jumped to it.
    writer.stop().await;
    assert_eq!(started.elapsed(), INTERVAL * 3);
}

#[tokio::test(start_paused = true)]
async fn each_entry_shows_the_counter_and_a_corrupt_counter_skips_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counter = CounterFile::in_dir(dir.path());
    counter.set(3).expect("setting the counter");
    let started = Instant::now();
    let mut writer = spawn_writer(dir.path(), Uuid::new_v4());

    let good = writer.next_entry().await;
    assert_eq!(common::entry(&good).pongs, 3);

    shared_fs::replace(counter.path(), b"abc\n").expect("corrupting the counter");
    // Just past the second tick, which must have been skipped.
    tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    assert_eq!(
        writer.entries.try_recv(),
        Err(mpsc::error::TryRecvError::Empty)
    );
    assert_eq!(output(dir.path()), good, "the last good entry stays");
    assert_eq!(
        fs::read(counter.path()).expect("reading the counter"),
        b"abc\n",
        "a corrupt counter is never overwritten"
    );

    // Repaired: the next tick writes again, without a restart.
    counter.set(4).expect("repairing the counter");
    let repaired = writer.next_entry().await;
    assert_eq!(started.elapsed(), INTERVAL * 2);
    assert_eq!(common::entry(&repaired).pongs, 4);
    assert_eq!(output(dir.path()), repaired);
    writer.stop().await;
}

#[tokio::test]
async fn creates_a_missing_data_dir() {
    let root = tempfile::tempdir().expect("tempdir");
    let data_dir = root.path().join("not/yet");
    let mut writer = spawn_writer(&data_dir, Uuid::new_v4());
    let text = writer.next_entry().await;
    assert_eq!(output(&data_dir), text);
    writer.stop().await;
}

#[tokio::test]
async fn sweeps_only_its_own_stale_temp_files_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = dir.path().join(".output.log.0123456789abcdef.tmp");
    let pingpongs = dir
        .path()
        .join(".pingpong_counter.txt.0123456789abcdef.tmp");
    fs::write(&ours, "2020-03-30T12:15:17.705Z: half an ent").expect("planting");
    fs::write(&pingpongs, "4").expect("planting");

    let mut writer = spawn_writer(dir.path(), Uuid::new_v4());
    writer.next_entry().await;
    writer.stop().await;

    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".pingpong_counter.txt.0123456789abcdef.tmp",
            "output.log",
            "output.log.lock"
        ],
        "pingpong sweeps its own temp files, under its lock; output.log.lock is never deleted"
    );
}

#[tokio::test]
async fn fails_to_start_when_the_data_dir_cannot_be_created() {
    let root = tempfile::tempdir().expect("tempdir");
    let file = root.path().join("a-file");
    fs::write(&file, "").expect("creating a file");
    let data_dir = file.join("files");
    let writer = spawn_writer(&data_dir, Uuid::new_v4());
    let error = writer
        .task
        .await
        .expect("writer task panicked")
        .expect_err("a data dir below a file cannot be created");
    assert_eq!(
        error.to_string(),
        format!("cannot create the data directory {}", data_dir.display())
    );
}
