//! The accept loop and the life of every connection (SPEC §6): what keeps one client,
//! or a thousand idle or slow ones, from taking the service away from everyone else.
//!
//! Promises:
//! - **Header timeout** ([`HEADER_READ_TIMEOUT`]): a connection that has not sent a complete
//!   request head within it is closed, counted from the connection's start or from the end of
//!   the previous response. So it is also the keep-alive idle timeout. One timer per
//!   connection, moved only when it expires ([`header_timeout`]): a request costs no timer.
//! - **A bound on connections** ([`connection_bound`], from [`MAX_CONNECTIONS`] and the open-file
//!   limit, leaving [`FD_RESERVE`] descriptors for the volume and the runtime). At the bound a
//!   new connection evicts the one that has waited longest without a request in flight,
//!   preferring connections that never completed a request (idle or slowloris ones), once it
//!   has waited at least [`EVICTION_PROTECT`]: a fresh client is served at once even while the
//!   bound is held by idle connections. Eviction is hyper's graceful shutdown, so a request in flight always
//!   finishes. Only when every connection is busy is a new one refused with a `503` and
//!   closed. At most [`EVICTION_SLACK`] evicted connections may still be closing, so the
//!   process never holds more than `bound + EVICTION_SLACK` connections.
//! - **Accept errors**: per-connection ones (reset, aborted) are skipped; resource ones
//!   (`EMFILE`, `ENFILE`, `ENOBUFS`) are logged once per episode, free a descriptor by evicting,
//!   and are retried after [`ACCEPT_ERROR_PAUSE`]: never a busy loop, never an exit.
//! - **Request hygiene**: a head over [`MAX_HEAD_BYTES`] (or more than [`MAX_HEADERS`] fields)
//!   is answered `431` by hyper; a `Content-Length` over [`MAX_BODY_BYTES`] is answered `413`
//!   without reading the body; no route reads a body, and hyper gives up on an unread one after
//!   the response (closing the connection) instead of waiting for it.
//! - **Half-closed requests**: a client that sends its request and then shuts down its
//!   sending side (`shutdown(SHUT_WR)`, as `nc -N` and some proxies do) is answered like any
//!   other. The price: a client that closes normally (`FIN`) while its request is in flight is
//!   noticed when the answer is written, not before, so its connection stays busy until the
//!   request ends, which the request timeout bounds.
//! - **Resets**: a client that resets its connection (`RST`: it crashed, gave up with
//!   `SO_LINGER` 0, or a proxy cut it) while its request waits is noticed at once
//!   ([`client_reset`]): the request's future is dropped unanswered, as a timed-out one is (an
//!   increment still queued hands out no number), and it is not counted as answered. Watched
//!   only while a request waits, so an answer ready at once costs nothing more.
//! - **Answers that hand something out** ([`crate::delivery`]): each connection has a slot,
//!   reachable by its routes while hyper polls it; a flush (hyper flushes once every byte it
//!   buffered is on the socket) marks the answer in it written, and the connection's end
//!   reports one left there undelivered (a failed write, a reset, an eviction, a drop).
//! - **Metrics** ([`crate::metrics::connection_metrics`]): connections open, evicted at the
//!   bound or for a descriptor, and refused.
//! - **Shutdown**: when `stop` resolves the listener is closed (new connections are refused),
//!   every connection is asked to finish its request in flight and close; [`serve`] returns
//!   once all are gone.
//!
//! Hand-written because hyper and hyper-util bound no connections and evict none, which a
//! flood of idle clients needs (BENCHMARKS.md, "Under attack").

