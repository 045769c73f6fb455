//! A bounded, non-blocking writer of lines: whoever produces a line never waits for the sink.
//! Lines go into a queue of at most a fixed number of lines; one dedicated thread drains it into
//! the sink (stderr for the logs, stdout for log-writer's entries).
//!
//! Promises:
//! - [`LineQueue::push`] never blocks and takes no lock: it copies the line into the queue, or,
//!   when the queue is full because the sink has stalled (a pipe nobody reads, a stopped
//!   terminal, a log collector that is down), drops it and counts it in
//!   [`LineQueue::dropped`]. A line the sink refuses (a closed pipe) is dropped and counted too.
//! - Lines reach the sink whole and in the order they were pushed (each line is one push).
//! - Once the sink has taken a write again and the queue is drained, the writer calls the
//!   `recovered` callback once with the number dropped since it last did, so one line can say
//!   how many are missing.
//! - [`LineQueue::flush`] waits, at most for a given time, until every line pushed before it is
//!   in the sink: what a process does just before it exits.
//!
//! Hand-written: tracing-appender's `NonBlocking` flushes only as its guard drops (up to 1.1 s, a
//! line on stdout when its queue is full), has no hook for the notice, counts no refused line.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering, fence},
        mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError},
    },
    thread::{self, Thread},
    time::{Duration, Instant},
};

use prometheus_client::metrics::counter::Counter;

/// The most bytes the writer hands to the sink in one write: it gathers what is queued, so a
/// burst costs a few syscalls rather than one per line.
const BATCH_BYTES: usize = 16 * 1024;

/// How long the writer sleeps when idle before looking again without being woken: a safety
/// net, since every push after it fell asleep wakes it.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// What travels through the queue.
enum Message {
    Line(Box<[u8]>),
    /// Answered once every earlier line has been written (or refused by the sink).
    Flush(SyncSender<()>),
}

