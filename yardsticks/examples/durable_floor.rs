//! The durable floor in `bench/http-bench.py`: the least any durable `/pingpong` can cost at one
//! connection on this disk. One HTTP round trip through the same service-kit stack as the
//! ceiling, one hop to a dedicated writer thread and back (the hop pingpong pays to keep blocking
//! I/O off the async workers), and one durable record write there: a 32-byte `pwrite` at offset
//! 0 of a preallocated file (`DATA_DIR/durable_floor.record`) and one `fdatasync`.
//!
//! It is the floor of one request alone, not of a design: no lock, no read back, no checksum,
//! no second slot, no `pingpong_counter.txt`, one write per request (no group commit, so it says
//! nothing above one connection). A durable pingpong at one connection can approach it, never
//! beat it: whatever pingpong does on top of one in-place write and one `fdatasync` shows as the
//! ratio. `PORT` (default 3995) and `DATA_DIR` as pingpong; a write error is a `503`.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::Path,
    sync::mpsc,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use tokio::sync::oneshot;
use yardsticks::serve_for_bench;

/// The size of the record: what a counter record with a sequence number and a checksum needs,
/// within one sector.
const RECORD: usize = 32;

type Reply = oneshot::Sender<std::io::Result<u64>>;

async fn pingpong(
    State(writer): State<mpsc::Sender<Reply>>,
) -> Result<String, (StatusCode, String)> {
    let (reply, answer) = oneshot::channel();
    let gone = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "writer thread gone".to_owned(),
        )
    };
    writer.send(reply).map_err(|_| gone())?;
    match answer.await.map_err(|_| gone())? {
        Ok(n) => Ok(format!("pong {n}")),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// Opens the record file with its one block allocated and on disk, so that each later write
/// changes data only and `fdatasync` has no metadata to flush.
fn open_record(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all_at(&[0; RECORD], 0)?;
    file.sync_all()?;
    Ok(file)
}

/// The writer thread: one record write and one `fdatasync` per request, in arrival order.
fn write_records(file: File, requests: mpsc::Receiver<Reply>) {
    let mut count = 0u64;
    for reply in requests {
        let mut record = [0u8; RECORD];
        record[..8].copy_from_slice(&(count + 1).to_le_bytes());
        let written = file
            .write_all_at(&record, 0)
            .and_then(|()| file.sync_data());
        let answer = written.map(|()| {
            count += 1;
            count - 1
        });
        let _ = reply.send(answer);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = yardsticks::start(3995)?;
    let data_dir = yardsticks::data_dir()?;
    let file = open_record(&data_dir.join("durable_floor.record"))?;
    let (writer, requests) = mpsc::channel();
    std::thread::Builder::new()
        .name("record-writer".into())
        .spawn(move || write_records(file, requests))?;
    let routes = Router::new()
        .route("/pingpong", get(pingpong))
        .with_state(writer);
    serve_for_bench(routes, port).await
}
