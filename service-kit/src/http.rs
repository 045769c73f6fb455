//! The HTTP surface both services share (SPEC §4, §6): `/healthz`, `/readyz`, `/metrics`, one
//! log line per request, a timeout on every request, and serving until SIGTERM with a bounded
//! drain.

use std::{
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    handler::Handler,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get},
};
use prometheus_client::registry::Registry;
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::Notify,
};

// The request's time limit and the 503 it ends in belong to the layer that enforces them;
// they are part of this module's interface, where the services look for them.
pub use crate::every_request::{REQUEST_TIMEOUT, TimeoutReason, unavailable};

use crate::{
    config::ListenAddress,
    connections,
    every_request::{EveryRequestLayer, Expected503},
    metrics::{self, HttpMetrics},
    shutdown::Draining,
    single_flight::SingleFlight,
};

/// The `LIMITS` section of both HTTP servers' `--help`, as a literal so that a help text can
/// `concat!` it; a test below keeps it in step with the constants.
#[macro_export]
macro_rules! http_limits_help {
    () => {
        "\
LIMITS (fixed; see the README, Configuration and Under attack):
    every request   answered within 5s, else 503 + reason
    request head    complete within 10 s of the connection or of the previous answer, else
                    the connection is closed; heads over 16 KiB: 431; bodies over 16 KiB: 413
    connections     at most 512 connections (fewer under a low open-file limit); past it
                    the longest-waiting idle one is closed, or the new one gets 503 when
                    all are busy
    SIGTERM         /readyz 503 at once; exit within SHUTDOWN_DELAY + 10s, even if the
                    volume hangs; SIGINT after that exits at once with status 1
"
    };
}

/// Longest the drain may take after SIGTERM: SPEC §6 promises exit within 10 s.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// The service's own readiness check: `Err(reason)` makes `/readyz` answer 503 with it.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Adds the shared endpoints, and puts every route and fallback behind one layer
/// (`every_request`): one log line per request, the [`REQUEST_TIMEOUT`], the count in
/// `http_requests_total`, and, once `draining` has started, `Connection: close` on every answer.
///
/// Methods, deliberately: the read-only routes answer `GET` and `HEAD` (monitors and link
/// checkers send HEAD); a route that changes state is built with [`get_only`]; everything else
/// is `405` with an `Allow` header, and an unknown path is `404`, each with a `text/plain` reason.
pub fn finish(app: Router, registry: Registry, draining: Draining, ready: ReadyCheck) -> Router {
    finish_explaining_timeouts(app, registry, draining, ready, Arc::new(|_| None))
}

/// [`finish`], with the service's own reason for a request that timed out ([`TimeoutReason`]).
pub fn finish_explaining_timeouts(
    app: Router,
    mut registry: Registry,
    draining: Draining,
    ready: ReadyCheck,
    timeout_reason: TimeoutReason,
) -> Router {
    let http_metrics = HttpMetrics::register(&mut registry);
    metrics::register_process_metrics(&mut registry);
    let registry = Arc::new(registry);
    // One check of the volume in flight at a time, however often the kubelet probes.
    let ready = SingleFlight::new(move || ready());
    let readyz = {
        let draining = draining.clone();
        move || readyz(draining.clone(), ready.clone())
    };
    app.route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(move |request: HeaderMap| async move { metrics::render(&registry, &request) }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        })
        .layer(EveryRequestLayer::new(
            http_metrics,
            draining,
            timeout_reason,
        ))
}

/// A route that changes state (`/pingpong`): only `GET` runs `handler`. axum's `get` also runs
/// its handler for `HEAD` and drops the body, which for an increment would consume a number
/// that nobody sees; here HEAD, like every other method, is `405` with `Allow: GET`.
pub fn get_only<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    get(handler).head(only_get).fallback(only_get)
}

async fn only_get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET")],
        "method not allowed: only GET changes the count\n",
    )
        .into_response()
}

async fn readyz(draining: Draining, ready: SingleFlight<Result<(), String>>) -> Response {
    let draining_answer = || {
        let mut answer = (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down".to_owned(),
        )
            .into_response();
        answer.extensions_mut().insert(Expected503("draining"));
        answer
    };
    if draining.is_draining() {
        return draining_answer();
    }
    match ready.get().await {
        Some(Ok(())) => (StatusCode::OK, "ready".to_owned()).into_response(),
        Some(Err(reason)) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
        // The check's runtime is going away: the process is shutting down.
        None => draining_answer(),
    }
}

