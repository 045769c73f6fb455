//! What every request goes through on its way to a route, as one layer with a hand-written
//! future (SPEC §4, §6): its log line, its time limit, its count, and `Connection: close` once
//! the process is draining.
//!
//! Promises, for every answer, the fallbacks' 404 and 405 included:
//! - **One log line at INFO** (`finished processing request` with `status` and `latency_us`, as
//!   numbers, so that in JSON they are numbers) in a `request{method, route}` span, and a second
//!   one at ERROR (`response failed`, with `classification` and `latency_us`) for a 5xx;
//!   `started processing request` at DEBUG, all with the target `service_kit::http`, which a
//!   `RUST_LOG` such as `service_kit::http=debug` selects. When they are filtered out, nothing
//!   is formatted and no span is made.
//! - **A time limit**: a request not answered within [`REQUEST_TIMEOUT`] is answered `503` with
//!   the reason (the service's own, where it knows what the route waits for:
//!   [`TimeoutReason`]), and the route's future is dropped (an increment still queued hands out
//!   no number). The timer is armed only once the route has to wait, so an answer ready at once
//!   costs no timer.
//! - **An exact count** in `http_requests_total{route, method, status}`, and the latency in
//!   `http_request_duration_seconds{route, method, status}` (the clock read once per answer).
//!   An answer whose route called [`crate::delivery::until_written`] is counted and logged
//!   once hyper has written it, and never if its connection ends first.
//! - **No ERROR for an expected 503**: an answer marked [`Expected503`] (`/readyz` while
//!   draining) has only its INFO line, with the `reason`.
//! - **`Connection: close` from SIGTERM on**: a load balancer's pooled connections end cleanly
//!   during the shutdown delay instead of being cut by the drain while it may still reuse them.
//!
//! Hand-written because tower-http's `TraceLayer` and `from_fn` layers each box and clone a
//! service per request, which doubled the stack's cost (BENCHMARKS.md, "What the stack costs").

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};
use tracing::Span;

use crate::{
    delivery::{self, Answered, Line, Record},
    metrics::{HttpMetrics, method_label},
    shutdown::Draining,
};

