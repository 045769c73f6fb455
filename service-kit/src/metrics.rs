//! Prometheus metrics: the registry every service adds its own metrics to, the request counter
//! by route, method and status, and the `/metrics` text.
//!
//! Every label comes from a fixed set, never from what a client sent, so no client can grow the
//! label set (and with it memory and the `/metrics` body) without bound: the route label is the
//! matched route (`/pingpong`), else `unmatched`; the method label is a standard method, else
//! `other`.

use axum::{
    extract::MatchedPath,
    http::{Method, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, text::encode},
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: RouteLabel,
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

impl HttpMetrics {
    /// Counts one answer. The route is axum's own shared string, so labelling a request copies
    /// nothing; only the first answer of each label set allocates one.
    pub(crate) fn count(&self, route: Option<MatchedPath>, method: &'static str, status: u16) {
        let labels = RequestLabels {
            route: RouteLabel(route),
            method,
            status,
        };
        self.requests.get_or_create(&labels).inc();
    }
}

/// The route label: the matched route, else `unmatched`.
#[derive(Debug, Clone)]
struct RouteLabel(Option<MatchedPath>);

impl RouteLabel {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
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
