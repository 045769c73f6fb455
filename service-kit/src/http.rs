//! The HTTP surface both services share (SPEC §4, §6): `/healthz`, `/readyz`, `/metrics`, one
//! log line per request, a timeout on every request, and serving until SIGTERM with a bounded
//! drain.

use std::{future::Future, io, pin::Pin, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::StatusCode,
    middleware,
    response::IntoResponse,
    routing::get,
};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::Notify};
use tower_http::{
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use crate::{
    connections,
    metrics::{self, HttpMetrics},
    shutdown::{self, Draining},
};

/// Longest a request may take before it is answered `503`. A durable write is milliseconds; a
/// request still waiting after this is stuck on a volume that does not answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the drain may take after SIGTERM: SPEC §6 promises exit within 10 s.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// The service's own readiness check: `Err(reason)` makes `/readyz` answer 503 with it.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Adds the shared endpoints and layers to the service's own routes.
pub fn finish(
    app: Router,
    mut registry: Registry,
    draining: Draining,
    ready: ReadyCheck,
) -> Router {
    let http_metrics = HttpMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    app.route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || readyz(draining.clone(), ready.clone())),
        )
        .route(
            "/metrics",
            get(move || async move { metrics::render(&registry) }),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn_with_state(
            http_metrics,
            metrics::count_requests,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    tracing::info_span!("request", method = %request.method(), route)
                })
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
}

async fn readyz(draining: Draining, ready: ReadyCheck) -> impl IntoResponse {
    if draining.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down".to_owned(),
        );
    }
    match ready().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// Binds `PORT` on all interfaces.
pub async fn bind(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port)).await
}

/// Serves `app` until SIGTERM or SIGINT, then (SPEC §6): `/readyz` turns 503 at once, the
/// server keeps accepting and answering for `shutdown_delay` (so that a load balancer notices
/// the 503 and stops routing here before anything is refused), then the listener stops
/// accepting and in-flight requests finish; returns after at most [`DRAIN_TIMEOUT`] more.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    draining: Draining,
    shutdown_delay: Duration,
) -> io::Result<()> {
    // From SIGTERM on, every answer closes its connection: a load balancer's pooled
    // connections to this process end cleanly during the delay instead of being cut by the
    // drain while the balancer may still reuse them.
    let app = {
        let draining = draining.clone();
        app.layer(middleware::map_response(
            move |mut response: axum::response::Response| {
                use axum::http::{HeaderValue, header::CONNECTION};
                if draining.is_draining() {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                std::future::ready(response)
            },
        ))
    };
    let signalled = Arc::new(Notify::new());
    let stop = {
        let signalled = signalled.clone();
        let signal = shutdown::signal_received();
        async move {
            signal.await;
            draining.start();
            if !shutdown_delay.is_zero() {
                tracing::info!(delay = ?shutdown_delay, "readiness 503; still serving until the delay ends");
                tokio::time::sleep(shutdown_delay).await;
            }
            tracing::info!("no longer accepting; draining in-flight requests");
            signalled.notify_one();
        }
    };
    // On a worker thread, not the thread blocking on the runtime: the connection tasks it
    // spawns then start on the worker's own queue, at once, even under load.
    let server = tokio::spawn(connections::serve(listener, app, stop));
    let drain_deadline = async {
        signalled.notified().await;
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