use std::{
    collections::HashMap,
    convert::Infallible,
    future::{Future, poll_fn},
    io::{self, IoSlice},
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, Response, StatusCode, header},
};
use hyper::{
    body::{Body as _, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
};
use tower::ServiceExt;

use crate::{
    delivery::{self, Slot},
    metrics::{self, ConnectionMetrics},
};

/// Longest a client may take to send a complete request head, counted from the connection's
/// start or the end of the previous response (so also the keep-alive idle timeout). Long
/// enough for any real client on a slow link; short enough that idle or slowloris
/// connections free their slot quickly.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections served at once, before the open-file limit lowers it.
pub const MAX_CONNECTIONS: usize = 512;

/// Descriptors kept free for everything but connections: stdio, the runtime, the listener,
/// the counter file, its lock, temporary files and directory handles for fsync.
pub const FD_RESERVE: usize = 256;

/// How many evicted connections may still be closing (finishing a request in flight) while
/// their replacements are served; the hard ceiling is the bound plus this.
pub const EVICTION_SLACK: usize = 64;

/// The bound never drops below this, however low the open-file limit (a limit that low ends
/// in `EMFILE`, which is handled).
pub const MIN_CONNECTIONS: usize = 16;

/// The largest request head (request line and headers) accepted; larger is `431`.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most header fields accepted; more is `431`.
pub const MAX_HEADERS: usize = 64;

/// The largest declared request body accepted; larger is `413`. No route takes a body.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;

/// Pause before retrying `accept` after a resource error such as `EMFILE`.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How long a connection is safe from eviction after its accept or its last answer: a real
/// client's head arrives well within it; at the bound a newcomer waits in the backlog until the
/// longest-waiting connection is this old.
pub const EVICTION_PROTECT: Duration = Duration::from_millis(50);

/// After an eviction, how long a connection without a request in flight may take to close by
/// itself (flushing a response) before it is dropped; a half-sent head never completes.
const EVICTION_GRACE: Duration = Duration::from_millis(100);

/// Connections served at once when the soft open-file limit is `nofile`: [`MAX_CONNECTIONS`],
/// lowered so that the bound, the eviction slack and [`FD_RESERVE`] fit in the limit.
pub fn connection_bound(nofile: Option<u64>) -> usize {
    let fit = nofile
        .and_then(|n| usize::try_from(n).ok())
        .map_or(usize::MAX, |n| {
            n.saturating_sub(FD_RESERVE + EVICTION_SLACK)
        });
    MAX_CONNECTIONS.min(fit).max(MIN_CONNECTIONS)
}

/// The bound for this process, from its soft `RLIMIT_NOFILE`.
pub fn process_connection_bound() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    connection_bound(limit.current)
}

/// Serves `app` on `listener` until `stop` resolves, then closes the listener, lets every
/// connection finish its request in flight, and returns once all are closed.
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()>) {
    let bound = process_connection_bound();
    let table = Arc::new(Table::new(
        bound,
        EVICTION_PROTECT,
        metrics::connection_metrics().clone(),
    ));
    let mut http = http1::Builder::new();
    // Without half_close hyper takes a client's end of input after its request (`nc -N`) for a
    // cancelled request and drops it unanswered: a `/pingpong` abandons its number.
    http.half_close(true)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let http = Arc::new(http);
    tracing::info!(
        max_connections = bound,
        header_read_timeout = ?HEADER_READ_TIMEOUT,
        "accepting connections"
    );

    tokio::pin!(stop);
    // Accept errors and refusals are logged once per episode, not once per connection.
    let mut failing = Episode::default();
    let mut refusing = Episode::default();
    loop {
        // While EVICTION_SLACK evicted connections are still closing, new ones wait in the
        // kernel's backlog rather than being refused.
        if !table.has_eviction_room() {
            tokio::select! {
                () = &mut stop => break,
                () = table.eviction_room() => continue,
            }
        }
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                if let Some(failures) = failing.succeeded() {
                    tracing::info!(failures, "accepting again");
                }
                if admit(stream, &table, &app, &http).await {
                    if refusing.failed() {
                        tracing::warn!(
                            connections = table.len(),
                            "every connection busy; refusing new ones with 503"
                        );
                    }
                } else if let Some(refused) = refusing.succeeded() {
                    tracing::info!(refused, "admitting connections again");
                }
            }
            // The client gave up before we accepted: nothing to do for anyone else.
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "accept: connection gone");
            }
            Err(e) => {
                if failing.failed() {
                    tracing::warn!(
                        error = %e,
                        connections = table.len(),
                        "accept failing; evicting the longest-waiting connection and retrying"
                    );
                }
                table.evict_longest_waiting();
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
    drop(listener);
    table.evict_all();
    table.until_empty().await;
}