/// Longest a request may take before it is answered `503`. A durable write is milliseconds; a
/// request still waiting after this is stuck on a volume that does not answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a request was waiting for when it timed out, where the service knows better than "the
/// shared volume": called with the route (`/pingpong`) of a request that timed out, and only
/// then; `Some(reason)` makes the 503 say `timed out after 5s: <reason>`.
pub type TimeoutReason = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// `503 text/plain` with `reason`: every 503 says why (SPEC §4).
pub fn unavailable(reason: impl Into<String>) -> Response {
    let mut reason = reason.into();
    if !reason.ends_with('\n') {
        reason.push('\n');
    }
    (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
}

/// The layer [`crate::http::finish`] puts around every route and fallback.
#[derive(Debug, Clone)]
pub(crate) struct EveryRequestLayer {
    shared: Arc<Shared>,
}

/// What every request's answer needs, behind one reference count: axum clones the layered
/// service for every request, and each clone of an `Arc` is an atomic add on a line that both
/// worker threads write.
struct Shared {
    metrics: HttpMetrics,
    draining: Draining,
    timeout_reason: TimeoutReason,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("metrics", &self.metrics)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl EveryRequestLayer {
    pub(crate) fn new(
        metrics: HttpMetrics,
        draining: Draining,
        timeout_reason: TimeoutReason,
    ) -> Self {
        let shared = Arc::new(Shared {
            metrics,
            draining,
            timeout_reason,
        });
        EveryRequestLayer { shared }
    }
}

impl<S> Layer<S> for EveryRequestLayer {
    type Service = EveryRequest<S>;

    fn layer(&self, inner: S) -> EveryRequest<S> {
        EveryRequest {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct EveryRequest<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for EveryRequest<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Answer<S::Future> {
        let start = Instant::now();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = method_label(request.method());
        // Never the raw method or path: a client chooses them, and one 30 KB method per request
        // would make every log line 30 KB. The fields are evaluated only if the span is enabled.
        let span = tracing::info_span!(
            target: "service_kit::http",
            "request",
            method,
            route = route_label(route.as_ref())
        );
        let inner = {
            let _entered = span.enter();
            tracing::debug!(target: "service_kit::http", "started processing request");
            self.inner.call(request)
        };
        Answer {
            inner,
            deadline: None,
            start,
            span,
            labels: Some((route, method)),
            shared: self.shared.clone(),
        }
    }
}

fn route_label(route: Option<&MatchedPath>) -> &str {
    route.map_or("unmatched", MatchedPath::as_str)
}

pin_project! {
    /// The route's answer, or `503` at the deadline; logged, counted and marked on the way out.
    pub(crate) struct Answer<F> {
        #[pin]
        inner: F,
        // Armed at the first poll that has to wait.
        #[pin]
        deadline: Option<Sleep>,
        start: Instant,
        span: Span,
        // Taken when the answer is out: a future polled after completion panics, as any.
        labels: Option<(Option<MatchedPath>, &'static str)>,
        shared: Arc<Shared>,
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let mut response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Pending => {
                if this.deadline.is_none() {
                    let at = *this.start + REQUEST_TIMEOUT;
                    this.deadline.set(Some(tokio::time::sleep_until(at)));
                }
                let deadline = this.deadline.as_mut().as_pin_mut();
                ready!(deadline.expect("armed above").poll(cx));
                let route = this.labels.as_ref().and_then(|(route, _)| route.as_ref());
                let timeout = REQUEST_TIMEOUT.as_secs();
                match route.and_then(|route| (this.shared.timeout_reason)(route.as_str())) {
                    Some(reason) => unavailable(format!("timed out after {timeout}s: {reason}")),
                    None => unavailable(format!(
                        "timed out after {timeout}s waiting for the shared volume"
                    )),
                }
            }
        };
        let status = response.status();
        let latency = this.start.elapsed();
        let (route, method) = this.labels.take().expect("polled after completion");
        let expected = response.extensions().get::<Expected503>().map(|e| e.0);
        let line = Line {
            route,
            method,
            status,
            latency,
            expected,
        };
        if delivery::awaits_write() {
            // An answer that hands something out counts once it is written (or never).
            let answered = Answered {
                by: this.shared.clone(),
                span: this.span.clone(),
                line,
            };
            if let Some(now) = delivery::when_written(answered) {
                now.count_and_log();
            }
        } else {
            this.shared.count_and_log(line);
        }
        if this.shared.draining.is_draining() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

impl Record for Shared {
    fn count_and_log(&self, line: Line) {
        let Line {
            route,
            method,
            status,
            latency,
            expected,
        } = line;
        self.metrics.count(route, method, status.as_u16(), latency);
        log_answer(status, latency, expected);
    }
}

/// Marks a `503` that is the process working as meant, not failing: `/readyz` while the
/// process drains. Its line is the INFO one with the reason, without the ERROR `response
/// failed`: a graceful shutdown logs no errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected503(pub &'static str);

/// The answer's lines, in the request's span.
fn log_answer(status: StatusCode, latency: Duration, expected: Option<&'static str>) {
    if let Some(reason) = expected {
        tracing::info!(
            target: "service_kit::http",
            status = status.as_u16(),
            latency_us = micros(latency),
            reason,
            "finished processing request"
        );
        return;
    }
    tracing::info!(
        target: "service_kit::http",
        status = status.as_u16(),
        latency_us = micros(latency),
        "finished processing request"
    );
    if status.is_server_error() {
        tracing::error!(
            target: "service_kit::http",
            classification = format_args!("Status code: {status}"),
            latency_us = micros(latency),
            "response failed"
        );
    }
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
}
