//! Prometheus metrics: the registry every service adds its own metrics to, the request counter
//! by route, method and status, the process-wide metrics every HTTP service exports (the
//! accept loop's connections, the log lines dropped), and the `/metrics` text.
//!
//! Every label comes from a fixed set, never from what a client sent, so no client can grow the
//! label set (and with it memory and the `/metrics` body) without bound: the route label is the
//! matched route (`/pingpong`), else `unmatched`; the method label is a standard method, else
//! `other`.

use axum::{
    extract::{MatchedPath, Request, State},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::sync::LazyLock;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::telemetry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

/// The method as a label or log field: one of the nine standard methods, else `other`. HTTP
/// lets a client invent methods of any length; none of that reaches a label or a log line.
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

/// `http_requests_total{route, method, status}`.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = HttpMetrics::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by matched route, method and status",
            metrics.requests.clone(),
        );
        metrics
    }
}

/// What the accept loop ([`crate::connections`]) counts: `http_connections_open`,
/// `http_connections_evicted_total` and `http_connections_refused_total`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Connections accepted and not yet closed, evicted ones still finishing included.
    pub open: Gauge,
    /// Connections closed to make room at the bound, or to free a descriptor when `accept`
    /// failed for lack of one; not those closed by the drain at shutdown.
    pub evicted: Counter,
    /// Connections answered `503` and closed because every connection was busy.
    pub refused: Counter,
}

/// The accept loop's metrics, one set per process like the accept loop itself (and like
/// logging): `connections::serve` counts here, and [`register_process_metrics`] puts them in
/// whichever registry `/metrics` renders, without threading them through the router.
pub fn connection_metrics() -> &'static ConnectionMetrics {
    static METRICS: LazyLock<ConnectionMetrics> = LazyLock::new(ConnectionMetrics::default);
    &METRICS
}

/// Adds the process-wide metrics to `registry`: the accept loop's connections and the log
/// lines dropped because stderr stalled.
pub fn register_process_metrics(registry: &mut Registry) {
    let connections = connection_metrics();
    registry.register(
        "http_connections_open",
        "Connections open now, including evicted ones still finishing their request",
        connections.open.clone(),
    );
    registry.register(
        "http_connections_evicted",
        "Connections closed to make room at the connection bound or to free a descriptor",
        connections.evicted.clone(),
    );
    registry.register(
        "http_connections_refused",
        "Connections answered 503 and closed because every connection was busy",
        connections.refused.clone(),
    );
    registry.register(
        "log_lines_dropped",
        "Log lines dropped because stderr was not taking them (a stalled log collector)",
        telemetry::dropped_lines(),
    );
}

/// Middleware counting every answered request.
pub async fn count_requests(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The registry in the OpenMetrics text format, which Prometheus scrapes.
pub fn render(registry: &Registry) -> Response {
    let mut body = String::new();
    if let Err(error) = encode(&mut body, registry) {
        tracing::error!(%error, "encoding metrics");
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_label_is_a_standard_method_or_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        let invented = Method::from_bytes("X".repeat(30_000).as_bytes()).unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