/// The producer's side: cheap to clone, every clone feeds the same writer thread.
#[derive(Debug, Clone)]
pub struct LineQueue {
    queue: SyncSender<Message>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Lines dropped: queue full, or refused by the sink.
    dropped: Counter,
    /// The writer is about to park or parked: the next push unparks it.
    sleeping: AtomicBool,
    writer: Thread,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Line(line) => write!(f, "Line({} bytes)", line.len()),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl LineQueue {
    /// Starts the writer thread `name`, which owns `sink`. At most `capacity` lines wait;
    /// `dropped` counts the ones that did not fit or that the sink refused; `recovered` is
    /// called on the writer thread with the number dropped, once the sink takes writes again.
    pub fn spawn(
        name: &str,
        sink: impl Write + Send + 'static,
        capacity: usize,
        dropped: Counter,
        recovered: impl Fn(u64) + Send + 'static,
    ) -> std::io::Result<LineQueue> {
        let (queue, lines) = mpsc::sync_channel(capacity);
        let (started_tx, started) = mpsc::sync_channel(1);
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let Ok(shared) = started.recv() else { return };
                Writer {
                    lines,
                    sink,
                    shared,
                    reported: 0,
                    recovered,
                }
                .run();
            })?;
        let shared = Arc::new(Shared {
            dropped,
            sleeping: AtomicBool::new(false),
            writer: handle.thread().clone(),
        });
        started_tx
            .send(shared.clone())
            .map_err(|_| std::io::Error::other("the writer thread ended at once"))?;
        Ok(LineQueue { queue, shared })
    }

    /// Queues `line` (with its newline) for the sink, or drops and counts it if the queue is
    /// full. Never blocks.
    pub fn push(&self, line: &[u8]) {
        match self.queue.try_send(Message::Line(line.into())) {
            Ok(()) => self.wake(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.inc();
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.get()
    }

    /// Waits until every line pushed before this call is in the sink, for at most `within`;
    /// returns whether it got there.
    pub fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let (done, flushed) = mpsc::sync_channel(1);
        let mut flush = Message::Flush(done);
        loop {
            match self.queue.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    flush = back;
                    self.wake();
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        self.wake();
        flushed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Unparks the writer if it sleeps. The fence pairs with the writer's: either it sees the
    /// line just queued, or this sees it sleeping.
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.shared.sleeping.load(Ordering::Relaxed)
            && self.shared.sleeping.swap(false, Ordering::AcqRel)
        {
            self.shared.writer.unpark();
        }
    }
}

/// The writer thread's state.
struct Writer<W, R> {
    lines: Receiver<Message>,
    sink: W,
    shared: Arc<Shared>,
    /// Dropped lines already reported through `recovered`.
    reported: u64,
    recovered: R,
}

impl<W: Write, R: Fn(u64)> Writer<W, R> {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        let mut flushes = Vec::new();
        // What the last look before sleeping found, if anything.
        let mut woken_by = None;
        loop {
            // Gather what is queued, up to a batch or a flush request.
            let mut lines = 0;
            let mut next = woken_by.take().unwrap_or_else(|| self.lines.try_recv());
            loop {
                match next {
                    Ok(Message::Line(line)) => {
                        batch.extend_from_slice(&line);
                        lines += 1;
                        if batch.len() >= BATCH_BYTES {
                            break;
                        }
                    }
                    Ok(Message::Flush(done)) => {
                        flushes.push(done);
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    // Every producer is gone: write what is left and end.
                    Err(TryRecvError::Disconnected) => {
                        self.write(&batch, lines);
                        return;
                    }
                }
                next = self.lines.try_recv();
            }
            if batch.is_empty() && flushes.is_empty() {
                woken_by = self.idle();
                continue;
            }
            self.write(&batch, lines);
            batch.clear();
            for done in flushes.drain(..) {
                let _ = done.try_send(());
            }
        }
    }

    /// Writes `batch` (`lines` lines); a refused write drops them all.
    fn write(&mut self, batch: &[u8], lines: u64) {
        if batch.is_empty() {
            return;
        }
        if self
            .sink
            .write_all(batch)
            .and_then(|()| self.sink.flush())
            .is_err()
        {
            self.shared.dropped.inc_by(lines);
            // Nothing was taken: a notice now would only be refused in turn.
            self.reported = self.shared.dropped.get();
        }
    }

    /// Caught up: reports what was dropped since the last report, else sleeps until woken;
    /// returns what a last look before sleeping found.
    fn idle(&mut self) -> Option<Result<Message, TryRecvError>> {
        let dropped = self.shared.dropped.get();
        if dropped > self.reported {
            let missing = dropped - self.reported;
            self.reported = dropped;
            (self.recovered)(missing);
            return None;
        }
        self.shared.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // A line queued before the flag was set is found by this look; one queued after it
        // finds the flag and unparks (an unpark before the park makes the park return at once).
        let last_look = self.lines.try_recv();
        if !matches!(last_look, Err(TryRecvError::Empty)) {
            self.shared.sleeping.store(false, Ordering::Relaxed);
            return Some(last_look);
        }
        thread::park_timeout(IDLE_WAKE);
        self.shared.sleeping.store(false, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::{
        io,
        sync::{Condvar, Mutex},
    };

    /// A sink that blocks while stalled, and keeps what it was given.
    #[derive(Clone, Default)]
    struct Valve {
        state: Arc<(Mutex<ValveState>, Condvar)>,
    }

    #[derive(Default)]
    struct ValveState {
        stalled: bool,
        /// A write is waiting for the valve to open.
        waiting: bool,
        written: Vec<u8>,
    }

    impl Valve {
        fn set_stalled(&self, stalled: bool) {
            let (lock, changed) = &*self.state;
            lock.lock().unwrap().stalled = stalled;
            changed.notify_all();
        }

        fn until_a_write_waits(&self) {
            let (lock, changed) = &*self.state;
            drop(
                changed
                    .wait_while(lock.lock().unwrap(), |s| !s.waiting)
                    .unwrap(),
            );
        }

        fn written(&self) -> String {
            String::from_utf8(self.state.0.lock().unwrap().written.clone()).unwrap()
        }
    }

    impl Write for Valve {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, changed) = &*self.state;
            let mut state = lock.lock().unwrap();
            state.waiting = true;
            changed.notify_all();
            let mut state = changed.wait_while(state, |s| s.stalled).unwrap();
            state.waiting = false;
            state.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn queue(sink: impl Write + Send + 'static, capacity: usize) -> (LineQueue, Receiver<u64>) {
        let (reports_tx, reports) = mpsc::channel();
        let queue = LineQueue::spawn(
            "test-writer",
            sink,
            capacity,
            Counter::default(),
            move |n| {
                let _ = reports_tx.send(n);
            },
        )
        .unwrap();
        (queue, reports)
    }

    #[test]
    fn lines_arrive_whole_and_in_order() {
        let valve = Valve::default();
        let (queue, reports) = queue(valve.clone(), 8);
        for i in 0..100 {
            queue.push(format!("line {i}\n").as_bytes());
            if i % 7 == 0 {
                assert!(queue.flush(Duration::from_secs(5)));
            }
        }
        assert!(queue.flush(Duration::from_secs(5)));
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!((valve.written(), queue.dropped()), (expected, 0));
        assert!(
            reports.try_recv().is_err(),
            "nothing dropped, nothing reported"
        );
    }

    #[test]
    fn a_stalled_sink_drops_and_counts_and_reports_once_it_recovers() {
        const CAPACITY: usize = 4;
        let valve = Valve::default();
        valve.set_stalled(true);
        let (queue, reports) = queue(valve.clone(), CAPACITY);
        queue.push(b"first\n");
        valve.until_a_write_waits();
        // The writer is stuck with the first line: 4 more fit, the other 96 do not.
        for i in 0..100 {
            queue.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(queue.dropped(), 96);
        assert!(
            !queue.flush(Duration::from_millis(50)),
            "the sink is stalled"
        );
        assert_eq!(queue.dropped(), 96, "a flush that does not fit is no line");

        valve.set_stalled(false);
        assert_eq!(reports.recv_timeout(Duration::from_secs(5)), Ok(96));
        assert!(queue.flush(Duration::from_secs(5)));
        assert_eq!(valve.written(), "first\nline 0\nline 1\nline 2\nline 3\n");
        queue.push(b"after\n");
        assert!(queue.flush(Duration::from_secs(5)));
        assert_eq!(queue.dropped(), 96);
        assert!(reports.try_recv().is_err(), "reported once");
    }

    /// A sink that refuses every write, like a pipe whose reader has closed it.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_a_closed_sink_refuses_are_counted_and_never_reported_to_it() {
        let (queue, reports) = queue(Closed, 16);
        for _ in 0..3 {
            queue.push(b"lost\n");
            assert!(queue.flush(Duration::from_secs(5)));
        }
        assert_eq!(queue.dropped(), 3);
        assert!(reports.try_recv().is_err(), "a notice would be refused too");
    }
}