/// Binds `port` at `address` (`LISTEN_ADDRESS`, SPEC §2). [`ListenAddress::Any`] is `[::]` with
/// `IPV6_V6ONLY` off, which takes IPv4 connections too (as `::ffff:a.b.c.d`), whatever the
/// host's `net.ipv6.bindv6only`; on a host without IPv6 (the family unsupported, or no IPv6
/// address to bind) it is `0.0.0.0`.
pub fn bind(address: ListenAddress, port: u16) -> io::Result<TcpListener> {
    let ip = match address {
        ListenAddress::Ip(ip) => return bind_exactly(ip, port),
        ListenAddress::Any => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    match bind_exactly(ip, port) {
        Err(error) if no_ipv6(&error) => {
            tracing::info!(%error, "no IPv6 on this host; listening on IPv4 only");
            bind_exactly(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
        }
        bound => bound,
    }
}

fn bind_exactly(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        rustix::net::sockopt::set_ipv6_v6only(&socket, false)?;
    }
    // As `TcpListener::bind`: a restarted server rebinds at once despite connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(ip, port))?;
    // The backlog `TcpListener::bind` uses.
    socket.listen(1024)
}

/// The errors binding `[::]` gives where the host has no IPv6: the kernel built without it, or
/// IPv6 disabled (`ipv6.disable=1`, `net.ipv6.conf.all.disable_ipv6`).
fn no_ipv6(error: &io::Error) -> bool {
    [
        rustix::io::Errno::AFNOSUPPORT,
        rustix::io::Errno::ADDRNOTAVAIL,
    ]
    .iter()
    .any(|errno| error.raw_os_error() == Some(errno.raw_os_error()))
}

/// Serves `app` until draining starts (the first SIGTERM or SIGINT, see
/// [`crate::shutdown::install`]), then (SPEC §6): `/readyz` is already 503, the server keeps
/// accepting and answering for `shutdown_delay` (so that a load balancer notices the 503 and
/// stops routing here before anything is refused), then the listener stops accepting and
/// in-flight requests finish; returns after at most [`DRAIN_TIMEOUT`] more. From the SIGTERM on
/// every answer of an `app` made by [`finish`] with the same `draining` closes its connection, so
/// that a load balancer's pooled connections end cleanly during the delay instead of being cut
/// by the drain while the balancer may still reuse them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    draining: Draining,
    shutdown_delay: Duration,
) -> io::Result<()> {
    // Turns every route's boxed handler into a ready service once, here: a router without a
    // state does it for each request otherwise (a clone of the handler and its layers).
    let app: Router = app.with_state(());
    let stopped_accepting = Arc::new(Notify::new());
    let stop = {
        let stopped_accepting = stopped_accepting.clone();
        let started = draining.started();
        async move {
            started.await;
            if !shutdown_delay.is_zero() {
                tracing::info!(delay = ?shutdown_delay, "readiness 503; still serving until the delay ends");
                tokio::time::sleep(shutdown_delay).await;
            }
            tracing::info!("no longer accepting; draining in-flight requests");
            stopped_accepting.notify_one();
        }
    };
    // On a worker thread, not the thread blocking on the runtime: the connection tasks it
    // spawns then start on the worker's own queue, at once, even under load.
    let server = tokio::spawn(connections::serve(listener, app, stop));
    let drain_deadline = async {
        stopped_accepting.notified().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        joined = server => joined.map_err(io::Error::other),
        () = drain_deadline => {
            tracing::warn!(after = ?DRAIN_TIMEOUT, "drain timed out; closing the remaining connections");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::connections::{
        HEADER_READ_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_HEAD_BYTES,
    };

    #[test]
    fn the_limits_help_states_the_constants() {
        let help = http_limits_help!();
        for needle in [
            format!("within {}s, else 503", super::REQUEST_TIMEOUT.as_secs()),
            format!("within {} s", HEADER_READ_TIMEOUT.as_secs()),
            format!("heads over {} KiB: 431", MAX_HEAD_BYTES / 1024),
            format!("bodies over {} KiB: 413", MAX_BODY_BYTES / 1024),
            format!("at most {MAX_CONNECTIONS} connections"),
        ] {
            assert!(help.contains(&needle), "the limits help lacks {needle:?}");
        }
    }
}
