//! Answers that hand something out (pingpong's number), from the moment the route makes one
//! until hyper has written it to the socket: each connection's slot ([`Slot`]), reached by the
//! route through a task-local set around hyper's poll of the connection, and the request's
//! count and log line ([`Answered`]) kept in it meanwhile.
//!
//! Promises:
//! - A route that calls [`until_written`] just before it returns its answer has its
//!   `on_undelivered(token)` run exactly once if the connection ends (a failed write, a reset,
//!   an eviction, a drop) before the answer is written, and never once it is written.
//! - That request is counted and logged ([`Answered`]) once its answer is written, and never if
//!   its connection ends first. Every other request is counted and logged as its answer is
//!   made, and pays one relaxed load for this.
//! - Nothing is allocated per request: the slot is the connection's.
//!
//! Below both [`crate::connections`] (which sets the task-local, clears the slot when hyper
//! flushes and drops what is left when the connection ends) and `every_request` (which makes
//! the count and log line): it names neither.

use std::{
    fmt,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{extract::MatchedPath, http::StatusCode};
use tracing::Span;

/// What runs when an answer that hands out a token could not be written (see
/// [`until_written`]); made once, shared by every request.
#[derive(Clone)]
pub struct OnUndelivered(Arc<dyn Fn(u64) + Send + Sync>);

impl OnUndelivered {
    pub fn new(report: impl Fn(u64) + Send + Sync + 'static) -> Self {
        OnUndelivered(Arc::new(report))
    }
}

impl fmt::Debug for OnUndelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnUndelivered")
    }
}

/// The connection being polled, as this module needs it: its slot, and which of its requests
/// is being answered.
pub(crate) trait Connection: Send + Sync {
    fn slot(&self) -> &Slot;
    /// The requests the connection has finished: tells which request a receipt belongs to.
    fn served(&self) -> u64;
}

tokio::task_local! {
    /// The connection being polled, in its task (set by [`crate::connections`]).
    static CONNECTION: Arc<dyn Connection>;
}

/// Polls `poll` with `connection` as the connection its routes reach ([`until_written`]).
pub(crate) fn within<R>(connection: Arc<dyn Connection>, poll: impl FnOnce() -> R) -> R {
    CONNECTION.sync_scope(connection, poll)
}

/// For a route whose answer hands out `token` (pingpong's number), called just before it
/// returns the answer: if the connection ends before hyper has written the answer to the
/// socket (the client reset after the answer was made, the write failed, the connection was
/// evicted or dropped first), `on_undelivered(token)` runs once, and the request is neither
/// counted nor logged as answered; written, it is counted and logged then, and the report is
/// dropped. The answer's body must be whole (a `String`): hyper flushes once everything it
/// buffered is written, which is when the slot is cleared. Outside a connection served by
/// [`crate::connections::serve`] (a test's `oneshot`), nothing happens.
pub fn until_written(token: u64, on_undelivered: &OnUndelivered) {
    let _ = CONNECTION.try_with(|conn| {
        let receipt = Receipt {
            token,
            request: conn.served(),
            on_undelivered: Some(on_undelivered.clone()),
            answered: None,
        };
        let slot = conn.slot();
        let previous = slot.lock().replace(receipt);
        slot.awaiting.store(true, Ordering::Relaxed);
        // hyper runs a request's route only once the previous answer's body is written (the
        // writes are vectored: a queued body holds back the next head), so there is none; were
        // there one, it is ahead of this answer on the same connection.
        if let Some(previous) = previous {
            previous.delivered();
        }
    });
}

/// Whether the request being served may have called [`until_written`]: one load, so that
/// every other request pays no more.
pub(crate) fn awaits_write() -> bool {
    CONNECTION
        .try_with(|conn| conn.slot().awaiting.load(Ordering::Relaxed))
        .unwrap_or(false)
}

/// Leaves the request's count and log line in its connection's slot until the answer is
/// written, if the route called [`until_written`] for this request; else gives them back, to
/// be done now.
pub(crate) fn when_written(answered: Answered) -> Option<Answered> {
    let mut answered = Some(answered);
    let _ = CONNECTION.try_with(|conn| {
        let request = conn.served();
        if let Some(receipt) = conn.slot().lock().as_mut()
            && receipt.answered.is_none()
            && receipt.request == request
        {
            receipt.answered = answered.take();
        }
    });
    answered
}

/// A request's count and log line, made when its answer is, done at once or, under
/// [`until_written`], once the answer is written.
pub(crate) struct Answered {
    /// Who counts and logs it (`every_request`'s metrics and log line).
    pub(crate) by: Arc<dyn Record>,
    /// The request's span, entered while its line is logged.
    pub(crate) span: Span,
    pub(crate) line: Line,
}

/// What an answer's count and log line say.
pub(crate) struct Line {
    pub(crate) route: Option<MatchedPath>,
    pub(crate) method: &'static str,
    pub(crate) status: StatusCode,
    pub(crate) latency: Duration,
    /// The reason of a 503 that is the process working as meant (`Expected503`).
    pub(crate) expected: Option<&'static str>,
}

/// Counts and logs an answer.
pub(crate) trait Record: Send + Sync {
    fn count_and_log(&self, line: Line);
}

impl Answered {
    /// The answer is written: counted and logged, as any other when it is made.
    pub(crate) fn count_and_log(self) {
        let _entered = self.span.enter();
        self.by.count_and_log(self.line);
    }
}

/// A connection's answer that hands something out and is not written yet.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    receipt: Mutex<Option<Receipt>>,
    /// `receipt` may hold one: what a flush looks at.
    awaiting: AtomicBool,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<Receipt>> {
        // Only its connection's task takes it: never contended, never poisoned by another.
        self.receipt.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything hyper buffered is on the socket: the answer in the slot, if any, is
    /// delivered, as far as the server can know.
    pub(crate) fn written(&self) {
        if self.awaiting.load(Ordering::Relaxed)
            && let Some(receipt) = self.take()
        {
            receipt.delivered();
        }
    }

    /// The connection has ended: an answer still in the slot was never written, and its
    /// report runs as it is dropped.
    pub(crate) fn ended(&self) {
        drop(self.take());
    }

    fn take(&self) -> Option<Receipt> {
        self.awaiting.store(false, Ordering::Relaxed);
        self.lock().take()
    }
}

/// An answer that hands out `token`, on its way to the socket.
struct Receipt {
    token: u64,
    /// The connection's request count when it was made: the request it belongs to.
    request: u64,
    /// Taken once the answer is written; else run as the receipt is dropped.
    on_undelivered: Option<OnUndelivered>,
    answered: Option<Answered>,
}

impl Receipt {
    fn delivered(mut self) {
        self.on_undelivered = None;
        if let Some(answered) = self.answered.take() {
            answered.count_and_log();
        }
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some(on_undelivered) = self.on_undelivered.take() {
            tracing::debug!(
                token = self.token,
                "an answer was not written before its connection ended"
            );
            (on_undelivered.0)(self.token);
        }
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}
