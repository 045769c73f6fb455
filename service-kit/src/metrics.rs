//! Prometheus metrics: the registry every service adds its own metrics to, the request counter
//! by route, method and status, and the `/metrics` text.
//!
//! The route label is the matched route (`/pingpong`), never the raw path, so a scan of random
//! URLs cannot grow the label set without bound: unknown paths count as `unmatched`.

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
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
    let method = request.method().as_str().to_owned();
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