/// A run of failures, logged once: it starts at the first failure and ends at the first
/// success after [`EPISODE_QUIET`] without one.
#[derive(Debug, Default)]
struct Episode {
    /// The failures so far and the time of the last one, while an episode lasts.
    current: Option<(u64, Instant)>,
}

/// How long without a failure ends an episode, so that alternating failures and successes
/// (each freed descriptor admitting one connection) stay one episode.
const EPISODE_QUIET: Duration = Duration::from_secs(1);

impl Episode {
    /// Records a failure; true if it starts an episode (log it).
    fn failed(&mut self) -> bool {
        let starts = self.current.is_none();
        let count = self.current.map_or(0, |(n, _)| n);
        self.current = Some((count + 1, Instant::now()));
        starts
    }

    /// Records a success; the episode's failure count if this ends one (log it).
    fn succeeded(&mut self) -> Option<u64> {
        let (count, last) = self.current?;
        (last.elapsed() >= EPISODE_QUIET).then(|| {
            self.current = None;
            count
        })
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// What [`Table::register`] decided for a new connection.
#[derive(Debug)]
enum Admission {
    Admitted(Arc<Conn>),
    /// At the bound, and every evictable connection is still protected for this long.
    Wait(Duration),
    /// At the bound, and every connection has a request in flight.
    Refused,
}

/// Registers `stream` and spawns its connection, evicting one to make room at the bound, or
/// refuses it with a `503` when every connection has a request in flight; returns whether it
/// was refused.
async fn admit(
    stream: TcpStream,
    table: &Arc<Table>,
    app: &Router,
    http: &Arc<http1::Builder>,
) -> bool {
    let conn = loop {
        match table.register() {
            Admission::Admitted(conn) => break conn,
            Admission::Wait(protected) => tokio::time::sleep(protected).await,
            Admission::Refused => {
                table.metrics.refused.inc();
                refuse(stream);
                return true;
            }
        }
    };
    let (app, http, table) = (app.clone(), http.clone(), table.clone());
    tokio::spawn(async move {
        serve_connection(stream, app, &http, &conn).await;
        // An answer still in the slot was never written: its report runs as it is dropped.
        conn.slot.ended();
        table.remove(conn.id);
    });
    false
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 34\r\nconnection: close\r\n\r\ntoo many connections; retry later\n";

/// Answers `503` if the socket takes it without waiting, then closes: nothing here can wait
/// on the client.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(REFUSAL);
    if let Ok(stream) = stream.into_std() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

async fn serve_connection(stream: TcpStream, app: Router, http: &http1::Builder, conn: &Arc<Conn>) {
    let service = {
        let conn = conn.clone();
        service_fn(move |request: Request<Incoming>| {
            let in_flight = InFlight::begin(&conn);
            let app = app.clone();
            async move {
                let _in_flight = in_flight;
                Ok::<_, Infallible>(handle(app, request).await)
            }
        })
    };
    let socket = Arc::new(stream);
    let io = Socket {
        socket: socket.clone(),
        conn: conn.clone(),
    };
    let connection = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let reset = client_reset(&socket, conn);
    tokio::pin!(reset);
    tokio::select! {
        served = serve_unless_reset(conn, connection.as_mut(), reset.as_mut()) => {
            match served {
                Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
                Some(Ok(())) => {}
                None => tracing::debug!("the client reset its connection; its request is dropped"),
            }
            return;
        }
        () = conn.evicted.notified() => {}
        () = header_timeout(conn) => {
            tracing::debug!("no complete request head within the header timeout; closing");
        }
    }
    // hyper closes an idle connection at once and finishes a request in flight first.
    connection.as_mut().graceful_shutdown();
    let grace = tokio::time::sleep(EVICTION_GRACE);
    tokio::pin!(grace);
    tokio::select! {
        _ = serve_unless_reset(conn, connection.as_mut(), reset.as_mut()) => return,
        () = &mut grace => {}
    }
    if conn.busy.load(Ordering::SeqCst) {
        // Bounded by the request timeout: the answer goes out, then hyper closes.
        let _ = serve_unless_reset(conn, connection.as_mut(), reset.as_mut()).await;
    }
    // Otherwise a half-sent head: dropping the connection closes it.
}

/// Serves `connection` to its end, or `None` as soon as `reset` resolves: then the caller drops
/// the connection, and with it the request in flight.
///
/// The watch is polled before hyper, so that a reset seen in the same wake-up as the request's
/// answer gives the answer up (its number is then reported abandoned, not written into a dead
/// socket), and again after, so that it is watching from the moment a request starts to wait.
///
/// hyper polls the request's future inside the connection's poll, [`delivery::within`] it, so
/// that a route reaches its connection's slot ([`delivery::until_written`]).
fn serve_unless_reset<'a, C: Future>(
    conn: &'a Arc<Conn>,
    mut connection: Pin<&'a mut C>,
    mut reset: Pin<&'a mut impl Future<Output = ()>>,
) -> impl Future<Output = Option<C::Output>> + 'a {
    poll_fn(move |cx| {
        if reset.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        let polled = delivery::within(conn.clone(), || connection.as_mut().poll(cx));
        if let Poll::Ready(served) = polled {
            return Poll::Ready(Some(served));
        }
        if reset.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
}

/// Resolves when the client resets the connection while a request is in flight: the socket
/// reports an error (`ECONNRESET`, `EPOLLERR`). A plain end of input (`FIN`) is no error, so a
/// half-closed client still gets its answer, and nothing is read: hyper owns the bytes.
///
/// Not busy, it only checks the flag (no waker: [`serve_unless_reset`] polls it right after
/// hyper, which is what starts a request). So a request answered within one poll, as every
/// request that does not wait is, never registers for the socket's errors.
async fn client_reset(socket: &TcpStream, conn: &Conn) {
    let busy = |busy: bool| {
        poll_fn(move |_: &mut Context<'_>| {
            if conn.busy.load(Ordering::SeqCst) == busy {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    };
    loop {
        busy(true).await;
        tokio::select! {
            biased;
            ready = socket.ready(Interest::ERROR) => match ready {
                Ok(ready) if ready.is_error() => return,
                // Never without the error, which would stay: rather than spin, stop watching.
                // An error from the runtime means it is shutting down.
                _ => std::future::pending().await,
            },
            () = busy(false) => {}
        }
    }
}

/// The connection's socket as hyper reads and writes it, shared with [`client_reset`], which
/// watches it while hyper owns the connection. The same calls tokio's `TcpStream` makes for
/// its own `AsyncRead` and `AsyncWrite`, through a shared reference; and a flush clears the
/// connection's slot ([`delivery::until_written`]).
struct Socket {
    socket: Arc<TcpStream>,
    conn: Arc<Conn>,
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.socket.poll_read_ready(cx))?;
            // A `WouldBlock` clears the readiness, so the next poll waits for the socket.
            match self.socket.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result.map(drop)),
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// hyper flushes only once every byte it buffered is on the socket, so the answer in the
    /// slot, if any, is written: delivered, as far as the server can know.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.slot.written();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = rustix::net::shutdown(&*self.socket, rustix::net::Shutdown::Write);
        Poll::Ready(shut.map_err(io::Error::from))
    }
}

/// Resolves once `conn` has waited [`HEADER_READ_TIMEOUT`] for a complete request head, counted
/// from its accept or its last answer, with no request in flight; the connection is then closed
/// as an evicted one is (an idle one at once, a half-sent head after [`EVICTION_GRACE`]).
///
/// Why not hyper's `header_read_timeout`: it arms a timer for every request head and drops it
/// when the head is complete (an allocation, and a timer wheel insertion and removal, on every
/// request: BENCHMARKS.md, "What the stack costs per request"). Here the deadline follows [`Conn::waiting_since`], which
/// the end of every answer already records, and the one timer is moved only when it expires.
async fn header_timeout(conn: &Conn) {
    let timeout = u64::try_from(HEADER_READ_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    loop {
        let wait = if conn.busy.load(Ordering::SeqCst) {
            // The request in flight ends within the request timeout; its answer moves the
            // deadline, which is looked at again by then.
            timeout
        } else {
            let due = conn
                .waiting_since
                .load(Ordering::SeqCst)
                .saturating_add(timeout);
            match due.checked_sub(millis_since_start()) {
                None | Some(0) => return,
                Some(left) => left,
            }
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// The request's answer, or `413` at once when the declared body is over the limit.
async fn handle(app: Router, request: Request<Incoming>) -> Response<Body> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        // Neither the raw method nor the path: a client chooses them, up to the head limit.
        tracing::info!(
            method = metrics::method_label(request.method()),
            content_length = declared,
            "request body too large; answering 413"
        );
        let mut response = Response::new(Body::from(format!(
            "request body over {MAX_BODY_BYTES} bytes\n"
        )));
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    // A request without a body (every GET) gets an empty one, which costs no allocation, rather
    // than hyper's boxed.
    let request = request.map(|body| {
        if body.is_end_stream() {
            Body::empty()
        } else {
            Body::new(body)
        }
    });
    match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// One live connection as the table sees it.
#[derive(Debug)]
struct Conn {
    id: u64,
    /// A request is in the service: eviction lets it finish.
    busy: AtomicBool,
    /// When the connection last started waiting for a request head (accepted, or its last
    /// answer finished), in milliseconds since the table's epoch: the longest-waiting is evicted.
    waiting_since: AtomicU64,
    /// Requests answered on this connection.
    served: AtomicU64,
    /// Eviction requested; the connection no longer counts against the bound.
    evicting: AtomicBool,
    evicted: Notify,
    /// The answer that hands something out and is not written yet ([`delivery::until_written`]).
    slot: Slot,
}

impl delivery::Connection for Conn {
    fn slot(&self) -> &Slot {
        &self.slot
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// Marks a connection busy for as long as a request is in the service.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn begin(conn: &Arc<Conn>) -> InFlight {
        conn.busy.store(true, Ordering::SeqCst);
        InFlight(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Self(conn) = self;
        conn.busy.store(false, Ordering::SeqCst);
        conn.served.fetch_add(1, Ordering::SeqCst);
        conn.waiting_since
            .store(millis_since_start(), Ordering::SeqCst);
    }
}

/// Milliseconds on tokio's clock (which tests can pause) since the first call.
fn millis_since_start() -> u64 {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(tokio::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Every live connection, for the bound, eviction and the drain.
#[derive(Debug)]
struct Table {
    bound: usize,
    /// How long a connection may wait for its first (or next) head before it can be evicted:
    /// time for a real client's request to arrive, however fast an attacker reconnects.
    protect: Duration,
    metrics: ConnectionMetrics,
    inner: Mutex<Inner>,
    emptied: Notify,
    evicted_gone: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    live: HashMap<u64, Arc<Conn>>,
    /// Live connections asked to close and not yet gone.
    evicting: usize,
}

impl Table {
    fn new(bound: usize, protect: Duration, metrics: ConnectionMetrics) -> Table {
        Table {
            bound,
            protect,
            metrics,
            inner: Mutex::new(Inner::default()),
            emptied: Notify::new(),
            evicted_gone: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain counters behind: still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// A slot for a new connection: free below the bound; at the bound, one made by evicting
    /// the longest-waiting connection once it has waited [`Table::protect`]; refused if every
    /// connection is busy or too many are still closing.
    fn register(&self) -> Admission {
        let mut inner = self.lock();
        let counted = inner.live.len() - inner.evicting;
        if counted >= self.bound {
            if inner.evicting >= EVICTION_SLACK {
                return Admission::Refused;
            }
            match Self::longest_waiting(&inner) {
                None => return Admission::Refused,
                Some((_, waited)) if waited < self.protect => {
                    return Admission::Wait(self.protect - waited);
                }
                Some((victim, _)) => {
                    Self::evict(&mut inner, &victim);
                    self.metrics.evicted.inc();
                }
            }
        }
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id: inner.next_id,
            busy: AtomicBool::new(false),
            waiting_since: AtomicU64::new(millis_since_start()),
            served: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            evicted: Notify::new(),
            slot: Slot::default(),
        });
        inner.live.insert(conn.id, conn.clone());
        self.metrics.open.inc();
        Admission::Admitted(conn)
    }

    /// The eviction candidate, and how long it has waited: of the connections without a
    /// request in flight, one that has never completed a request if any (an idle or slowloris
    /// attacker never does), else any; of those, the one that has waited longest. So a client
    /// that was answered and is briefly slow to send its next request is never evicted in
    /// favour of an attacker's connection.
    fn longest_waiting(inner: &Inner) -> Option<(Arc<Conn>, Duration)> {
        let victim = inner
            .live
            .values()
            .filter(|c| !c.evicting.load(Ordering::SeqCst) && !c.busy.load(Ordering::SeqCst))
            .min_by_key(|c| {
                (
                    c.served.load(Ordering::SeqCst) > 0,
                    c.waiting_since.load(Ordering::SeqCst),
                )
            })?
            .clone();
        let since = victim.waiting_since.load(Ordering::SeqCst);
        let waited = Duration::from_millis(millis_since_start().saturating_sub(since));
        Some((victim, waited))
    }

    fn evict(inner: &mut Inner, conn: &Conn) {
        if !conn.evicting.swap(true, Ordering::SeqCst) {
            tracing::debug!(
                served = conn.served.load(Ordering::SeqCst),
                busy = conn.busy.load(Ordering::SeqCst),
                waited_ms =
                    millis_since_start().saturating_sub(conn.waiting_since.load(Ordering::SeqCst)),
                "evicting a connection"
            );
            inner.evicting += 1;
            // notify_one keeps the wake-up if the task is not waiting yet.
            conn.evicted.notify_one();
        }
    }

    fn evict_longest_waiting(&self) {
        let mut inner = self.lock();
        if let Some((victim, _)) = Self::longest_waiting(&inner) {
            Self::evict(&mut inner, &victim);
            self.metrics.evicted.inc();
        }
    }

    fn evict_all(&self) {
        let mut inner = self.lock();
        let all: Vec<_> = inner.live.values().cloned().collect();
        for conn in all {
            Self::evict(&mut inner, &conn);
        }
    }

    fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(conn) = inner.live.remove(&id) {
            self.metrics.open.dec();
            if conn.evicting.load(Ordering::SeqCst) {
                inner.evicting -= 1;
                self.evicted_gone.notify_waiters();
            }
        }
        if inner.live.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Whether fewer than [`EVICTION_SLACK`] evicted connections are still closing.
    fn has_eviction_room(&self) -> bool {
        self.lock().evicting < EVICTION_SLACK
    }

    /// Resolves once fewer than [`EVICTION_SLACK`] evicted connections are still closing.
    async fn eviction_room(&self) {
        loop {
            let gone = self.evicted_gone.notified();
            tokio::pin!(gone);
            // Registered before checking, so a removal in between is not missed.
            gone.as_mut().enable();
            if self.has_eviction_room() {
                return;
            }
            gone.await;
        }
    }

    async fn until_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before checking, so a removal in between is not missed.
            emptied.as_mut().enable();
            if self.lock().live.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_well_formed_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn connections_that_were_answered_are_evicted_last() {
        let table = Table::new(2, Duration::ZERO, ConnectionMetrics::default());
        let Admission::Admitted(answered) = table.register() else {
            panic!("below the bound")
        };
        drop(InFlight::begin(&answered));
        let Admission::Admitted(silent) = table.register() else {
            panic!("below the bound")
        };
        // The answered one has waited longer (its answer came first), yet the silent one goes.
        answered.waiting_since.store(0, Ordering::SeqCst);
        assert!(matches!(table.register(), Admission::Admitted(_)));
        assert!(silent.evicting.load(Ordering::SeqCst));
        assert!(!answered.evicting.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_timeout_counts_from_the_last_answer_and_not_during_a_request() {
        let table = Table::new(2, Duration::ZERO, ConnectionMetrics::default());
        let Admission::Admitted(conn) = table.register() else {
            panic!("below the bound")
        };
        let start = tokio::time::Instant::now();
        let timed_out = {
            let conn = conn.clone();
            tokio::spawn(async move {
                header_timeout(&conn).await;
                start.elapsed()
            })
        };
        let at = |secs| tokio::time::sleep_until(start + Duration::from_secs(secs));

        at(4).await;
        drop(InFlight::begin(&conn)); // answered at 4 s: due at 14 s
        at(13).await;
        let request = InFlight::begin(&conn); // in flight from 13 s to 33 s
        at(33).await;
        assert!(
            !timed_out.is_finished(),
            "timed out with a request in flight"
        );
        drop(request); // answered at 33 s: due at 43 s
        assert_eq!(timed_out.await.unwrap(), Duration::from_secs(43));

        let Admission::Admitted(idle) = table.register() else {
            panic!("below the bound")
        };
        let accepted = tokio::time::Instant::now();
        header_timeout(&idle).await;
        assert_eq!(
            accepted.elapsed(),
            HEADER_READ_TIMEOUT,
            "counted from the accept"
        );
    }

    #[test]
    fn the_bound_fits_the_open_file_limit() {
        assert_eq!(connection_bound(None), MAX_CONNECTIONS);
        assert_eq!(connection_bound(Some(1_048_576)), MAX_CONNECTIONS);
        // podman's default nofile=1024: 512 + 64 + 256 = 832 fit.
        assert_eq!(connection_bound(Some(1024)), 512);
        assert_eq!(connection_bound(Some(640)), 640 - 256 - 64);
        assert_eq!(connection_bound(Some(64)), MIN_CONNECTIONS);
    }

    #[test]
    fn at_the_bound_the_longest_waiting_idle_connection_is_evicted() {
        let admitted = |table: &Table| match table.register() {
            Admission::Admitted(conn) => conn,
            other => panic!("not admitted: {other:?}"),
        };
        let protected = Table::new(1, Duration::from_secs(60), ConnectionMetrics::default());
        admitted(&protected);
        assert!(matches!(protected.register(), Admission::Wait(d) if d > Duration::from_secs(50)));

        let table = Table::new(2, Duration::ZERO, ConnectionMetrics::default());
        let first = admitted(&table);
        let second = admitted(&table);
        second.busy.store(true, Ordering::SeqCst);
        let third = admitted(&table);
        assert!(first.evicting.load(Ordering::SeqCst));
        assert!(!second.evicting.load(Ordering::SeqCst));
        assert_eq!(table.len(), 3);
        third.busy.store(true, Ordering::SeqCst);
        assert!(
            matches!(table.register(), Admission::Refused),
            "every counted connection busy"
        );
        table.remove(first.id);
        assert_eq!((table.len(), table.lock().evicting), (2, 0));
        second.busy.store(false, Ordering::SeqCst);
        admitted(&table);
        assert!(second.evicting.load(Ordering::SeqCst));
    }
}
